//! From one combined offset to clock actions: step or slew, the frequency
//! estimate, and the panic thresholds.
//!
//! RFC 5905 section 11.3 steers with a PLL/FLL hybrid that corrects a
//! fraction of each offset. This discipline instead estimates, like chrony:
//! every new sample of a source the selection trusts goes into a history
//! kept in the synchronizer's frame (see `slew.rs`), weighted by how
//! little it queued, and a least-squares line through it gives the
//! uncorrected frequency error (slope) and offset (value now), and both
//! are corrected in full at once. Because the frame undoes every
//! correction exactly, a noisy early estimate does no lasting harm: the
//! next fit sees the same data and corrects what was wrong.
//!
//! Steps follow RFC 5905's state machine on the combined offset of the
//! selected sources: the first offset after start-up
//! is stepped at once if beyond the step threshold; later, an offset beyond
//! it must persist for the stepout interval (`WATCH`) before it is stepped,
//! and is ignored until then.

use crate::action::{ClockAction, PanicReason};
use crate::consts::{MAX_FREQUENCY_PPM, WATCH};
use crate::regression::{History, Line, Origin, Point};
use crate::settings::{StepLimit, SyncSettings};
use crate::slew::PendingSlew;

/// Points needed before the slope is trusted to set the frequency: with
/// two, one noisy offset decides it alone.
const MIN_POINTS_FOR_FREQUENCY: usize = 3;

/// A frequency change smaller than this (ppm) is not worth a system call;
/// the kernel's resolution is 2^-16 ppm.
const MATERIAL_FREQUENCY_CHANGE: f64 = 1e-3;

/// The fit's standard error treats the weights as exact, but they are
/// learned from the same residuals, and the correction made from one fit
/// moves the next: in the simulator's runs on the bench's paths only 93 %
/// of the errors fell within twice the bare figure. This margin brings
/// that to the 95 % an operator reads "± 2 × uncertainty" as
/// (`tests/sim_bench.rs` checks it).
const UNCERTAINTY_MARGIN: f64 = 1.2;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Nothing done to the clock yet.
    Startup,
    /// Offsets within the step threshold.
    Sync,
    /// Offsets beyond the step threshold since `since`.
    Spike { since: f64 },
    /// A step was refused; nothing more is done.
    Panicked,
}

/// How the frame moved (see `ClockFilter::reframe`), for the filters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reframe {
    pub(crate) offset: f64,
    pub(crate) frequency_ppm: f64,
    pub(crate) at: f64,
    /// A step: stored samples describe a time before a discontinuity and
    /// are dropped instead (RFC 5905 clears the filters on a step).
    pub(crate) clear: bool,
}

/// What one update decided.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) actions: Vec<ClockAction>,
    pub(crate) reframe: Option<Reframe>,
    /// How well the clock model fits, when the update steered normally
    /// (for the poll interval).
    pub(crate) quality: Option<FitQuality>,
}

/// What the poll interval is chosen from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FitQuality {
    /// Points in the fit after the runs test dropped what did not fit.
    pub(crate) points: usize,
    /// The time they span, seconds.
    pub(crate) span: f64,
    /// The standard error of the fitted offset now, seconds.
    pub(crate) error: f64,
    /// The new sample's distance from what the fit before it predicted,
    /// in standard deviations: the model failing shows here first.
    pub(crate) surprise: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Discipline {
    phase: Phase,
    frequency_ppm: f64,
    history: History,
    slew: PendingSlew,
    accumulated_steps: f64,
    last_point_time: Option<f64>,
    last_offset: f64,
    /// The last fit, kept in the frame, to judge the next sample by.
    line: Option<Line>,
}

impl Discipline {
    pub(crate) fn new() -> Self {
        Self {
            phase: Phase::Startup,
            frequency_ppm: 0.0,
            history: History::default(),
            slew: PendingSlew::default(),
            accumulated_steps: 0.0,
            last_point_time: None,
            last_offset: 0.0,
            line: None,
        }
    }

