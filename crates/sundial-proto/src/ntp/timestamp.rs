//! NTP time values (RFC 5905 section 6): the 64-bit timestamp, signed
//! durations between timestamps, and the 32-bit short format.
//!
//! An `NtpTimestamp` is 32.32 fixed point seconds since 1900 modulo 2^32
//! seconds: it does not carry its era. Differences are therefore computed
//! modulo 2^64 and read as a signed value, which is correct whenever the two
//! timestamps are less than 68 years apart, across an era boundary included
//! (2036-02-07). Converting to and from Unix time takes an era hint.

use std::ops::{Add, Neg, Sub};

/// Seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch).
pub const UNIX_OFFSET_SECS: u64 = 2_208_988_800;

const FRAC_PER_SEC: f64 = 4_294_967_296.0; // 2^32

/// A 64-bit NTP timestamp: 32 bits of seconds, 32 bits of fraction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// The all-zero timestamp, which RFC 5905 treats as "unknown".
    pub const ZERO: Self = Self(0);

    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    pub const fn to_bits(self) -> u64 {
        self.0
    }

    pub const fn from_parts(seconds: u32, fraction: u32) -> Self {
        Self(((seconds as u64) << 32) | fraction as u64)
    }

    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Converts a Unix time (seconds and nanoseconds since 1970, may be
    /// negative seconds for instants before 1970) into the NTP timestamp
    /// that stands for it; the era is dropped, as on the wire.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        let ntp_secs = (secs as i128 + UNIX_OFFSET_SECS as i128).rem_euclid(1 << 32) as u64;
        let frac = ((nanos.min(999_999_999) as u64) << 32) / 1_000_000_000;
        Self((ntp_secs << 32) | frac)
    }

    /// Converts back to Unix time, choosing the era that puts the result
    /// closest to `near_unix_secs` (for example the local clock's idea of now).
    pub fn to_unix(self, near_unix_secs: i64) -> (i64, u32) {
        let near = Self::from_unix(near_unix_secs, 0);
        let delta = self - near;
        let total_nanos = near_unix_secs as i128 * 1_000_000_000 + delta.as_nanos() as i128;
        let secs = total_nanos.div_euclid(1_000_000_000) as i64;
        let nanos = total_nanos.rem_euclid(1_000_000_000) as u32;
        (secs, nanos)
    }
}

impl Sub for NtpTimestamp {
    type Output = NtpDuration;

    /// The signed difference, era-aware within +-68 years.
    fn sub(self, rhs: Self) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(rhs.0) as i64)
    }
}

impl Add<NtpDuration> for NtpTimestamp {
    type Output = NtpTimestamp;

    fn add(self, rhs: NtpDuration) -> NtpTimestamp {
        Self(self.0.wrapping_add(rhs.0 as u64))
    }
}

impl Sub<NtpDuration> for NtpTimestamp {
    type Output = NtpTimestamp;

    fn sub(self, rhs: NtpDuration) -> NtpTimestamp {
        Self(self.0.wrapping_sub(rhs.0 as u64))
    }
}

/// A signed duration in 32.32 fixed point seconds (about +-68 years).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtpDuration(i64);

impl NtpDuration {
    pub const ZERO: Self = Self(0);
    pub const MAX: Self = Self(i64::MAX);
    pub const MIN: Self = Self(i64::MIN);

    pub const fn from_bits(bits: i64) -> Self {
        Self(bits)
    }

    pub const fn to_bits(self) -> i64 {
        self.0
    }

    /// From floating-point seconds, saturating at the representable range.
    pub fn from_seconds(seconds: f64) -> Self {
        // `as` saturates for out-of-range floats and maps NaN to 0.
        Self((seconds * FRAC_PER_SEC) as i64)
    }

    pub fn as_seconds(self) -> f64 {
        self.0 as f64 / FRAC_PER_SEC
    }

    pub fn from_nanos(nanos: i64) -> Self {
        Self(((nanos as i128) << 32).div_euclid(1_000_000_000) as i64)
    }

    /// Nanoseconds, rounded toward negative infinity.
    pub fn as_nanos(self) -> i64 {
        ((self.0 as i128 * 1_000_000_000) >> 32) as i64
    }

