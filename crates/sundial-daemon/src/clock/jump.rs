//! `[synchronization] warn-on-jump`: notice when something else steps the
//! clock (another time daemon, `date -s`, a hypervisor resuming a guest),
//! and say so. Detection only: the clock is never touched here.
//!
//! CLOCK_REALTIME and CLOCK_BOOTTIME advance together under every slew and
//! frequency correction (the kernel applies those to both); only a step, or
//! a leap second, moves one against the other. BOOTTIME rather than
//! MONOTONIC because it keeps counting through a suspend, which is not a
//! step. Our own steps go through [`LedgerClock`], which records them in
//! the [`StepLedger`] under the same lock the detector reads the clocks
//! with, so a step of ours is never mistaken for someone else's.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::time::{ClockId, clock_gettime};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use tokio_util::sync::CancellationToken;

use super::{Clock, ClockStatus};

/// A step smaller than this is not reported: reading two clocks takes
/// microseconds, and a preempted read is discarded anyway.
pub const THRESHOLD: f64 = 0.01;
/// How often the clocks are compared.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Two realtime reads further apart than this bracket a preemption: the
/// comparison is skipped.
const MAX_READ_SPREAD_NS: i128 = 1_000_000;

/// The sum of the steps this daemon made, in seconds, behind the lock that
/// makes a step and a reading of the clocks exclusive.
#[derive(Debug, Clone, Default)]
pub struct StepLedger(Arc<Mutex<f64>>);

impl StepLedger {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `step` (which moves the clock by `offset`) and records it.
    fn record(
        &self,
        offset: f64,
        step: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut total = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        step()?;
        *total += offset;
        Ok(())
    }

    /// Reads the clocks with `read` while no step of ours can run, and
    /// returns the reading with the steps made so far.
    fn sample<T>(&self, read: impl FnOnce() -> T) -> (T, f64) {
        let total = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (read(), *total)
    }
}

/// A clock whose steps are recorded in a [`StepLedger`]; otherwise `inner`.
#[derive(Debug)]
pub struct LedgerClock {
    inner: Arc<dyn Clock>,
    ledger: StepLedger,
}

impl LedgerClock {
    pub fn new(inner: Arc<dyn Clock>, ledger: StepLedger) -> Self {
        Self { inner, ledger }
    }
}

impl Clock for LedgerClock {
    fn now(&self) -> NtpTimestamp {
        self.inner.now()
    }

    fn step(&self, offset: f64) -> std::io::Result<()> {
        if self.inner.applies_changes() {
            self.ledger.record(offset, || self.inner.step(offset))
        } else {
            // An observe-only step moves nothing, so nothing is expected.
            self.inner.step(offset)
        }
    }

    fn slew(&self, offset: f64) -> std::io::Result<()> {
        self.inner.slew(offset)
    }

    fn set_frequency(&self, ppm: f64) -> std::io::Result<()> {
        self.inner.set_frequency(ppm)
    }

    fn set_status(&self, status: ClockStatus) -> std::io::Result<()> {
        self.inner.set_status(status)
    }

    fn applies_changes(&self) -> bool {
        self.inner.applies_changes()
    }
}

/// One comparison of the two clocks, nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// CLOCK_REALTIME minus CLOCK_BOOTTIME.
    pub gap_ns: i128,
}

/// The sans-IO part: from successive readings and our own steps, the steps
/// somebody else made.
#[derive(Debug, Default)]
pub struct JumpDetector {
    last: Option<(Reading, f64)>,
}

impl JumpDetector {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a reading and the ledger's total at that moment; returns the
    /// step of someone else since the previous reading, in seconds, when it
    /// is at least [`THRESHOLD`].
    pub fn observe(&mut self, reading: Reading, own_steps: f64) -> Option<f64> {
        let previous = self.last.replace((reading, own_steps));
        let (before, own_before) = previous?;
        // f64 holds nanosecond gaps exactly up to 104 days.
        let moved = (reading.gap_ns - before.gap_ns) as f64 / 1e9;
        let foreign = moved - (own_steps - own_before);
        (foreign.abs() >= THRESHOLD).then_some(foreign)
    }
}