    /// Tells the discipline the frequency correction the clock already has
    /// (from a drift file, or what the kernel kept); only before the first
    /// update, since later it is the discipline's own.
    pub(crate) fn set_initial_frequency(&mut self, ppm: f64) {
        if self.phase == Phase::Startup && ppm.is_finite() {
            self.frequency_ppm = ppm.clamp(-MAX_FREQUENCY_PPM, MAX_FREQUENCY_PPM);
        }
    }

    pub(crate) fn frequency_ppm(&self) -> f64 {
        self.frequency_ppm
    }

    pub(crate) fn last_offset(&self) -> f64 {
        self.last_offset
    }

    /// The model's estimate at `now` of the offset left once every issued
    /// correction has taken effect, and its standard error; without a fit
    /// yet, the last combined offset with `fallback` as its error.
    pub(crate) fn estimate(&self, now: f64, fallback: f64) -> (f64, f64) {
        if !self.has_started() {
            return (self.last_offset, f64::INFINITY);
        }
        match self.line {
            Some(line) if now.is_finite() => {
                (line.at(now), UNCERTAINTY_MARGIN * line.error_at(now))
            }
            _ => (0.0, fallback),
        }
    }

    /// What the clock model expects a sample taken at `t` to measure (in
    /// the frame), once it has a fit.
    pub(crate) fn predict(&self, t: f64) -> Option<f64> {
        self.line.map(|line| line.at(t)).filter(|o| o.is_finite())
    }

    /// Sets each stored sample's weight as `weigh` now sees it (its
    /// source's noise model learns as samples come in).
    pub(crate) fn reweigh(&mut self, weigh: &dyn Fn(&Origin) -> Option<f64>) {
        self.history.reweigh(weigh);
    }

    /// What the kernel has not yet slewed of the last correction at `now`.
    pub(crate) fn pending_slew(&self, now: f64) -> f64 {
        if now.is_finite() {
            self.slew.remaining(now)
        } else {
            0.0
        }
    }

    pub(crate) fn is_panicked(&self) -> bool {
        self.phase == Phase::Panicked
    }

    /// Whether the clock has been steered at all.
    pub(crate) fn has_started(&self) -> bool {
        !matches!(self.phase, Phase::Startup | Phase::Panicked)
    }

    /// A measured offset at time `t`, moved into the frame.
    pub(crate) fn to_frame(&self, t: f64, offset: f64) -> f64 {
        offset - self.slew.remaining(t)
    }

    /// One combined offset `point` (in the frame), at time `now`, and the
    /// new sample of a trusted source that came with it, if any.
    pub(crate) fn update(
        &mut self,
        settings: &SyncSettings,
        point: Point,
        sample: Option<Point>,
        now: f64,
    ) -> Outcome {
        if self.phase == Phase::Panicked || !(point.offset.is_finite() && now.is_finite()) {
            return Outcome::default();
        }
        let sample =
            sample.filter(|s| s.offset.is_finite() && s.weight.is_finite() && s.weight > 0.0);
        // The same samples combined again carry no news for the step
        // decisions; a new sample still refines the fit.
        if self.last_point_time.is_some_and(|t| point.time <= t) {
            return match (self.phase, sample) {
                (Phase::Sync, Some(sample)) => self.steer(point, Some(sample), now),
                _ => Outcome::default(),
            };
        }
        self.last_point_time = Some(point.time);
        self.last_offset = point.offset;

        if point.offset.abs() > settings.step_threshold {
            return match self.phase {
                Phase::Startup => self.step(
                    point.offset,
                    now,
                    &settings.startup_step_panic_threshold,
                    PanicReason::StartupStep,
                    None,
                ),
                Phase::Spike { since } if now - since >= WATCH => self.step(
                    point.offset,
                    now,
                    &settings.single_step_panic_threshold,
                    PanicReason::SingleStep,
                    Some(settings.accumulated_step_panic_threshold),
                ),
                Phase::Spike { .. } => Outcome::default(),
                Phase::Sync | Phase::Panicked => {
                    self.phase = Phase::Spike { since: now };
                    Outcome::default()
                }
            };
        }
        self.phase = Phase::Sync;
        self.steer(point, sample, now)
    }

