//! `[[source]]`: where time comes from.
//!
//! ntpd-rs selects the shape of a source table by its `mode` key. Serde's
//! internally tagged enums buffer the table and lose the byte spans, so the
//! table is read into one flat struct of every key any mode takes, and a
//! second step checks which keys the mode allows. That keeps the file, key
//! and line in every error, including "`count` is not allowed for nts".

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use sundial_proto::refclock::pps::{MAX_PERIOD, MIN_PERIOD};

use super::address::HostPort;
use super::poll::{PartialPollIntervalLimits, PollOverrides, check_exponent, check_limits};
use super::{KeyPath, Problem};

/// Default UDP port of an NTP server.
pub const NTP_PORT: u16 = 123;
/// Default TCP port of an NTS-KE server.
pub const NTS_KE_PORT: u16 = 4460;

fn default_pool_count() -> usize {
    4
}

fn default_pps_period() -> f64 {
    1.0
}

/// ntpd-rs's deprecated spelling of a refclock's precision, as a variance
/// (s²), in snake case as ntpd-rs reads it.
const NOISE_ESTIMATE: &str = "measurement_noise_estimate";

/// The `mode` of a `[[source]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceMode {
    /// One NTP server, no authentication.
    Server,
    /// Several servers found through one DNS name.
    Pool,
    /// One NTS-protected server reached through its NTS-KE host.
    Nts,
    /// An NTS pool (ntpd-rs experimental); parsed, not run by sundial.
    NtsPool,
    /// A chrony-style refclock socket that gpsd writes samples to.
    Sock,
    /// A kernel PPS device.
    Pps,
}

impl SourceMode {
    /// The name as written in the file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Pool => "pool",
            Self::Nts => "nts",
            Self::NtsPool => "nts-pool",
            Self::Sock => "sock",
            Self::Pps => "pps",
        }
    }

    /// Whether sundial runs sources of this mode. The others load so that an
    /// ntpd-rs file validates, and the daemon reports them as unsupported.
    #[must_use]
    pub fn is_supported(self) -> bool {
        !matches!(self, Self::NtsPool)
    }

    /// Whether sources of this mode are reference clocks (stratum 0).
    #[must_use]
    pub fn is_refclock(self) -> bool {
        matches!(self, Self::Sock | Self::Pps)
    }

    /// The keys a source of this mode may have, besides `mode`.
    #[must_use]
    pub fn allowed_keys(self) -> &'static [&'static str] {
        const POLL: [&str; 2] = ["poll-interval-limits", "initial-poll-interval"];
        match self {
            Self::Server => &["address", "interleaved", "ntp-version", POLL[0], POLL[1]],
            Self::Pool => &[
                "address",
                "count",
                "ignore",
                "interleaved",
                "ntp-version",
                POLL[0],
                POLL[1],
            ],
            Self::Nts => &[
                "address",
                "certificate-authority",
                "system-roots",
                "interleaved",
                "ntp-version",
                POLL[0],
                POLL[1],
            ],
            Self::NtsPool => &[
                "address",
                "certificate-authority",
                "system-roots",
                "count",
                "interleaved",
                "ntp-version",
                POLL[0],
                POLL[1],
            ],
            Self::Sock => &["path", "precision", "accuracy", NOISE_ESTIMATE],
            Self::Pps => &["path", "precision", "accuracy", NOISE_ESTIMATE, "period"],
        }
    }
}

