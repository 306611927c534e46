//! A simulator for the whole loop: a clock with a frequency error and
//! random-walk wander that the synchronizer's actions steer, sources
//! behind a network with delay, jitter, loss and asymmetry, reference
//! clocks (gpsd's serial time, a PPS line) with jitter and lost samples,
//! and a driver that plays polls, replies and samples in order of
//! simulated time.
//!
//! Every random draw comes from one ChaCha stream seeded by the caller,
//! so a run is the same on every machine; hours of simulated time take
//! milliseconds.

mod clock;
mod driver;
mod network;
mod noise;
mod refclock;

pub use clock::{SimClock, SimClockConfig};
pub use driver::{Simulation, TracePoint};
pub use network::SimSourceConfig;
pub use noise::Noise;
pub use refclock::{SimRefclockConfig, SimRefclockKind};
