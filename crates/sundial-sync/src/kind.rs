//! What kind of source an id stands for, which decides how its
//! measurements are read.
//!
//! A network source's samples are judged by their round trips, and how
//! uncertain they are is learned (`noise.rs`). A reference clock has no
//! round trip: it is stratum 0, and its samples are as uncertain as its
//! configured precision says (ntpd-rs's `precision`, one standard
//! deviation). A pulse source (PPS) knows its offset only modulo its
//! period: which period it is comes from the other sources (`pulse.rs`).

use crate::consts::MAXDISP;

/// The precision assumed when the configured one is no positive number.
const DEFAULT_PRECISION: f64 = 1e-3;

/// The finest precision taken: a nanosecond, below what any system clock
/// reads to.
const MIN_PRECISION: f64 = 1e-9;

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum SourceKind {
    /// An NTP server.
    #[default]
    Network,
    /// A reference clock that knows the whole time (gpsd's SOCK samples).
    Refclock {
        /// One standard deviation of a sample's error, seconds.
        precision: f64,
    },
    /// A pulse every `period` seconds (a kernel PPS device): its offsets
    /// are known modulo the period only.
    Pulse { precision: f64, period: f64 },
}

impl SourceKind {
    /// The kind with its numbers brought into range.
    pub(crate) fn sanitized(self) -> Self {
        let precision = |p: f64| {
            if p.is_finite() && p > 0.0 {
                p.clamp(MIN_PRECISION, MAXDISP)
            } else {
                DEFAULT_PRECISION
            }
        };
        match self {
            Self::Network => Self::Network,
            Self::Refclock { precision: p } => Self::Refclock {
                precision: precision(p),
            },
            Self::Pulse {
                precision: p,
                period,
            } => Self::Pulse {
                precision: precision(p),
                period: if period.is_finite() && period > 0.0 {
                    period
                } else {
                    1.0
                },
            },
        }
    }

    /// A configured precision, for reference clocks.
    pub(crate) fn precision(self) -> Option<f64> {
        match self {
            Self::Network => None,
            Self::Refclock { precision } | Self::Pulse { precision, .. } => Some(precision),
        }
    }

    /// The period, for pulse sources.
    pub(crate) fn period(self) -> Option<f64> {
        match self {
            Self::Pulse { period, .. } => Some(period),
            _ => None,
        }
    }

    pub(crate) fn is_refclock(self) -> bool {
        self != Self::Network
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_brought_into_range() {
        assert_eq!(
            SourceKind::Pulse {
                precision: f64::NAN,
                period: -1.0
            }
            .sanitized(),
            SourceKind::Pulse {
                precision: DEFAULT_PRECISION,
                period: 1.0
            }
        );
        assert_eq!(
            SourceKind::Refclock { precision: 1e-15 }
                .sanitized()
                .precision(),
            Some(MIN_PRECISION)
        );
        assert_eq!(SourceKind::Network.precision(), None);
        assert!(!SourceKind::Network.is_refclock());
    }
}
