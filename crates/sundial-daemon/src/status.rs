//! What the daemon is doing, as one [`Status`] snapshot: read by `sundial
//! status` over the observation socket (`[observability] observation-path`)
//! and by the Prometheus endpoint, so the two never disagree.
//!
//! Two halves, like the metrics. [`Handles`] holds the live counters and
//! the discipline's watch channel and turns them into a [`Status`] of plain
//! values (serde, so the client parses the very types the daemon writes).
//! [`StatusListener`] answers every connection on the Unix socket with one
//! JSON document and closes it, like ntpd-rs's observer: nothing is read
//! from the client, so there is no request to parse.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sundial_proto::refclock::Rejection;
use sundial_proto::server::DropClass;
use sundial_sync::{Leap, NoSyncReason, SyncStatus};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::acme::manager::{AcmeShared, AcmeSnapshot};
use crate::discipline::Observed;
use crate::keystore::SharedKeySet;
use crate::server::ntp::NtpStats;
use crate::server::nts_ke::{KeListener, KeStats};
use crate::small_server::serve_connections;
use crate::source::{SourceHandle, SourceId, SourceStats};
use crate::tls::{CertificateInfo, ReloadableCert};
use crate::unix_path::{Occupied, make_room};

/// Everything `sundial status` shows, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// The git commit the daemon was built from ("unknown" when built
    /// outside a checkout); empty from a daemon that predates the field.
    /// With `version`, how `sundial status` tells that the running daemon
    /// is not the binary an upgrade installed.
    #[serde(default)]
    pub commit: String,
    pub uptime_seconds: f64,
    /// `--observe` or `[clock] observe-only`: the clock is never changed.
    pub observe_only: bool,
    pub system: SystemStatus,
    /// The clock's estimated error, clock minus true time, seconds:
    /// positive when it is fast (chrony's "fast of NTP time"). Observe-only,
    /// the error of the virtual clock the discipline steers (the real one
    /// is off by this minus `virtual_correction_seconds`); otherwise what
    /// is still left to correct, the slew in progress included. As of the
    /// discipline's last update. `None` (null) until the clock has been
    /// steered, and without sources.
    #[serde(default)]
    pub clock_error_seconds: Option<f64>,
    /// One standard error of `clock_error_seconds`, seconds; `None` (null)
    /// exactly when that is.
    #[serde(default)]
    pub clock_uncertainty_seconds: Option<f64>,
    /// Observe-only: the virtual clock minus the real one, seconds, i.e.
    /// every correction issued so far, the pending slew in full, none of
    /// them applied. `None` (null) when the clock is steered for real.
    #[serde(default)]
    pub virtual_correction_seconds: Option<f64>,
    pub sources: Vec<SourceSnapshot>,
    pub ntp_servers: Vec<NtpServerSnapshot>,
    pub nts_ke_servers: Vec<KeServerSnapshot>,
    /// The cookie keys, when this process has any.
    pub keyset: Option<KeysetSnapshot>,
    /// User, capabilities, no-new-privs, Landlock and seccomp, once the
    /// daemon has dropped privileges (docs/security.md).
    #[serde(default)]
    pub sandbox: Option<crate::sandbox::SandboxStatus>,
}

/// Our own time, as the NTP server announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Whether the time comes from sources or is the local clock at
    /// `local-stratum` (a server without sources).
    pub clock: ClockKind,
    pub synchronized: bool,
    /// Why not synchronized.
    pub reason: Option<String>,
    pub stratum: u8,
    /// RFC 5905's text form: four ASCII letters at stratum 1 and 16, an
    /// IPv4 address (or IPv6 address hash) in between.
    pub reference_id: String,
    /// The last combined offset, seconds.
    pub offset_seconds: f64,
    pub frequency_ppm: f64,
    pub root_delay_seconds: f64,
    pub root_dispersion_seconds: f64,
    pub leap: LeapStatus,
}

impl Default for SystemStatus {
    fn default() -> Self {
        Self {
            clock: ClockKind::Local,
            synchronized: false,
            reason: None,
            stratum: 16,
            reference_id: "INIT".to_owned(),
            offset_seconds: 0.0,
            frequency_ppm: 0.0,
            root_delay_seconds: 0.0,
            root_dispersion_seconds: 0.0,
            leap: LeapStatus::Unsynchronized,
        }
    }
}

