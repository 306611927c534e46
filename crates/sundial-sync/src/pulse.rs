//! Numbering pulses: which period a PPS edge belongs to.
//!
//! An edge says how far our clock is off modulo the period (a second, for
//! 1 PPS). The sources that know the whole time (NTP servers, a GPS
//! receiver's serial time) say which period: the pulse's offset is taken
//! as the value nearest to what they agree on. That is only unambiguous
//! when their whole claim (offset ± root distance) lies within half a
//! period of the numbered edge; otherwise the pulse is not used. So a PPS
//! never selects itself: without sources that agree on the whole time it
//! has no time at all.

/// What the sources that know the whole time agree on: the combined
/// offset of their truechimers, and the root distance of their system
/// peer, which bounds how far that can be off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct WholeTime {
    pub(crate) offset: f64,
    pub(crate) distance: f64,
}

impl WholeTime {
    /// Whether a pulse source whose offset is `numbered` agrees: the whole
    /// claim lies within half a period of it, so no other period could be
    /// meant.
    pub(crate) fn agrees(&self, numbered: f64, period: f64) -> bool {
        (numbered - self.offset).abs() + self.distance < period / 2.0
    }

    /// The offset of a pulse that measured `offset` modulo `period`: the
    /// value nearest to the whole time, if it agrees.
    pub(crate) fn number(&self, offset: f64, period: f64) -> Option<f64> {
        let periods = ((self.offset - offset) / period).round();
        let numbered = offset + periods * period;
        (numbered.is_finite() && self.agrees(numbered, period)).then_some(numbered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_period_is_taken() {
        let whole = WholeTime {
            offset: 2.1,
            distance: 0.05,
        };
        // The edge says -3 µs modulo a second; the sources say 2.1 s.
        let n = whole.number(-3e-6, 1.0).unwrap();
        assert!((n - (2.0 - 3e-6)).abs() < 1e-12, "{n}");
        // A 100 ms serial delay in the whole-time source is no ambiguity.
        assert!(
            WholeTime {
                offset: 0.1,
                distance: 0.01
            }
            .number(0.0, 1.0)
            .is_some_and(|n| n.abs() < 1e-12)
        );
    }

    #[test]
    fn an_uncertain_whole_time_numbers_nothing() {
        // Half a second off the edge: either second could be meant.
        let whole = WholeTime {
            offset: 0.45,
            distance: 0.1,
        };
        assert_eq!(whole.number(0.0, 1.0), None);
        // Too uncertain for a 10 PPS signal.
        let whole = WholeTime {
            offset: 0.0,
            distance: 0.06,
        };
        assert_eq!(whole.number(0.001, 0.1), None);
        assert!(whole.number(0.001, 1.0).is_some());
        assert_eq!(whole.number(f64::NAN, 1.0), None);
    }
}
