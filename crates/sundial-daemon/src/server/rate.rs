//! Per-client rate limiting with a fixed-size table (ntpd-rs's
//! `rate-limiting-cache-size` and `rate-limiting-cutoff-ms`): a client whose
//! requests come closer together than the cutoff gets a RATE kiss.
//!
//! The table never grows: clients hash into slots and a newcomer overwrites
//! whoever held its slot, so a flood from spoofed addresses costs no memory
//! and at worst lets a limited client through early.
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    slots: Vec<Option<(IpAddr, Instant)>>,
    cutoff: Duration,
    // Keyed per process so an attacker cannot aim addresses at one slot.
    hasher: RandomState,
}

impl RateLimiter {
    /// `None` when either setting is zero (rate limiting off).
    pub fn new(cache_size: usize, cutoff: Duration) -> Option<Self> {
        (cache_size > 0 && !cutoff.is_zero()).then(|| Self {
            slots: vec![None; cache_size],
            cutoff,
            hasher: RandomState::new(),
        })
    }

    /// Records a request from `ip` at `now`; true if it came too soon.
    pub fn is_limited(&mut self, ip: IpAddr, now: Instant) -> bool {
        let len = self.slots.len().max(1);
        let index = (self.hasher.hash_one(ip) % len as u64) as usize;
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        let limited = matches!(slot, Some((seen, last)) if *seen == ip && now.saturating_duration_since(*last) < self.cutoff);
        // A limited client's clock restarts only when it behaves, so a
        // client that keeps hammering stays limited.
        if !limited {
            *slot = Some((ip, now));
        }
        limited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn off_when_zero_and_bounded_under_flood() {
        assert!(RateLimiter::new(0, Duration::from_millis(10)).is_none());
        assert!(RateLimiter::new(10, Duration::ZERO).is_none());
        let mut r = RateLimiter::new(8, Duration::from_secs(1)).unwrap();
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let _ = r.is_limited(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(r.slots.len(), 8);
    }
}
