//! NTP over UDP: for each `[[server]]` listen address, one socket per core
//! the process may run on (SO_REUSEPORT spreads clients over them), each
//! served by its own thread in batches: recvmmsg with the kernel's receive
//! timestamp on every datagram (SO_TIMESTAMPNS), the sans-IO decision of
//! `sundial_proto::server::handle_request` per datagram, sendmmsg for the
//! answers. Answers to clients that ask for RFC 9769's interleaved mode go
//! out in a batch of their own with kernel transmit timestamping on
//! (`ntp/txstamp.rs`), and their timestamps land in the listener's table
//! (`ntp/interleave.rs`), from which the client's next answer takes them.
//!
//! Why threads and not tokio tasks: a serving loop is one blocking
//! recvmmsg after another, with nothing to await in between; an epoll
//! round trip per batch bought nothing but latency, and nix's batch
//! headers hold raw pointers (not `Send`), which a task could not keep
//! across an await.
#![forbid(unsafe_code)]

pub mod batch;
pub mod interleave;
mod pacing;
pub mod txstamp;

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use socket2::{Domain, Protocol, Socket, Type};
use sundial_proto::interleave::PreviousTransmit;
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::server::{
    Admission, AnswerMode, DropClass, DropReason, PlainPolicy, Request, ResponseKind, Server,
    ServerAction, ServerPolicy, ServerState, handle_request,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::batch::{BATCH, RxBatch, TxBatch, to_socket_addr};
use self::interleave::SharedTable;
use self::pacing::Pacer;
use self::txstamp::{StampMeta, TxStamps};
use super::rate::RateLimiter;
use crate::config::{FilterAction, RateLimitAction, RequireNts, ServerConfig};
use crate::keystore::SharedKeySet;

/// Largest request read; anything longer is truncated and then fails to
/// authenticate, which is the right outcome for it.
const MAX_PACKET: usize = 2048;

/// How often an idle serving thread wakes to see whether it must stop:
/// also the longest a shutdown waits for it.
const IDLE_WAKE: Duration = Duration::from_millis(200);

/// At most this many serving sockets per listen address, however many
/// cores: past that, more threads only contend for the same NIC queues.
const MAX_THREADS: usize = 16;

/// Answers are sent together, but never once the oldest queued answer's
/// transmit timestamp is older than this: the timestamp would then be
/// early by more than the server's own precision is worth (~20 µs).
const FLUSH_AFTER: Duration = Duration::from_micros(20);

/// Receive buffer asked for per socket (bytes of kernel memory, not
/// packets: a small datagram costs about a kilobyte of it).
const RECV_BUFFER: usize = 4 << 20;

/// Where the server's view of its own time comes from.
pub type StateFn = Arc<dyn Fn(NtpTimestamp) -> ServerState + Send + Sync>;

/// A listen address that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("NTP server {addr}: {source}")]
pub struct NtpStartError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Counters per listener; read by `sundial status` and the metrics.
#[derive(Debug, Default)]
pub struct NtpStats {
    pub received: AtomicU64,
    pub plain: AtomicU64,
    pub nts: AtomicU64,
    pub nts_nak: AtomicU64,
    pub deny: AtomicU64,
    pub rate: AtomicU64,
    pub ignored: AtomicU64,
    pub malformed: AtomicU64,
    pub nts_dropped: AtomicU64,
    pub send_errors: AtomicU64,
    /// RFC 9769: answers in interleaved mode; interleaved requests whose
    /// previous exchange was gone (answered in basic mode); kernel
    /// transmit timestamps captured (of them from the NIC) and missed.
    pub interleaved: AtomicU64,
    pub interleave_missed: AtomicU64,
    pub tx_captured: AtomicU64,
    pub tx_hardware: AtomicU64,
    pub tx_missed: AtomicU64,
    /// Every request `handle` dropped, by [`DropClass`] (indexed by
    /// `class as usize`): `nts_dropped`, the `require-nts` part of
    /// `ignored` and `malformed` (minus datagrams without a peer address),
    /// split by reason. Filter drops are not here: they never reach
    /// `handle`.
    pub dropped: [AtomicU64; DROP_CLASSES],
}

/// How many [`DropClass`]es a listener counts.
pub const DROP_CLASSES: usize = DropClass::ALL.len();

/// One batch's counts, added to the shared [`NtpStats`] once per batch so
/// that serving threads do not bounce the counters' cache line per packet.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    plain: u64,
    nts: u64,
    nts_nak: u64,
    deny: u64,
    rate: u64,
    ignored: u64,
    malformed: u64,
    nts_dropped: u64,
    send_errors: u64,
    interleaved: u64,
    interleave_missed: u64,
    tx_captured: u64,
    tx_hardware: u64,
    tx_missed: u64,
    dropped: [u64; DROP_CLASSES],
}

