//! The configuration file: an ntpd-rs `ntp.toml`, loaded unchanged, plus a
//! few sundial additions. docs/config.md documents every key.
//!
//! Loading happens in three passes over the text, each with a precise
//! location for anything it rejects:
//! 1. TOML syntax, into a spanned tree ([`locate::Document`]) used to name
//!    byte spans by key path and key paths by line;
//! 2. serde into typed sections (`deny_unknown_fields` everywhere), whose
//!    errors carry a byte span;
//! 3. semantic checks that need several values at once (modes and their
//!    keys, ranges, duplicate listeners, nothing configured).
#![forbid(unsafe_code)]

mod acme;
mod address;
mod algorithm;
mod cidr;
mod clock;
mod error;
mod keyset;
pub mod locate;
mod nts_ke;
mod observability;
mod poll;
mod security;
mod server;
mod source;
mod step;
mod sync;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use acme::{AcmeConfig, ChallengeType};
pub use address::HostPort;
pub use algorithm::AlgorithmConfig;
pub use cidr::Cidr;
pub use clock::{ClockConfig, TimestampMode};
pub use error::{ConfigError, Diagnostic};
pub use keyset::KeysetConfig;
pub use locate::KeyPath;
pub use nts_ke::NtsKeServerConfig;
pub use observability::{LogLevel, ObservabilityConfig};
pub use poll::{PartialPollIntervalLimits, PollIntervalLimits, PollOverrides, SourceDefaults};
pub use security::{DEFAULT_USER, SeccompMode, SecurityConfig};
pub use server::{FilterAction, FilterList, RateLimitAction, RequireNts, ServerConfig};
pub use source::{
    NTP_PORT, NTS_KE_PORT, NtpVersion, NtsPoolSource, NtsSource, PoolSource, PpsSource,
    ServerSource, SockSource, SourceConfig, SourceMode,
};
pub use step::StepThreshold;
pub use sync::{LOCAL_CLOCK_REFID, ReferenceId, SynchronizationConfig};

use locate::Document;
use source::RawSource;

/// Where `sundial` looks when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/sundial/ntp.toml";
/// Where ntpd-rs keeps the same file; used when [`DEFAULT_PATH`] is absent
/// so that a machine moving from ntpd-rs needs no copy.
pub const NTPD_RS_PATH: &str = "/etc/ntpd-rs/ntp.toml";

/// The file to read: `explicit` when given, else [`DEFAULT_PATH`] if it
/// exists, else [`NTPD_RS_PATH`] if that exists, else [`DEFAULT_PATH`] (so
/// the error names sundial's own location).
#[must_use]
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    let own = Path::new(DEFAULT_PATH);
    let ntpd_rs = Path::new(NTPD_RS_PATH);
    if !own.exists() && ntpd_rs.exists() {
        ntpd_rs.to_owned()
    } else {
        own.to_owned()
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `[[source]]`, in file order.
    pub sources: Vec<SourceConfig>,
    /// `[source-defaults]`.
    pub source_defaults: SourceDefaults,
    /// `[[server]]`, in file order.
    pub servers: Vec<ServerConfig>,
    /// `[[nts-ke-server]]`, in file order.
    pub nts_ke_servers: Vec<NtsKeServerConfig>,
    /// `[keyset]`.
    pub keyset: KeysetConfig,
    /// `[synchronization]`.
    pub synchronization: SynchronizationConfig,
    /// `[observability]`.
    pub observability: ObservabilityConfig,
    /// `[clock]`.
    pub clock: ClockConfig,
    /// `[security]`.
    pub security: SecurityConfig,
}

/// Something legal but probably not what the writer meant; `sundial
/// validate` prints these and still succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Dotted key path the warning is about (empty for the whole file).
    pub key: String,
    /// What to know.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

