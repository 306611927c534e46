//! The poll interval: the hysteresis of RFC 5905 section 11.3 (`poll_update`
//! and the jiggle counter of the clock discipline).
//!
//! While the offsets the discipline sees stay within `PGATE` times the
//! measurement jitter the clock model is holding, so polls can be further
//! apart; the counter climbs by the poll exponent per update and the poll
//! grows when it reaches `LIMIT`. A larger offset means the model drifted
//! beyond the noise over one interval: the counter falls twice as fast and
//! the poll shrinks.

const LIMIT: i32 = 30;
const PGATE: f64 = 4.0;

/// The jitter assumed at least, so perfectly quiet simulated sources do
/// not make every sub-microsecond wobble look like a failure.
const MIN_JITTER: f64 = 1e-6;

#[derive(Clone, Debug)]
pub(crate) struct PollControl {
    poll: i8,
    counter: i32,
}

impl PollControl {
    pub(crate) fn new(initial: i8) -> Self {
        Self {
            poll: initial,
            counter: 0,
        }
    }

    pub(crate) fn poll(&self) -> i8 {
        self.poll
    }

    /// One discipline update: `offset` is what the clock model had not
    /// predicted, `jitter` the measurement noise.
    pub(crate) fn update(&mut self, offset: f64, jitter: f64, min: i8, max: i8) {
        let step = i32::from(self.poll);
        if offset.abs() < PGATE * jitter.max(MIN_JITTER) {
            self.counter += step;
            if self.counter >= LIMIT {
                self.counter = 0;
                self.poll = self.poll.saturating_add(1);
            }
        } else {
            self.counter -= 2 * step;
            if self.counter <= -LIMIT {
                self.counter = 0;
                self.poll = self.poll.saturating_sub(1);
            }
        }
        self.poll = self.poll.clamp(min, max);
    }

    /// Back to the start value, after a step threw the model away.
    pub(crate) fn reset(&mut self, initial: i8) {
        *self = Self::new(initial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_when_quiet_and_shrinks_when_not() {
        let mut p = PollControl::new(4);
        for _ in 0..200 {
            p.update(1e-5, 1e-4, 4, 10);
        }
        assert_eq!(p.poll(), 10);
        for _ in 0..200 {
            p.update(1e-2, 1e-4, 4, 10);
        }
        assert_eq!(p.poll(), 4);
    }

    #[test]
    fn nan_offset_never_grows() {
        let mut p = PollControl::new(6);
        for _ in 0..10 {
            p.update(f64::NAN, 1e-4, 4, 10);
        }
        assert_eq!(p.poll(), 4);
    }
}