/// Where our time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockKind {
    /// `[[source]]`s, through the discipline.
    Sources,
    /// No sources: the local clock at `local-stratum`.
    Local,
}

/// The leap indicator we announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeapStatus {
    None,
    InsertSecond,
    DeleteSecond,
    Unsynchronized,
}

impl LeapStatus {
    /// The two-bit leap indicator of the NTP header (ntpd-rs's metric).
    #[must_use]
    pub fn indicator(self) -> u8 {
        match self {
            Self::None => 0,
            Self::InsertSecond => 1,
            Self::DeleteSecond => 2,
            Self::Unsynchronized => 3,
        }
    }
}

impl From<Leap> for LeapStatus {
    fn from(leap: Leap) -> Self {
        match leap {
            Leap::None => Self::None,
            Leap::InsertSecond => Self::InsertSecond,
            Leap::DeleteSecond => Self::DeleteSecond,
            Leap::Unsynchronized => Self::Unsynchronized,
        }
    }
}

/// A source's part in the last selection (chronyc's and ntpq's markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceState {
    /// The system peer (`*`).
    Selected,
    /// Agrees with the majority and is combined (`+`).
    Candidate,
    /// Outside the majority's intersection (`x`).
    Falseticker,
    /// No usable sample (`?`).
    Unusable,
}

impl SourceState {
    /// The one-character marker chronyc and ntpq use.
    #[must_use]
    pub fn marker(self) -> char {
        match self {
            Self::Selected => '*',
            Self::Candidate => '+',
            Self::Falseticker => 'x',
            Self::Unusable => '?',
        }
    }

    /// The name `--json` and the metrics' `state` label use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Selected => "selected",
            Self::Candidate => "candidate",
            Self::Falseticker => "falseticker",
            Self::Unusable => "unusable",
        }
    }
}

impl From<sundial_sync::SourceState> for SourceState {
    fn from(state: sundial_sync::SourceState) -> Self {
        match state {
            sundial_sync::SourceState::Selected => Self::Selected,
            sundial_sync::SourceState::Candidate => Self::Candidate,
            sundial_sync::SourceState::Falseticker => Self::Falseticker,
            sundial_sync::SourceState::Unusable => Self::Unusable,
        }
    }
}

/// One upstream source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// Stable for the daemon's lifetime (ntpd-rs's `id` label).
    pub id: u32,
    /// Mode and configured address, plus the slot for a pool.
    pub name: String,
    /// `server`, `pool`, `nts`, `sock` or `pps`.
    pub mode: String,
    /// The NTP server polled now, once known.
    pub address: Option<SocketAddr>,
    pub state: SourceState,
    /// The stratum of its last answer.
    pub stratum: Option<u8>,
    pub offset_seconds: f64,
    pub delay_seconds: f64,
    pub jitter_seconds: f64,
    /// One bit per poll of the current association, newest lowest.
    pub reach: u8,
    /// Polls since the last believed answer.
    pub unanswered_polls: u64,
    /// The poll interval the synchronizer asks for, log2 seconds.
    pub poll_exponent: i8,
    /// Cookies left in the jar (NTS sources only).
    pub nts_cookies: Option<u64>,
    /// Unix seconds of the last successful key exchange (NTS only).
    pub last_key_exchange: Option<u64>,
    /// The AEAD that key exchange negotiated, by its IANA name (NTS only).
    #[serde(default)]
    pub nts_aead: Option<String>,
    /// RFC 9769 interleaved mode: `off` (not asked for), `basic` (asked
    /// for, but the last answer was basic) or `interleaved`.
    #[serde(default = "interleave_off")]
    pub interleave: String,
    pub counters: SourceCounters,
    /// What only a reference clock (`sock`, `pps`) has.
    #[serde(default)]
    pub refclock: Option<RefclockSnapshot>,
}

