//! When to renew and when to try again: pure functions of the certificate's
//! dates, the CA's advice, the failures so far and an injected RNG, so the
//! policy is tested without a clock or a CA.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use rand::Rng;

/// How long to wait after failures, and the floor a CA's rate limit sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one.
    pub first: Duration,
    /// The longest wait, however many failures.
    pub max: Duration,
    /// The shortest wait after the CA said we are rate limited (Let's
    /// Encrypt counts failed validations per hour).
    pub rate_limited: Duration,
}

impl Default for RetryPolicy {
    /// Ten minutes doubling to six hours: four failed attempts in the
    /// first hour and a half, well inside Let's Encrypt's five failed
    /// validations per name per hour, and still several tries a day while
    /// a third of a 90-day certificate (30 days) is left.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(600),
            max: Duration::from_secs(6 * 3600),
            rate_limited: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` consecutive failures (at least 1): the
    /// exponential step, then "equal jitter" (half fixed, half random), so
    /// that many servers restarted together do not return in step, and the
    /// wait never shrinks by more than half from one failure to the next.
    pub fn delay(&self, failures: u32, rate_limited: bool, rng: &mut impl Rng) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let step = self
            .first
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(Duration::from_millis(1));
        let half = step / 2;
        let jitter = Duration::from_secs_f64(half.as_secs_f64() * rng.random::<f64>());
        let wait = half + jitter;
        if rate_limited {
            wait.max(self.rate_limited)
        } else {
            wait
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` is due for
/// renewal by its dates alone: when a third of its lifetime is left (30
/// days of a 90-day certificate, 2 of a 6-day one).
pub fn due_by_lifetime(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_after.checked_sub(lifetime / 3).unwrap_or(not_before)
}

/// When to renew inside the window a CA suggested through ARI (RFC 9773
/// 4.2): a uniformly random moment in it, or `now` if it has begun.
pub fn due_in_window(
    start: SystemTime,
    end: SystemTime,
    now: SystemTime,
    rng: &mut impl Rng,
) -> SystemTime {
    if start <= now {
        return now;
    }
    let width = end.duration_since(start).unwrap_or(Duration::ZERO);
    let offset = Duration::from_secs_f64(width.as_secs_f64() * rng.random::<f64>());
    start + offset
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng as ChaCha8Rng;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_third_of_the_lifetime_left() {
        let start = SystemTime::UNIX_EPOCH + DAY * 20_000;
        assert_eq!(due_by_lifetime(start, start + DAY * 90), start + DAY * 60);
        assert_eq!(due_by_lifetime(start, start + DAY * 6), start + DAY * 4);
        // Dates out of order renew at once rather than never.
        assert_eq!(due_by_lifetime(start + DAY, start), start);
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let policy = RetryPolicy::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut previous_floor = Duration::ZERO;
        for failures in 1..=12 {
            let step = (policy.first * (1 << (failures - 1))).min(policy.max);
            let waits: Vec<_> = (0..50)
                .map(|_| policy.delay(failures, false, &mut rng))
                .collect();
            assert!(waits.iter().all(|w| *w >= step / 2 && *w <= step));
            // Jitter: not all the same.
            assert!(waits.iter().any(|w| *w != waits[0]));
            assert!(step / 2 >= previous_floor);
            previous_floor = step / 2;
        }
        assert!(policy.delay(u32::MAX, false, &mut rng) <= policy.max);
    }

    #[test]
    fn rate_limits_set_a_floor() {
        let policy = RetryPolicy::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(policy.delay(1, true, &mut rng) >= policy.rate_limited);
    }

    #[test]
    fn a_window_in_the_future_is_sampled_and_a_past_one_is_now() {
        let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let at = due_in_window(now + DAY, now + DAY * 2, now, &mut rng);
            assert!(at >= now + DAY && at <= now + DAY * 2);
        }
        assert_eq!(due_in_window(now - DAY, now + DAY, now, &mut rng), now);
    }
}