impl fmt::Display for SourceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ntp-version` of a source: `4`, `5` or `"auto"` (start at 4, upgrade to 5
/// when the server offers it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NtpVersion {
    /// NTPv4 only (the default).
    #[default]
    V4,
    /// NTPv4 with the draft upgrade to NTPv5.
    Auto,
    /// NTPv5 only.
    V5,
}

impl<'de> Deserialize<'de> for NtpVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;

        impl Visitor<'_> for VersionVisitor {
            type Value = NtpVersion;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("4, 5 or \"auto\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NtpVersion, E> {
                match v {
                    4 => Ok(NtpVersion::V4),
                    5 => Ok(NtpVersion::V5),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NtpVersion, E> {
                i64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
                    .and_then(|v| self.visit_i64(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NtpVersion, E> {
                match v {
                    "auto" => Ok(NtpVersion::Auto),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }

        deserializer.deserialize_any(VersionVisitor)
    }
}

/// A configured source.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceConfig {
    /// `mode = "server"`.
    Server(ServerSource),
    /// `mode = "pool"`.
    Pool(PoolSource),
    /// `mode = "nts"`.
    Nts(NtsSource),
    /// `mode = "nts-pool"`.
    NtsPool(NtsPoolSource),
    /// `mode = "sock"`.
    Sock(SockSource),
    /// `mode = "pps"`.
    Pps(PpsSource),
}

impl SourceConfig {
    /// `interleaved = true`: ask for RFC 9769 interleaved answers.
    #[must_use]
    pub fn interleaved(&self) -> bool {
        match self {
            Self::Server(s) => s.interleaved,
            Self::Pool(s) => s.interleaved,
            Self::Nts(s) => s.interleaved,
            Self::NtsPool(s) => s.interleaved,
            Self::Sock(_) | Self::Pps(_) => false,
        }
    }

    /// The mode this source was declared with.
    #[must_use]
    pub fn mode(&self) -> SourceMode {
        match self {
            Self::Server(_) => SourceMode::Server,
            Self::Pool(_) => SourceMode::Pool,
            Self::Nts(_) => SourceMode::Nts,
            Self::NtsPool(_) => SourceMode::NtsPool,
            Self::Sock(_) => SourceMode::Sock,
            Self::Pps(_) => SourceMode::Pps,
        }
    }

    /// The poll settings of a source that is polled (not sock or pps).
    #[must_use]
    pub fn poll(&self) -> Option<&PollOverrides> {
        match self {
            Self::Server(s) => Some(&s.poll),
            Self::Pool(s) => Some(&s.poll),
            Self::Nts(s) => Some(&s.poll),
            Self::NtsPool(s) => Some(&s.poll),
            Self::Sock(_) | Self::Pps(_) => None,
        }
    }

    /// How many time sources this entry can contribute (a pool counts as
    /// `count`), for comparing with `minimum-agreeing-sources`. A PPS
    /// counts for none: it only refines the time the others agree on (as
    /// in ntpd-rs).
    #[must_use]
    pub fn max_sources(&self) -> usize {
        match self {
            Self::Pool(pool) => pool.count,
            Self::NtsPool(pool) => pool.count,
            Self::Pps(_) => 0,
            _ => 1,
        }
    }
}

/// `mode = "server"`: one NTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSource {
    /// Host and UDP port (default 123).
    pub address: HostPort,
    /// Protocol version to speak.
    pub ntp_version: NtpVersion,
    /// Ask for RFC 9769 interleaved answers (chrony's `xleave`).
    pub interleaved: bool,
    /// Per-source poll settings.
    pub poll: PollOverrides,
}

/// `mode = "pool"`: up to `count` servers behind one DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSource {
    /// DNS name and UDP port (default 123).
    pub address: HostPort,
    /// Most servers used at once (default 4).
    pub count: usize,
    /// Addresses from the pool never to use.
    pub ignore: Vec<IpAddr>,
    /// Protocol version to speak.
    pub ntp_version: NtpVersion,
    /// Ask for RFC 9769 interleaved answers (chrony's `xleave`).
    pub interleaved: bool,
    /// Per-source poll settings.
    pub poll: PollOverrides,
}

/// `mode = "nts"`: one NTS-protected server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtsSource {
    /// NTS-KE host and TCP port (default 4460).
    pub address: HostPort,
    /// Extra CA certificate (PEM) trusted besides the system roots.
    pub certificate_authority: Option<PathBuf>,
    /// sundial addition (chrony's `nosystemcert`): `false` trusts only
    /// `certificate-authority`, never the system roots (default true).
    pub system_roots: bool,
    /// Protocol version to speak.
    pub ntp_version: NtpVersion,
    /// Ask for RFC 9769 interleaved answers (chrony's `xleave`).
    pub interleaved: bool,
    /// Per-source poll settings.
    pub poll: PollOverrides,
}

/// `mode = "nts-pool"` (ntpd-rs experimental).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtsPoolSource {
    /// NTS pool KE host and TCP port (default 4460).
    pub address: HostPort,
    /// Extra CA certificate (PEM).
    pub certificate_authority: Option<PathBuf>,
    /// As for `nts`: `false` leaves out the system roots.
    pub system_roots: bool,
    /// Most servers used at once (default 4).
    pub count: usize,
    /// Protocol version to speak.
    pub ntp_version: NtpVersion,
    /// Ask for RFC 9769 interleaved answers (chrony's `xleave`).
    pub interleaved: bool,
    /// Per-source poll settings.
    pub poll: PollOverrides,
}

/// `mode = "sock"`: a chrony SOCK refclock socket (as gpsd writes).
#[derive(Debug, Clone, PartialEq)]
pub struct SockSource {
    /// Socket path; sundial creates the socket there.
    pub path: PathBuf,
    /// Noise estimate of the samples, seconds (one standard deviation).
    pub precision: f64,
    /// How far the reference itself may be off, seconds (default 0): its
    /// root dispersion.
    pub accuracy: f64,
}

/// `mode = "pps"`: a kernel PPS device.
#[derive(Debug, Clone, PartialEq)]
pub struct PpsSource {
    /// Device path, e.g. `/dev/pps0`.
    pub path: PathBuf,
    /// Noise estimate of the pulses, seconds.
    pub precision: f64,
    /// How far the pulses themselves may be off, seconds (default 0).
    pub accuracy: f64,
    /// Seconds between pulses (default 1).
    pub period: f64,
}

/// A `[[source]]` table as written: every key any mode accepts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawSource {
    mode: SourceMode,
    address: Option<String>,
    certificate_authority: Option<PathBuf>,
    system_roots: Option<bool>,
    count: Option<usize>,
    ignore: Option<Vec<IpAddr>>,
    ntp_version: Option<NtpVersion>,
    interleaved: Option<bool>,
    poll_interval_limits: Option<PartialPollIntervalLimits>,
    initial_poll_interval: Option<i8>,
    path: Option<PathBuf>,
    precision: Option<f64>,
    accuracy: Option<f64>,
    #[serde(rename = "measurement_noise_estimate")]
    measurement_noise_estimate: Option<f64>,
    period: Option<f64>,
}

impl RawSource {
    fn present_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut note = |present: bool, key: &'static str| {
            if present {
                keys.push(key);
            }
        };
        note(self.address.is_some(), "address");
        note(
            self.certificate_authority.is_some(),
            "certificate-authority",
        );
        note(self.system_roots.is_some(), "system-roots");
        note(self.count.is_some(), "count");
        note(self.ignore.is_some(), "ignore");
        note(self.ntp_version.is_some(), "ntp-version");
        note(self.interleaved.is_some(), "interleaved");
        note(self.poll_interval_limits.is_some(), "poll-interval-limits");
        note(
            self.initial_poll_interval.is_some(),
            "initial-poll-interval",
        );
        note(self.path.is_some(), "path");
        note(self.precision.is_some(), "precision");
        note(self.accuracy.is_some(), "accuracy");
        note(self.measurement_noise_estimate.is_some(), NOISE_ESTIMATE);
        note(self.period.is_some(), "period");
        keys
    }

    /// Check the keys against the mode and build the typed source; problems
    /// are pushed with their key path and `None` is returned.
    pub(crate) fn into_source(
        self,
        at: &KeyPath,
        problems: &mut Vec<Problem>,
    ) -> Option<SourceConfig> {
        let before = problems.len();
        let mode = self.mode;
        let allowed = mode.allowed_keys();
        for key in self.present_keys() {
            if !allowed.contains(&key) {
                problems.push(Problem::new(
                    at.key(key),
                    format!(
                        "`{key}` is not allowed for mode \"{mode}\" (it takes: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }

        let poll = PollOverrides {
            poll_interval_limits: self.poll_interval_limits,
            initial_poll_interval: self.initial_poll_interval,
        };
        if let Some(limits) = poll.poll_interval_limits {
            check_limits(
                limits.min,
                limits.max,
                &at.key("poll-interval-limits"),
                problems,
            );
        }
        if let Some(initial) = poll.initial_poll_interval {
            check_exponent(initial, &at.key("initial-poll-interval"), problems);
        }

        let default_port = match mode {
            SourceMode::Nts | SourceMode::NtsPool => NTS_KE_PORT,
            _ => NTP_PORT,
        };
        let address = if allowed.contains(&"address") {
            match &self.address {
                None => {
                    problems.push(Problem::new(
                        at.clone(),
                        format!("missing field `address` (required for mode \"{mode}\")"),
                    ));
                    None
                }
                Some(text) => match HostPort::parse(text, default_port) {
                    Ok(address) => Some(address),
                    Err(message) => {
                        problems.push(Problem::new(at.key("address"), message));
                        None
                    }
                },
            }
        } else {
            None
        };

        if self.system_roots == Some(false) && self.certificate_authority.is_none() {
            problems.push(Problem::new(
                at.key("system-roots"),
                "system-roots = false leaves nothing to trust: set certificate-authority to the CA (or the server certificate) this source trusts",
            ));
        }

        let count = self.count.unwrap_or_else(default_pool_count);
        if self.count == Some(0) {
            problems.push(Problem::new(
                at.key("count"),
                "a pool must be allowed at least one server (count >= 1)",
            ));
        }

        let needs_path = mode.is_refclock();
        let mut path = None;
        let mut precision = 0.0;
        if needs_path {
            path = self.path.clone();
            if path.is_none() {
                problems.push(Problem::new(
                    at.clone(),
                    format!("missing field `path` (required for mode \"{mode}\")"),
                ));
            }
            // ntpd-rs's older key is a variance; its square root is the
            // precision.
            let variance = self.measurement_noise_estimate;
            match (self.precision, variance) {
                (Some(_), Some(_)) => problems.push(Problem::new(
                    at.key(NOISE_ESTIMATE),
                    format!(
                        "`precision` and `{NOISE_ESTIMATE}` say the same: keep only `precision`"
                    ),
                )),
                (None, None) => problems.push(Problem::new(
                    at.clone(),
                    format!("missing field `precision` (required for mode \"{mode}\")"),
                )),
                (Some(p), None) if !(p.is_finite() && p > 0.0) => problems.push(Problem::new(
                    at.key("precision"),
                    "precision must be a positive number of seconds",
                )),
                (None, Some(v)) if !(v.is_finite() && v > 0.0) => problems.push(Problem::new(
                    at.key(NOISE_ESTIMATE),
                    "measurement_noise_estimate must be a positive variance (seconds squared)",
                )),
                (Some(p), None) => precision = p,
                (None, Some(v)) => precision = v.sqrt(),
            }
        }
        let accuracy = self.accuracy.unwrap_or(0.0);
        if self.accuracy.is_some() && !(accuracy.is_finite() && accuracy > 0.0) {
            problems.push(Problem::new(
                at.key("accuracy"),
                "accuracy must be a positive number of seconds",
            ));
        }
        let period = self.period.unwrap_or_else(default_pps_period);
        if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
            problems.push(Problem::new(
                at.key("period"),
                format!("period must be from {MIN_PERIOD} to {MAX_PERIOD} seconds"),
            ));
        }

        if problems.len() != before {
            return None;
        }
        let ntp_version = self.ntp_version.unwrap_or_default();
        let interleaved = self.interleaved.unwrap_or(false);
        let source = match mode {
            SourceMode::Server => SourceConfig::Server(ServerSource {
                address: address?,
                ntp_version,
                interleaved,
                poll,
            }),
            SourceMode::Pool => SourceConfig::Pool(PoolSource {
                address: address?,
                count,
                ignore: self.ignore.unwrap_or_default(),
                ntp_version,
                interleaved,
                poll,
            }),
            SourceMode::Nts => SourceConfig::Nts(NtsSource {
                address: address?,
                certificate_authority: self.certificate_authority,
                system_roots: self.system_roots.unwrap_or(true),
                ntp_version,
                interleaved,
                poll,
            }),
            SourceMode::NtsPool => SourceConfig::NtsPool(NtsPoolSource {
                address: address?,
                certificate_authority: self.certificate_authority,
                system_roots: self.system_roots.unwrap_or(true),
                count,
                ntp_version,
                interleaved,
                poll,
            }),
            SourceMode::Sock => SourceConfig::Sock(SockSource {
                path: path?,
                precision,
                accuracy,
            }),
            SourceMode::Pps => SourceConfig::Pps(PpsSource {
                path: path?,
                precision,
                accuracy,
                period,
            }),
        };
        Some(source)
    }
}