impl Tally {
    fn count(&mut self, action: &ServerAction) {
        let counter = match action {
            ServerAction::Respond { kind, .. } => match kind {
                ResponseKind::Plain => &mut self.plain,
                ResponseKind::Nts => &mut self.nts,
                ResponseKind::NtsNak => &mut self.nts_nak,
                ResponseKind::Deny => &mut self.deny,
                ResponseKind::Rate => &mut self.rate,
            },
            ServerAction::Drop(reason) => {
                if let Some(n) = self.dropped.get_mut(reason.class() as usize) {
                    *n += 1;
                }
                match reason {
                    DropReason::Nts(_) | DropReason::NoKeyset => &mut self.nts_dropped,
                    DropReason::NtsRequired => &mut self.ignored,
                    _ => &mut self.malformed,
                }
            }
        };
        *counter += 1;
    }

    fn flush(&mut self, stats: &NtpStats) {
        let pairs = [
            (self.received, &stats.received),
            (self.plain, &stats.plain),
            (self.nts, &stats.nts),
            (self.nts_nak, &stats.nts_nak),
            (self.deny, &stats.deny),
            (self.rate, &stats.rate),
            (self.ignored, &stats.ignored),
            (self.malformed, &stats.malformed),
            (self.nts_dropped, &stats.nts_dropped),
            (self.send_errors, &stats.send_errors),
            (self.interleaved, &stats.interleaved),
            (self.interleave_missed, &stats.interleave_missed),
            (self.tx_captured, &stats.tx_captured),
            (self.tx_hardware, &stats.tx_hardware),
            (self.tx_missed, &stats.tx_missed),
        ];
        let by_class = self.dropped.iter().zip(&stats.dropped);
        for (n, counter) in pairs.into_iter().chain(by_class.map(|(n, c)| (*n, c))) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        *self = Self::default();
    }
}

/// A bound NTP listener: one or more sockets on the same address.
#[derive(Debug)]
pub struct NtpListener {
    sockets: Vec<std::net::UdpSocket>,
    config: ServerConfig,
    stats: Arc<NtpStats>,
    table: Arc<SharedTable>,
}

/// Serving threads per listen address: the cores this process may run on
/// (so a daemon pinned to one core serves from one socket).
fn serving_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
}

