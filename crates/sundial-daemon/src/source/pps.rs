//! `mode = "pps"`: a kernel PPS device. A plain thread waits on the device
//! for each assert edge (the wait is a blocking ioctl), and the task turns
//! edges into pulses (`sundial_proto::refclock::pps`) and pulses into
//! measurements of the offset modulo the period. Which period they are in
//! is for the synchronizer to find out from the other sources.
//!
//! The device is behind [`PpsDevice`], so everything but the four ioctls
//! (`kernel.rs`, this source's one module with `unsafe`) runs in tests against a
//! simulated edge stream. (No `forbid(unsafe_code)` here, which would
//! reach into `kernel.rs`; the workspace's `deny` holds.)

mod kernel;

use std::io;
use std::time::Duration;

use sundial_proto::refclock::pps::{PpsEdge, PulseTracker};
use sundial_proto::refclock::sample_age;
use sundial_sync::Leap;
use tokio::sync::mpsc;

pub use kernel::KernelPps;

use super::SourceContext;
use super::refclock::{Liveness, Reference, system_now};

/// How long one wait on the device lasts at most: the reading thread sees
/// a shutdown this often when no edges come.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// A source of PPS edges: the kernel's device, or a test's simulation.
pub trait PpsDevice: Send + std::fmt::Debug + 'static {
    /// Waits up to `timeout` for the next assert edge and returns the
    /// latest one the device has; `Ok(None)` when none came in time.
    fn fetch(&mut self, timeout: Duration) -> io::Result<Option<PpsEdge>>;
}

/// What the task needs besides its device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) period: f64,
    pub(crate) reference: Reference,
}

/// Reads `device` until cancelled.
pub(crate) async fn run(ctx: SourceContext, mut device: Box<dyn PpsDevice>, target: Target) {
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = ctx.cancel.clone();
    let reader = std::thread::Builder::new()
        .name(format!("sundial-pps-{}", ctx.id.0))
        .spawn(move || {
            while !cancel.is_cancelled() {
                let reading = device.fetch(FETCH_WAIT);
                let failed = reading.is_err();
                if tx.blocking_send(reading).is_err() {
                    return;
                }
                if failed {
                    // A device that went away fails at once: do not spin.
                    std::thread::sleep(FETCH_WAIT);
                }
            }
        });
    if let Err(e) = reader {
        tracing::error!(error = %e, "cannot start the PPS reading thread");
        return;
    }
    let mut tracker = PulseTracker::new(target.period);
    let mut live = Liveness::new(Duration::from_secs_f64(tracker.period()));
    let mut ticks = live.ticks();
    let mut failing = false;
    loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => break,
            _ = ticks.tick() => {
                if live.tick(&ctx) && !ctx.became_unreachable("no PPS edges").await {
                    break;
                }
            }
            reading = rx.recv() => match reading {
                None => {
                    tracing::warn!("the PPS reading thread stopped");
                    break;
                }
                Some(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the PPS device");
                    }
                    failing = true;
                }
                Some(Ok(None)) => failing = false,
                Some(Ok(Some(edge))) => {
                    failing = false;
                    if !pulse(&ctx, &mut tracker, &mut live, edge, target.reference).await {
                        break;
                    }
                }
            }
        }
    }
    // The thread ends after its current wait; the device closes with it.
    rx.close();
    while rx.recv().await.is_some() {}
}

/// One reading of the device; `false` when nobody listens any more.
async fn pulse(
    ctx: &SourceContext,
    tracker: &mut PulseTracker,
    live: &mut Liveness,
    edge: PpsEdge,
    reference: Reference,
) -> bool {
    let Some(pulse) = tracker.edge(edge) else {
        return true;
    };
    if pulse.missed > 0 {
        // Read too late (a busy machine), or a faster signal than the
        // configured period; a pulse that never came shows in the reach.
        tracing::debug!(missed = pulse.missed, "PPS edges came and went unread");
    }
    match sample_age(pulse.taken, system_now()) {
        Ok(age) => {
            live.heard();
            ctx.refclock_sample(reference, age, pulse.offset, Leap::None)
                .await
        }
        Err(why) => {
            tracing::debug!(?edge, "PPS edge too old or from the future");
            ctx.reject(why);
            true
        }
    }
}

#[cfg(test)]
mod tests;
