//! The constants of RFC 5905 (section 7.2 and appendix A.1.1) that the
//! filter, selection and discipline share, plus the kernel's slew rate.

/// Frequency tolerance: how fast an unsynchronized clock's error may grow
/// (15 ppm), used to age dispersion (RFC 5905 section 7.2).
pub(crate) const PHI: f64 = 15e-6;

/// The smallest root distance a source contributes: `max(MINDISP, delay)`
/// keeps a source with a tiny round trip from claiming perfect accuracy.
pub(crate) const MINDISP: f64 = 0.01;

/// Dispersion of a sample we know nothing about; also the cap on any
/// delay or dispersion a source may report.
pub(crate) const MAXDISP: f64 = 16.0;

/// A source whose root distance exceeds this is not fit to synchronize to
/// (RFC 5905 section 11.2, "fit" check).
pub(crate) const MAXDIST: f64 = 1.5;

/// Samples kept per source (RFC 5905 section 10).
pub(crate) const NSTAGE: usize = 8;

/// How long an offset beyond the step threshold must persist before it is
/// stepped once we are synchronized: the RFC 5905 section 11.3 stepout
/// (`WATCH`, 900 s) that keeps one bad round of samples from stepping.
pub(crate) const WATCH: f64 = 900.0;

/// Our own clock's precision (log2 s) when nothing better is known: about
/// a microsecond, what the Linux kernel clock reads to.
pub(crate) const LOCAL_PRECISION: i8 = -20;

/// The rate at which the Linux kernel slews a single-shot `adjtime`
/// offset (500 µs per second), which the discipline must know to tell how
/// much of a slew is still pending.
pub(crate) const SLEW_RATE: f64 = 500e-6;

/// The largest single slew the kernel accepts (adjtime's 0.5 s).
pub(crate) const MAX_SLEW: f64 = 0.5;

/// The kernel's frequency range, ±500 ppm.
pub(crate) const MAX_FREQUENCY_PPM: f64 = 500.0;

/// The largest offset or time value taken in, in seconds (about 30 000
/// years): beyond it arithmetic on squares would lose all meaning, and no
/// real clock is that wrong.
pub(crate) const MAX_SANE_SECONDS: f64 = 1e12;

/// 2^exponent as seconds, for the log2 precisions and polls of NTP.
pub(crate) fn log2_seconds(exponent: i8) -> f64 {
    2f64.powi(i32::from(exponent))
}
