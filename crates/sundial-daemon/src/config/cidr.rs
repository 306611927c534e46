//! CIDR subnets for server allow/deny lists.
//!
//! Hand-written rather than taken from `ipnet`: the type needs only parse and
//! `contains`, and owning it lets the error say exactly what is wrong with
//! the text (prefix too long, not an address) instead of a generic message.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// An IPv4 or IPv6 subnet, stored normalized (host bits cleared), so
/// `192.168.1.1/24` and `192.168.1.0/24` compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The network address (host bits zero).
    #[must_use]
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Number of leading bits that must match.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `addr` lies in this subnet. An IPv4-mapped IPv6 peer
    /// (`::ffff:a.b.c.d`, what a dual-stack socket reports) matches IPv4
    /// subnets, or `[::]:123` listeners would bypass every IPv4 rule.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            IpAddr::V4(_) => addr,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask32(u32::from(a), self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask128(u128::from(a), self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(bits: u32, prefix_len: u8) -> u32 {
    bits.checked_shr(32 - u32::from(prefix_len))
        .and_then(|kept| kept.checked_shl(32 - u32::from(prefix_len)))
        .unwrap_or(0)
}

fn mask128(bits: u128, prefix_len: u8) -> u128 {
    bits.checked_shr(128 - u32::from(prefix_len))
        .and_then(|kept| kept.checked_shl(128 - u32::from(prefix_len)))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("`{text}`: `{addr_text}` is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        // A bare address is a single host, which is what a reader expects.
        let prefix_len = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| {
                    format!("`{text}`: the prefix length must be a number from 0 to {max}")
                })?,
        };
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(mask32(u32::from(v4), prefix_len).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask128(u128::from(v6), prefix_len).into()),
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;
    use std::net::IpAddr;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ipv4_membership_and_normalization() {
        let net = cidr("192.168.1.1/24");
        assert_eq!(net.to_string(), "192.168.1.0/24");
        assert!(net.contains(ip("192.168.1.200")));
        assert!(!net.contains(ip("192.168.2.1")));
        assert!(net.contains(ip("::ffff:192.168.1.7")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("10.0.0.1").contains(ip("10.0.0.1")));
        assert!(!cidr("10.0.0.1").contains(ip("10.0.0.2")));
    }

    #[test]
    fn ipv6_membership() {
        let net = cidr("2001:db8::/32");
        assert!(net.contains(ip("2001:db8:1::5")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!(cidr("::/0").contains(ip("fe80::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = "10.0.0.0/33".parse::<Cidr>().err().unwrap_or_default();
        assert!(err.contains("0 to 32"), "{err}");
        let err = "::/129".parse::<Cidr>().err().unwrap_or_default();
        assert!(err.contains("0 to 128"), "{err}");
        let err = "banana/8".parse::<Cidr>().err().unwrap_or_default();
        assert!(err.contains("not an IPv4 or IPv6 address"), "{err}");
    }
}
