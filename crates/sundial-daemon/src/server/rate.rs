//! Per-client rate limiting with a fixed-size table, keeping the meaning of
//! ntpd-rs's `rate-limiting-cache-size` (table size) and
//! `rate-limiting-cutoff-ms` (the spacing a client must keep), plus sundial's
//! burst, prefix and action settings.
//!
//! Each client is a token bucket kept as one timestamp (GCRA, the "virtual
//! scheduling" form): the bucket leaks one request per cutoff and holds
//! `burst` of them, so a client may send `burst` requests back to back and
//! then one per cutoff. With burst 1 this is exactly ntpd-rs's rule: a
//! request sooner than the cutoff after the last *allowed* one is limited,
//! so a client that keeps hammering stays limited.
//!
//! Clients are counted per prefix (default /32 for IPv4, /64 for IPv6): an
//! IPv6 host usually owns a whole /64 and could otherwise rotate addresses
//! to dodge its limit. IPv4-mapped IPv6 addresses count as IPv4.
//!
//! The table never grows. Each client hashes (keyed per process, so an
//! attacker cannot aim at one bucket) to a bucket of [`WAYS`] slots; a
//! newcomer takes a free slot or one whose client has nothing left to
//! remember (its bucket drained back to empty), else the slot whose client
//! was limited least often, the soonest drained among those. A flood from
//! spoofed addresses therefore costs no memory, and since each of its
//! addresses sends once and is never limited, the flood evicts its own kind
//! before a client that is being limited: at worst such a client gets
//! through a little early.
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{RateLimitAction, ServerConfig};

/// Slots per bucket: two choices already make targeted eviction hard.
pub const WAYS: usize = 2;

/// The client a slot speaks for: the address masked to its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u128),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: ClientKey,
    /// GCRA's theoretical arrival time: when the bucket is empty again.
    /// A request at `now` is allowed while `tat - now <= (burst-1)*cutoff`.
    tat: Instant,
    /// Requests limited since the client took the slot: what a hammering
    /// client has and a one-off spoofed source has not.
    strikes: u32,
}

/// What to do with a request over its client's rate.
pub type Verdict = Option<RateLimitAction>;

/// Rate-limiting settings, from `[[server]]` or given directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    pub cache_size: usize,
    pub cutoff: Duration,
    pub burst: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub action: RateLimitAction,
}

impl RateSettings {
    /// ntpd-rs's two settings with sundial's defaults for the rest.
    pub fn new(cache_size: usize, cutoff: Duration) -> Self {
        Self {
            cache_size,
            cutoff,
            burst: 1,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            action: RateLimitAction::Kiss,
        }
    }

    pub fn from_config(config: &ServerConfig) -> Self {
        Self {
            cache_size: config.rate_limiting_cache_size,
            cutoff: Duration::from_millis(config.rate_limiting_cutoff_ms),
            burst: config.rate_limiting_burst,
            ipv4_prefix: config.rate_limiting_ipv4_prefix,
            ipv6_prefix: config.rate_limiting_ipv6_prefix,
            action: config.rate_limiting_action,
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    slots: Vec<Option<Slot>>,
    buckets: usize,
    cutoff: Duration,
    /// How far ahead of now a client's bucket may run: (burst - 1) cutoffs.
    tolerance: Duration,
    ipv4_mask: u32,
    ipv6_mask: u128,
    action: RateLimitAction,
    hasher: RandomState,
}

impl RateLimiter {
    /// `None` when either setting is zero (rate limiting off).
    pub fn new(cache_size: usize, cutoff: Duration) -> Option<Self> {
        Self::with_settings(RateSettings::new(cache_size, cutoff))
    }

    /// From a `[[server]]` table; `None` when rate limiting is off.
    pub fn from_config(config: &ServerConfig) -> Option<Self> {
        Self::with_settings(RateSettings::from_config(config))
    }

    /// `None` when the cache size or the cutoff is zero (rate limiting off).
    pub fn with_settings(settings: RateSettings) -> Option<Self> {
        if settings.cache_size == 0 || settings.cutoff.is_zero() {
            return None;
        }
        // At least one whole bucket; the table is allocated once, here.
        let buckets = settings.cache_size.div_ceil(WAYS).max(1);
        let burst = settings.burst.max(1);
        Some(Self {
            slots: vec![None; buckets * WAYS],
            buckets,
            cutoff: settings.cutoff,
            tolerance: settings.cutoff.saturating_mul(burst - 1),
            ipv4_mask: prefix_mask_v4(settings.ipv4_prefix),
            ipv6_mask: prefix_mask_v6(settings.ipv6_prefix),
            action: settings.action,
            hasher: RandomState::new(),
        })
    }

    /// The number of slots, fixed at construction.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slots in use (for tests and status).
    pub fn occupied(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Records a request from `ip` at `now`; true if it came too soon.
    pub fn is_limited(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.check(ip, now).is_some()
    }

    /// Records a request from `ip` at `now`: `None` to serve it, else what
    /// `rate-limiting-action` says to do with it. A limited request does
    /// not use up the bucket, so a client that slows down is served again.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let key = self.key(ip);
        let bucket = (self.hasher.hash_one(key) % self.buckets as u64) as usize;
        let start = bucket * WAYS;
        let ways = self.slots.get_mut(start..start + WAYS)?;
        let index = match ways.iter().position(|s| s.is_some_and(|s| s.key == key)) {
            Some(i) => i,
            None => {
                // A free or drained slot first (nothing to forget), then
                // the least limited, the soonest drained among those.
                let victim = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| match s {
                        None => (false, 0, None),
                        Some(s) if s.tat <= now => (false, 0, Some(s.tat)),
                        Some(s) => (true, s.strikes, Some(s.tat)),
                    })
                    .map_or(0, |(i, _)| i);
                if let Some(slot) = ways.get_mut(victim) {
                    *slot = Some(Slot {
                        key,
                        tat: now,
                        strikes: 0,
                    });
                }
                victim
            }
        };
        let slot = ways.get_mut(index)?.as_mut()?;
        let tat = slot.tat.max(now);
        if tat.saturating_duration_since(now) > self.tolerance {
            slot.strikes = slot.strikes.saturating_add(1);
            return Some(self.action);
        }
        slot.tat = tat + self.cutoff;
        None
    }

    fn key(&self, ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4) & self.ipv4_mask),
            IpAddr::V6(v6) => ClientKey::V6(u128::from(v6) & self.ipv6_mask),
        }
    }
}

