//! The slew the kernel is still working off, and the frame it implies.
//!
//! The synchronizer keeps every stored offset (filter samples and the
//! discipline's history) in one frame: the clock error there *would* be if
//! every correction issued so far had taken full effect at once and the
//! current frequency correction had always been in force. A measurement
//! enters the frame by subtracting the part of the running slew the kernel
//! has not applied yet; a new correction moves all stored offsets by what
//! it changes. chrony keeps its samples consistent across clock changes
//! the same way; it is what lets the frequency be estimated from offsets
//! taken while the clock was being steered.

use crate::consts::{MAX_SLEW, SLEW_RATE};

/// A single-shot slew: `amount` seconds, issued at `start`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PendingSlew {
    start: f64,
    amount: f64,
}

impl PendingSlew {
    /// What is left of the slew at time `t`: the kernel works it off at
    /// `SLEW_RATE`. A time before the slew began counts as its start, which
    /// only matters for a reply that crossed the slew in flight.
    pub(crate) fn remaining(&self, t: f64) -> f64 {
        let done = SLEW_RATE * (t - self.start).max(0.0);
        let left = (self.amount.abs() - done).max(0.0);
        left.copysign(self.amount)
    }

    /// Issues a new slew at `now` that corrects `offset` (an offset in the
    /// frame). The kernel drops what was left of the old slew, so the new
    /// one must also redo that part. Returns the amount to hand to the
    /// kernel and how far the frame moved (less than `offset` only if the
    /// kernel's limit clipped it).
    pub(crate) fn replace(&mut self, offset: f64, now: f64) -> (f64, f64) {
        let left = self.remaining(now);
        let amount = (offset + left).clamp(-MAX_SLEW, MAX_SLEW);
        *self = Self { start: now, amount };
        (amount, amount - left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_off_at_500_ppm() {
        let mut s = PendingSlew::default();
        let (amount, moved) = s.replace(-0.01, 100.0);
        assert_eq!((amount, moved), (-0.01, -0.01));
        assert!((s.remaining(110.0) + 0.005).abs() < 1e-15);
        assert_eq!(s.remaining(200.0), 0.0);
        assert_eq!(s.remaining(50.0), -0.01);
    }

    #[test]
    fn replacing_redoes_the_rest() {
        let mut s = PendingSlew::default();
        let _ = s.replace(0.01, 0.0);
        // Half is left after 10 s; correcting 2 ms more means 7 ms.
        let (amount, moved) = s.replace(0.002, 10.0);
        assert!((amount - 0.007).abs() < 1e-15);
        assert!((moved - 0.002).abs() < 1e-15);
    }
}
