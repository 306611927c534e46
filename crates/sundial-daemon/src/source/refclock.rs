//! What the two reference clock tasks (`sock.rs`, `pps.rs`) share: their
//! reach register, ticked once per expected sample, and the measurement a
//! sample becomes.
#![forbid(unsafe_code)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use sundial_proto::refclock::{Rejection, UnixTime};
use sundial_sync::{Leap, Measurement};
use tokio::time::{Interval, MissedTickBehavior};

use super::{SourceContext, SourceEvent};

/// Expected sample intervals without one after which a refclock is
/// unreachable (as eight unanswered polls make a server so).
const SILENT_INTERVALS: u32 = 8;

/// The system clock now.
pub(crate) fn system_now() -> UnixTime {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UnixTime {
        secs: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: since.subsec_nanos(),
    }
}

/// A reference clock's settings, as the daemon hands its samples on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reference {
    /// What it announces when it is our system peer.
    pub(crate) reference_id: [u8; 4],
    /// Its configured `accuracy`: the reference's own error bound, sent
    /// as its root dispersion.
    pub(crate) accuracy: f64,
}

/// The reach register of a refclock: one bit per expected sample, set when
/// one came. It is what `sundial status` shows; the synchronizer hears of
/// it only when the register empties.
#[derive(Debug)]
pub(crate) struct Liveness {
    interval: Duration,
    heard: bool,
    register: u8,
    silent: u32,
}

impl Liveness {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            heard: false,
            register: 0,
            silent: 0,
        }
    }

    /// The timer to [`tick`](Self::tick) by: first one interval from now
    /// (nothing is missing yet at the start), and a late tick delays the
    /// next rather than firing twice.
    pub(crate) fn ticks(&self) -> Interval {
        let first = tokio::time::Instant::now() + self.interval;
        let mut ticks = tokio::time::interval_at(first, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    }

    /// A sample came.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// One expected interval is over; `true` when the source has now been
    /// silent for long enough to be unreachable.
    pub(crate) fn tick(&mut self, ctx: &SourceContext) -> bool {
        self.register = (self.register << 1) | u8::from(self.heard);
        self.silent = if self.heard {
            0
        } else {
            ctx.stats.missed_intervals.fetch_add(1, Ordering::Relaxed);
            self.silent.saturating_add(1)
        };
        self.heard = false;
        ctx.stats
            .reach
            .store(u64::from(self.register), Ordering::Relaxed);
        ctx.stats
            .unanswered
            .store(u64::from(self.silent), Ordering::Relaxed);
        self.silent == SILENT_INTERVALS
    }
}

impl SourceContext {
    /// Counts a sample refused for `why`.
    pub(crate) fn reject(&self, why: Rejection) {
        if let Some(counter) = self.stats.rejected.get(why as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands on a sample taken `age` seconds ago (by the system clock)
    /// whose offset is `offset`; `false` when nobody listens any more.
    pub(crate) async fn refclock_sample(
        &self,
        reference: Reference,
        age: f64,
        offset: f64,
        leap: Leap,
    ) -> bool {
        let measurement = Measurement {
            time: self.origin.elapsed().as_secs_f64() - age,
            offset,
            delay: 0.0,
            stratum: 0,
            leap,
            root_delay: 0.0,
            root_dispersion: reference.accuracy,
            reference_id: reference.reference_id,
            // The synchronizer takes a refclock's configured precision.
            precision: -20,
        };
        self.reach.reachable();
        self.stats.samples.fetch_add(1, Ordering::Relaxed);
        self.send(SourceEvent::Measurement(self.id, measurement))
            .await
    }
}
