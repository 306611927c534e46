//! Turning a source's [`Measurement`] into a filter sample, or refusing it.
//!
//! Everything that comes from the network is checked here once, so the
//! filter, selection and discipline only ever see finite, bounded numbers.

use crate::consts::{LOCAL_PRECISION, MAX_SANE_SECONDS, MAXDISP, PHI, log2_seconds};
use crate::kind::SourceKind;
use crate::{Leap, Measurement};

/// One accepted exchange, in the synchronizer's frame (see `slew.rs`): its
/// offset is what the clock error will be once every correction issued so
/// far has taken effect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) time: f64,
    pub(crate) offset: f64,
    pub(crate) delay: f64,
    /// epsilon_0 of RFC 5905 section 8: the precisions of both ends plus
    /// the frequency tolerance over the round trip.
    pub(crate) dispersion: f64,
}

/// What the last packet of a source said about the source itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SourceInfo {
    pub(crate) stratum: u8,
    pub(crate) leap: Leap,
    pub(crate) root_delay: f64,
    pub(crate) root_dispersion: f64,
}

/// Why a measurement was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// A number that is NaN, infinite or absurdly large.
    NotFinite,
    /// Negative beyond timing noise, or longer than any usable path.
    AbsurdDelay,
    /// Root delay or dispersion negative or beyond `MAXDISP`.
    AbsurdRoot,
    /// The source says it is not synchronized (leap 3, or a network
    /// source at stratum 0 or 16+).
    SourceUnsynchronized,
}

/// A round trip can come out slightly negative when the clock is adjusted
/// mid-exchange; up to this much is timing noise and counts as zero.
const NEGATIVE_DELAY_TOLERANCE: f64 = 1e-3;

/// Checks `m` from a source of `kind` and builds its sample; `offset` is
/// the measured offset already moved into the synchronizer's frame.
///
/// A reference clock is stratum 0 whatever the measurement says, has no
/// round trip, and its dispersion is its configured precision; only its
/// leap indicator can say it is not synchronized (gpsd without a fix).
pub(crate) fn accept(
    m: &Measurement,
    offset: f64,
    kind: SourceKind,
) -> Result<(Sample, SourceInfo), Rejection> {
    let sane = |x: f64| x.is_finite() && x.abs() <= MAX_SANE_SECONDS;
    if !(sane(m.time) && sane(m.offset) && sane(offset) && m.delay.is_finite()) {
        return Err(Rejection::NotFinite);
    }
    if !(-NEGATIVE_DELAY_TOLERANCE..=MAXDISP).contains(&m.delay) {
        return Err(Rejection::AbsurdDelay);
    }
    let root_ok = |x: f64| (0.0..=MAXDISP).contains(&x);
    if !(root_ok(m.root_delay) && root_ok(m.root_dispersion)) {
        return Err(Rejection::AbsurdRoot);
    }
    let refclock = kind.precision();
    let unsynchronized = match refclock {
        Some(_) => m.leap == Leap::Unsynchronized,
        None => m.leap == Leap::Unsynchronized || m.stratum == 0 || m.stratum >= 16,
    };
    if unsynchronized {
        return Err(Rejection::SourceUnsynchronized);
    }
    let local = log2_seconds(LOCAL_PRECISION);
    let (delay, stratum, dispersion) = match refclock {
        Some(precision) => (0.0, 0, precision + local),
        None => {
            // A precision above 2^0 s is nonsense; below 2^-32 it is below
            // the resolution of an NTP timestamp.
            let precision = m.precision.clamp(-32, 0);
            let delay = m.delay.max(0.0);
            (
                delay,
                m.stratum,
                log2_seconds(precision) + local + PHI * delay,
            )
        }
    };
    let sample = Sample {
        time: m.time,
        offset,
        delay,
        dispersion,
    };
    let info = SourceInfo {
        stratum,
        leap: m.leap,
        root_delay: m.root_delay,
        root_dispersion: m.root_dispersion,
    };
    Ok((sample, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Measurement {
        Measurement {
            time: 10.0,
            offset: 0.001,
            delay: 0.02,
            stratum: 2,
            leap: Leap::None,
            root_delay: 0.01,
            root_dispersion: 0.01,
            reference_id: [1, 2, 3, 4],
            precision: -20,
        }
    }

    #[test]
    fn accepts_a_normal_measurement() {
        let (s, info) = accept(&good(), 0.001, SourceKind::Network).unwrap();
        assert_eq!(s.delay, 0.02);
        assert_eq!(info.stratum, 2);
    }

    #[test]
    fn refuses_what_cannot_be_used() {
        let cases = [
            (
                Measurement {
                    delay: f64::NAN,
                    ..good()
                },
                Rejection::NotFinite,
            ),
            (
                Measurement {
                    offset: f64::INFINITY,
                    ..good()
                },
                Rejection::NotFinite,
            ),
            (
                Measurement {
                    delay: -0.5,
                    ..good()
                },
                Rejection::AbsurdDelay,
            ),
            (
                Measurement {
                    delay: 100.0,
                    ..good()
                },
                Rejection::AbsurdDelay,
            ),
            (
                Measurement {
                    root_delay: -1.0,
                    ..good()
                },
                Rejection::AbsurdRoot,
            ),
            (
                Measurement {
                    leap: Leap::Unsynchronized,
                    ..good()
                },
                Rejection::SourceUnsynchronized,
            ),
            (
                Measurement {
                    stratum: 0,
                    ..good()
                },
                Rejection::SourceUnsynchronized,
            ),
            (
                Measurement {
                    stratum: 16,
                    ..good()
                },
                Rejection::SourceUnsynchronized,
            ),
        ];
        for (m, why) in cases {
            assert_eq!(
                accept(&m, m.offset, SourceKind::Network).err(),
                Some(why),
                "{m:?}"
            );
        }
    }

    #[test]
    fn small_negative_delay_is_noise() {
        let (s, _) = accept(
            &Measurement {
                delay: -1e-4,
                ..good()
            },
            0.0,
            SourceKind::Network,
        )
        .unwrap();
        assert_eq!(s.delay, 0.0);
    }

    #[test]
    fn a_reference_clock_is_stratum_0_with_its_precision() {
        let m = Measurement {
            stratum: 0,
            delay: 0.0,
            ..good()
        };
        let kind = SourceKind::Refclock { precision: 1e-3 };
        let (s, info) = accept(&m, 0.001, kind).unwrap();
        assert_eq!(info.stratum, 0);
        assert_eq!((s.delay, s.offset), (0.0, 0.001));
        assert!((s.dispersion - 1e-3).abs() < 2e-6, "{}", s.dispersion);
        // Whatever stratum the daemon wrote, and only leap 3 refuses it.
        assert!(accept(&Measurement { stratum: 16, ..m }, 0.0, kind).is_ok());
        assert_eq!(
            accept(
                &Measurement {
                    leap: Leap::Unsynchronized,
                    ..m
                },
                0.0,
                kind
            )
            .err(),
            Some(Rejection::SourceUnsynchronized)
        );
        // A network source at stratum 0 is a kiss, not a sample.
        assert!(accept(&m, 0.0, SourceKind::Network).is_err());
    }
}
