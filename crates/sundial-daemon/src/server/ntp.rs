//! NTP over UDP: one socket per `[[server]]` listen address, the kernel's
//! receive timestamp on every packet (SO_TIMESTAMPNS), and the sans-IO
//! decision of `sundial_proto::server::handle` in between.
#![forbid(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use socket2::{Domain, Protocol, Socket, Type};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::server::{
    Admission, DropReason, PlainPolicy, ResponseKind, ServerAction, ServerPolicy, ServerState,
    handle,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::rate::RateLimiter;
use crate::config::{FilterAction, RequireNts, ServerConfig};
use crate::keystore::SharedKeySet;

/// Largest request read; anything longer is truncated and then fails to
/// authenticate, which is the right outcome for it.
const MAX_PACKET: usize = 2048;

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
}

impl NtpStats {
    fn count(&self, action: &ServerAction) {
        let counter = match action {
            ServerAction::Respond { kind, .. } => match kind {
                ResponseKind::Plain => &self.plain,
                ResponseKind::Nts => &self.nts,
                ResponseKind::NtsNak => &self.nts_nak,
                ResponseKind::Deny => &self.deny,
                ResponseKind::Rate => &self.rate,
            },
            ServerAction::Drop(DropReason::Nts(_) | DropReason::NoKeyset) => &self.nts_dropped,
            ServerAction::Drop(DropReason::NtsRequired) => &self.ignored,
            ServerAction::Drop(_) => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A bound NTP listener.
#[derive(Debug)]
pub struct NtpListener {
    socket: UdpSocket,
    config: ServerConfig,
    stats: Arc<NtpStats>,
}

/// Opens the socket: IPv6 sockets are dual-stack unless `v6_only` (set when
/// an IPv4 wildcard on the same port is configured too).
pub fn bind(config: &ServerConfig, v6_only: bool) -> Result<NtpListener, NtpStartError> {
    let addr = config.listen;
    let err = |source| NtpStartError { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    // The kernel stamps each datagram as it arrives: the receive timestamp
    // then excludes our scheduling delay.
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(|e| err(e.into()))?;
    let socket = UdpSocket::from_std(socket.into()).map_err(err)?;
    Ok(NtpListener {
        socket,
        config: config.clone(),
        stats: Arc::new(NtpStats::default()),
    })
}

fn now_ntp() -> NtpTimestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    NtpTimestamp::from_unix(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

fn timespec_to_ntp(ts: &TimeSpec) -> NtpTimestamp {
    NtpTimestamp::from_unix(ts.tv_sec(), u32::try_from(ts.tv_nsec()).unwrap_or(0))
}

/// One received datagram.
struct Received {
    len: usize,
    peer: SocketAddr,
    timestamp: Option<NtpTimestamp>,
}

fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

fn recv_with_timestamp(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = cmsg_space!(TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let peer = msg
        .address
        .as_ref()
        .and_then(to_socket_addr)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut timestamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                timestamp = Some(timespec_to_ntp(&ts));
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        peer,
        timestamp,
    })
}

impl NtpListener {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> Arc<NtpStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until cancelled.
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
        let mut limiter = RateLimiter::new(
            self.config.rate_limiting_cache_size,
            Duration::from_millis(self.config.rate_limiting_cutoff_ms),
        );
        // ThreadRng is not Send; a ChaCha generator seeded from the OS is
        // as good for nonces and cookie keys and can live in this task.
        let mut rng = StdRng::from_os_rng();
        let mut request = [0u8; MAX_PACKET];
        let mut response = [0u8; MAX_PACKET];
        tracing::info!(listen = %self.config.listen, "serving NTP");
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.socket.async_io(Interest::READABLE, || recv_with_timestamp(&self.socket, &mut request)) => r,
            };
            let received = match received {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; never fatal.
                    tracing::debug!(error = %e, "NTP receive error");
                    continue;
                }
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let receive_ts = received.timestamp.unwrap_or_else(now_ntp);
            let admission = match self.admission(received.peer.ip(), limiter.as_mut()) {
                Some(a) => a,
                None => {
                    self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let packet = request.get(..received.len).unwrap_or_default();
            let action = {
                let guard = keys.as_ref().and_then(|k| k.read().ok());
                handle(
                    &state(receive_ts),
                    &policy,
                    guard.as_deref(),
                    admission,
                    packet,
                    receive_ts,
                    now_ntp,
                    &mut rng,
                    &mut response,
                )
            };
            self.stats.count(&action);
            match action {
                ServerAction::Respond { len, .. } => {
                    let out = response.get(..len).unwrap_or_default();
                    if let Err(e) = self.socket.send_to(out, received.peer).await {
                        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %received.peer, error = %e, "NTP send error");
                    }
                }
                ServerAction::Drop(reason) => {
                    tracing::debug!(peer = %received.peer, %reason, "NTP request dropped");
                }
            }
        }
    }

    /// Allow and deny lists, then rate limiting. `None`: drop silently.
    fn admission(&self, ip: IpAddr, limiter: Option<&mut RateLimiter>) -> Option<Admission> {
        match self.config.filter_action(ip) {
            Some(FilterAction::Ignore) => return None,
            Some(FilterAction::Deny) => return Some(Admission::Deny),
            None => {}
        }
        if limiter.is_some_and(|l| l.is_limited(ip, Instant::now())) {
            return Some(Admission::RateLimited);
        }
        Some(Admission::Allow)
    }
}