/// A reference clock's path and what it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefclockSnapshot {
    /// The socket sundial created, or the PPS device.
    pub path: PathBuf,
    /// Samples refused, by reason ([`Rejection::name`], and `unnumbered`
    /// for pulses no whole-time source could number), the non-zero ones.
    pub rejected: BTreeMap<String, u64>,
    /// Expected intervals (a second; a PPS's period) without a sample.
    pub missed_intervals: u64,
}

impl RefclockSnapshot {
    /// All samples refused, whatever the reason.
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

fn interleave_off() -> String {
    "off".to_owned()
}

/// A source's counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounters {
    pub requests: u64,
    pub samples: u64,
    pub send_errors: u64,
    pub unexpected: u64,
    pub unauthenticated: u64,
    pub malformed: u64,
    pub cookies_rejected: u64,
    pub rate_kisses: u64,
    pub nts_naks: u64,
    pub key_exchanges: u64,
    pub key_exchange_failures: u64,
    /// Samples from interleaved answers.
    #[serde(default)]
    pub interleaved_samples: u64,
    /// Requests whose t1 is the kernel's transmit timestamp.
    #[serde(default)]
    pub kernel_tx_timestamps: u64,
}

/// The counters of one `[[server]]` listener at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtpServerSnapshot {
    /// The configured listen address (the `listen_address` label).
    pub listen: SocketAddr,
    pub received: u64,
    /// Answered with time, without NTS.
    pub plain: u64,
    /// Answered with time, with NTS.
    pub nts: u64,
    /// Answered with an NTS NAK (a cookie we cannot open).
    pub nts_nak: u64,
    /// Answered with a DENY kiss.
    pub deny: u64,
    /// Answered with a RATE kiss.
    pub rate: u64,
    /// Dropped by a filter with action "ignore" or by `require-nts`.
    pub ignored: u64,
    /// Dropped as not a client request we answer (bad header, version, mode).
    pub malformed: u64,
    /// NTS requests dropped (unauthenticated, malformed NTS fields, no keys).
    pub nts_dropped: u64,
    pub send_errors: u64,
    /// RFC 9769: answers in interleaved mode.
    #[serde(default)]
    pub interleaved: u64,
    /// Interleaved requests whose previous exchange was gone (answered in
    /// basic mode).
    #[serde(default)]
    pub interleave_missed: u64,
    /// Kernel transmit timestamps of answers captured (of them from the
    /// NIC) and missed.
    #[serde(default)]
    pub tx_timestamps_captured: u64,
    #[serde(default)]
    pub tx_timestamps_hardware: u64,
    #[serde(default)]
    pub tx_timestamps_missed: u64,
    /// Dropped requests by reason ([`DropClass::name`]), the non-zero ones.
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
}