impl Config {
    /// True when the file configures serving only: the daemon then leaves
    /// the clock alone and serves it as it is.
    #[must_use]
    pub fn is_pure_server(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether the daemon may change the clock (no `observe-only`, and at
    /// least one source). `sundial run --observe` overrides this.
    #[must_use]
    pub fn steers_clock(&self) -> bool {
        !self.clock.observe_only && !self.sources.is_empty()
    }

    /// Most time sources the configured entries can yield (pools count as
    /// their `count`).
    #[must_use]
    pub fn max_sources(&self) -> usize {
        self.sources.iter().map(SourceConfig::max_sources).sum()
    }

    /// Settings that load but can never work: `sundial run` refuses to
    /// start with them (under systemd as anywhere: a daemon that runs but
    /// never synchronizes is worse than one that fails where it is seen),
    /// and `sundial validate` reports them as errors.
    #[must_use]
    pub fn start_errors(&self) -> Vec<Warning> {
        let mut errors = Vec::new();
        let wanted = self.synchronization.minimum_agreeing_sources;
        if !self.sources.is_empty() && self.max_sources() < wanted {
            errors.push(Warning {
                key: "synchronization.minimum-agreeing-sources".to_owned(),
                message: format!(
                    "at most {} source(s) are configured but {wanted} must agree: the clock would never be synchronized (set minimum-agreeing-sources = {} or add sources)",
                    self.max_sources(),
                    self.max_sources()
                ),
            });
        }
        errors
    }

    /// Legal settings that will not do what they seem to.
    #[must_use]
    pub fn warnings(&self) -> Vec<Warning> {
        let mut warnings = Vec::new();
        let mut warn = |key: String, message: String| warnings.push(Warning { key, message });
        if self.sources.is_empty()
            && !self.servers.is_empty()
            && self.synchronization.local_stratum >= 16
        {
            warn(
                "synchronization.local-stratum".to_owned(),
                "no [[source]] and local-stratum is 16: the server answers as unsynchronized and clients will not use it (set local-stratum if this machine's clock is the reference)".to_owned(),
            );
        }
        if self.synchronization.reference_id.is_some()
            && (2..=15).contains(&self.synchronization.local_stratum)
        {
            warn(
                "synchronization.reference-id".to_owned(),
                format!(
                    "served at local-stratum 1 only; at local-stratum {} sundial announces 127.127.1.1 (local clock), as chrony does",
                    self.synchronization.local_stratum
                ),
            );
        }
        let whole_time_sources = self
            .sources
            .iter()
            .filter(|s| s.mode().is_supported() && s.mode() != SourceMode::Pps)
            .count();
        for (index, source) in self.sources.iter().enumerate() {
            let mode = source.mode();
            if mode == SourceMode::Pps && whole_time_sources == 0 {
                warn(
                    format!("source[{index}]"),
                    "a PPS gives the fraction of the second only: without another source (sock, server, pool, nts) to say which second, it is never used".to_owned(),
                );
            }
            if !mode.is_supported() {
                warn(
                    format!("source[{index}].mode"),
                    format!(
                        "mode \"{mode}\" is accepted for ntpd-rs compatibility but sundial does not run it; this source will be skipped"
                    ),
                );
            }
            let version = match source {
                SourceConfig::Server(s) => s.ntp_version,
                SourceConfig::Pool(s) => s.ntp_version,
                SourceConfig::Nts(s) => s.ntp_version,
                SourceConfig::NtsPool(s) => s.ntp_version,
                SourceConfig::Sock(_) | SourceConfig::Pps(_) => NtpVersion::V4,
            };
            if version != NtpVersion::V4 {
                warn(
                    format!("source[{index}].ntp-version"),
                    "sundial speaks NTPv4 only; this source will use version 4".to_owned(),
                );
            }
        }
        for (index, server) in self.servers.iter().enumerate() {
            if server.accept_ntp_versions.contains(&5) {
                warn(
                    format!("server[{index}].accept-ntp-versions"),
                    "sundial does not answer NTPv5; version 5 requests will be dropped".to_owned(),
                );
            }
        }
        for (index, ke) in self.nts_ke_servers.iter().enumerate() {
            if ke.accept_ntp_versions.contains(&5) {
                warn(
                    format!("nts-ke-server[{index}].accept-ntp-versions"),
                    "sundial negotiates NTPv4 only; version 5 is never offered".to_owned(),
                );
            }
            if !ke.authorized_pool_server_certificates.is_empty()
                || !ke.accepted_pool_authentication_tokens.is_empty()
            {
                warn(
                    format!("nts-ke-server[{index}]"),
                    "NTS pool settings are accepted but sundial does not implement the NTS pool protocol; they are ignored".to_owned(),
                );
            }
        }
        if self.clock.clock.is_some() {
            warn(
                "clock.clock".to_owned(),
                "sundial disciplines the system clock (CLOCK_REALTIME) only; this PTP clock is ignored".to_owned(),
            );
        }
        if self.clock.interface.is_some() {
            warn(
                "clock.interface".to_owned(),
                "sundial takes kernel timestamps on every interface; this setting is ignored"
                    .to_owned(),
            );
        }
        if self.clock.timestamp_mode != TimestampMode::default() {
            warn(
                "clock.timestamp-mode".to_owned(),
                "sundial always takes kernel receive timestamps and reads the transmit time just before sending; this setting is ignored".to_owned(),
            );
        }
        for (index, ke) in self.nts_ke_servers.iter().enumerate() {
            if ke
                .acme
                .as_ref()
                .is_some_and(|a| a.directory_url() == acme::LETS_ENCRYPT_STAGING)
            {
                warn(
                    format!("nts-ke-server[{index}].acme.directory"),
                    "Let's Encrypt staging: no client trusts its certificates; remove the line for production once issuance works".to_owned(),
                );
            }
        }
        if !self.nts_ke_servers.is_empty() && self.keyset.key_storage_path.is_none() {
            warn(
                "keyset.key-storage-path".to_owned(),
                "unset: cookie keys live in memory only, so every client must redo NTS-KE after a restart".to_owned(),
            );
        }
        let tuning = AlgorithmConfig {
            step_threshold: None,
            ..self.synchronization.algorithm.clone()
        };
        if tuning.is_set() {
            warn(
                "synchronization.algorithm".to_owned(),
                "ntpd-rs algorithm tuning other than step-threshold has no effect in sundial; it is ignored".to_owned(),
            );
        }
        warnings
    }
}

/// A problem found after deserializing, located by key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    path: KeyPath,
    message: String,
}

impl Problem {
    pub(crate) fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }
}