fn open(addr: SocketAddr, v6_only: bool, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Opens the sockets: IPv6 sockets are dual-stack unless `v6_only` (set
/// when an IPv4 wildcard on the same port is configured too).
pub fn bind(config: &ServerConfig, v6_only: bool) -> Result<NtpListener, NtpStartError> {
    bind_threads(config, v6_only, serving_threads())
}

fn bind_threads(
    config: &ServerConfig,
    v6_only: bool,
    threads: usize,
) -> Result<NtpListener, NtpStartError> {
    let mut addr = config.listen;
    let err = |source| NtpStartError {
        addr: config.listen,
        source,
    };
    let mut sockets = Vec::with_capacity(threads);
    if threads <= 1 {
        sockets.push(open(addr, v6_only, false).map_err(err)?);
    } else {
        // SO_REUSEPORT would let a second daemon of the same user join
        // this port silently: first bind without it, so that a port in use
        // fails as it always did (and port 0 picks the port), then open
        // the group on that port.
        let probe = open(addr, v6_only, false).map_err(err)?;
        if let Some(local) = probe.local_addr().map_err(err)?.as_socket() {
            addr.set_port(local.port());
        }
        drop(probe);
        for _ in 0..threads {
            sockets.push(open(addr, v6_only, true).map_err(err)?);
        }
    }
    let mut bound = Vec::with_capacity(sockets.len());
    for socket in sockets {
        // The kernel stamps each datagram as it arrives: the receive
        // timestamp then excludes our scheduling and batching delay.
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(|e| err(e.into()))?;
        // Room for a few tens of milliseconds of requests at full load:
        // a serving thread that loses its core for a moment (another
        // process, an interrupt storm) then answers late, not never. The
        // kernel caps this at net.core.rmem_max; less is fine.
        if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
            tracing::debug!(error = %e, "cannot enlarge the NTP receive buffer");
        }
        // Blocking reads that time out, so an idle thread sees a shutdown.
        socket.set_read_timeout(Some(IDLE_WAKE)).map_err(err)?;
        bound.push(std::net::UdpSocket::from(socket));
    }
    Ok(NtpListener {
        sockets: bound,
        config: config.clone(),
        stats: Arc::new(NtpStats::default()),
        table: Arc::new(SharedTable::default()),
    })
}

/// The system clock now, as an NTP timestamp.
pub fn now_ntp() -> NtpTimestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    NtpTimestamp::from_unix(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

/// Sends a message when dropped: a serving thread that ends, by return or
/// by panic, tells the listener's task.
struct ExitNotice(mpsc::Sender<()>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

impl NtpListener {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.sockets.first() {
            Some(s) => s.local_addr(),
            None => Err(io::Error::other("NTP listener without a socket")),
        }
    }

    pub fn stats(&self) -> Arc<NtpStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until cancelled; returns early only if a serving thread
    /// stopped on its own (the supervisor then shuts down).
    pub async fn run(self, keys: Option<SharedKeySet>, state: StateFn, cancel: CancellationToken) {
        let policy = ServerPolicy {
            accepted_versions: self
                .config
                .accept_ntp_versions
                .iter()
                .filter(|&&v| v < 8)
                .fold(0u8, |acc, &v| acc | (1 << v)),
            plain: match self.config.require_nts {
                RequireNts::No => PlainPolicy::Serve,
                RequireNts::Ignore => PlainPolicy::Ignore,
                RequireNts::Deny => PlainPolicy::Deny,
            },
        };
        let config = Arc::new(self.config);
        let (exit_tx, mut exit_rx) = mpsc::channel(self.sockets.len().max(1));
        tracing::info!(listen = %config.listen, sockets = self.sockets.len(), "serving NTP");
        for (i, socket) in self.sockets.into_iter().enumerate() {
            let worker = Worker {
                socket,
                config: Arc::clone(&config),
                policy,
                stats: Arc::clone(&self.stats),
                table: Arc::clone(&self.table),
                keys: keys.clone(),
                state: Arc::clone(&state),
                cancel: cancel.clone(),
            };
            let notice = ExitNotice(exit_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sundial-ntp-{i}"))
                .spawn(move || {
                    let _notice = notice;
                    worker.serve();
                });
            if let Err(e) = spawned {
                tracing::error!(listen = %config.listen, error = %e, "cannot start an NTP serving thread");
                return;
            }
        }
        drop(exit_tx);
        tokio::select! {
            () = cancel.cancelled() => {
                // Each thread sees the cancellation within IDLE_WAKE; wait
                // so that the sockets are closed when this returns.
                while exit_rx.recv().await.is_some() {}
            }
            _ = exit_rx.recv() => {
                tracing::error!(listen = %config.listen, "an NTP serving thread stopped");
            }
        }
    }
}

/// One socket's serving loop and what it needs.
struct Worker {
    socket: std::net::UdpSocket,
    config: Arc<ServerConfig>,
    policy: ServerPolicy,
    stats: Arc<NtpStats>,
    table: Arc<SharedTable>,
    keys: Option<SharedKeySet>,
    state: StateFn,
    cancel: CancellationToken,
}

/// Answers to interleaving clients, sent with transmit timestamping.
struct Stamped {
    stamps: TxStamps,
    batch: TxBatch,
    meta: [StampMeta; BATCH],
}

impl Worker {
    fn serve(&self) {
        let fd = self.socket.as_raw_fd();
        // A table per thread: a client's datagrams from one source port
        // always reach the same socket, so its rate is seen whole.
        let mut limiter = RateLimiter::from_config(&self.config);
        // A ChaCha generator seeded from the OS, one per thread, for
        // nonces and cookie keys.
        let mut rng = StdRng::from_os_rng();
        let mut rx = RxBatch::new();
        let mut tx = TxBatch::new();
        // Without kernel transmit timestamps there is nothing to
        // interleave with: the server then answers in basic mode only.
        let stamps = self
            .config
            .interleaved
            .then(|| TxStamps::new(self.socket.as_fd()))
            .flatten();
        let mut stamped = stamps.map(|stamps| Stamped {
            stamps,
            batch: TxBatch::new(),
            meta: [StampMeta::default(); BATCH],
        });
        if stamped.is_none() && self.config.interleaved {
            tracing::info!(listen = %self.config.listen, "no kernel transmit timestamps: interleaved mode off");
        }
        let mut tally = Tally::default();
        let mut pacer = Pacer::new(
            Duration::from_micros(self.config.coalesce_us),
            Instant::now(),
        );
        while !self.cancel.is_cancelled() {
            let n = match rx.receive(fd) {
                Ok(n) => n,
                // The idle timeout, or a signal.
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; never
                    // fatal, but never a busy loop either.
                    tracing::debug!(error = %e, "NTP receive error");
                    if e != Errno::ECONNREFUSED {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    continue;
                }
            };
            let batch_start = Instant::now();
            tally.received += n as u64;
            // One read lock per batch, not per packet; dropped before any
            // send so a key rotation never waits on the network.
            let guard = self.keys.as_ref().and_then(|k| k.read().ok());
            let keyset = guard.as_deref();
            let mut oldest: Option<Instant> = None;
            for i in 0..n {
                let Some((meta, packet)) = rx.get(i) else {
                    break;
                };
                let Some(peer) = meta.peer else {
                    tally.malformed += 1;
                    continue;
                };
                let Some(ip) = to_socket_addr(&peer).map(|a| a.ip()) else {
                    tally.malformed += 1;
                    continue;
                };
                let receive_ts = meta.timestamp.unwrap_or_else(now_ntp);
                let Some(admission) = self.admission(ip, limiter.as_mut()) else {
                    tally.ignored += 1;
                    continue;
                };
                let sealed_at = Cell::new(None);
                let state = (self.state)(receive_ts);
                let server = Server {
                    state: &state,
                    policy: &self.policy,
                    keyset,
                };
                let request = Request {
                    bytes: packet,
                    received: receive_ts,
                    admission,
                };
                let mut view = self.table.client(ip);
                let previous = stamped
                    .as_ref()
                    .map(|_| &mut view as &mut dyn PreviousTransmit);
                let handled = handle_request(
                    &server,
                    &request,
                    previous,
                    || {
                        sealed_at.set(Some(Instant::now()));
                        now_ntp()
                    },
                    &mut rng,
                    tx.next_buf(),
                );
                let action = handled.action;
                tally.count(&action);
                match handled.exchange.mode {
                    AnswerMode::Basic => {}
                    AnswerMode::Interleaved => tally.interleaved += 1,
                    AnswerMode::Missed => tally.interleave_missed += 1,
                }
                match action {
                    ServerAction::Respond { len, .. } => {
                        tx.push(len, peer);
                        if let (Some(save), Some(st)) = (handled.exchange.save, stamped.as_mut()) {
                            // Into the stamped batch; into the table once
                            // the kernel reports its transmit time.
                            let buf = st.batch.next_buf();
                            let answer = tx.last();
                            if let Some(dst) = buf.get_mut(..answer.len()) {
                                dst.copy_from_slice(answer);
                                if let Some(m) = st.meta.get_mut(st.batch.len()) {
                                    *m = StampMeta {
                                        receive: save.receive,
                                        client: ip,
                                        estimate: save.transmit_estimate,
                                    };
                                }
                                st.batch.push(len, peer);
                                tx.pop();
                            }
                        }
                        if oldest.is_none() {
                            oldest = sealed_at.get();
                        }
                    }
                    ServerAction::Drop(reason) => {
                        tracing::debug!(peer = %ip, %reason, "NTP request dropped");
                    }
                }
                let stale = oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER);
                let full = tx.is_full() || stamped.as_ref().is_some_and(|s| s.batch.is_full());
                if full || stale {
                    self.flush(fd, &mut tx, stamped.as_mut(), &mut tally);
                    oldest = None;
                }
            }
            drop(guard);
            let stamped_waiting = stamped.as_ref().is_some_and(|s| !s.batch.is_empty());
            if !tx.is_empty() || stamped_waiting {
                self.flush(fd, &mut tx, stamped.as_mut(), &mut tally);
            } else if let Some(st) = stamped.as_mut()
                && st.stamps.waiting()
            {
                // Hardware timestamps may come after their batch's drain.
                self.collect(&mut st.stamps, &mut tally);
            }
            tally.flush(&self.stats);
            let now = Instant::now();
            let busy = now.saturating_duration_since(batch_start);
            if let Some(wait) = pacer.after_batch(n, n >= batch::BATCH, busy, now) {
                std::thread::sleep(wait);
            }
        }
    }

    fn flush(
        &self,
        fd: RawFd,
        tx: &mut TxBatch,
        mut stamped: Option<&mut Stamped>,
        tally: &mut Tally,
    ) {
        // Count before sending: a client holding its answer finds it counted.
        tally.flush(&self.stats);
        if !tx.is_empty() {
            if let Some(st) = stamped.as_deref_mut() {
                st.stamps.before_unstamped(self.socket.as_fd());
            }
            let sent = tx.flush(fd);
            tally.send_errors += sent.failed;
        }
        if let Some(st) = stamped
            && !st.batch.is_empty()
        {
            let n = st.batch.len();
            let meta = st.meta.get(..n).unwrap_or_default();
            let sent = st.stamps.send(
                self.socket.as_fd(),
                &mut st.batch,
                meta,
                &mut tally.tx_missed,
            );
            tally.send_errors += sent.failed;
            self.collect(&mut st.stamps, tally);
        }
    }

    /// Reads the transmit timestamps the kernel has reported into the
    /// table.
    fn collect(&self, stamps: &mut TxStamps, tally: &mut Tally) {
        let drained = stamps.drain(self.socket.as_fd(), |c| {
            // A NIC's report improves on the software one already saved.
            if !(c.hardware && self.table.set_transmit(c.receive, c.kernel)) {
                let _ = self.table.insert(c.receive, c.client, c.kernel);
            }
        });
        tally.tx_captured += drained.captured;
        tally.tx_hardware += drained.hardware;
        tally.tx_missed += drained.missed;
    }

    /// Allow and deny lists, then rate limiting. `None`: drop silently.
    fn admission(&self, ip: IpAddr, limiter: Option<&mut RateLimiter>) -> Option<Admission> {
        match self.config.filter_action(ip) {
            Some(FilterAction::Ignore) => return None,
            Some(FilterAction::Deny) => return Some(Admission::Deny),
            None => {}
        }
        match limiter.and_then(|l| l.check(ip, Instant::now())) {
            None => Some(Admission::Allow),
            Some(RateLimitAction::Kiss) => Some(Admission::RateLimited),
            Some(RateLimitAction::Ignore) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> ServerConfig {
        let text = format!("[[server]]\nlisten = \"{listen}\"\n");
        let mut cfg = crate::config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.servers.remove(0)
    }

    #[test]
    fn a_port_in_use_fails_even_with_several_sockets() {
        let first =
            bind_threads(&config("127.0.0.1:0"), false, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.sockets.len(), 2);
        let addr = first.local_addr().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            first
                .sockets
                .iter()
                .all(|s| s.local_addr().ok() == Some(addr))
        );
        let again = bind_threads(&config(&addr.to_string()), false, 2);
        assert!(again.is_err(), "a second listener joined {addr}");
    }
}
