//! The per-source clock filter of RFC 5905 section 10.
//!
//! The last `NSTAGE` samples are kept; the one with the lowest delay is the
//! source's estimate, because the sample that waited least in queues has
//! the least room for path asymmetry. Jitter is the RMS of the other
//! samples' offsets around it.

use std::collections::VecDeque;

use crate::consts::{NSTAGE, PHI};
use crate::sample::Sample;

/// The filter's answer: the chosen sample plus the statistics of them all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FilterOutput {
    pub(crate) time: f64,
    pub(crate) offset: f64,
    pub(crate) delay: f64,
    /// epsilon: the samples' dispersions, aged to `now` and weighted
    /// 1/2, 1/4, ... in delay order (RFC 5905 section 10).
    pub(crate) dispersion: f64,
    /// psi: RMS of the offsets around the chosen one.
    pub(crate) jitter: f64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ClockFilter {
    samples: VecDeque<Sample>,
    /// The delays of the last `DELAY_HISTORY` samples, kept across
    /// restarts: a jump in the source's time does not change the path.
    delays: VecDeque<f64>,
}

/// Delays remembered per source to tell how much a sample queued.
const DELAY_HISTORY: usize = 64;

/// Delays needed before their minimum, median and spread are a useful
/// reference.
const MIN_DELAYS: usize = 8;

/// How much a sample can be trusted, from how its delay compares with the
/// recent delays of the same source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DelayStats {
    /// The sample's delay beyond the lowest recent one: how much longer
    /// it queued than the quickest exchanges did.
    pub(crate) queued: f64,
    /// The mean of the recent delays beyond the lowest: the path's
    /// queueing scale.
    pub(crate) mean_queued: f64,
    /// The sample's delay beyond the median of the recent ones (0 when
    /// below it).
    pub(crate) excess: f64,
    /// A robust standard deviation of the recent delays (1.4826 × their
    /// median absolute deviation): the path's noise, which outliers such
    /// as a delay spike do not inflate.
    pub(crate) spread: f64,
}

/// The recent delays of a source in summary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum DelayProfile {
    /// Fewer than `MIN_DELAYS` are known.
    Unknown,
    Known {
        min: f64,
        median: f64,
        mean: f64,
        /// 1.4826 × the median absolute deviation.
        spread: f64,
    },
}

impl DelayProfile {
    /// How a sample of `delay` compares with the recent delays. Until
    /// enough delays are known their median says little, and the sample
    /// counts as uncertain by its whole delay (no offset can be further off
    /// than half the round trip).
    pub(crate) fn stats(&self, delay: f64) -> DelayStats {
        match *self {
            Self::Unknown => DelayStats {
                queued: delay,
                mean_queued: 0.0,
                excess: 0.0,
                spread: delay,
            },
            Self::Known {
                min,
                median,
                mean,
                spread,
            } => {
                let min = min.min(delay);
                DelayStats {
                    queued: delay - min,
                    mean_queued: (mean - min).max(0.0),
                    excess: (delay - median).max(0.0),
                    spread,
                }
            }
        }
    }
}