    /// Steps by `offset` if `limit` (and the accumulated limit, when one
    /// applies) allows it, and panics otherwise.
    fn step(
        &mut self,
        offset: f64,
        now: f64,
        limit: &StepLimit,
        reason: PanicReason,
        accumulated_limit: Option<Option<f64>>,
    ) -> Outcome {
        let accumulated = self.accumulated_steps + offset.abs();
        let refused = if !limit.allows(offset) {
            Some(reason)
        } else if accumulated_limit
            .flatten()
            .is_some_and(|max| accumulated.is_nan() || max.is_nan() || accumulated > max)
        {
            Some(PanicReason::AccumulatedSteps)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.phase = Phase::Panicked;
            return Outcome {
                actions: vec![ClockAction::Panic { offset, reason }],
                ..Outcome::default()
            };
        }
        // The start-up step has its own threshold and does not count
        // towards the accumulated one: a machine that boots years in the
        // past must still be able to step later.
        if accumulated_limit.is_some() {
            self.accumulated_steps = accumulated;
        }
        self.phase = Phase::Sync;
        self.history.clear();
        self.line = None;
        Outcome {
            actions: vec![ClockAction::Step { offset }],
            reframe: Some(Reframe {
                offset,
                frequency_ppm: 0.0,
                at: now,
                clear: true,
            }),
            quality: None,
        }
    }

    /// The normal case: fit, correct frequency and offset.
    fn steer(&mut self, point: Point, sample: Option<Point>, now: f64) -> Outcome {
        let mut surprise = 0.0;
        if let Some(sample) = sample {
            if let Some(line) = self.line {
                let predicted = line.at(sample.time);
                let sd = (1.0 / sample.weight + line.error_at(sample.time).powi(2)).sqrt();
                surprise = (sample.offset - predicted).abs() / sd;
            }
            self.history.push(sample);
        }
        let mut actions = Vec::with_capacity(2);
        let mut frequency_change = 0.0;
        let mut estimate = point.offset;
        let mut quality = None;
        self.line = self.fit();
        if let Some(line) = self.line {
            estimate = line.at(now);
            quality = Some(FitQuality {
                points: line.points,
                span: self.history.span(),
                error: line.error_at(now),
                surprise: if surprise.is_finite() {
                    surprise
                } else {
                    f64::MAX
                },
            });
            let target = (self.frequency_ppm + line.slope * 1e6)
                .clamp(-MAX_FREQUENCY_PPM, MAX_FREQUENCY_PPM);
            if (target - self.frequency_ppm).abs() >= MATERIAL_FREQUENCY_CHANGE {
                frequency_change = target - self.frequency_ppm;
                self.frequency_ppm = target;
                actions.push(ClockAction::SetFrequency { ppm: target });
            }
        }
        if !estimate.is_finite() {
            estimate = point.offset;
        }
        let (amount, moved) = self.slew.replace(estimate, now);
        actions.push(ClockAction::Slew { offset: amount });
        self.history.reframe(moved, frequency_change, now);
        if let Some(line) = &mut self.line {
            line.reframe(moved, frequency_change, now);
        }
        Outcome {
            actions,
            reframe: Some(Reframe {
                offset: moved,
                frequency_ppm: frequency_change,
                at: now,
                clear: false,
            }),
            quality,
        }
    }

