//! The Linux system clock through clock_adjtime(2): the one module with
//! `unsafe`, because no maintained crate wraps struct timex for
//! CLOCK_REALTIME with all the modes the discipline needs.
//!
//! Soundness: every call passes a pointer to a `timex` we own exclusively
//! for the duration of the call, and the kernel only reads and writes within
//! that struct. An all-zero `timex` is a valid value (it is plain integers
//! and padding), and `modes = 0` makes the call read-only.
#![allow(unsafe_code)]

use std::io;

use sundial_proto::ntp::timestamp::NtpTimestamp;

use super::{Clock, ClockStatus, LeapPending, system_now};

/// The kernel's frequency limit is +-500 ppm.
const MAX_PPM: f64 = 500.0;

#[derive(Debug, Default)]
pub struct LinuxClock;

fn zeroed_timex() -> libc::timex {
    // SAFETY: timex consists of integer fields and padding only; all-zero
    // bytes are a valid value of every field.
    unsafe { std::mem::zeroed() }
}

fn adjtime(tx: &mut libc::timex) -> io::Result<i32> {
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the whole
    // call; clock_adjtime reads and writes only within it.
    let r = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The kernel's current state, read without changing anything.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelState {
    pub frequency_ppm: f64,
    pub max_error: f64,
    pub est_error: f64,
    pub unsynchronized: bool,
}

impl LinuxClock {
    pub fn new() -> Self {
        Self
    }

    /// Reads the kernel's clock state (modes = 0: read-only).
    pub fn read_state(&self) -> io::Result<KernelState> {
        let mut tx = zeroed_timex();
        adjtime(&mut tx)?;
        Ok(KernelState {
            frequency_ppm: tx.freq as f64 / 65536.0,
            max_error: tx.maxerror as f64 / 1e6,
            est_error: tx.esterror as f64 / 1e6,
            unsynchronized: tx.status & libc::STA_UNSYNC != 0,
        })
    }
}

impl Clock for LinuxClock {
    fn now(&self) -> NtpTimestamp {
        system_now()
    }

    fn step(&self, offset: f64) -> io::Result<()> {
        if !offset.is_finite() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset is not finite",
            ));
        }
        let secs = offset.floor();
        let nanos = ((offset - secs) * 1e9).round().clamp(0.0, 999_999_999.0);
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
        tx.time.tv_sec = secs as libc::time_t;
        // With ADJ_NANO the microseconds field carries nanoseconds.
        tx.time.tv_usec = nanos as libc::suseconds_t;
        adjtime(&mut tx).map(|_| ())
    }

    fn slew(&self, offset: f64) -> io::Result<()> {
        if !offset.is_finite() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset is not finite",
            ));
        }
        // adjtime(3)-style single-shot slew at the kernel's 500 ppm, in µs.
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_OFFSET_SINGLESHOT as libc::c_uint;
        tx.offset = (offset * 1e6).round().clamp(-500_000.0, 500_000.0) as libc::c_long;
        adjtime(&mut tx).map(|_| ())
    }

    fn set_frequency(&self, ppm: f64) -> io::Result<()> {
        if !ppm.is_finite() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frequency is not finite",
            ));
        }
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_FREQUENCY;
        tx.freq = (ppm.clamp(-MAX_PPM, MAX_PPM) * 65536.0) as libc::c_long;
        adjtime(&mut tx).map(|_| ())
    }

    fn set_status(&self, status: ClockStatus) -> io::Result<()> {
        let mut current = zeroed_timex();
        adjtime(&mut current)?;
        let mut bits = current.status & !(libc::STA_UNSYNC | libc::STA_INS | libc::STA_DEL);
        if !status.synchronized {
            bits |= libc::STA_UNSYNC;
        }
        bits |= match status.leap {
            LeapPending::None => 0,
            LeapPending::Insert => libc::STA_INS,
            LeapPending::Delete => libc::STA_DEL,
        };
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
        tx.status = bits;
        tx.maxerror = (status.max_error * 1e6).clamp(0.0, 16_000_000.0) as libc::c_long;
        tx.esterror = (status.est_error * 1e6).clamp(0.0, 16_000_000.0) as libc::c_long;
        adjtime(&mut tx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the read-only call runs in tests: no test changes the clock.
    #[test]
    fn reads_kernel_state_without_changing_it() {
        let state = LinuxClock::new().read_state().unwrap();
        assert!(state.frequency_ppm.abs() <= MAX_PPM);
        assert!(state.max_error >= 0.0);
    }
}
