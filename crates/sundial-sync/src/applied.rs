//! What the clock actions issued so far add up to, as the Linux kernel
//! applies them: steps at once, a single-shot slew at 500 ppm (a new one
//! replacing what is left of the old), a frequency correction all the time.
//!
//! An observe-only daemon leaves the real clock alone, but the synchronizer
//! assumes its actions took effect. Feeding it each measured offset minus
//! what the actions would have corrected by then keeps its model true: it
//! then disciplines a virtual clock that runs beside the real one, and what
//! it reports (offset, frequency) is what it would have done to the real
//! one.

use crate::ClockAction;
use crate::consts::{MAX_FREQUENCY_PPM, MAX_SLEW, SLEW_RATE};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppliedCorrections {
    /// The frequency correction the real clock has (and keeps).
    base_ppm: f64,
    /// The one the synchronizer last set.
    correction_ppm: f64,
    pending_slew: f64,
    /// Total correction up to `at`, seconds.
    total: f64,
    at: Option<f64>,
}

impl AppliedCorrections {
    /// Nothing applied yet; `base_ppm` is the frequency correction the real
    /// clock already has (what `Synchronizer::set_initial_frequency` got).
    pub fn new(base_ppm: f64) -> Self {
        let base_ppm = if base_ppm.is_finite() { base_ppm } else { 0.0 };
        Self {
            base_ppm,
            correction_ppm: base_ppm,
            pending_slew: 0.0,
            total: 0.0,
            at: None,
        }
    }

    /// The total correction at `t` (seconds on the synchronizer's timeline;
    /// never earlier than the last call).
    pub fn at(&mut self, t: f64) -> f64 {
        let Some(last) = self.at else {
            self.at = Some(t);
            return self.total;
        };
        let dt = t - last;
        if dt.is_finite() && dt > 0.0 {
            let slewed = (SLEW_RATE * dt)
                .min(self.pending_slew.abs())
                .copysign(self.pending_slew);
            self.pending_slew -= slewed;
            self.total += (self.correction_ppm - self.base_ppm) * 1e-6 * dt + slewed;
            self.at = Some(t);
        }
        self.total
    }

    /// The total correction at `t` with the pending slew counted in full:
    /// how far an observe-only daemon's virtual clock is from the real one
    /// (virtual minus real, seconds) once it has taken every correction
    /// issued so far.
    pub fn issued(&mut self, t: f64) -> f64 {
        self.at(t) + self.pending_slew
    }

    /// Takes `action`, issued at `t`, into account.
    pub fn apply(&mut self, action: &ClockAction, t: f64) {
        let _ = self.at(t);
        match *action {
            ClockAction::Step { offset } if offset.is_finite() => self.total += offset,
            ClockAction::Slew { offset } if offset.is_finite() => {
                self.pending_slew = offset.clamp(-MAX_SLEW, MAX_SLEW);
            }
            ClockAction::SetFrequency { ppm } if ppm.is_finite() => {
                self.correction_ppm = ppm.clamp(-MAX_FREQUENCY_PPM, MAX_FREQUENCY_PPM);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_slews_and_frequency_add_up() {
        let mut a = AppliedCorrections::new(10.0);
        assert_eq!(a.at(0.0), 0.0);
        a.apply(&ClockAction::Step { offset: 0.25 }, 0.0);
        a.apply(&ClockAction::Slew { offset: -0.001 }, 0.0);
        // 1 ms at 500 ppm takes 2 s.
        assert!((a.at(1.0) - (0.25 - 0.0005)).abs() < 1e-12);
        assert!((a.at(10.0) - (0.25 - 0.001)).abs() < 1e-12);
        // Base frequency is already the real clock's: only changes count.
        a.apply(&ClockAction::SetFrequency { ppm: 12.0 }, 10.0);
        assert!((a.at(20.0) - (0.249 + 2e-6 * 10.0)).abs() < 1e-12);
        // Time going backwards changes nothing.
        assert!((a.at(15.0) - (0.249 + 2e-5)).abs() < 1e-12);
    }
}
