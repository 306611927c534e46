//! How uncertain a source's samples are, learned from the samples.
//!
//! A sample's offset is off by half the difference between the two legs'
//! delays. Whether its round trip says how far off it is depends on the
//! path:
//! - where the noise is queueing (the Internet), a sample that queued
//!   longer can be further off and the quickest exchanges are the best:
//!   given how much longer than the quickest a round trip took, its split
//!   between the legs is about uniform, a variance of `queued² / 12`
//!   (RFC 5905's minimum-delay filter and chrony's weights rest on this);
//! - where each leg's delay varies by itself (a radio link, a relay that
//!   draws normal delays), the round trip says nothing about the split,
//!   and trusting the quickest few samples throws the rest of the average
//!   away: every sample is as good as another.
//!
//! Each source keeps how far its recent samples fell from what the clock
//! model predicted, and picks the rule under which those distances are
//! the more likely (each rule scaled to fit them best: the same number of
//! free parameters, so a plain likelihood comparison; the queueing rule
//! must win clearly, since where it is wrong a few lucky samples outweigh
//! the rest). Its floor is a tenth of the path's typical queueing, so
//! that one quick sample does not outweigh all others. Until enough
//! residuals are in, every sample is taken as uncertain by half the
//! delays' spread.
//!
//! A delay spike (far beyond the spread of the recent delays) is left out
//! of what is learned, and weighs as little as its half excess can be off.

use std::collections::VecDeque;

use crate::filter::DelayStats;

/// Residuals remembered per source.
const HISTORY: usize = 64;

/// Residuals needed before the rules are compared.
const MIN_FIT: usize = 16;

/// A delay this many robust standard deviations above the median is a
/// spike: not a sample of the path's ordinary noise.
const SPIKE_SPREADS: f64 = 5.0;

/// How much likelier (in natural log units) the residuals must be under
/// the queueing rule before it is used: a factor of about 150.
const QUEUEING_MARGIN: f64 = 5.0;

/// The floor of the queueing rule, as a share of the mean queueing.
const QUEUE_FLOOR: f64 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Residual {
    /// The queueing rule's relative variance for the sample.
    queueing: f64,
    squared: f64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct NoiseModel {
    residuals: VecDeque<Residual>,
}

/// The rule in force and its scale (seconds² per unit of the rule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rule {
    Queueing(f64),
    Flat(f64),
    /// Still learning: every sample as uncertain as a quarter of the
    /// delays' variance says (true of any two legs that vary
    /// independently, whatever their noise).
    Learning,
}

impl Rule {
    /// The variance of a sample's offset under this rule, seconds².
    pub(crate) fn variance(self, stats: &DelayStats) -> f64 {
        let ordinary = match self {
            Self::Queueing(scale) => scale * queueing(stats),
            Self::Flat(variance) => variance,
            Self::Learning => {
                let half = stats.spread / 2.0;
                half * half
            }
        };
        if NoiseModel::is_spike(stats) {
            let half_excess = stats.excess / 2.0;
            ordinary + half_excess * half_excess
        } else {
            ordinary
        }
    }
}

fn queueing(stats: &DelayStats) -> f64 {
    let spread = stats.queued + QUEUE_FLOOR * stats.mean_queued;
    spread * spread / 12.0
}

impl NoiseModel {
    /// Whether a sample with these delay statistics is a spike.
    pub(crate) fn is_spike(stats: &DelayStats) -> bool {
        stats.excess > SPIKE_SPREADS * stats.spread
    }

    /// Records how far an ordinary sample was from the prediction.
    pub(crate) fn record(&mut self, stats: &DelayStats, residual: f64) {
        let squared = residual * residual;
        let queueing = queueing(stats);
        if Self::is_spike(stats)
            || !squared.is_finite()
            || !(queueing.is_finite() && queueing > 0.0)
        {
            return;
        }
        if self.residuals.len() >= HISTORY {
            self.residuals.pop_front();
        }
        self.residuals.push_back(Residual { queueing, squared });
    }

    /// The likelier rule: for variances `scale × v_i`, the best scale is
    /// the mean of `r² / v_i`, and the log-likelihood is then
    /// `-(Σ ln v_i + n ln scale + n) / 2`.
    pub(crate) fn rule(&self) -> Rule {
        self.compare().unwrap_or(Rule::Learning)
    }

    fn compare(&self) -> Option<Rule> {
        let n = self.residuals.len();
        if n < MIN_FIT {
            return None;
        }
        let count = n as f64;
        let flat = self.residuals.iter().map(|r| r.squared).sum::<f64>() / count;
        let scale = self
            .residuals
            .iter()
            .map(|r| r.squared / r.queueing)
            .sum::<f64>()
            / count;
        let log_v = self.residuals.iter().map(|r| r.queueing.ln()).sum::<f64>();
        if !(flat > 0.0 && scale > 0.0 && flat.is_finite() && scale.is_finite()) {
            return None;
        }
        // Negated log-likelihoods, constants dropped.
        let cost_flat = count * flat.ln();
        let cost_queueing = log_v + count * scale.ln();
        // The queueing rule lets the quickest samples outweigh the rest
        // many times over; where it is wrong that costs more than the flat
        // rule ever does, so it must win clearly.
        Some(if cost_queueing + QUEUEING_MARGIN <= cost_flat {
            Rule::Queueing(scale)
        } else {
            Rule::Flat(flat)
        })
    }
}