    pub const fn abs(self) -> Self {
        Self(self.0.saturating_abs())
    }

    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// Converts to the unsigned 16.16 short format, clamping negative values
    /// to zero and large ones to the maximum.
    pub fn to_short(self) -> NtpShort {
        let bits = (self.0.max(0) >> 16).min(u32::MAX as i64);
        NtpShort(bits as u32)
    }
}

impl Add for NtpDuration {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        self.saturating_add(rhs)
    }
}

impl Sub for NtpDuration {
    type Output = Self;

    fn sub(self, rhs: Self) -> Self {
        self.saturating_sub(rhs)
    }
}

impl Neg for NtpDuration {
    type Output = Self;

    fn neg(self) -> Self {
        Self(self.0.saturating_neg())
    }
}

/// The 32-bit short format (16.16 unsigned seconds) of root delay and root
/// dispersion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtpShort(u32);

impl NtpShort {
    pub const ZERO: Self = Self(0);

    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    pub const fn to_bits(self) -> u32 {
        self.0
    }

    pub fn from_seconds(seconds: f64) -> Self {
        Self((seconds * 65536.0) as u32)
    }

    pub fn as_seconds(self) -> f64 {
        self.0 as f64 / 65536.0
    }

    pub const fn to_duration(self) -> NtpDuration {
        NtpDuration((self.0 as i64) << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unix_epoch_is_ntp_2208988800() {
        let t = NtpTimestamp::from_unix(0, 0);
        assert_eq!(t.seconds(), 2_208_988_800);
        assert_eq!(t.fraction(), 0);
        assert_eq!(t.to_unix(0), (0, 0));
    }

    #[test]
    fn difference_across_era_boundary() {
        // 2036-02-07T06:28:15 is the last second of era 0.
        let before = NtpTimestamp::from_parts(u32::MAX, 0);
        let after = NtpTimestamp::from_parts(1, 0);
        assert_eq!((after - before).as_seconds(), 2.0);
        assert_eq!((before - after).as_seconds(), -2.0);
        assert_eq!(before + NtpDuration::from_seconds(2.0), after);
    }

    #[test]
    fn to_unix_picks_the_nearest_era() {
        // 2040 lies in era 1: the same wire seconds value means 2040, not 1904.
        let unix_2040 = 2_208_988_800i64; // 2040-01-01 is 70 years after 1970
        let t = NtpTimestamp::from_unix(unix_2040, 500_000_000);
        assert!(t.seconds() < 200_000_000, "wrapped into era 1");
        let (s, n) = t.to_unix(unix_2040 - 1000);
        assert_eq!(s, unix_2040);
        assert!((n as i64 - 500_000_000).abs() <= 1);
    }

    #[test]
    fn short_format() {
        let s = NtpShort::from_seconds(1.5);
        assert_eq!(s.to_bits(), 0x0001_8000);
        assert_eq!(s.as_seconds(), 1.5);
        assert_eq!(s.to_duration().as_seconds(), 1.5);
        assert_eq!(NtpDuration::from_seconds(-1.0).to_short(), NtpShort::ZERO);
        assert_eq!(NtpDuration::from_seconds(1.5).to_short(), s);
    }

    #[test]
    fn nanos_roundtrip() {
        for n in [
            0i64,
            1,
            999,
            1_000_000_000,
            -1,
            -123_456_789,
            3_600_000_000_000,
        ] {
            let d = NtpDuration::from_nanos(n);
            assert!((d.as_nanos() - n).abs() <= 1, "{n}");
        }
    }

    proptest! {
        #[test]
        fn sub_then_add_is_identity(a: u64, b: u64) {
            let (a, b) = (NtpTimestamp::from_bits(a), NtpTimestamp::from_bits(b));
            prop_assert_eq!(b + (a - b), a);
        }

        #[test]
        fn unix_roundtrip(secs in -2_000_000_000i64..6_000_000_000i64, nanos in 0u32..1_000_000_000) {
            let t = NtpTimestamp::from_unix(secs, nanos);
            let (s, n) = t.to_unix(secs);
            let err = (s as i128 * 1_000_000_000 + n as i128) - (secs as i128 * 1_000_000_000 + nanos as i128);
            prop_assert!(err.abs() <= 1, "error {} ns", err);
        }
    }
}