impl ClockFilter {
    /// Shifts in a sample; the oldest falls out once `NSTAGE` are held.
    ///
    /// A sample more than `discontinuity` seconds away from the current
    /// estimate starts the filter afresh: the source's time jumped, and the
    /// minimum-delay rule would otherwise keep choosing samples from before
    /// the jump for up to eight polls (hours at long polls). One wild sample
    /// cannot do harm this way: the source then disagrees with the others
    /// until its next sample, and the discipline only steps an offset that
    /// persists.
    pub(crate) fn add(&mut self, sample: Sample, discontinuity: f64) {
        let jumped = self
            .output(sample.time)
            .is_some_and(|out| (sample.offset - out.offset).abs() > discontinuity);
        if jumped {
            self.samples.clear();
        }
        if self.samples.len() >= NSTAGE {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        if self.delays.len() >= DELAY_HISTORY {
            self.delays.pop_front();
        }
        self.delays.push_back(sample.delay);
    }

    /// The recent delays in summary, to judge samples by (see
    /// `DelayProfile::stats`).
    pub(crate) fn delay_profile(&self) -> DelayProfile {
        if self.delays.len() < MIN_DELAYS {
            return DelayProfile::Unknown;
        }
        let mut sorted: Vec<f64> = self.delays.iter().copied().collect();
        let median = median_of(&mut sorted);
        let min = sorted.first().copied().unwrap_or(median);
        let mean = sorted.iter().sum::<f64>() / sorted.len().max(1) as f64;
        let mut deviations: Vec<f64> = sorted.iter().map(|d| (d - median).abs()).collect();
        let mad = median_of(&mut deviations);
        DelayProfile::Known {
            min,
            median,
            mean,
            spread: 1.4826 * mad,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.samples.clear();
    }

    /// Moves every sample into a new frame after a clock correction: the
    /// clock was moved by `offset` seconds, and its frequency by
    /// `frequency_ppm` from time `at` on (see `slew.rs` for why).
    pub(crate) fn reframe(&mut self, offset: f64, frequency_ppm: f64, at: f64) {
        for s in &mut self.samples {
            s.offset = s.offset - offset + frequency_ppm * 1e-6 * (at - s.time);
        }
    }

    /// The source's current estimate, with dispersion aged to `now`.
    ///
    /// Unlike RFC 5905, empty stages do not count as `MAXDISP`: that rule
    /// keeps a new source unusable for four polls, and the agreement of
    /// `minimum_agreeing_sources` sources already guards against a
    /// source's first sample being wild.
    pub(crate) fn output(&self, now: f64) -> Option<FilterOutput> {
        let mut by_delay: Vec<&Sample> = self.samples.iter().collect();
        // Lowest delay first; on a tie the newer sample wins.
        by_delay.sort_by(|a, b| a.delay.total_cmp(&b.delay).then(b.time.total_cmp(&a.time)));
        let best = **by_delay.first()?;
        let mut dispersion = 0.0;
        let mut weight = 0.5;
        for s in &by_delay {
            dispersion += weight * (s.dispersion + PHI * (now - s.time).max(0.0));
            weight /= 2.0;
        }
        let others = by_delay.len() - 1;
        let jitter = if others == 0 {
            0.0
        } else {
            let sum: f64 = by_delay
                .iter()
                .skip(1)
                .map(|s| (s.offset - best.offset).powi(2))
                .sum();
            (sum / others as f64).sqrt()
        };
        Some(FilterOutput {
            time: best.time,
            offset: best.offset,
            delay: best.delay,
            dispersion,
            jitter,
        })
    }
}

/// The median of `values` (sorted in place); 0 for none.
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match (values.get((n.max(1) - 1) / 2), values.get(n / 2)) {
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(time: f64, offset: f64, delay: f64) -> Sample {
        Sample {
            time,
            offset,
            delay,
            dispersion: 1e-6,
        }
    }

    impl ClockFilter {
        fn add_(&mut self, sample: Sample) {
            self.add(sample, 1.0);
        }
    }

    #[test]
    fn picks_lowest_delay_and_measures_jitter() {
        let mut f = ClockFilter::default();
        f.add_(sample(0.0, 0.010, 0.050));
        f.add_(sample(16.0, 0.001, 0.020));
        f.add_(sample(32.0, 0.004, 0.030));
        let out = f.output(32.0).unwrap();
        assert_eq!(out.offset, 0.001);
        assert_eq!(out.time, 16.0);
        let expect = ((0.009f64.powi(2) + 0.003f64.powi(2)) / 2.0).sqrt();
        assert!((out.jitter - expect).abs() < 1e-12);
    }

    #[test]
    fn keeps_eight() {
        let mut f = ClockFilter::default();
        f.add_(sample(0.0, 5.0, 0.001));
        for i in 1..=8 {
            f.add_(sample(f64::from(i), 0.0, 0.01));
        }
        // The low-delay sample has been shifted out.
        assert_eq!(f.output(9.0).unwrap().offset, 0.0);
    }

    #[test]
    fn a_jump_restarts_the_filter() {
        let mut f = ClockFilter::default();
        for i in 0..4 {
            f.add_(sample(f64::from(i), 0.0, 0.001));
        }
        f.add_(sample(4.0, 2000.0, 0.05));
        assert_eq!(f.output(4.0).unwrap().offset, 2000.0);
        assert_eq!(f.samples.len(), 1);
    }

    #[test]
    fn dispersion_ages() {
        let mut f = ClockFilter::default();
        f.add_(sample(0.0, 0.0, 0.01));
        let young = f.output(0.0).unwrap().dispersion;
        let old = f.output(1000.0).unwrap().dispersion;
        assert!((old - young - 0.5 * PHI * 1000.0).abs() < 1e-12);
    }

    #[test]
    fn reframe_moves_offsets() {
        let mut f = ClockFilter::default();
        f.add_(sample(0.0, 0.1, 0.01));
        f.reframe(0.1, 10.0, 100.0);
        // 10 ppm over the 100 s since the sample.
        assert!((f.output(100.0).unwrap().offset - 0.001).abs() < 1e-12);
    }
}