/// The document as serde sees it; `[[source]]` stays raw until its mode is
/// checked against its keys.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    source_defaults: SourceDefaults,
    #[serde(default)]
    server: Vec<ServerConfig>,
    #[serde(default)]
    nts_ke_server: Vec<NtsKeServerConfig>,
    #[serde(default)]
    keyset: KeysetConfig,
    #[serde(default)]
    synchronization: SynchronizationConfig,
    #[serde(default)]
    observability: ObservabilityConfig,
    #[serde(default)]
    clock: ClockConfig,
    #[serde(default)]
    security: SecurityConfig,
}

/// Read and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Validate configuration `text`; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let locator = Locator { text, origin };
    let document = Document::parse(text).map_err(|err| locator.toml_error(&err, None))?;
    let raw: RawConfig =
        toml::from_str(text).map_err(|err| locator.toml_error(&err, Some(&document)))?;

    let mut problems = Vec::new();
    let root = KeyPath::root();
    let mut sources = Vec::with_capacity(raw.source.len());
    for (index, source) in raw.source.into_iter().enumerate() {
        let at = root.key("source").index(index);
        if let Some(source) = source.into_source(&at, &mut problems) {
            poll::check_effective(&source, &raw.source_defaults, &at, &mut problems);
            sources.push(source);
        }
    }
    raw.source_defaults
        .check(&root.key("source-defaults"), &mut problems);
    for (index, server) in raw.server.iter().enumerate() {
        server.check(&root.key("server").index(index), &mut problems);
    }
    for (index, ke) in raw.nts_ke_server.iter().enumerate() {
        ke.check(&root.key("nts-ke-server").index(index), &mut problems);
    }
    check_unique_listeners("server", raw.server.iter().map(|s| s.listen), &mut problems);
    check_unique_listeners(
        "nts-ke-server",
        raw.nts_ke_server.iter().map(|s| s.listen),
        &mut problems,
    );
    check_acme_unique(&raw.nts_ke_server, &mut problems);
    for (index, ke) in raw.nts_ke_server.iter().enumerate() {
        if ke.ntp_port.is_none() {
            if let Err(ports) = implicit_ntp_port(&raw.server) {
                problems.push(Problem::new(
                    root.key("nts-ke-server").index(index),
                    format!(
                        "the [[server]] sections listen on several ports ({ports}): set ntp-port to the one this key exchange announces"
                    ),
                ));
            }
        }
    }
    raw.keyset.check(&root.key("keyset"), &mut problems);
    raw.synchronization
        .check(&root.key("synchronization"), &mut problems);
    raw.observability
        .check(&root.key("observability"), &mut problems);
    if sources.is_empty()
        && problems.is_empty()
        && raw.server.is_empty()
        && raw.nts_ke_server.is_empty()
    {
        problems.push(Problem::new(
            root,
            "the file configures nothing to do: add [[source]] to synchronize the clock, or [[server]] / [[nts-ke-server]] to serve time",
        ));
    }

    // Report the problem nearest the top of the file: fixing files top-down
    // is how people work, and it makes the answer deterministic.
    let first = problems
        .into_iter()
        .map(|problem| {
            let offset = document.span_of(&problem.path).map_or(0, |span| span.start);
            (offset, problem)
        })
        .min_by_key(|(offset, _)| *offset);
    if let Some((offset, problem)) = first {
        return Err(locator.at(offset, problem.path.to_string(), problem.message));
    }

    Ok(Config {
        sources,
        source_defaults: raw.source_defaults,
        servers: raw.server,
        nts_ke_servers: raw.nts_ke_server,
        keyset: raw.keyset,
        synchronization: raw.synchronization,
        observability: raw.observability,
        clock: raw.clock,
        security: raw.security,
    })
}

