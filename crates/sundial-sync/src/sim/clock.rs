//! The simulated local clock: it runs at a wrong and wandering rate, and
//! takes steps, single-shot slews (at the kernel's 500 ppm) and frequency
//! corrections like the Linux kernel clock does.

use crate::ClockAction;
use crate::consts::{MAX_FREQUENCY_PPM, MAX_SLEW, SLEW_RATE};

use super::noise::Noise;

/// The wander is drawn once per this many seconds of true time, on a fixed
/// grid, so that a run does not depend on how often the driver looks at
/// the clock.
const WANDER_STEP: f64 = 1.0;

/// How the clock starts out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimClockConfig {
    /// Our clock minus true time at the start, seconds.
    pub initial_error: f64,
    /// How fast the uncorrected clock gains, ppm (positive: runs fast).
    pub frequency_error_ppm: f64,
    /// Random-walk wander of that rate: its standard deviation grows by
    /// this much (ppm) per square root of a second. A quartz oscillator in
    /// a room whose temperature drifts is of the order of 1e-4.
    pub wander_ppm_per_sqrt_s: f64,
    /// A steady change of that rate, ppm per second (a machine warming
    /// up): the discipline has to follow a frequency that keeps moving.
    pub drift_ppm_per_s: f64,
}

impl Default for SimClockConfig {
    fn default() -> Self {
        Self {
            initial_error: 0.0,
            frequency_error_ppm: 0.0,
            wander_ppm_per_sqrt_s: 1e-4,
            drift_ppm_per_s: 0.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimClock {
    config: SimClockConfig,
    /// True time, seconds since the start.
    true_time: f64,
    /// Our clock minus true time.
    error: f64,
    frequency_error_ppm: f64,
    correction_ppm: f64,
    pending_slew: f64,
    /// The sum of all steps: the monotonic clock does not see them.
    stepped: f64,
    next_wander: f64,
    /// Its own stream, apart from the network's, for the same reason.
    noise: Noise,
}

impl SimClock {
    /// A clock whose wander is drawn from a stream seeded with `seed`.
    pub fn new(config: SimClockConfig, seed: u64) -> Self {
        Self {
            config,
            true_time: 0.0,
            error: config.initial_error,
            frequency_error_ppm: config.frequency_error_ppm,
            correction_ppm: 0.0,
            pending_slew: 0.0,
            stepped: 0.0,
            next_wander: WANDER_STEP,
            noise: Noise::new(seed),
        }
    }

    pub fn true_time(&self) -> f64 {
        self.true_time
    }

    /// What our clock reads now.
    pub fn reading(&self) -> f64 {
        self.true_time + self.error
    }

    /// The daemon's monotonic timeline: our clock without its steps (like
    /// CLOCK_MONOTONIC, slewed and frequency-corrected but never stepped).
    pub fn monotonic(&self) -> f64 {
        self.reading() - self.stepped
    }

    /// True time minus our clock: what a perfect source would measure.
    pub fn offset(&self) -> f64 {
        -self.error
    }

    /// The frequency correction that would cancel the clock's error now.
    pub fn ideal_correction_ppm(&self) -> f64 {
        -self.frequency_error_ppm
    }

    /// What the clock has not yet slewed of the last single-shot slew.
    pub fn pending_slew(&self) -> f64 {
        self.pending_slew
    }

    pub fn correction_ppm(&self) -> f64 {
        self.correction_ppm
    }

    /// Changes the uncorrected rate by `ppm` at once, as a jolt of
    /// temperature would.
    pub fn change_frequency(&mut self, ppm: f64) {
        if ppm.is_finite() {
            self.frequency_error_ppm += ppm;
        }
    }

    /// Runs the clock forward to true time `t` (never backwards).
    pub(crate) fn advance_to(&mut self, t: f64) {
        while self.next_wander <= t {
            self.run_to(self.next_wander);
            self.frequency_error_ppm +=
                self.config.wander_ppm_per_sqrt_s * WANDER_STEP.sqrt() * self.noise.normal()
                    + self.config.drift_ppm_per_s * WANDER_STEP;
            self.next_wander += WANDER_STEP;
        }
        self.run_to(t);
    }

    /// Runs forward at a constant rate.
    fn run_to(&mut self, t: f64) {
        let dt = t - self.true_time;
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        let slewed = (SLEW_RATE * dt)
            .min(self.pending_slew.abs())
            .copysign(self.pending_slew);
        self.pending_slew -= slewed;
        self.error += (self.frequency_error_ppm + self.correction_ppm) * 1e-6 * dt + slewed;
        self.true_time = t;
    }

    /// Applies one action as the daemon's clock would.
    pub(crate) fn apply(&mut self, action: &ClockAction) {
        match *action {
            ClockAction::Step { offset } => {
                self.error += offset;
                self.stepped += offset;
            }
            // Single-shot adjtime: the new slew replaces the old one.
            ClockAction::Slew { offset } => self.pending_slew = offset.clamp(-MAX_SLEW, MAX_SLEW),
            ClockAction::SetFrequency { ppm } => {
                self.correction_ppm = ppm.clamp(-MAX_FREQUENCY_PPM, MAX_FREQUENCY_PPM);
            }
            ClockAction::Panic { .. } => {}
        }
    }
}
