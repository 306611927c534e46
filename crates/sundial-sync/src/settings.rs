//! The `[synchronization]` knobs, with ntpd-rs's defaults.

/// How far the clock may be stepped in each direction, in seconds;
/// `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct StepLimit {
    pub forward: Option<f64>,
    pub backward: Option<f64>,
}

impl StepLimit {
    /// No limit either way.
    pub const UNLIMITED: Self = Self {
        forward: None,
        backward: None,
    };

    /// The same limit both ways.
    pub const fn both(seconds: f64) -> Self {
        Self {
            forward: Some(seconds),
            backward: Some(seconds),
        }
    }

    /// Whether a step of `offset` seconds (positive: forward) is within the
    /// limit. A limit that is NaN allows nothing: a broken configuration
    /// must not turn into "unlimited".
    pub fn allows(&self, offset: f64) -> bool {
        let (limit, magnitude) = if offset >= 0.0 {
            (self.forward, offset)
        } else {
            (self.backward, -offset)
        };
        match limit {
            None => offset.is_finite(),
            Some(limit) => magnitude <= limit,
        }
    }
}

/// Settings of the synchronizer. `Default` gives ntpd-rs's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSettings {
    /// Truechimers needed before the clock is touched (ntpd-rs: 3).
    pub minimum_agreeing_sources: usize,
    /// Limit on any step after the first (ntpd-rs: 1000 s both ways).
    pub single_step_panic_threshold: StepLimit,
    /// Limit on the first step after start-up (ntpd-rs: forward
    /// unlimited, backward one day), since a machine without a battery
    /// backed clock may boot decades in the past.
    pub startup_step_panic_threshold: StepLimit,
    /// Limit on the sum of the magnitudes of all steps after the start-up
    /// one; `None` is unlimited (ntpd-rs's default).
    pub accumulated_step_panic_threshold: Option<f64>,
    /// Offsets beyond this are stepped, below it slewed. 0.128 s is the
    /// RFC 5905 `STEPT` and ntpd's default: slewing 128 ms at the kernel's
    /// 500 ppm takes about four minutes, the longest a slew may reasonably
    /// take; anything larger is better fixed at once.
    pub step_threshold: f64,
    /// Poll interval bounds and start value, log2 seconds (ntpd-rs: 4,
    /// 10, 4).
    pub poll_min: i8,
    pub poll_max: i8,
    pub initial_poll: i8,
    /// The stratum we announce while not synchronized (16: unsynchronized).
    pub local_stratum: u8,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            minimum_agreeing_sources: 3,
            single_step_panic_threshold: StepLimit::both(1000.0),
            startup_step_panic_threshold: StepLimit {
                forward: None,
                backward: Some(86400.0),
            },
            accumulated_step_panic_threshold: None,
            step_threshold: 0.128,
            poll_min: 4,
            poll_max: 10,
            initial_poll: 4,
            local_stratum: 16,
        }
    }
}

impl SyncSettings {
    /// The settings with out-of-range values brought into range, so the
    /// algorithm never has to second-guess them: polls within -6..=17 (the
    /// range the configuration accepts: a LAN or benchmark source may be
    /// polled every second, as chrony's `minpoll 0`) with min <= initial
    /// <= max, a finite non-negative step threshold, at
    /// least one agreeing source.
    pub(crate) fn sanitized(mut self) -> Self {
        self.minimum_agreeing_sources = self.minimum_agreeing_sources.max(1);
        self.poll_min = self.poll_min.clamp(-6, 17);
        self.poll_max = self.poll_max.clamp(self.poll_min, 17);
        self.initial_poll = self.initial_poll.clamp(self.poll_min, self.poll_max);
        if !(self.step_threshold.is_finite() && self.step_threshold >= 0.0) {
            self.step_threshold = Self::default().step_threshold;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_by_direction() {
        let limit = SyncSettings::default().startup_step_panic_threshold;
        assert!(limit.allows(1e9));
        assert!(limit.allows(-86400.0));
        assert!(!limit.allows(-86401.0));
        assert!(!limit.allows(f64::NAN));
        assert!(!StepLimit::both(f64::NAN).allows(0.5));
    }

    #[test]
    fn sanitized_orders_polls() {
        let s = SyncSettings {
            poll_min: 12,
            poll_max: 5,
            initial_poll: -20,
            step_threshold: f64::NAN,
            minimum_agreeing_sources: 0,
            ..SyncSettings::default()
        }
        .sanitized();
        assert_eq!((s.poll_min, s.poll_max, s.initial_poll), (12, 12, 12));
        assert_eq!(s.step_threshold, 0.128);
        assert_eq!(s.minimum_agreeing_sources, 1);
    }
}
