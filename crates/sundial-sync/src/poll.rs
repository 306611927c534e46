//! The poll interval, chosen from how well the clock model fits, as chrony
//! does rather than RFC 5905's jiggle counter.
//!
//! Polling less often is only safe when the model has enough recent
//! samples to average the network's noise and still predicts new ones. So
//! the interval grows only while the regression holds at least
//! `TARGET_POINTS_PER_SOURCE` samples per trusted source and its offset
//! estimate is already precise (`ERROR_GOAL`); on a path with a
//! millisecond of jitter that takes many samples, and the poll stays short
//! instead of leaving the clock to a handful of noisy ones. A sample far
//! from the prediction (the frequency wandered, or the model is young)
//! shrinks it.

use crate::discipline::FitQuality;

/// Updates in a row that must agree before the poll changes.
const LIMIT: i32 = 8;

/// Samples per trusted source the regression must hold before the poll
/// grows (chrony's `polltarget` is 8 too).
const TARGET_POINTS_PER_SOURCE: usize = 8;

/// The standard error of the fitted offset below which polling less often
/// is worth it, seconds.
const ERROR_GOAL: f64 = 10e-6;

/// A new sample this many standard deviations from the prediction counts
/// against the model.
const SURPRISE_LIMIT: f64 = 4.0;

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

    /// One discipline update with the fit's `quality`, from `sources`
    /// trusted sources.
    pub(crate) fn update(&mut self, quality: FitQuality, sources: usize, min: i8, max: i8) {
        let enough = quality.points >= TARGET_POINTS_PER_SOURCE * sources.max(1);
        let surprised = quality.surprise.is_nan() || quality.surprise > SURPRISE_LIMIT;
        if surprised || quality.points < TARGET_POINTS_PER_SOURCE / 2 * sources.max(1) {
            self.counter = self.counter.min(0) - 2;
            if self.counter <= -LIMIT {
                self.counter = 0;
                self.poll = self.poll.saturating_sub(1);
            }
        } else if enough && quality.error <= ERROR_GOAL {
            self.counter = self.counter.max(0) + 1;
            if self.counter >= LIMIT {
                self.counter = 0;
                self.poll = self.poll.saturating_add(1);
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

    fn quality(points: usize, error: f64, surprise: f64) -> FitQuality {
        FitQuality {
            points,
            span: 1000.0,
            error,
            surprise,
        }
    }

    #[test]
    fn grows_when_precise_and_shrinks_when_surprised() {
        let mut p = PollControl::new(4);
        for _ in 0..200 {
            p.update(quality(100, 1e-6, 1.0), 3, 4, 10);
        }
        assert_eq!(p.poll(), 10);
        for _ in 0..200 {
            p.update(quality(100, 1e-6, 10.0), 3, 4, 10);
        }
        assert_eq!(p.poll(), 4);
    }

    #[test]
    fn holds_while_the_estimate_is_noisy_or_short() {
        let mut p = PollControl::new(4);
        for _ in 0..200 {
            p.update(quality(500, 50e-6, 1.0), 3, 4, 10);
            p.update(quality(20, 1e-6, 1.0), 3, 4, 10);
        }
        assert_eq!(p.poll(), 4);
    }

    #[test]
    fn nan_never_grows() {
        let mut p = PollControl::new(6);
        for _ in 0..10 {
            p.update(quality(100, f64::NAN, f64::NAN), 3, 4, 10);
        }
        assert_eq!(p.poll(), 4);
    }
}
