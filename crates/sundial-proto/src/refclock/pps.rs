//! The edges of a kernel PPS device (RFC 2783, through Linux's PPS API) as
//! offsets.
//!
//! The kernel timestamps each assert edge with the system clock and counts
//! them. An edge marks the start of a period (a second, for a 1 PPS GPS
//! output) of true time, so the timestamp says how far our clock is off
//! within the period, and nothing about which period it is: that is for
//! another source to say (the synchronizer numbers each pulse). This
//! module turns successive readings into pulses: a reading that repeats
//! the last edge is dropped, skipped edges are counted.

use super::UnixTime;

/// One assert edge as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PpsEdge {
    /// The kernel's count of assert edges (0 before the first one).
    pub sequence: u32,
    /// The system clock at the edge.
    pub time: UnixTime,
}

/// A new edge, as an offset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pulse {
    /// When it came, by our clock.
    pub taken: UnixTime,
    /// True time minus our clock at the edge, modulo the period: in
    /// [-period/2, period/2), seconds.
    pub offset: f64,
    /// Edges the kernel counted since the previous pulse that we never
    /// saw (0 when none were missed).
    pub missed: u32,
}

/// The shortest and longest period taken, seconds: a pulse train faster
/// than a kilohertz is no PPS, and a period beyond an hour says nothing a
/// whole-time source would not.
pub const MIN_PERIOD: f64 = 1e-3;
pub const MAX_PERIOD: f64 = 3600.0;

/// Follows one device's edges.
#[derive(Clone, Debug)]
pub struct PulseTracker {
    period_ns: i128,
    last: Option<u32>,
}

impl PulseTracker {
    /// Pulses every `period` seconds, aligned with the Unix epoch (a 1 PPS
    /// signal marks each second, a 10 PPS one each tenth); the period is
    /// brought within [`MIN_PERIOD`] and [`MAX_PERIOD`].
    #[must_use]
    pub fn new(period: f64) -> Self {
        let period = if period.is_finite() { period } else { 1.0 };
        let period = period.clamp(MIN_PERIOD, MAX_PERIOD);
        // Within 1e6..=3.6e12 ns: exact in an i128.
        #[allow(clippy::cast_possible_truncation)]
        let period_ns = (period * 1e9).round() as i128;
        Self {
            period_ns,
            last: None,
        }
    }

    /// The period in force, seconds.
    #[must_use]
    pub fn period(&self) -> f64 {
        self.period_ns as f64 * 1e-9
    }

    /// The pulse a reading of the device shows, or `None` when it shows no
    /// new edge (none yet, or the one already seen).
    pub fn edge(&mut self, edge: PpsEdge) -> Option<Pulse> {
        if edge.sequence == 0 {
            return None;
        }
        let missed = match self.last {
            None => 0,
            Some(last) => match edge.sequence.wrapping_sub(last) {
                0 => return None,
                // Counting backwards: the device was reset; nothing to say.
                gap if gap > u32::MAX / 2 => 0,
                gap => gap - 1,
            },
        };
        self.last = Some(edge.sequence);
        Some(Pulse {
            taken: edge.time,
            offset: self.offset_at(edge.time),
            missed,
        })
    }

    /// True time minus a clock that read `time` at an edge, modulo the
    /// period, computed in integer nanoseconds: an f64 of Unix time has
    /// only a few hundred nanoseconds of resolution.
    #[must_use]
    pub fn offset_at(&self, time: UnixTime) -> f64 {
        let ns = i128::from(time.secs) * 1_000_000_000 + i128::from(time.nanos);
        let late = ns.rem_euclid(self.period_ns);
        // The edge was at the last period boundary if we read it less than
        // half a period after it, else at the next one.
        let offset = if 2 * late <= self.period_ns {
            -late
        } else {
            self.period_ns - late
        };
        offset as f64 * 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(sequence: u32, secs: i64, nanos: u32) -> PpsEdge {
        PpsEdge {
            sequence,
            time: UnixTime { secs, nanos },
        }
    }

    #[test]
    fn offsets_within_the_second() {
        let t = PulseTracker::new(1.0);
        let at = |secs, nanos| t.offset_at(UnixTime { secs, nanos });
        // Read 250 ns after the second: we are 250 ns fast.
        assert!((at(1_700_000_000, 250) + 250e-9).abs() < 1e-15);
        // Read 3 µs before it: 3 µs slow.
        assert!((at(1_699_999_999, 999_997_000) - 3e-6).abs() < 1e-15);
        assert_eq!(at(1_700_000_000, 500_000_000), -0.5);
        assert!((at(1_700_000_000, 500_000_001) - 0.499_999_999).abs() < 1e-12);
        // Before the epoch too.
        assert!((at(-1, 999_999_000) - 1e-6).abs() < 1e-15);
    }

    #[test]
    fn other_periods_align_with_the_epoch() {
        let ten = PulseTracker::new(0.1);
        let off = ten.offset_at(UnixTime {
            secs: 1_700_000_000,
            nanos: 300_000_020,
        });
        assert!((off + 20e-9).abs() < 1e-15);
        let two = PulseTracker::new(2.0);
        let off = two.offset_at(UnixTime {
            secs: 1_700_000_001,
            nanos: 0,
        });
        assert_eq!(off, -1.0);
        assert_eq!(PulseTracker::new(f64::NAN).period(), 1.0);
        assert_eq!(PulseTracker::new(1e-9).period(), MIN_PERIOD);
    }

    #[test]
    fn repeats_are_dropped_and_gaps_counted() {
        let mut t = PulseTracker::new(1.0);
        assert_eq!(t.edge(edge(0, 0, 0)), None, "no edge yet");
        assert_eq!(t.edge(edge(7, 100, 10)).map(|p| p.missed), Some(0));
        assert_eq!(t.edge(edge(7, 100, 10)), None);
        let p = t.edge(edge(10, 103, 20)).unwrap();
        assert_eq!(p.missed, 2);
        assert!((p.offset + 20e-9).abs() < 1e-15);
        assert_eq!(
            p.taken,
            UnixTime {
                secs: 103,
                nanos: 20
            }
        );
        // The count wraps around...
        let mut t = PulseTracker::new(1.0);
        let _ = t.edge(edge(u32::MAX, 1, 0));
        assert_eq!(t.edge(edge(1, 3, 0)).map(|p| p.missed), Some(1));
        // ... or starts over after a reset.
        assert_eq!(t.edge(edge(1, 3, 0)), None);
        let mut t = PulseTracker::new(1.0);
        let _ = t.edge(edge(1000, 1, 0));
        assert_eq!(t.edge(edge(2, 2, 0)).map(|p| p.missed), Some(0));
    }
}
