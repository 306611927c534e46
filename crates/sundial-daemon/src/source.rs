//! Sources: one tokio task per time source that resolves its server, (for
//! NTS) runs key exchanges, polls on the schedule the synchronizer asks for,
//! and hands every measurement on as a [`SourceEvent`].
//!
//! What a request holds and which answer is believed is decided by the
//! sans-IO `sundial_proto::source::Association`; this module owns sockets,
//! DNS, TLS, timers and retries.
//!
//! Wiring: call [`spawn_sources`] inside the runtime with the loaded
//! [`Config`]; read [`SourceEvent`]s from the receiver; steer each source's
//! poll interval through its [`SourceHandle::poll`] (a log2-seconds
//! exponent, clamped by the source into its `poll-interval-limits`); cancel
//! the token and drain the `JoinSet` to stop.

mod backoff;
pub mod cert_error;
pub mod cert_time;
pub mod ke_client;
mod ntp;
mod nts;
mod plain;
pub mod pps;
mod refclock;
mod sock;
pub mod trust;

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::refclock::Rejection;
use sundial_proto::source::AssociationStats;
use sundial_sync::{Measurement, SourceKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use backoff::RetryBackoff;
pub use cert_time::{CertTimeCheck, SynchronizedUpdates};
pub use ke_client::{
    KeError, KeOutcome, KeReport, TrustAnchors, client_config_at, key_exchange,
    key_exchange_report, key_exchange_using, key_exchange_with, read_certificate_file,
};
pub use ntp::NtpSocket;
pub use sock::SOCKET_MODE;

use crate::config::{
    Config, HostPort, PollIntervalLimits, PollOverrides, SourceConfig, SourceMode,
};
use crate::unix_path::Occupied;
use pps::PpsDevice;
use refclock::Reference;

/// How long one key exchange may take, DNS to last record.
pub const KE_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies one source for the lifetime of the daemon; a pool of
/// `count` servers has `count` ids, one per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What sources report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceEvent {
    /// A believed exchange; for an NTS source always authenticated.
    Measurement(SourceId, Measurement),
    /// The source stopped answering (or could not be reached at all):
    /// forget its samples until it measures again. Sent once per change.
    Unreachable(SourceId),
    /// Something for `sundial status` and the logs.
    Status(SourceId, SourceStatus),
}

/// State changes of a source.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceStatus {
    /// A plain source resolved and is polling `server`.
    Polling { server: SocketAddr },
    /// An NTS key exchange succeeded; polling `ntp_server`.
    KeyExchanged {
        ke_server: SocketAddr,
        ntp_server: SocketAddr,
        algorithm: AeadAlgorithm,
        cookies: usize,
    },
    /// A key exchange failed; `operator` says a sysadmin must act
    /// (certificate, CA file), else it is retried after `retry_in`.
    KeyExchangeFailed {
        error: String,
        operator: bool,
        retry_in: Duration,
    },
    /// Resolving or opening a socket to the NTP server failed.
    ResolveFailed { error: String, retry_in: Duration },
    /// The server answered DENY or RSTR; this server is not polled again.
    Demobilized { server: SocketAddr },
}

