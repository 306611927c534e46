//! The system clock behind one trait, so the discipline can be run against
//! the real kernel clock, an observe-only clock that never changes anything,
//! or a test double.

pub mod jump;
pub mod linux;
pub mod observe;

use sundial_proto::ntp::timestamp::NtpTimestamp;

/// What the discipline may do to a clock. Every method but `now` changes
/// the machine's time when implemented by [`linux::LinuxClock`]; tests use
/// [`observe::ObserveClock`] only.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time of this clock.
    fn now(&self) -> NtpTimestamp;
    /// Jumps the clock by `offset` seconds (positive: forward).
    fn step(&self, offset: f64) -> std::io::Result<()>;
    /// Lets the kernel slew away `offset` seconds gradually.
    fn slew(&self, offset: f64) -> std::io::Result<()>;
    /// Sets the frequency correction, in parts per million.
    fn set_frequency(&self, ppm: f64) -> std::io::Result<()>;
    /// Tells the kernel (and so other programs) how good the time is:
    /// synchronized or not, maximum and estimated error in seconds, and a
    /// pending leap second.
    fn set_status(&self, status: ClockStatus) -> std::io::Result<()>;
    /// Whether the adjustments really change the clock. An observe-only
    /// clock says no, and the discipline then models what they would have
    /// done instead of assuming it.
    fn applies_changes(&self) -> bool {
        true
    }
}

/// The kernel's view of synchronization that `set_status` updates.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ClockStatus {
    pub synchronized: bool,
    pub max_error: f64,
    pub est_error: f64,
    pub leap: LeapPending,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LeapPending {
    #[default]
    None,
    Insert,
    Delete,
}

/// The real time now, from the system clock, as an NTP timestamp.
pub fn system_now() -> NtpTimestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    NtpTimestamp::from_unix(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}
