//! The observe-only clock (`sundial run --observe`, `[clock] observe-only`):
//! reads the system time, never changes it, and remembers what it would
//! have done so `sundial status` and tests can show it.
#![forbid(unsafe_code)]

use std::sync::Mutex;

use sundial_proto::ntp::timestamp::NtpTimestamp;

use super::{Clock, ClockStatus, system_now};

/// One action the discipline asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WouldDo {
    Step(f64),
    Slew(f64),
    Frequency(f64),
    Status(ClockStatus),
}

/// Records at most this many actions (the oldest go first).
const HISTORY: usize = 256;

#[derive(Debug, Default)]
pub struct ObserveClock {
    log: Mutex<Vec<WouldDo>>,
}

impl ObserveClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// What it was asked to do, oldest first.
    pub fn actions(&self) -> Vec<WouldDo> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn record(&self, action: WouldDo) {
        // A step is news; the slews and status updates of every poll are not.
        if matches!(action, WouldDo::Step(_)) {
            tracing::info!(?action, "observe-only: not changing the clock");
        } else {
            tracing::debug!(?action, "observe-only: not changing the clock");
        }
        if let Ok(mut log) = self.log.lock() {
            if log.len() >= HISTORY {
                log.remove(0);
            }
            log.push(action);
        }
    }
}

impl Clock for ObserveClock {
    fn now(&self) -> NtpTimestamp {
        system_now()
    }

    fn step(&self, offset: f64) -> std::io::Result<()> {
        self.record(WouldDo::Step(offset));
        Ok(())
    }

    fn slew(&self, offset: f64) -> std::io::Result<()> {
        self.record(WouldDo::Slew(offset));
        Ok(())
    }

    fn set_frequency(&self, ppm: f64) -> std::io::Result<()> {
        self.record(WouldDo::Frequency(ppm));
        Ok(())
    }

    fn set_status(&self, status: ClockStatus) -> std::io::Result<()> {
        self.record(WouldDo::Status(status));
        Ok(())
    }

    fn applies_changes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_changes_nothing() {
        let c = ObserveClock::new();
        let before = system_now();
        c.step(3600.0).unwrap();
        c.slew(0.5).unwrap();
        c.set_frequency(12.5).unwrap();
        let after = c.now();
        // An hour's step did not happen.
        assert!((after - before).as_seconds().abs() < 5.0);
        assert_eq!(
            c.actions(),
            vec![
                WouldDo::Step(3600.0),
                WouldDo::Slew(0.5),
                WouldDo::Frequency(12.5)
            ]
        );
    }
}