/// Counters per source; what a remote peer can cause is counted here and
/// logged at debug only.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub requests: AtomicU64,
    pub samples: AtomicU64,
    pub send_errors: AtomicU64,
    /// Answers to no request of ours (late, duplicated, replayed, stray).
    pub unexpected: AtomicU64,
    /// NTS answers that did not verify (forged, tampered, plain).
    pub unauthenticated: AtomicU64,
    pub malformed: AtomicU64,
    pub cookies_rejected: AtomicU64,
    pub rate_kisses: AtomicU64,
    pub nts_naks: AtomicU64,
    pub key_exchanges: AtomicU64,
    pub key_exchange_failures: AtomicU64,
    /// Gauges for `sundial status` and metrics, stored by the poll loop:
    /// NTS cookies in the jar, the association's reach register (one bit
    /// per poll, newest lowest) and polls since the last believed answer.
    pub cookies: AtomicU64,
    pub reach: AtomicU64,
    pub unanswered: AtomicU64,
    /// Unix seconds of the last successful NTS key exchange; 0 for never.
    pub last_key_exchange: AtomicU64,
    /// The AEAD it negotiated (IANA id; 0 for none yet).
    pub aead: AtomicU64,
    /// Reference clocks: samples refused, by `Rejection as usize`.
    pub rejected: [AtomicU64; Rejection::ALL.len()],
    /// Reference clocks: expected intervals (a second; a PPS's period)
    /// in which no sample came.
    pub missed_intervals: AtomicU64,
    /// RFC 9769: 1 when the last believed answer was interleaved; the
    /// samples and answers in interleaved mode; requests whose transmit
    /// time the kernel reported.
    pub interleaved: AtomicU64,
    pub interleaved_samples: AtomicU64,
    pub interleaved_answers: AtomicU64,
    pub kernel_tx_timestamps: AtomicU64,
}

impl SourceStats {
    /// Adds what an association counted between two snapshots (each key
    /// exchange starts a new association).
    fn add(&self, before: &AssociationStats, after: &AssociationStats) {
        let add = |counter: &AtomicU64, a: u64, b: u64| {
            if b > a {
                counter.fetch_add(b - a, Ordering::Relaxed);
            }
        };
        add(&self.requests, before.requests, after.requests);
        add(&self.samples, before.samples, after.samples);
        add(&self.unexpected, before.unexpected, after.unexpected);
        add(
            &self.unauthenticated,
            before.unauthenticated,
            after.unauthenticated,
        );
        add(&self.malformed, before.malformed, after.malformed);
        add(
            &self.interleaved_samples,
            before.interleaved_samples,
            after.interleaved_samples,
        );
        add(
            &self.interleaved_answers,
            before.interleaved_answers,
            after.interleaved_answers,
        );
        add(
            &self.cookies_rejected,
            before.cookies_rejected,
            after.cookies_rejected,
        );
    }

    /// Stores the association's gauges (a new association after a key
    /// exchange starts its reach register afresh, as chrony's does).
    fn observe(&self, assoc: &sundial_proto::source::Association) {
        let cookies = u64::try_from(assoc.cookies()).unwrap_or(u64::MAX);
        self.cookies.store(cookies, Ordering::Relaxed);
        self.reach
            .store(u64::from(assoc.reach()), Ordering::Relaxed);
        self.unanswered
            .store(u64::from(assoc.unanswered()), Ordering::Relaxed);
        self.interleaved
            .store(u64::from(assoc.is_interleaved()), Ordering::Relaxed);
    }
}

/// The caller's side of one source.
#[derive(Debug)]
pub struct SourceHandle {
    pub id: SourceId,
    /// For logs and status: mode and address, plus the slot for a pool.
    pub name: String,
    pub mode: SourceMode,
    /// The poll exponent the synchronizer wants (log2 seconds). The source
    /// clamps it into `limits` and raises it after RATE kisses; it starts
    /// at the source's `initial-poll-interval`.
    pub poll: watch::Sender<i8>,
    pub limits: PollIntervalLimits,
    pub stats: Arc<SourceStats>,
    /// How the synchronizer is to read its measurements.
    pub kind: SourceKind,
    /// A reference clock's reference id ("GPS", "PPS" or `reference-id`);
    /// a network source's comes from its address once known.
    pub reference_id: Option<[u8; 4]>,
    /// A reference clock's socket or device.
    pub path: Option<PathBuf>,
    /// `interleaved = true` in its `[[source]]`.
    pub interleave_requested: bool,
}

