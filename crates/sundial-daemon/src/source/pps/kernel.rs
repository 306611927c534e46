//! A kernel PPS device (`/dev/ppsN`) through the Linux PPS API's ioctls
//! (RFC 2783): the one module of the PPS source with `unsafe`, because no
//! maintained crate wraps these four calls with the types the kernel
//! expects.
//!
//! Soundness: each ioctl gets the file descriptor of a `File` this struct
//! owns (so it is open for the whole call) and a pointer to a `#[repr(C)]`
//! value that lives on our stack for the whole call, laid out as the
//! kernel's `struct pps_kparams` / `pps_fdata` / `int` (checked by size on
//! 64-bit targets below); the kernel reads and writes only within it.
//! Every such value is plain integers, so any bytes the kernel writes are a
//! valid value. The request numbers encode the size of a *pointer* to the
//! struct, exactly as `<linux/pps.h>` declares them (`_IOR('p', 0xa1,
//! struct pps_kparams *)`): the kernel checks the number, not the size.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use sundial_proto::refclock::UnixTime;
use sundial_proto::refclock::pps::PpsEdge;

use super::PpsDevice;

const PPS_API_VERS: i32 = 1;
const PPS_CAPTUREASSERT: i32 = 0x01;
const PPS_CANWAIT: i32 = 0x100;
const PPS_TSFMT_TSPEC: i32 = 0x1000;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PpsKtime {
    sec: i64,
    nsec: i32,
    flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PpsKinfo {
    assert_sequence: u32,
    clear_sequence: u32,
    assert_tu: PpsKtime,
    clear_tu: PpsKtime,
    current_mode: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PpsFdata {
    info: PpsKinfo,
    timeout: PpsKtime,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PpsKparams {
    api_version: i32,
    mode: i32,
    assert_off_tu: PpsKtime,
    clear_off_tu: PpsKtime,
}

// The kernel's sizes on every 64-bit Linux (s64 is 8-aligned there).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<PpsKtime>() == 16);
    assert!(size_of::<PpsKinfo>() == 48);
    assert!(size_of::<PpsFdata>() == 64);
    assert!(size_of::<PpsKparams>() == 40);
};

nix::ioctl_read_bad!(
    pps_getparams,
    nix::request_code_read!(b'p', 0xa1, size_of::<*mut PpsKparams>()),
    PpsKparams
);
nix::ioctl_write_ptr_bad!(
    pps_setparams,
    nix::request_code_write!(b'p', 0xa2, size_of::<*mut PpsKparams>()),
    PpsKparams
);
nix::ioctl_read_bad!(
    pps_getcap,
    nix::request_code_read!(b'p', 0xa3, size_of::<*mut i32>()),
    i32
);
nix::ioctl_readwrite_bad!(
    pps_fetch,
    nix::request_code_readwrite!(b'p', 0xa4, size_of::<*mut PpsFdata>()),
    PpsFdata
);

/// An open PPS device, capturing assert edges.
#[derive(Debug)]
pub struct KernelPps {
    file: File,
}

impl KernelPps {
    /// Opens `path` and makes sure it captures assert edges and can be
    /// waited on. Read-write when we may (to turn assert capture on, which
    /// also takes CAP_SYS_TIME), else read-only: most drivers capture
    /// assert edges from the start.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .or_else(|_| File::open(path))?;
        let fd = file.as_raw_fd();
        let mut caps: i32 = 0;
        // SAFETY: see the module comment; `caps` is an exclusively borrowed
        // int for the whole call.
        unsafe { pps_getcap(fd, &mut caps) }.map_err(|e| with_context(e, "PPS_GETCAP"))?;
        if caps & PPS_CAPTUREASSERT == 0 {
            return Err(io::Error::other("the device cannot capture assert edges"));
        }
        if caps & PPS_CANWAIT == 0 {
            return Err(io::Error::other(
                "the device cannot be waited on (no PPS_CANWAIT)",
            ));
        }
        let mut params = PpsKparams::default();
        // SAFETY: as above, for a pps_kparams.
        unsafe { pps_getparams(fd, &mut params) }.map_err(|e| with_context(e, "PPS_GETPARAMS"))?;
        if params.mode & PPS_CAPTUREASSERT == 0 {
            params.api_version = PPS_API_VERS;
            params.mode |= PPS_CAPTUREASSERT | PPS_TSFMT_TSPEC;
            // SAFETY: as above; the kernel only reads `params`.
            unsafe { pps_setparams(fd, &params) }.map_err(|e| {
                with_context(
                    e,
                    "PPS_SETPARAMS (turning on assert capture needs write access and CAP_SYS_TIME)",
                )
            })?;
        }
        Ok(Self { file })
    }
}

fn with_context(errno: Errno, call: &str) -> io::Error {
    let e = io::Error::from(errno);
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

impl PpsDevice for KernelPps {
    fn fetch(&mut self, timeout: Duration) -> io::Result<Option<PpsEdge>> {
        let mut data = PpsFdata {
            timeout: PpsKtime {
                sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                // Below 10^9: fits.
                nsec: i32::try_from(timeout.subsec_nanos()).unwrap_or(0),
                flags: 0,
            },
            ..PpsFdata::default()
        };
        // SAFETY: see the module comment; `data` is an exclusively borrowed
        // pps_fdata for the whole call.
        match unsafe { pps_fetch(self.file.as_raw_fd(), &mut data) } {
            Ok(_) => {}
            Err(Errno::ETIMEDOUT | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(with_context(e, "PPS_FETCH")),
        }
        let tu = data.info.assert_tu;
        let nanos = u32::try_from(tu.nsec)
            .ok()
            .filter(|&ns| ns < 1_000_000_000)
            .ok_or_else(|| io::Error::other(format!("PPS_FETCH: {} ns in a timestamp", tu.nsec)))?;
        Ok(Some(PpsEdge {
            sequence: data.info.assert_sequence,
            time: UnixTime {
                secs: tu.sec,
                nanos,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<linux/pps.h>`'s numbers as the C preprocessor makes them on
    /// x86_64 and aarch64 (the size field holds a pointer's 8 bytes).
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn request_numbers_are_the_kernels() {
        let word = size_of::<*mut PpsFdata>();
        assert_eq!(nix::request_code_read!(b'p', 0xa1, word), 0x8008_70a1);
        assert_eq!(nix::request_code_write!(b'p', 0xa2, word), 0x4008_70a2);
        assert_eq!(nix::request_code_read!(b'p', 0xa3, word), 0x8008_70a3);
        assert_eq!(nix::request_code_readwrite!(b'p', 0xa4, word), 0xc008_70a4);
    }

    #[test]
    fn what_is_not_a_pps_device_is_refused_with_the_call() {
        let err = KernelPps::open(Path::new("/dev/null")).unwrap_err();
        assert!(err.to_string().starts_with("PPS_GETCAP: "), "{err}");
        let err = KernelPps::open(Path::new("/nonexistent/pps0")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