    /// The line through the history, once it has enough points over some
    /// time to say something about the frequency.
    fn fit(&mut self) -> Option<Line> {
        if self.history.len() < MIN_POINTS_FOR_FREQUENCY || self.history.span() <= 0.0 {
            return None;
        }
        self.history.fit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(time: f64, offset: f64) -> Point {
        Point {
            time,
            offset,
            weight: 1.0,
            origin: None,
        }
    }

    #[test]
    fn startup_steps_large_offset() {
        let mut d = Discipline::new();
        let out = d.update(
            &SyncSettings::default(),
            point(1.0, 0.5),
            Some(point(1.0, 0.5)),
            1.0,
        );
        assert_eq!(out.actions, [ClockAction::Step { offset: 0.5 }]);
        assert!(out.reframe.unwrap().clear);
        assert!(d.has_started());
    }

    #[test]
    fn startup_slews_small_offset() {
        let mut d = Discipline::new();
        let out = d.update(
            &SyncSettings::default(),
            point(1.0, 0.01),
            Some(point(1.0, 0.01)),
            1.0,
        );
        assert_eq!(out.actions, [ClockAction::Slew { offset: 0.01 }]);
    }

    #[test]
    fn startup_threshold_panics() {
        let mut d = Discipline::new();
        let out = d.update(
            &SyncSettings::default(),
            point(1.0, -90000.0),
            Some(point(1.0, -90000.0)),
            1.0,
        );
        assert_eq!(
            out.actions,
            [ClockAction::Panic {
                offset: -90000.0,
                reason: PanicReason::StartupStep
            }]
        );
        assert!(
            d.update(
                &SyncSettings::default(),
                point(2.0, 0.0),
                Some(point(2.0, 0.0)),
                2.0
            )
            .actions
            .is_empty()
        );
    }

    #[test]
    fn later_spike_waits_for_stepout_then_panics() {
        let s = SyncSettings::default();
        let mut d = Discipline::new();
        let _ = d.update(&s, point(1.0, 0.001), Some(point(1.0, 0.001)), 1.0);
        assert!(
            d.update(&s, point(20.0, 2000.0), Some(point(20.0, 2000.0)), 20.0)
                .actions
                .is_empty()
        );
        assert!(
            d.update(&s, point(500.0, 2000.0), Some(point(500.0, 2000.0)), 500.0)
                .actions
                .is_empty()
        );
        let out = d.update(&s, point(930.0, 2000.0), Some(point(930.0, 2000.0)), 930.0);
        assert!(matches!(
            out.actions[..],
            [ClockAction::Panic {
                reason: PanicReason::SingleStep,
                ..
            }]
        ));
    }

    #[test]
    fn accumulated_limit() {
        let s = SyncSettings {
            accumulated_step_panic_threshold: Some(1.0),
            ..SyncSettings::default()
        };
        let mut d = Discipline::new();
        let _ = d.update(&s, point(1.0, 0.001), Some(point(1.0, 0.001)), 1.0);
        let _ = d.update(&s, point(2.0, 0.6), Some(point(2.0, 0.6)), 2.0);
        let out = d.update(&s, point(1000.0, 0.6), Some(point(1000.0, 0.6)), 1000.0);
        assert_eq!(out.actions, [ClockAction::Step { offset: 0.6 }]);
        let _ = d.update(&s, point(1001.0, 0.6), Some(point(1001.0, 0.6)), 1001.0);
        let out = d.update(&s, point(2000.0, 0.6), Some(point(2000.0, 0.6)), 2000.0);
        assert!(matches!(
            out.actions[..],
            [ClockAction::Panic {
                reason: PanicReason::AccumulatedSteps,
                ..
            }]
        ));
    }

    #[test]
    fn learns_frequency_from_a_drifting_clock() {
        // The clock loses 20 ppm: offsets (source minus us) grow unless
        // corrected. Simulate the uncorrected error and feed it in the
        // frame the way the synchronizer does.
        let s = SyncSettings::default();
        let mut d = Discipline::new();
        let mut error = 0.0; // source minus our clock, as the kernel left it
        let mut last = 0.0;
        for i in 1..200 {
            let t = f64::from(i) * 16.0;
            error += (20.0 - d.frequency_ppm()) * 1e-6 * (t - last);
            // The kernel works off the pending slew at 500 ppm.
            let slewed = d.slew.remaining(last) - d.slew.remaining(t);
            error -= slewed;
            last = t;
            let offset = d.to_frame(t, error);
            let _ = d.update(&s, point(t, offset), Some(point(t, offset)), t);
        }
        assert!(
            (d.frequency_ppm() - 20.0).abs() < 1e-6,
            "{}",
            d.frequency_ppm()
        );
    }
}
