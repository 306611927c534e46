//! The samples of chrony's SOCK refclock protocol, which gpsd writes to a
//! Unix datagram socket (`/run/chrony.ttyAMA0.sock` and the like) and
//! ntpd-rs reads as `mode = "sock"`.
//!
//! Each datagram is one C `struct sock_sample` in the sender's byte order
//! and layout:
//!
//! ```text
//! struct timeval tv;  // when the sample was taken, by the receiver's clock
//! double offset;      // the reference's time minus that clock, seconds
//! int pulse;          // 1: only the offset within a second is known
//! int leap;           // 0 none, 1 insert, 2 delete, 3 not synchronized
//! int _pad;
//! int magic;          // 0x534f434b, "SOCK"
//! ```
//!
//! With a 64-bit `time_t` (every 64-bit Linux, and 32-bit ones built with
//! 64-bit time) `tv` is two 8-byte fields and the struct is 40 bytes; with
//! a 32-bit `time_t` it is two 4-byte fields and 32 bytes. The double is
//! 8-aligned in both. Sender and receiver share a machine, so the byte
//! order is ours; both sizes are read, so a 32-bit gpsd can feed a 64-bit
//! sundial. Whatever else arrives is refused with the reason, never a
//! panic.

use crate::ntp::packet::LeapIndicator;
use crate::reader::Reader;

use super::{Rejection, UnixTime};

/// "SOCK" in ASCII, as a native-endian C `int`.
pub const SOCK_MAGIC: u32 = 0x534f_434b;

/// `sizeof(struct sock_sample)` with a 64-bit `time_t`.
pub const SAMPLE_LEN: usize = 40;

/// `sizeof(struct sock_sample)` with a 32-bit `time_t`.
pub const SAMPLE_LEN_32: usize = 32;

/// The largest offset believed, seconds: 2^32, one NTP era. A machine that
/// booted at the Unix epoch without a clock is 1.8e9 s behind a GPS
/// receiver, and must still be able to hear it; an offset beyond an era is
/// no clock's error but a broken sender's.
pub const MAX_OFFSET: f64 = 4_294_967_296.0;

/// One sample as gpsd sent it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SockSample {
    /// When it was taken, by our clock.
    pub taken: UnixTime,
    /// The reference's time minus our clock at `taken`, seconds (positive:
    /// we are behind).
    pub offset: f64,
    /// The leap second the reference announces, or that it is not
    /// synchronized itself (gpsd without a fix).
    pub leap: LeapIndicator,
}

/// Why a datagram is not a sample; [`SockError::rejection`] gives its
/// counter.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SockError {
    #[error(
        "{0} bytes: a SOCK sample is {SAMPLE_LEN} bytes ({SAMPLE_LEN_32} with a 32-bit time_t)"
    )]
    Length(usize),
    #[error("magic number {0:#010x}, not SOCK ({SOCK_MAGIC:#010x})")]
    Magic(u32),
    #[error("{0} microseconds in a timeval")]
    Timestamp(i64),
    #[error("offset {0} s is not a clock's error")]
    Offset(f64),
    #[error("a pulse sample (the offset within a second only)")]
    Pulse,
    #[error("leap indicator {0}")]
    Leap(i32),
}

impl SockError {
    /// The counter this error is counted under.
    #[must_use]
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Length(_) => Rejection::Length,
            Self::Magic(_) => Rejection::Magic,
            Self::Timestamp(_) => Rejection::Timestamp,
            Self::Offset(_) => Rejection::Offset,
            Self::Pulse => Rejection::Pulse,
            Self::Leap(_) => Rejection::Leap,
        }
    }
}

/// The fields in the order of the struct, before they are checked.
struct Raw {
    secs: i64,
    micros: i64,
    offset: f64,
    pulse: i32,
    leap: i32,
    magic: u32,
}

fn i32_at(r: &mut Reader<'_>) -> Option<i32> {
    r.take_array().map(i32::from_ne_bytes)
}

fn i64_at(r: &mut Reader<'_>) -> Option<i64> {
    r.take_array().map(i64::from_ne_bytes)
}

fn read(datagram: &[u8]) -> Option<Raw> {
    let mut r = Reader::new(datagram);
    let (secs, micros) = match datagram.len() {
        SAMPLE_LEN => (i64_at(&mut r)?, i64_at(&mut r)?),
        SAMPLE_LEN_32 => (i64::from(i32_at(&mut r)?), i64::from(i32_at(&mut r)?)),
        _ => return None,
    };
    let offset = f64::from_ne_bytes(r.take_array()?);
    let pulse = i32_at(&mut r)?;
    let leap = i32_at(&mut r)?;
    let _pad = i32_at(&mut r)?;
    let magic = r.take_array().map(u32::from_ne_bytes)?;
    r.is_empty().then_some(Raw {
        secs,
        micros,
        offset,
        pulse,
        leap,
        magic,
    })
}