impl NtpServerSnapshot {
    /// Reads the live counters. Each is read on its own, so a snapshot
    /// racing a packet may see `received` one ahead of the outcomes.
    #[must_use]
    pub fn read(listen: SocketAddr, stats: &NtpStats) -> Self {
        Self {
            listen,
            received: get(&stats.received),
            plain: get(&stats.plain),
            nts: get(&stats.nts),
            nts_nak: get(&stats.nts_nak),
            deny: get(&stats.deny),
            rate: get(&stats.rate),
            ignored: get(&stats.ignored),
            malformed: get(&stats.malformed),
            nts_dropped: get(&stats.nts_dropped),
            send_errors: get(&stats.send_errors),
            interleaved: get(&stats.interleaved),
            interleave_missed: get(&stats.interleave_missed),
            tx_timestamps_captured: get(&stats.tx_captured),
            tx_timestamps_hardware: get(&stats.tx_hardware),
            tx_timestamps_missed: get(&stats.tx_missed),
            dropped: DropClass::ALL
                .iter()
                .zip(&stats.dropped)
                .map(|(class, n)| (class.name().to_owned(), get(n)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// The counters and certificate of one `[[nts-ke-server]]` listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeServerSnapshot {
    pub listen: SocketAddr,
    pub handshakes_ok: u64,
    pub responses: u64,
    pub refused: u64,
    pub failed_tls: u64,
    pub failed_alpn: u64,
    pub failed_bad_request: u64,
    pub failed_timeout: u64,
    pub failed_internal: u64,
    pub accept_errors: u64,
    /// The served leaf's subject, e.g. `CN=time.example.com`.
    pub certificate_subject: Option<String>,
    /// Seconds from the snapshot to the served leaf certificate's
    /// notAfter; negative once it has expired. `None` if it cannot be read.
    pub certificate_expiry_seconds: Option<i64>,
    /// The certificate's ACME life cycle, when it comes from ACME. With no
    /// certificate yet, the listener is not started.
    #[serde(default)]
    pub acme: Option<AcmeSnapshot>,
}

impl KeServerSnapshot {
    /// Reads the live counters; `now` is when the expiry is counted from.
    #[must_use]
    pub fn read(
        listen: SocketAddr,
        stats: &KeStats,
        leaf: Option<&CertificateInfo>,
        now: SystemTime,
    ) -> Self {
        Self {
            listen,
            handshakes_ok: get(&stats.handshakes_ok),
            responses: get(&stats.responses),
            refused: get(&stats.refused),
            failed_tls: get(&stats.failed_tls),
            failed_alpn: get(&stats.failed_alpn),
            failed_bad_request: get(&stats.failed_bad_request),
            failed_timeout: get(&stats.failed_timeout),
            failed_internal: get(&stats.failed_internal),
            accept_errors: get(&stats.accept_errors),
            certificate_subject: leaf.map(|l| l.subject.clone()),
            certificate_expiry_seconds: leaf.map(|l| seconds_between(now, l.not_after)),
            acme: None,
        }
    }
}

/// The cookie keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysetSnapshot {
    /// Id of the key that seals new cookies.
    pub current_key_id: u32,
    /// Keys held: the current one, the pre-published next one and the
    /// stale ones that still open old cookies.
    pub keys: usize,
    /// Unix seconds of the next rotation (the owner's schedule).
    pub next_rotation: u64,
    pub storage_path: Option<PathBuf>,
    pub role: KeyRole,
}

/// Who writes the key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    /// This process runs the KE server: it generates, rotates and stores.
    Owner,
    /// An NTP-only process of a fleet: it follows the owner's file.
    Reader,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// `to - from` in whole seconds, negative when `to` is earlier, saturating.
pub(crate) fn seconds_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => i64::try_from(behind.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// RFC 5905 section 7.3: at stratum 0/1 (and 16, where it is a kiss or
/// `INIT`) the reference id is four ASCII characters, otherwise the peer's
/// IPv4 address or the first bytes of its IPv6 address's hash.
#[must_use]
pub fn reference_id_text(stratum: u8, id: [u8; 4]) -> String {
    if stratum <= 1 || stratum >= 16 {
        id.iter()
            .take_while(|&&b| b != 0)
            .map(|&b| {
                if b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect()
    } else {
        let [a, b, c, d] = id;
        format!("{a}.{b}.{c}.{d}")
    }
}

/// What a reference id means to a person, when it is one of the local
/// clock's: "LOCL" at stratum 1, 127.127.1.1 above (chrony's and ntpd's
/// local clock). `text` is [`reference_id_text`]'s.
#[must_use]
pub fn reference_id_meaning(text: &str) -> Option<&'static str> {
    match text {
        "LOCL" => Some("local clock"),
        "127.127.1.1" | "0x7f7f0101" => Some("local clock, no upstream"),
        _ => None,
    }
}

fn reason_text(reason: NoSyncReason) -> String {
    match reason {
        NoSyncReason::WaitingForSources { usable, required } => {
            format!("waiting for sources: {usable} usable, {required} required")
        }
        NoSyncReason::TooFewAgreeing { agreeing, required } => {
            format!("too few sources agree: {agreeing} agree, {required} required")
        }
        NoSyncReason::Panicked => "a step beyond a panic threshold was refused".to_owned(),
        other => format!("{other:?}"),
    }
}

fn system_from_sync(sync: &SyncStatus) -> SystemStatus {
    SystemStatus {
        clock: ClockKind::Sources,
        synchronized: sync.synchronized,
        reason: sync.reason.map(reason_text),
        stratum: sync.stratum,
        reference_id: reference_id_text(sync.stratum, sync.reference_id),
        offset_seconds: sync.offset,
        frequency_ppm: sync.frequency_ppm,
        root_delay_seconds: sync.root_delay,
        root_dispersion_seconds: sync.root_dispersion,
        leap: sync.leap.into(),
    }
}

/// The clock's estimated error (clock minus true time) and its standard
/// error, from the discipline's last update; `None` while the model has no
/// honest bound (an infinite uncertainty: the clock was never steered).
fn clock_error(observed: &Observed) -> Option<(f64, f64)> {
    let sync = &observed.sync;
    // The synchronizer reports true time minus the clock once every issued
    // correction has acted. The virtual clock of an observe-only daemon
    // has taken them all at once; a steered clock has yet to slew the
    // pending part, so that part is still error.
    let left = match observed.virtual_correction {
        Some(_) => sync.estimated_offset,
        None => sync.estimated_offset + sync.pending_slew,
    };
    let error = -left;
    (error.is_finite() && sync.uncertainty.is_finite() && sync.uncertainty >= 0.0)
        .then_some((error, sync.uncertainty))
}

/// The local clock of a server without sources (`local-stratum`,
/// `reference-id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalClock {
    pub stratum: u8,
    pub reference_id: [u8; 4],
}

impl LocalClock {
    fn system(self) -> SystemStatus {
        let synchronized = self.stratum < 16;
        SystemStatus {
            clock: ClockKind::Local,
            synchronized,
            reason: (!synchronized)
                .then(|| "no sources, and local-stratum is 16 (unsynchronized)".to_owned()),
            stratum: self.stratum,
            reference_id: reference_id_text(self.stratum, self.reference_id),
            leap: if synchronized {
                LeapStatus::None
            } else {
                LeapStatus::Unsynchronized
            },
            ..SystemStatus::default()
        }
    }
}

/// What an NTS-KE listener exposes: its counters and the certificate it
/// serves, read at each snapshot because a reload may have replaced it.
#[derive(Debug, Clone)]
pub struct KeHandle {
    pub listen: SocketAddr,
    pub stats: Arc<KeStats>,
    pub certificate: Arc<ReloadableCert>,
    /// Set when the certificate comes from ACME.
    pub acme: Option<Arc<AcmeShared>>,
}

impl KeHandle {
    /// The handle of a bound listener (before `run` consumes it).
    #[must_use]
    pub fn of(listener: &KeListener) -> Self {
        Self {
            listen: listener.local_addr(),
            stats: listener.stats(),
            certificate: listener.certificate_handle(),
            acme: None,
        }
    }
}

/// A running source as the status sees it.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub id: SourceId,
    pub name: String,
    pub mode: crate::config::SourceMode,
    pub stats: Arc<SourceStats>,
    /// A reference clock's socket or device.
    pub path: Option<PathBuf>,
    pub interleave_requested: bool,
}

impl SourceInfo {
    #[must_use]
    pub fn of(handle: &SourceHandle) -> Self {
        Self {
            id: handle.id,
            name: handle.name.clone(),
            mode: handle.mode,
            stats: Arc::clone(&handle.stats),
            path: handle.path.clone(),
            interleave_requested: handle.interleave_requested,
        }
    }
}

/// The keyset and how this process holds it.
#[derive(Debug, Clone)]
pub struct KeysetHandle {
    pub keys: SharedKeySet,
    pub path: Option<PathBuf>,
    pub role: KeyRole,
}

/// The live state a snapshot is read from. Every field is optional, so a
/// test fills in what it has.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    /// When the daemon started, for the uptime.
    pub started: Option<Instant>,
    pub observe_only: bool,
    /// Each `[[server]]`'s configured address and its counters.
    pub ntp_servers: Vec<(SocketAddr, Arc<NtpStats>)>,
    pub nts_ke_servers: Vec<KeHandle>,
    pub sources: Vec<SourceInfo>,
    /// The discipline loop's state, when there are sources.
    pub discipline: Option<watch::Receiver<Observed>>,
    /// Our time when there are no sources.
    pub local: Option<LocalClock>,
    pub keyset: Option<KeysetHandle>,
    /// Set once the sandbox is entered.
    pub sandbox: crate::sandbox::SharedStatus,
}

impl Handles {
    /// Reads everything now.
    #[must_use]
    pub fn snapshot(&self, now: SystemTime) -> Status {
        let observed = self.discipline.as_ref().map(|rx| rx.borrow().clone());
        let system = match (&observed, self.local) {
            (Some(o), _) => system_from_sync(&o.sync),
            (None, Some(local)) => local.system(),
            (None, None) => SystemStatus::default(),
        };
        let error = observed.as_ref().and_then(clock_error);
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: crate::build_info::COMMIT.to_owned(),
            uptime_seconds: self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            observe_only: self.observe_only,
            system,
            clock_error_seconds: error.map(|(e, _)| e),
            clock_uncertainty_seconds: error.map(|(_, u)| u),
            virtual_correction_seconds: observed
                .as_ref()
                .and_then(|o| o.virtual_correction)
                .filter(|c| c.is_finite()),
            sources: self
                .sources
                .iter()
                .map(|s| source_snapshot(s, observed.as_ref()))
                .collect(),
            ntp_servers: self
                .ntp_servers
                .iter()
                .map(|(listen, stats)| NtpServerSnapshot::read(*listen, stats))
                .collect(),
            nts_ke_servers: self
                .nts_ke_servers
                .iter()
                .map(|ke| {
                    let leaf = ke.certificate.leaf();
                    let mut snapshot =
                        KeServerSnapshot::read(ke.listen, &ke.stats, leaf.as_ref(), now);
                    snapshot.acme = ke.acme.as_ref().map(|a| a.snapshot());
                    snapshot
                })
                .collect(),
            keyset: self.keyset.as_ref().and_then(keyset_snapshot),
            sandbox: self.sandbox.get().cloned(),
        }
    }
}

fn source_snapshot(info: &SourceInfo, observed: Option<&Observed>) -> SourceSnapshot {
    let s = &info.stats;
    let sync = observed.and_then(|o| {
        o.sync
            .sources
            .iter()
            .find(|st| st.id == sundial_sync::SourceId(u64::from(info.id.0)))
    });
    let nts = info.mode == crate::config::SourceMode::Nts;
    let last_ke = get(&s.last_key_exchange);
    SourceSnapshot {
        id: info.id.0,
        name: info.name.clone(),
        mode: info.mode.as_str().to_owned(),
        address: observed.and_then(|o| o.servers.get(&info.id).copied()),
        state: sync.map_or(SourceState::Unusable, |st| st.state.into()),
        stratum: observed.and_then(|o| o.strata.get(&info.id).copied()),
        offset_seconds: sync.map_or(0.0, |st| st.offset),
        delay_seconds: sync.map_or(0.0, |st| st.delay),
        jitter_seconds: sync.map_or(0.0, |st| st.jitter),
        reach: u8::try_from(get(&s.reach)).unwrap_or(u8::MAX),
        unanswered_polls: get(&s.unanswered),
        poll_exponent: sync.map_or(0, |st| st.poll),
        nts_cookies: nts.then(|| get(&s.cookies)),
        last_key_exchange: (nts && last_ke != 0).then_some(last_ke),
        nts_aead: u16::try_from(get(&s.aead))
            .ok()
            .filter(|&id| nts && id != 0)
            .map(|id| sundial_proto::nts::aead::AeadAlgorithm::from_u16(id).to_string()),
        interleave: match (info.interleave_requested, get(&s.interleaved) != 0) {
            (false, _) => interleave_off(),
            (true, false) => "basic".to_owned(),
            (true, true) => "interleaved".to_owned(),
        },
        counters: SourceCounters {
            requests: get(&s.requests),
            samples: get(&s.samples),
            send_errors: get(&s.send_errors),
            unexpected: get(&s.unexpected),
            unauthenticated: get(&s.unauthenticated),
            malformed: get(&s.malformed),
            cookies_rejected: get(&s.cookies_rejected),
            rate_kisses: get(&s.rate_kisses),
            nts_naks: get(&s.nts_naks),
            key_exchanges: get(&s.key_exchanges),
            key_exchange_failures: get(&s.key_exchange_failures),
            interleaved_samples: get(&s.interleaved_samples),
            kernel_tx_timestamps: get(&s.kernel_tx_timestamps),
        },
        refclock: info.path.as_ref().map(|path| {
            let unnumbered = sync.map_or(0, |st| st.unnumbered_pulses);
            RefclockSnapshot {
                path: path.clone(),
                rejected: Rejection::ALL
                    .iter()
                    .zip(&s.rejected)
                    .map(|(why, n)| (why.name(), get(n)))
                    .chain([("unnumbered", unnumbered)])
                    .filter(|(_, n)| *n > 0)
                    .map(|(why, n)| (why.to_owned(), n))
                    .collect(),
                missed_intervals: get(&s.missed_intervals),
            }
        }),
    }
}

fn keyset_snapshot(handle: &KeysetHandle) -> Option<KeysetSnapshot> {
    let keys = handle.keys.read().ok()?;
    Some(KeysetSnapshot {
        current_key_id: keys.current_id(),
        keys: keys.len(),
        next_rotation: keys.next_rotation(),
        storage_path: handle.path.clone(),
        role: handle.role,
    })
}

/// Unix seconds now (for tests and the client's "ago").
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The observation socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusStartError {
    #[error("observation socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("observation socket {}: another process answers there (is sundial already running?)", path.display())]
    InUse { path: PathBuf },
    #[error("observation socket {}: the path exists and is not a socket; not removing it", path.display())]
    NotASocket { path: PathBuf },
}

/// A bound observation socket, ready to [`run`](StatusListener::run).
#[derive(Debug)]
pub struct StatusListener {
    listener: UnixListener,
    path: PathBuf,
}

/// Binds the Unix socket at `path` with file mode `mode`. A socket file
/// left by a daemon that died is removed first; one that still answers is
/// another daemon's, and is left alone. Must be called inside a runtime.
pub fn bind(path: &Path, mode: u32) -> Result<StatusListener, StatusStartError> {
    let io_err = |source| StatusStartError::Io {
        path: path.to_owned(),
        source,
    };
    let alive = |p: &Path| std::os::unix::net::UnixStream::connect(p).is_ok();
    make_room(path, alive).map_err(|occupied| match occupied {
        Occupied::InUse => StatusStartError::InUse {
            path: path.to_owned(),
        },
        Occupied::NotASocket => StatusStartError::NotASocket {
            path: path.to_owned(),
        },
        Occupied::Io(e) => io_err(e),
    })?;
    let listener = UnixListener::bind(path).map_err(io_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok(StatusListener {
        listener,
        path: path.to_owned(),
    })
}

impl StatusListener {
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers until `cancel` fires, then removes the socket file.
    /// `collect` is called once per connection.
    pub async fn run<F>(self, collect: F, cancel: CancellationToken)
    where
        F: Fn() -> Status + Send + Sync + 'static,
    {
        let collect = Arc::new(collect);
        tracing::info!(path = %self.path.display(), "serving status");
        let listener = &self.listener;
        serve_connections(
            "status",
            || async move { listener.accept().await.map(|(stream, _)| stream) },
            |stream| {
                let collect = Arc::clone(&collect);
                async move { serve(stream, &*collect).await }
            },
            cancel,
        )
        .await;
        // Only our own socket: a later daemon may already have replaced it
        // if we were slow to stop, but then the bind above refused to start.
        let _ = fs::remove_file(&self.path);
    }
}

/// One JSON document, then close.
async fn serve(
    mut stream: UnixStream,
    collect: &(dyn Fn() -> Status + Send + Sync),
) -> io::Result<()> {
    let mut body = serde_json::to_vec(&collect()).map_err(io::Error::other)?;
    body.push(b'\n');
    stream.write_all(&body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reference_ids_read_as_rfc5905_says() {
        assert_eq!(reference_id_text(1, *b"GPS\0"), "GPS");
        assert_eq!(reference_id_text(16, *b"INIT"), "INIT");
        assert_eq!(reference_id_text(2, [192, 0, 2, 7]), "192.0.2.7");
        assert_eq!(reference_id_text(1, [0xff, b'A', 0, 0]), "?A");
        assert_eq!(reference_id_text(2, [127, 127, 1, 1]), "127.127.1.1");
        assert_eq!(
            reference_id_meaning("127.127.1.1"),
            Some("local clock, no upstream")
        );
        assert_eq!(reference_id_meaning("192.0.2.7"), None);
    }

    #[test]
    fn expiry_counts_down_and_goes_negative() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(seconds_between(t, t + Duration::from_secs(90)), 90);
        assert_eq!(seconds_between(t, t - Duration::from_secs(90)), -90);
    }

    fn observed(estimated: f64, pending: f64, uncertainty: f64, observe: bool) -> Observed {
        let mut sync =
            sundial_sync::Synchronizer::new(sundial_sync::SyncSettings::default()).status();
        sync.estimated_offset = estimated;
        sync.pending_slew = pending;
        sync.uncertainty = uncertainty;
        Observed {
            sync,
            servers: std::collections::HashMap::new(),
            strata: std::collections::HashMap::new(),
            virtual_correction: observe.then_some(0.25),
        }
    }

    #[test]
    fn the_clock_error_is_clock_minus_true_time() {
        // Steered: true time is 30 µs ahead of where the issued corrections
        // take the clock, and 20 µs of slew are still to come, so the clock
        // is 50 µs slow now.
        let (error, sigma) = clock_error(&observed(3e-5, 2e-5, 4e-6, false)).unwrap_or_default();
        assert!((error + 5e-5).abs() < 1e-15, "{error}");
        assert_eq!(sigma, 4e-6);
        // Observe-only: the virtual clock has taken the slew in full.
        let (error, _) = clock_error(&observed(3e-5, 2e-5, 4e-6, true)).unwrap_or_default();
        assert!((error + 3e-5).abs() < 1e-15, "{error}");
        // No honest bound before the clock was steered: no number at all.
        assert_eq!(
            clock_error(&observed(3e-5, 0.0, f64::INFINITY, false)),
            None
        );
        assert_eq!(clock_error(&observed(f64::NAN, 0.0, 1e-6, true)), None);
    }

    #[test]
    fn a_snapshot_carries_the_clock_error_at_the_top() {
        let (_tx, rx) = watch::channel(observed(-2e-5, 0.0, 1e-6, true));
        let status = Handles {
            discipline: Some(rx),
            ..Handles::default()
        }
        .snapshot(SystemTime::now());
        assert_eq!(status.clock_error_seconds, Some(2e-5));
        assert_eq!(status.clock_uncertainty_seconds, Some(1e-6));
        assert_eq!(status.virtual_correction_seconds, Some(0.25));
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["clock_error_seconds"], 2e-5);
        assert_eq!(json["virtual_correction_seconds"], 0.25);

        // A fresh daemon: nulls, not NaN or infinity (which JSON lacks).
        let (_tx, rx) = watch::channel(observed(0.0, 0.0, f64::INFINITY, false));
        let status = Handles {
            discipline: Some(rx),
            ..Handles::default()
        }
        .snapshot(SystemTime::now());
        let json = serde_json::to_value(&status).unwrap_or_default();
        for field in [
            "clock_error_seconds",
            "clock_uncertainty_seconds",
            "virtual_correction_seconds",
        ] {
            assert_eq!(json.get(field), Some(&serde_json::Value::Null), "{field}");
        }
    }

    #[test]
    fn a_status_survives_json() {
        let status = Status {
            version: "0.1.0".to_owned(),
            sources: vec![SourceSnapshot {
                id: 0,
                name: "nts localhost:4460".to_owned(),
                mode: "nts".to_owned(),
                address: Some("127.0.0.1:123".parse().unwrap_or_else(|e| panic!("{e}"))),
                state: SourceState::Selected,
                stratum: Some(1),
                offset_seconds: -1.5e-5,
                delay_seconds: 2e-4,
                jitter_seconds: 1e-6,
                reach: 0o377,
                unanswered_polls: 0,
                poll_exponent: 4,
                nts_cookies: Some(8),
                last_key_exchange: Some(1_700_000_000),
                nts_aead: Some("AEAD_AES_SIV_CMAC_256".to_owned()),
                interleave: "off".to_owned(),
                counters: SourceCounters::default(),
                refclock: None,
            }],
            ..Status::default()
        };
        let json = serde_json::to_string(&status).unwrap_or_default();
        assert!(json.contains("\"state\":\"selected\""), "{json}");
        let back: Status = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, status);
    }
}
