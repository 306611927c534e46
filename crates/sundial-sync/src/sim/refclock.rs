//! A simulated reference clock: gpsd's serial time (every sample knows the
//! whole time) or a PPS line (every edge knows the time modulo its period).

use crate::{Leap, SourceKind};

/// What the reference clock sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SimRefclockKind {
    /// A sample of the whole time each `interval` (gpsd's SOCK samples).
    Sock,
    /// An edge each `interval`, at the start of each period of true time
    /// (a PPS line); the daemon reads only where in the period it fell.
    Pulse,
}

/// One reference clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimRefclockConfig {
    pub kind: SimRefclockKind,
    /// Seconds between samples or edges (a pulse's period).
    pub interval: f64,
    /// The reference's time minus true time: a receiver's serial latency,
    /// or a whole wrong second.
    pub error: f64,
    /// Standard deviation of each sample's or edge's timing noise.
    pub jitter: f64,
    /// Probability that a sample or edge never arrives.
    pub loss: f64,
    /// The precision the daemon is configured with (one standard
    /// deviation, seconds).
    pub precision: f64,
    pub leap: Leap,
}

impl SimRefclockConfig {
    /// A 1 PPS line with a microsecond of jitter.
    pub fn pps() -> Self {
        Self {
            kind: SimRefclockKind::Pulse,
            interval: 1.0,
            error: 0.0,
            jitter: 1e-6,
            loss: 0.0,
            precision: 1e-6,
            leap: Leap::None,
        }
    }

    /// gpsd's time from a receiver's serial messages, once a second: a
    /// millisecond of jitter around a latency of 100 ms, configured as
    /// precise to 100 ms since nobody corrects that latency.
    pub fn serial() -> Self {
        Self {
            kind: SimRefclockKind::Sock,
            interval: 1.0,
            error: -0.1,
            jitter: 1e-3,
            loss: 0.0,
            precision: 0.1,
            leap: Leap::None,
        }
    }

    /// The kind the synchronizer is told.
    pub fn source_kind(&self) -> SourceKind {
        match self.kind {
            SimRefclockKind::Sock => SourceKind::Refclock {
                precision: self.precision,
            },
            SimRefclockKind::Pulse => SourceKind::Pulse {
                precision: self.precision,
                period: self.interval,
            },
        }
    }

    /// The reference id a daemon would announce for it.
    pub(crate) fn reference_id(&self) -> [u8; 4] {
        match self.kind {
            SimRefclockKind::Sock => *b"GPS\0",
            SimRefclockKind::Pulse => *b"PPS\0",
        }
    }
}