fn prefix_mask_v4(prefix: u8) -> u32 {
    match u32::from(prefix.min(32)) {
        0 => 0,
        p => u32::MAX << (32 - p),
    }
}

fn prefix_mask_v6(prefix: u8) -> u128 {
    match u32::from(prefix.min(128)) {
        0 => 0,
        p => u128::MAX << (128 - p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limiter(burst: u32) -> RateLimiter {
        RateLimiter::with_settings(RateSettings {
            burst,
            ..RateSettings::new(64, MS * 100)
        })
        .unwrap()
    }

    #[test]
    fn limits_fast_clients_only() {
        let mut r = RateLimiter::new(16, Duration::from_millis(100)).unwrap();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(!r.is_limited(a, t0));
        assert!(r.is_limited(a, t0 + Duration::from_millis(50)));
        assert!(!r.is_limited(b, t0 + Duration::from_millis(50)));
        assert!(!r.is_limited(a, t0 + Duration::from_millis(150)));
    }

    #[test]
    fn a_burst_is_allowed_then_one_per_cutoff() {
        let mut r = limiter(4);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..4 {
            assert_eq!(r.check(a, t0), None, "request {i} of the burst");
        }
        assert_eq!(r.check(a, t0), Some(RateLimitAction::Kiss));
        // The bucket leaks one request per cutoff.
        assert_eq!(r.check(a, t0 + MS * 100), None);
        assert_eq!(r.check(a, t0 + MS * 100), Some(RateLimitAction::Kiss));
        // Quiet for a while: the whole burst is back, and no more.
        let later = t0 + MS * 2000;
        for _ in 0..4 {
            assert_eq!(r.check(a, later), None);
        }
        assert!(r.is_limited(a, later));
    }

    #[test]
    fn hammering_gets_one_request_per_cutoff_through() {
        let mut r = limiter(1);
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        // 1000 requests a second for 1 s against a 100 ms cutoff.
        let allowed = (0..1000)
            .filter(|i| r.check(a, t0 + MS * *i).is_none())
            .count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let mut r = limiter(1);
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(!r.is_limited(one, t0));
        assert!(r.is_limited(same_64, t0), "same /64 shares the bucket");
        assert!(!r.is_limited(other_64, t0));
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert!(!r.is_limited(v4, t0));
        assert!(r.is_limited(mapped, t0));
    }

    #[test]
    fn the_action_is_configurable() {
        let mut r = RateLimiter::with_settings(RateSettings {
            action: RateLimitAction::Ignore,
            ..RateSettings::new(8, MS * 100)
        })
        .unwrap();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(r.check(a, t0), None);
        assert_eq!(r.check(a, t0), Some(RateLimitAction::Ignore));
    }

    #[test]
    fn off_when_zero_and_bounded_under_flood() {
        assert!(RateLimiter::new(0, Duration::from_millis(10)).is_none());
        assert!(RateLimiter::new(10, Duration::ZERO).is_none());
        let mut r = RateLimiter::new(8, Duration::from_secs(1)).unwrap();
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let _ = r.is_limited(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(r.slots.len(), 8);
        assert_eq!(r.capacity(), 8);
    }

    #[test]
    fn a_spoofed_flood_does_not_free_a_hammering_client() {
        // A client being limited, and a flood of one-off spoofed sources
        // through the same table, ten times its size: whenever the client
        // comes back within its cutoff it is still limited.
        let mut r = RateLimiter::new(1024, Duration::from_secs(1)).unwrap();
        let t0 = Instant::now();
        let client: IpAddr = "203.0.113.5".parse().unwrap();
        assert!(!r.is_limited(client, t0));
        let mut freed = 0;
        let mut spoofed = 0u32;
        for round in 1..=200u32 {
            let now = t0 + MS * (round * 4);
            // The client keeps hammering every 4 ms (its tat stays ahead).
            if !r.is_limited(client, now) {
                freed += 1;
            }
            for _ in 0..50 {
                spoofed += 1;
                let ip = IpAddr::from((0x0a00_0000 + spoofed).to_be_bytes());
                let _ = r.is_limited(ip, now);
            }
        }
        assert_eq!(r.capacity(), 1024);
        // The client sent 200 requests in 800 ms against a 1 s cutoff: a
        // perfect table lets none through, and the 10 000 one-off spoofed
        // sources evict each other, never the client that has strikes.
        assert_eq!(freed, 0, "client freed {freed} times");
    }
}
