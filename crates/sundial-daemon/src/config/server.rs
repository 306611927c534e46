//! `[[server]]`: serving NTP on a UDP socket.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::cidr::Cidr;
use super::{KeyPath, Problem};

fn default_accept_ntp_versions() -> Vec<u8> {
    vec![3, 4]
}

fn default_rate_limiting_burst() -> u32 {
    1
}

/// A millisecond: at 10 000 NTS requests/s it halves the CPU per answer
/// against reading at once (docs/performance.md), and a client never sees
/// it in its offset or delay, only in its answer's latency.
fn default_coalesce_us() -> u64 {
    1000
}

/// The longest `coalesce-us` accepted: past this, light-load answers would
/// be late enough to trip clients' timeouts for nothing.
pub const MAX_COALESCE_US: u64 = 10_000;

fn default_rate_limiting_ipv4_prefix() -> u8 {
    32
}

fn default_rate_limiting_ipv6_prefix() -> u8 {
    64
}

/// What happens to a request over its client's rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitAction {
    /// Answer with a RATE kiss-o'-death (RFC 5905 7.4), no time.
    #[default]
    Kiss,
    /// Drop silently: nothing to reflect at a spoofed victim.
    Ignore,
}

/// One NTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// UDP socket address, e.g. `[::]:123` or `0.0.0.0:123`.
    pub listen: SocketAddr,
    /// Clients remembered for rate limiting; 0 disables rate limiting.
    #[serde(default)]
    pub rate_limiting_cache_size: usize,
    /// Requests from one client closer together than this get a RATE kiss;
    /// 0 disables rate limiting.
    #[serde(default)]
    pub rate_limiting_cutoff_ms: u64,
    /// Requests one client may send back to back before the cutoff
    /// spacing applies (default 1: ntpd-rs's behaviour).
    #[serde(default = "default_rate_limiting_burst")]
    pub rate_limiting_burst: u32,
    /// IPv4 clients are rate limited per prefix of this length (default 32).
    #[serde(default = "default_rate_limiting_ipv4_prefix")]
    pub rate_limiting_ipv4_prefix: u8,
    /// IPv6 clients are rate limited per prefix of this length (default 64:
    /// one host usually holds a whole /64).
    #[serde(default = "default_rate_limiting_ipv6_prefix")]
    pub rate_limiting_ipv6_prefix: u8,
    /// What a client over its rate gets: a RATE kiss (default) or nothing.
    #[serde(default)]
    pub rate_limiting_action: RateLimitAction,
    /// Only these subnets are served; others get `action`.
    #[serde(default)]
    pub allowlist: Option<FilterList>,
    /// These subnets are never served; they get `action`.
    #[serde(default)]
    pub denylist: Option<FilterList>,
    /// Whether plain (non-NTS) requests are answered.
    #[serde(default)]
    pub require_nts: RequireNts,
    /// NTP versions answered (default `[3, 4]`).
    #[serde(default = "default_accept_ntp_versions")]
    pub accept_ntp_versions: Vec<u8>,
    /// At light load, how long a serving thread waits before reading again
    /// so that one wake-up answers several requests; 0 answers each at
    /// once (see `server::ntp::pacing`).
    #[serde(default = "default_coalesce_us")]
    pub coalesce_us: u64,
    /// Answer RFC 9769 interleaved requests (kernel transmit timestamps
    /// for the answers of clients that ask); `false`: basic mode only.
    #[serde(default = "default_interleaved")]
    pub interleaved: bool,
}

fn default_interleaved() -> bool {
    true
}

impl ServerConfig {
    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        if self.rate_limiting_burst == 0 {
            problems.push(Problem::new(
                at.key("rate-limiting-burst"),
                "the burst must be at least 1 request",
            ));
        }
        if self.rate_limiting_ipv4_prefix > 32 {
            problems.push(Problem::new(
                at.key("rate-limiting-ipv4-prefix"),
                "an IPv4 prefix is 0 to 32 bits",
            ));
        }
        if self.rate_limiting_ipv6_prefix > 128 {
            problems.push(Problem::new(
                at.key("rate-limiting-ipv6-prefix"),
                "an IPv6 prefix is 0 to 128 bits",
            ));
        }
        if self.coalesce_us > MAX_COALESCE_US {
            problems.push(Problem::new(
                at.key("coalesce-us"),
                format!("at most {MAX_COALESCE_US} microseconds"),
            ));
        }
        check_versions(
            &self.accept_ntp_versions,
            &[3, 4, 5],
            &at.key("accept-ntp-versions"),
            problems,
        );
    }

    /// What to do with a request from `peer` according to the allow and
    /// deny lists: `None` to serve it.
    #[must_use]
    pub fn filter_action(&self, peer: IpAddr) -> Option<FilterAction> {
        if let Some(deny) = &self.denylist {
            if deny.matches(peer) {
                return Some(deny.action);
            }
        }
        match &self.allowlist {
            Some(allow) if !allow.matches(peer) => Some(allow.action),
            _ => None,
        }
    }
}

pub(crate) fn check_versions(
    versions: &[u8],
    allowed: &[u8],
    at: &KeyPath,
    problems: &mut Vec<Problem>,
) {
    let list = allowed
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if versions.is_empty() {
        problems.push(Problem::new(
            at.clone(),
            format!("at least one version must be accepted (from {list})"),
        ));
    }
    for (index, version) in versions.iter().enumerate() {
        if !allowed.contains(version) {
            problems.push(Problem::new(
                at.index(index),
                format!("NTP version {version} cannot be accepted here (choose from {list})"),
            ));
        }
    }
}

/// `{ filter = ["CIDR", ...], action = "ignore" | "deny" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FilterList {
    /// Subnets in CIDR notation, IPv4 or IPv6.
    pub filter: Vec<Cidr>,
    /// What happens to a request the list rejects.
    pub action: FilterAction,
}

impl FilterList {
    /// Whether `peer` is in any of the subnets.
    #[must_use]
    pub fn matches(&self, peer: IpAddr) -> bool {
        self.filter.iter().any(|net| net.contains(peer))
    }
}

/// How a rejected request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterAction {
    /// Drop it silently.
    Ignore,
    /// Answer with a DENY kiss-o'-death.
    Deny,
}

/// `require-nts = false | true | "ignore" | "deny"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RequireNts {
    /// Plain NTP is answered too (`false`, the default).
    #[default]
    No,
    /// Plain NTP is dropped (`true` or `"ignore"`).
    Ignore,
    /// Plain NTP gets a DENY kiss (`"deny"`).
    Deny,
}

impl<'de> Deserialize<'de> for RequireNts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequireVisitor;

        impl Visitor<'_> for RequireVisitor {
            type Value = RequireNts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, \"ignore\" or \"deny\"")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RequireNts, E> {
                Ok(if v {
                    RequireNts::Ignore
                } else {
                    RequireNts::No
                })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RequireNts, E> {
                match v {
                    "ignore" => Ok(RequireNts::Ignore),
                    "deny" => Ok(RequireNts::Deny),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }

        deserializer.deserialize_any(RequireVisitor)
    }
}