/// A reference clock could not be opened; each names its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceStartError {
    #[error("sock source {}: another process answers on this socket (is another time daemon running?)", path.display())]
    InUse { path: PathBuf },
    #[error("sock source {}: the path exists and is not a socket; not removing it", path.display())]
    NotASocket { path: PathBuf },
    #[error("sock source {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pps source {}: {source}", path.display())]
    Device {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SourceStartError {
    fn occupied(path: &Path, occupied: Occupied) -> Self {
        let path = path.to_owned();
        match occupied {
            Occupied::InUse => Self::InUse { path },
            Occupied::NotASocket => Self::NotASocket { path },
            Occupied::Io(source) => Self::Socket { path, source },
        }
    }

    fn socket(path: &Path, source: io::Error) -> Self {
        Self::Socket {
            path: path.to_owned(),
            source,
        }
    }
}

/// The running sources.
#[derive(Debug)]
pub struct Sources {
    pub tasks: JoinSet<()>,
    pub handles: Vec<SourceHandle>,
    /// What the discipline counts for `certificate-time-check-after`.
    pub synchronized_updates: SynchronizedUpdates,
}

/// Spawns one task per `server`, `nts`, `sock` and `pps` source and
/// `count` per `pool` (`nts-pool` is skipped with a warning). Must be
/// called inside a tokio runtime. `origin` is the start of the daemon's
/// monotonic timeline (`Measurement::time` is seconds since it). Tasks end
/// when `cancel` fires or the event receiver is dropped.
///
/// Reference clocks are opened here, so that a socket that cannot be
/// created or a device that cannot be read stops the start-up with its
/// path (before systemd hears the daemon is ready, and so before gpsd
/// looks for the socket).
pub fn spawn_sources(
    config: &Config,
    origin: Instant,
    events: mpsc::Sender<SourceEvent>,
    cancel: CancellationToken,
) -> Result<Sources, SourceStartError> {
    let mut sources = Sources {
        tasks: JoinSet::new(),
        handles: Vec::new(),
        synchronized_updates: SynchronizedUpdates::new(),
    };
    let cert_time = CertTimeCheck::after(
        u64::from(config.synchronization.certificate_time_check_after),
        sources.synchronized_updates.clone(),
    );
    let mut next_id = 0u32;
    let defaults = &config.source_defaults;
    // A refclock announces "GPS" or "PPS" as our system peer, or what
    // `reference-id` says (ntpd-rs's key for a stratum 1 server).
    let configured_id = config.synchronization.reference_id.map(|r| r.0);
    let reference = |default: [u8; 4], accuracy: f64| Reference {
        reference_id: configured_id.unwrap_or(default),
        accuracy,
    };
    for source in &config.sources {
        let mut add = |name: String, poll: &PollOverrides, kind: Kind| {
            let id = SourceId(next_id);
            next_id = next_id.saturating_add(1);
            let limits = poll.limits(defaults);
            let (poll_tx, poll_rx) = watch::channel(poll.initial(defaults));
            let stats = Arc::new(SourceStats::default());
            let ctx = SourceContext {
                id,
                events: events.clone(),
                origin,
                cancel: cancel.clone(),
                stats: Arc::clone(&stats),
                reach: Reach::default(),
                interleaved: source.interleaved(),
            };
            let (sync_kind, reference_id, path) = kind.describe();
            let control = PollControl::new(poll_rx, limits);
            let span = tracing::info_span!("source", id = id.0, name = %name);
            sources.tasks.spawn(kind.run(ctx, control).instrument(span));
            sources.handles.push(SourceHandle {
                id,
                name,
                mode: source.mode(),
                poll: poll_tx,
                limits,
                stats,
                kind: sync_kind,
                reference_id,
                path,
                interleave_requested: source.interleaved(),
            });
        };
        match source {
            SourceConfig::Server(s) => add(
                format!("server {}", s.address),
                &s.poll,
                Kind::Plain(plain::Target::Server(s.address.clone())),
            ),
            SourceConfig::Pool(p) => {
                let claims = Claims::default();
                for slot in 0..p.count {
                    add(
                        format!("pool {} slot {slot}", p.address),
                        &p.poll,
                        Kind::Plain(plain::Target::PoolSlot {
                            address: p.address.clone(),
                            ignore: p.ignore.clone(),
                            claims: claims.clone(),
                        }),
                    );
                }
            }
            SourceConfig::Nts(n) => add(
                format!("nts {}", n.address),
                &n.poll,
                Kind::Nts(nts::Target {
                    address: n.address.clone(),
                    certificate_authority: n.certificate_authority.clone(),
                    system_roots: n.system_roots,
                    cert_time: cert_time.clone(),
                }),
            ),
            SourceConfig::Sock(s) => add(
                format!("sock {}", s.path.display()),
                &PollOverrides::default(),
                Kind::Sock {
                    socket: sock::bind(&s.path)?,
                    precision: s.precision,
                    reference: reference(*b"GPS\0", s.accuracy),
                },
            ),
            SourceConfig::Pps(p) => add(
                format!("pps {}", p.path.display()),
                &PollOverrides::default(),
                Kind::Pps {
                    device: Box::new(pps::KernelPps::open(&p.path).map_err(|source| {
                        SourceStartError::Device {
                            path: p.path.clone(),
                            source,
                        }
                    })?),
                    path: p.path.clone(),
                    precision: p.precision,
                    target: pps::Target {
                        period: p.period,
                        reference: reference(*b"PPS\0", p.accuracy),
                    },
                },
            ),
            other => {
                tracing::warn!(
                    mode = other.mode().as_str(),
                    "sources of this mode are not run by sundial; skipped"
                );
            }
        }
    }
    Ok(sources)
}

/// What a task runs.
enum Kind {
    Plain(plain::Target),
    Nts(nts::Target),
    Sock {
        socket: sock::SockSocket,
        precision: f64,
        reference: Reference,
    },
    Pps {
        device: Box<dyn PpsDevice>,
        path: PathBuf,
        precision: f64,
        target: pps::Target,
    },
}

impl Kind {
    /// How the synchronizer reads it, its reference id and its path.
    fn describe(&self) -> (SourceKind, Option<[u8; 4]>, Option<PathBuf>) {
        match self {
            Self::Plain(_) | Self::Nts(_) => (SourceKind::Network, None, None),
            Self::Sock {
                socket,
                precision,
                reference,
            } => (
                SourceKind::Refclock {
                    precision: *precision,
                },
                Some(reference.reference_id),
                Some(socket.path().to_owned()),
            ),
            Self::Pps {
                path,
                precision,
                target,
                ..
            } => (
                SourceKind::Pulse {
                    precision: *precision,
                    period: target.period,
                },
                Some(target.reference.reference_id),
                Some(path.clone()),
            ),
        }
    }

    async fn run(self, ctx: SourceContext, poll: PollControl) {
        match self {
            Self::Plain(target) => plain::run(ctx, poll, target).await,
            Self::Nts(target) => nts::run(ctx, poll, target).await,
            Self::Sock {
                socket, reference, ..
            } => sock::run(ctx, socket, reference).await,
            Self::Pps { device, target, .. } => pps::run(ctx, device, target).await,
        }
    }
}

/// What every part of a source task shares.
#[derive(Debug)]
pub(crate) struct SourceContext {
    pub(crate) id: SourceId,
    pub(crate) events: mpsc::Sender<SourceEvent>,
    pub(crate) origin: Instant,
    pub(crate) cancel: CancellationToken,
    pub(crate) stats: Arc<SourceStats>,
    pub(crate) reach: Reach,
    /// Ask the server for interleaved answers.
    pub(crate) interleaved: bool,
}

impl SourceContext {
    /// Sends an event; `false` when nobody listens any more (shutdown).
    async fn send(&self, event: SourceEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    async fn status(&self, status: SourceStatus) -> bool {
        self.send(SourceEvent::Status(self.id, status)).await
    }

    /// Reports the source unreachable once per change, with the one
    /// warning a sysadmin sees for it.
    async fn became_unreachable(&self, why: &str) -> bool {
        if self.reach.unreachable() {
            tracing::warn!(reason = why, "source unreachable");
            return self.send(SourceEvent::Unreachable(self.id)).await;
        }
        true
    }

    /// Sleeps `delay` unless cancelled first; `false` when cancelled.
    async fn wait(&self, delay: Duration) -> bool {
        if delay.is_zero() {
            return !self.cancel.is_cancelled();
        }
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Whether the synchronizer was last told the source is reachable.
#[derive(Debug, Default)]
pub(crate) struct Reach(AtomicU8);

// 0: not known yet (the default).
const REACH_YES: u8 = 1;
const REACH_NO: u8 = 2;

impl Reach {
    fn reachable(&self) {
        self.0.store(REACH_YES, Ordering::Relaxed);
    }

    /// Marks unreachable; `true` if that is news.
    fn unreachable(&self) -> bool {
        self.0.swap(REACH_NO, Ordering::Relaxed) != REACH_NO
    }
}

/// The poll exponent in force: the synchronizer's wish within the limits,
/// plus what RATE kisses added.
#[derive(Debug)]
pub(crate) struct PollControl {
    desired: Option<watch::Receiver<i8>>,
    current: i8,
    limits: PollIntervalLimits,
    rate_penalty: i8,
}

impl PollControl {
    fn new(desired: watch::Receiver<i8>, limits: PollIntervalLimits) -> Self {
        let current = *desired.borrow();
        Self {
            desired: Some(desired),
            current,
            limits,
            rate_penalty: 0,
        }
    }

    /// The exponent to poll with now.
    pub(crate) fn exponent(&self) -> i8 {
        let (min, max) = (self.limits.min, self.limits.max.max(self.limits.min));
        let wanted = self
            .desired
            .as_ref()
            .map_or(self.current, |rx| *rx.borrow());
        wanted
            .clamp(min, max)
            .saturating_add(self.rate_penalty)
            .min(max)
    }

    /// Waits for the synchronizer to change its wish; `false` when it
    /// dropped the sender.
    pub(crate) async fn changed(&mut self) -> bool {
        match &mut self.desired {
            Some(rx) => rx.changed().await.is_ok(),
            None => std::future::pending().await,
        }
    }

    pub(crate) fn stop_watching(&mut self) {
        if let Some(rx) = self.desired.take() {
            self.current = *rx.borrow();
        }
    }

    /// A RATE kiss: one step slower (RFC 5905 7.4), for as long as this
    /// source runs; a server that limits us once will again.
    pub(crate) fn rate_limited(&mut self) {
        let room = self.limits.max.saturating_sub(self.limits.min).max(0);
        self.rate_penalty = self.rate_penalty.saturating_add(1).min(room);
    }
}

/// The addresses the slots of one pool are using, so no two slots poll the
/// same server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims(Arc<Mutex<HashSet<SocketAddr>>>);

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<SocketAddr>> {
        // A panicking holder cannot leave a set of addresses inconsistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `addr` for one slot; `None` if another slot has it.
    fn claim(&self, addr: SocketAddr) -> Option<Claim> {
        self.lock().insert(addr).then(|| Claim {
            claims: self.clone(),
            addr,
        })
    }
}

/// One slot's hold on an address, released when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    claims: Claims,
    addr: SocketAddr,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.addr);
    }
}

/// Resolves `host:port`, keeping the resolver's order.
async fn resolve(address: &HostPort) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((address.host.as_str(), address.port))
        .await?
        .collect();
    if addrs.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} resolves to no address",
            address.host
        )));
    }
    Ok(addrs)
}

/// Whether `ip` is excluded by a pool's `ignore` list.
fn ignored(ignore: &[IpAddr], ip: IpAddr) -> bool {
    ignore
        .iter()
        .any(|i| *i == ip || i.to_canonical() == ip.to_canonical())
}