/// The NTP port a KE server without `ntp-port` announces: the one port all
/// `[[server]]` listeners share, unless it is 123 (the default clients
/// assume, so nothing needs announcing). `Err` lists the ports when they
/// differ, which leaves the choice ambiguous.
pub fn implicit_ntp_port(servers: &[ServerConfig]) -> Result<Option<u16>, String> {
    let ports: std::collections::BTreeSet<u16> = servers.iter().map(|s| s.listen.port()).collect();
    match ports.len() {
        0 | 1 => Ok(ports.first().copied().filter(|&p| p != NTP_PORT)),
        _ => Err(ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")),
    }
}

/// Two ACME servers cannot share a challenge port (one listener answers
/// one server's tokens) or a state directory (each owns its files).
fn check_acme_unique(servers: &[NtsKeServerConfig], problems: &mut Vec<Problem>) {
    let mut ports: HashMap<SocketAddr, usize> = HashMap::new();
    let mut dirs: HashMap<&Path, usize> = HashMap::new();
    for (index, ke) in servers.iter().enumerate() {
        let Some(acme) = &ke.acme else { continue };
        let at = KeyPath::root()
            .key("nts-ke-server")
            .index(index)
            .key("acme");
        if let Some(first) = ports.insert(acme.challenge_addr(), index) {
            problems.push(Problem::new(
                at.key("challenge-listen"),
                format!("nts-ke-server[{first}] already answers ACME challenges there"),
            ));
        }
        if let Some(first) = dirs.insert(&acme.state_directory, index) {
            problems.push(Problem::new(
                at.key("state-directory"),
                format!("nts-ke-server[{first}] already keeps its ACME state there"),
            ));
        }
    }
}

fn check_unique_listeners(
    section: &str,
    listeners: impl Iterator<Item = SocketAddr>,
    problems: &mut Vec<Problem>,
) {
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (index, listen) in listeners.enumerate() {
        if let Some(first) = seen.insert(listen, index) {
            seen.insert(listen, first);
            problems.push(Problem::new(
                KeyPath::root().key(section).index(index).key("listen"),
                format!("{listen} is already the listen address of {section}[{first}]"),
            ));
        }
    }
}

/// Turns byte offsets into [`ConfigError::Invalid`] for one file.
struct Locator<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Locator<'_> {
    fn at(&self, offset: usize, key: String, message: String) -> ConfigError {
        let (line, column, source_line) = locate::line_column(self.text, offset);
        ConfigError::Invalid(Box::new(Diagnostic {
            file: PathBuf::from(self.origin),
            key,
            line,
            column,
            message,
            source_line,
        }))
    }

    fn toml_error(&self, err: &toml::de::Error, document: Option<&Document<'_>>) -> ConfigError {
        let mut offset = err.span().map_or(0, |span| span.start);
        let message = err.message().trim().to_owned();
        let Some(document) = document else {
            return self.at(offset, String::new(), message);
        };
        let mut path = document.path_at(offset);
        let named = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        };
        // serde points a missing field at its table; the key is in the text.
        if let Some(field) = named("missing field `") {
            path = path.key(&field);
        }
        // A hand-written visitor (step thresholds) reports an unknown key
        // with the span of its whole table: find the key inside it.
        if let Some(field) = named("unknown field `") {
            let inside = path.key(&field);
            if path.segments().last() != inside.segments().last() {
                if let Some(span) = document.span_of(&inside) {
                    if document.path_at(span.start) == inside {
                        offset = span.start;
                        path = inside;
                    }
                }
            }
        }
        if let Some((element, span)) = document.element_quoted_in(&path, &message) {
            offset = span.start;
            path = element;
        }
        self.at(offset, path.to_string(), message)
    }
}
