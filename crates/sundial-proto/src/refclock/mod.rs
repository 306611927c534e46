//! Reference clocks, sans-IO: the samples gpsd writes to a chrony-style
//! SOCK socket ([`sock`]), and the edges of a kernel PPS device turned into
//! offsets ([`pps`]).
//!
//! The daemon reads the datagram or the edge and the system clock; what a
//! sample says, and whether it is believable, is decided here, so that a
//! fuzzer or a test drives it with bytes and times of its choosing.

pub mod pps;
pub mod sock;

/// A moment on the system clock (CLOCK_REALTIME), in the form the kernel
/// and gpsd write it: seconds since the Unix epoch and a fraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime {
    pub secs: i64,
    /// Below 1 000 000 000.
    pub nanos: u32,
}

impl UnixTime {
    /// `self` minus `earlier`, seconds.
    #[must_use]
    pub fn seconds_since(self, earlier: Self) -> f64 {
        let secs = self.secs.saturating_sub(earlier.secs) as f64;
        let nanos = f64::from(self.nanos) - f64::from(earlier.nanos);
        secs + nanos * 1e-9
    }
}

/// Why a refclock sample was not handed to the synchronizer; the daemon
/// keeps one counter per class and `Rejection as usize` indexes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// A SOCK datagram of neither size `struct sock_sample` has.
    Length,
    /// A SOCK datagram without the magic number.
    Magic,
    /// A SOCK timestamp whose microseconds are out of range.
    Timestamp,
    /// An offset that is not a number, or larger than any clock can be off.
    Offset,
    /// A SOCK pulse sample (the offset within a second only), which gpsd
    /// does not send and sundial does not take (as ntpd-rs).
    Pulse,
    /// A SOCK leap indicator other than 0 to 3.
    Leap,
    /// A sample taken too long ago, or in the future, by our own clock.
    Stale,
}

impl Rejection {
    pub const ALL: [Self; 7] = [
        Self::Length,
        Self::Magic,
        Self::Timestamp,
        Self::Offset,
        Self::Pulse,
        Self::Leap,
        Self::Stale,
    ];

    /// A stable snake_case name, for status output and metric labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Magic => "magic",
            Self::Timestamp => "timestamp",
            Self::Offset => "offset",
            Self::Pulse => "pulse",
            Self::Leap => "leap",
            Self::Stale => "stale",
        }
    }
}

/// How old a sample may be, by our clock, when it reaches us: gpsd sends
/// each one within a second of taking it. Anything older sat in a queue
/// (a stopped daemon, a suspended machine) and says nothing about now.
pub const MAX_SAMPLE_AGE: f64 = 4.0;

/// How far in the future a sample's timestamp may lie: none should, but a
/// step of our clock between the sample and its reading can put it there.
pub const MAX_SAMPLE_FUTURE: f64 = 1.0;

/// The age of a sample taken at `taken` when our clock reads `now`, or
/// [`Rejection::Stale`] when it is too old or from the future.
pub fn sample_age(taken: UnixTime, now: UnixTime) -> Result<f64, Rejection> {
    let age = now.seconds_since(taken);
    if (-MAX_SAMPLE_FUTURE..=MAX_SAMPLE_AGE).contains(&age) {
        Ok(age)
    } else {
        Err(Rejection::Stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> UnixTime {
        UnixTime { secs, nanos }
    }

    #[test]
    fn differences_keep_the_nanoseconds() {
        let a = at(1_700_000_000, 999_999_999);
        let b = at(1_700_000_001, 1);
        assert!((b.seconds_since(a) - 2e-9).abs() < 1e-15);
        assert!((a.seconds_since(b) + 2e-9).abs() < 1e-15);
    }

    #[test]
    fn old_and_future_samples_are_stale() {
        let now = at(1_700_000_100, 0);
        assert_eq!(sample_age(at(1_700_000_099, 500_000_000), now), Ok(0.5));
        assert_eq!(sample_age(at(1_700_000_090, 0), now), Err(Rejection::Stale));
        assert_eq!(sample_age(at(1_700_000_102, 0), now), Err(Rejection::Stale));
        assert_eq!(sample_age(at(i64::MIN, 0), now), Err(Rejection::Stale));
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<&str> = Rejection::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rejection::ALL.len());
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
