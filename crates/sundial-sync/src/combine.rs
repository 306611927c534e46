//! One offset from the truechimers (RFC 5905 section 11.2.3), and what we
//! announce downstream: the system peer's stratum, root delay and root
//! dispersion (section 11.3), and the leap second the majority announces.

use crate::Leap;
use crate::consts::MAXDIST;

/// A truechimer, with everything the combination needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Survivor {
    pub(crate) index: usize,
    pub(crate) time: f64,
    pub(crate) offset: f64,
    pub(crate) delay: f64,
    pub(crate) dispersion: f64,
    pub(crate) jitter: f64,
    pub(crate) root_distance: f64,
    pub(crate) stratum: u8,
    pub(crate) leap: Leap,
    pub(crate) root_delay: f64,
    pub(crate) root_dispersion: f64,
    /// A pulse source: it knows nothing of leap seconds.
    pub(crate) pulse: bool,
}

/// The combined estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Combined {
    /// The survivors' sample times, weighted like their offsets: the
    /// instant the combined offset describes.
    pub(crate) time: f64,
    pub(crate) offset: f64,
    /// RMS of the survivors' offsets around the system peer's, combined
    /// with the peer's own jitter (section 11.2.3's system jitter).
    pub(crate) jitter: f64,
    /// `index` of the system peer.
    pub(crate) peer: usize,
    pub(crate) stratum: u8,
    pub(crate) root_delay: f64,
    pub(crate) root_dispersion: f64,
    pub(crate) leap: Leap,
}

/// Combines the survivors; `None` only if there are none.
///
/// Weights are 1/root distance, as in RFC 5905: a source that can be
/// further off counts less. The system peer is the survivor with the
/// lowest stratum-weighted root distance (the RFC's "metric"), so a
/// stratum 1 server beats a stratum 2 one of similar quality.
pub(crate) fn combine(survivors: &[Survivor]) -> Option<Combined> {
    let metric = |s: &Survivor| f64::from(s.stratum) * MAXDIST + s.root_distance;
    let peer = survivors
        .iter()
        .min_by(|a, b| metric(a).total_cmp(&metric(b)))?;

    let mut total = 0.0;
    let (mut offset, mut time, mut spread) = (0.0, 0.0, 0.0);
    for s in survivors {
        // Root distance is at least MINDISP / 2 > 0 by construction.
        let w = 1.0 / s.root_distance;
        total += w;
        offset += w * s.offset;
        // Relative to the peer's time, so large timestamps keep precision.
        time += w * (s.time - peer.time);
        spread += w * (s.offset - peer.offset).powi(2);
    }
    let offset = offset / total;
    let time = peer.time + time / total;
    let system_jitter = (spread / total).sqrt();
    let jitter = (peer.jitter.powi(2) + system_jitter.powi(2)).sqrt();

    Some(Combined {
        time,
        offset,
        jitter,
        peer: peer.index,
        stratum: peer.stratum.saturating_add(1).min(16),
        root_delay: peer.root_delay + peer.delay,
        // Section 11.3: the peer's root dispersion, its own dispersion, the
        // jitter and how far we were off.
        root_dispersion: peer.root_dispersion + peer.dispersion + jitter + offset.abs(),
        leap: majority_leap(survivors),
    })
}

/// The leap second more than half of the survivors that can know announce,
/// if any (a pulse cannot).
fn majority_leap(survivors: &[Survivor]) -> Leap {
    let knowing = || survivors.iter().filter(|s| !s.pulse);
    let count = |leap| knowing().filter(|s| s.leap == leap).count();
    for leap in [Leap::InsertSecond, Leap::DeleteSecond] {
        if 2 * count(leap) > knowing().count() {
            return leap;
        }
    }
    Leap::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survivor(index: usize, offset: f64, root_distance: f64, stratum: u8) -> Survivor {
        Survivor {
            index,
            time: 100.0,
            offset,
            delay: 0.02,
            dispersion: 0.001,
            jitter: 0.0,
            root_distance,
            stratum,
            leap: Leap::None,
            root_delay: 0.01,
            root_dispersion: 0.002,
            pulse: false,
        }
    }

    #[test]
    fn weights_by_root_distance() {
        let c = combine(&[survivor(0, 0.0, 0.01, 1), survivor(1, 0.003, 0.02, 1)]).unwrap();
        assert!((c.offset - 0.001).abs() < 1e-12);
        assert_eq!(c.peer, 0);
        assert_eq!(c.stratum, 2);
        assert!((c.root_delay - 0.03).abs() < 1e-12);
    }

    #[test]
    fn lower_stratum_is_peer() {
        let c = combine(&[survivor(0, 0.0, 0.01, 3), survivor(1, 0.0, 0.05, 1)]).unwrap();
        assert_eq!(c.peer, 1);
    }

    #[test]
    fn leap_needs_a_majority() {
        let mut s = [
            survivor(0, 0.0, 0.01, 1),
            survivor(1, 0.0, 0.01, 1),
            survivor(2, 0.0, 0.01, 1),
        ];
        s[0].leap = Leap::InsertSecond;
        assert_eq!(combine(&s).unwrap().leap, Leap::None);
        s[1].leap = Leap::InsertSecond;
        assert_eq!(combine(&s).unwrap().leap, Leap::InsertSecond);
        assert_eq!(combine(&[]), None);
    }

    #[test]
    fn a_pulse_has_no_say_in_the_leap() {
        let mut s = [survivor(0, 0.0, 0.01, 0), survivor(1, 0.0, 1e-6, 0)];
        s[0].leap = Leap::InsertSecond;
        s[1].pulse = true;
        let c = combine(&s).unwrap();
        assert_eq!(c.leap, Leap::InsertSecond);
        // ... but it is the system peer, and we are stratum 1.
        assert_eq!((c.peer, c.stratum), (1, 1));
    }
}