fn ns(clock: ClockId) -> Option<i128> {
    let t = clock_gettime(clock).ok()?;
    Some(i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
}

/// REALTIME − BOOTTIME, from a BOOTTIME read bracketed by two REALTIME
/// reads; `None` if a read failed or the thread was preempted between them.
fn read_gap() -> Option<Reading> {
    let first = ns(ClockId::CLOCK_REALTIME)?;
    let boot = ns(ClockId::CLOCK_BOOTTIME)?;
    let second = ns(ClockId::CLOCK_REALTIME)?;
    if second - first > MAX_READ_SPREAD_NS || second < first {
        return None;
    }
    Some(Reading {
        gap_ns: first + (second - first) / 2 - boot,
    })
}

/// Compares the clocks every [`INTERVAL`] until cancelled and warns about
/// each step that was not ours.
pub async fn watch(ledger: StepLedger, cancel: CancellationToken) {
    let mut detector = JumpDetector::new();
    loop {
        if let (Some(reading), own) = ledger.sample(read_gap) {
            if let Some(jump) = detector.observe(reading, own) {
                tracing::warn!(
                    jump_seconds = jump,
                    "the clock was stepped by {jump:+.3} s by something other than sundial (another time daemon, a person, a hypervisor, or a leap second); sundial did not change it"
                );
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::observe::ObserveClock;

    fn at(gap_ns: i128) -> Reading {
        Reading { gap_ns }
    }

    #[test]
    fn a_foreign_step_is_reported_once_with_its_size() {
        let mut d = JumpDetector::new();
        assert_eq!(d.observe(at(0), 0.0), None);
        assert_eq!(d.observe(at(5_000), 0.0), None, "jitter is no step");
        let jump = d.observe(at(2_500_005_000), 0.0).expect("a 2.5 s step");
        assert!((jump - 2.5).abs() < 1e-6, "{jump}");
        assert_eq!(d.observe(at(2_500_005_000), 0.0), None, "reported once");
        let back = d.observe(at(-500_000_000), 0.0).expect("a backward step");
        assert!((back + 3.000_005).abs() < 1e-6, "{back}");
    }

    #[test]
    fn our_own_steps_are_not_reported() {
        let mut d = JumpDetector::new();
        assert_eq!(d.observe(at(0), 0.0), None);
        assert_eq!(d.observe(at(-1_000_000_000), -1.0), None);
        // Ours and someone else's in the same interval: only theirs.
        let jump = d.observe(at(-1_000_000_000 + 4_000_000_000), 2.0);
        assert!(jump.is_some_and(|j| (j - 1.0).abs() < 1e-6), "{jump:?}");
    }

    #[test]
    fn the_ledger_records_only_steps_that_change_the_clock() {
        let ledger = StepLedger::new();
        let observe = LedgerClock::new(Arc::new(ObserveClock::new()), ledger.clone());
        observe.step(3.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledger.sample(|| ()).1, 0.0);
        let failing = ledger.record(1.0, || Err(std::io::Error::other("EPERM")));
        assert!(failing.is_err());
        assert_eq!(ledger.sample(|| ()).1, 0.0, "a failed step moved nothing");
        ledger
            .record(0.5, || Ok(()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledger.sample(|| ()).1, 0.5);
    }

    #[test]
    fn the_real_clocks_read_and_agree_while_nobody_steps() {
        // Reads only; nothing here changes the clock.
        let mut d = JumpDetector::new();
        let mut compared = 0;
        for _ in 0..20 {
            if let Some(reading) = read_gap() {
                assert_eq!(d.observe(reading, 0.0), None);
                compared += 1;
            }
        }
        assert!(compared > 0);
    }
}
