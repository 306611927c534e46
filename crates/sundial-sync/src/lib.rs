//! The clock-discipline algorithm: pure, time is an argument.
//!
//! Sources hand in [`Measurement`]s; the synchronizer filters them per
//! source, selects the sources that agree, combines them and answers with
//! clock actions. Nothing here reads a clock, sleeps or does I/O; the
//! simulator in `sim` runs the whole loop in a test in milliseconds.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod action;
mod applied;
mod combine;
mod consts;
mod discipline;
mod filter;
mod kind;
mod noise;
mod poll;
mod pulse;
mod regression;
mod sample;
mod select;
mod settings;
pub mod sim;
mod slew;
mod status;
mod synchronizer;

pub use action::{ClockAction, PanicReason};
pub use applied::AppliedCorrections;
pub use kind::SourceKind;
pub use settings::{StepLimit, SyncSettings};
pub use status::{NoSyncReason, SourceState, SourceStatus, SyncStatus};
pub use synchronizer::{SourceId, Synchronizer};

/// A point on the daemon's monotonic timeline, in seconds since an arbitrary
/// origin (the daemon uses the time since it started). Using plain seconds
/// keeps the algorithm free of `std::time::Instant`, so simulations can run
/// days in microseconds.
pub type MonoSeconds = f64;

/// The leap indicator a source announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Leap {
    #[default]
    None,
    InsertSecond,
    DeleteSecond,
    /// The source itself is not synchronized.
    Unsynchronized,
}

/// One completed exchange with a source, as RFC 5905 section 8 computes it
/// from the four timestamps. All durations in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// When it was taken, on the monotonic timeline.
    pub time: MonoSeconds,
    /// theta: how far the source's clock is ahead of ours (for a pulse
    /// source, modulo its period).
    pub offset: f64,
    /// delta: round-trip delay minus the server's processing time (>= 0).
    pub delay: f64,
    /// The source's stratum (1 to 15; a reference clock's is taken as 0
    /// whatever this says).
    pub stratum: u8,
    pub leap: Leap,
    /// The source's root delay and root dispersion.
    pub root_delay: f64,
    pub root_dispersion: f64,
    /// The source's reference id, to announce when it is our primary.
    pub reference_id: [u8; 4],
    /// The source's precision (log2 seconds).
    pub precision: i8,
}