/// Reads one datagram.
pub fn parse(datagram: &[u8]) -> Result<SockSample, SockError> {
    let raw = read(datagram).ok_or(SockError::Length(datagram.len()))?;
    if raw.magic != SOCK_MAGIC {
        return Err(SockError::Magic(raw.magic));
    }
    if raw.pulse != 0 {
        return Err(SockError::Pulse);
    }
    let leap = match raw.leap {
        0 => LeapIndicator::NoWarning,
        1 => LeapIndicator::InsertSecond,
        2 => LeapIndicator::DeleteSecond,
        3 => LeapIndicator::Unsynchronized,
        other => return Err(SockError::Leap(other)),
    };
    let micros = u32::try_from(raw.micros)
        .ok()
        .filter(|&us| us < 1_000_000)
        .ok_or(SockError::Timestamp(raw.micros))?;
    if !(raw.offset.is_finite() && raw.offset.abs() <= MAX_OFFSET) {
        return Err(SockError::Offset(raw.offset));
    }
    Ok(SockSample {
        taken: UnixTime {
            secs: raw.secs,
            nanos: micros * 1000,
        },
        offset: raw.offset,
        leap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 40-byte struct as a C compiler lays it out on x86_64.
    fn sample64(secs: i64, usec: i64, offset: f64, pulse: i32, leap: i32, magic: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&secs.to_ne_bytes());
        b.extend_from_slice(&usec.to_ne_bytes());
        b.extend_from_slice(&offset.to_ne_bytes());
        b.extend_from_slice(&pulse.to_ne_bytes());
        b.extend_from_slice(&leap.to_ne_bytes());
        b.extend_from_slice(&0i32.to_ne_bytes());
        b.extend_from_slice(&magic.to_ne_bytes());
        b
    }

    fn good() -> Vec<u8> {
        sample64(1_700_000_000, 250_000, 0.0021, 0, 0, SOCK_MAGIC)
    }

    #[test]
    fn reads_gpsds_sample() {
        let s = parse(&good()).unwrap();
        assert_eq!(
            s.taken,
            UnixTime {
                secs: 1_700_000_000,
                nanos: 250_000_000
            }
        );
        assert_eq!(s.offset, 0.0021);
        assert_eq!(s.leap, LeapIndicator::NoWarning);
    }

    #[test]
    fn reads_the_32_bit_layout() {
        let mut b = Vec::new();
        b.extend_from_slice(&1_700_000_000i32.to_ne_bytes());
        b.extend_from_slice(&999_999i32.to_ne_bytes());
        b.extend_from_slice(&(-0.5f64).to_ne_bytes());
        b.extend_from_slice(&0i32.to_ne_bytes());
        b.extend_from_slice(&1i32.to_ne_bytes());
        b.extend_from_slice(&0i32.to_ne_bytes());
        b.extend_from_slice(&SOCK_MAGIC.to_ne_bytes());
        assert_eq!(b.len(), SAMPLE_LEN_32);
        let s = parse(&b).unwrap();
        assert_eq!(s.taken.nanos, 999_999_000);
        assert_eq!(s.offset, -0.5);
        assert_eq!(s.leap, LeapIndicator::InsertSecond);
    }

    #[test]
    fn leap_indicators() {
        for (leap, want) in [
            (0, LeapIndicator::NoWarning),
            (1, LeapIndicator::InsertSecond),
            (2, LeapIndicator::DeleteSecond),
            (3, LeapIndicator::Unsynchronized),
        ] {
            let b = sample64(1, 0, 0.0, 0, leap, SOCK_MAGIC);
            assert_eq!(parse(&b).unwrap().leap, want);
        }
        let b = sample64(1, 0, 0.0, 0, 4, SOCK_MAGIC);
        assert_eq!(parse(&b), Err(SockError::Leap(4)));
    }

    #[test]
    fn refuses_what_is_not_a_sample() {
        let cases = [
            (Vec::new(), Rejection::Length),
            (good()[..39].to_vec(), Rejection::Length),
            ([good(), vec![0]].concat(), Rejection::Length),
            (vec![0xff; 33], Rejection::Length),
            (sample64(1, 0, 0.0, 0, 0, 0x4b434f53), Rejection::Magic),
            (sample64(1, 0, 0.0, 1, 0, SOCK_MAGIC), Rejection::Pulse),
            (
                sample64(1, 1_000_000, 0.0, 0, 0, SOCK_MAGIC),
                Rejection::Timestamp,
            ),
            (sample64(1, -1, 0.0, 0, 0, SOCK_MAGIC), Rejection::Timestamp),
            (
                sample64(1, 0, f64::NAN, 0, 0, SOCK_MAGIC),
                Rejection::Offset,
            ),
            (
                sample64(1, 0, f64::INFINITY, 0, 0, SOCK_MAGIC),
                Rejection::Offset,
            ),
            (sample64(1, 0, -1e12, 0, 0, SOCK_MAGIC), Rejection::Offset),
            (sample64(1, 0, 0.0, 0, -1, SOCK_MAGIC), Rejection::Leap),
        ];
        for (bytes, why) in cases {
            let got = parse(&bytes).map_err(|e| e.rejection());
            assert_eq!(got, Err(why), "{bytes:02x?}");
        }
    }

    #[test]
    fn a_machine_booted_at_the_epoch_still_hears_its_receiver() {
        let b = sample64(30, 0, 1.7e9, 0, 0, SOCK_MAGIC);
        assert_eq!(parse(&b).unwrap().offset, 1.7e9);
    }
}
