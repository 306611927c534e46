//! How long a source waits before its next key exchange (or, for a plain
//! source, its next resolution), as pure arithmetic.
//!
//! RFC 8915 section 4.1 asks clients not to hammer a KE server that fails:
//! the first retry comes after about 10 s and each further one 1.5 times
//! later, up to a cap. An exchange counts as good only when the key
//! exchange *and* an NTP exchange with the keys it gave both succeeded, so
//! a KE server that hands out cookies its NTP server refuses (or an NTP
//! server that never answers) is retried on the same widening schedule.

use std::time::Duration;

/// The first wait after a failure.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The factor from one wait to the next.
pub const FACTOR: f64 = 1.5;
/// The longest wait: an hour keeps a recovered server from staying unused
/// for long while costing it at most 24 handshakes a day per client.
pub const MAX: Duration = Duration::from_secs(3600);

/// Attempts since the last confirmed success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryBackoff {
    unconfirmed: u32,
}

impl RetryBackoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait before the next attempt: nothing while no attempt
    /// is pending confirmation, then 10 s, 15 s, 22.5 s, ... capped.
    pub fn delay(&self) -> Duration {
        let Some(failed) = self.unconfirmed.checked_sub(1) else {
            return Duration::ZERO;
        };
        // powi on a capped exponent: 1.5^40 already exceeds any cap.
        let exponent = i32::try_from(failed.min(40)).unwrap_or(40);
        let secs = INITIAL.as_secs_f64() * FACTOR.powi(exponent);
        Duration::from_secs_f64(secs.min(MAX.as_secs_f64()))
    }

    /// An attempt starts (its outcome is unknown until confirmed).
    pub fn attempted(&mut self) {
        self.unconfirmed = self.unconfirmed.saturating_add(1);
    }

    /// The attempt led to a good NTP exchange: back to no waiting.
    pub fn confirmed(&mut self) {
        self.unconfirmed = 0;
    }

    /// Attempts without confirmation so far.
    pub fn unconfirmed(&self) -> u32 {
        self.unconfirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_starts_at_ten_seconds_grows_by_half_and_is_capped() {
        let mut b = RetryBackoff::new();
        assert_eq!(b.delay(), Duration::ZERO, "the first attempt is immediate");
        let mut seen = Vec::new();
        for _ in 0..20 {
            b.attempted();
            seen.push(b.delay().as_secs_f64());
        }
        assert_eq!(&seen[..4], &[10.0, 15.0, 22.5, 33.75]);
        for pair in seen.windows(2) {
            assert!(pair[1] >= pair[0]);
            assert!(pair[1] <= pair[0] * FACTOR + 1e-9);
        }
        assert_eq!(*seen.last().unwrap(), MAX.as_secs_f64());
        // Reached after 10 * 1.5^n >= 3600, n = 15.
        assert_eq!(seen.iter().position(|&s| s == 3600.0), Some(15));
        for _ in 0..1000 {
            b.attempted();
        }
        assert_eq!(b.delay(), MAX);
    }

    #[test]
    fn only_a_confirmed_attempt_resets_the_schedule() {
        let mut b = RetryBackoff::new();
        b.attempted(); // KE failed
        b.attempted(); // KE worked, but no NTP answer followed
        assert_eq!(b.delay(), Duration::from_secs(15));
        b.attempted(); // KE worked ...
        b.confirmed(); // ... and then an NTP exchange too
        assert_eq!(b.delay(), Duration::ZERO);
        assert_eq!(b.unconfirmed(), 0);
    }
}
