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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample that queued `queued` seconds more than the quickest, on a
    /// path whose delays spread by 1 ms.
    fn stats(queued: f64) -> DelayStats {
        DelayStats {
            queued,
            mean_queued: 2e-3,
            excess: 0.0,
            spread: 1e-3,
        }
    }

    #[test]
    fn learning_until_enough_residuals() {
        let mut noise = NoiseModel::default();
        for i in 0..MIN_FIT - 1 {
            noise.record(&stats(1e-4 * i as f64), 1e-4);
        }
        assert_eq!(noise.rule(), Rule::Learning);
        // Half the spread, squared.
        assert_eq!(Rule::Learning.variance(&stats(0.0)), 0.25e-6);
    }

    #[test]
    fn residuals_that_grow_with_queueing_pick_the_queueing_rule() {
        let mut noise = NoiseModel::default();
        for i in 0..HISTORY {
            let s = stats(1e-4 * (i % 32) as f64);
            // Exactly as far off as the queueing rule says, either way.
            let residual = queueing(&s).sqrt() * if i % 2 == 0 { 1.0 } else { -1.0 };
            noise.record(&s, residual);
        }
        match noise.rule() {
            Rule::Queueing(scale) => assert!((scale - 1.0).abs() < 1e-9, "{scale}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn residuals_unrelated_to_the_delay_pick_the_flat_rule() {
        let mut noise = NoiseModel::default();
        for i in 0..HISTORY {
            noise.record(&stats(1e-4 * (i % 32) as f64), 7e-4);
        }
        match noise.rule() {
            Rule::Flat(variance) => assert!((variance - 49e-8).abs() < 1e-15, "{variance}"),
            other => panic!("{other:?}"),
        }
        // Every ordinary sample then weighs the same, quick or not.
        let rule = noise.rule();
        assert_eq!(rule.variance(&stats(0.0)), rule.variance(&stats(3e-3)));
    }

    #[test]
    fn a_spike_teaches_nothing_and_weighs_its_half_excess() {
        let spike = DelayStats {
            excess: 50e-3,
            ..stats(52e-3)
        };
        assert!(NoiseModel::is_spike(&spike));
        let mut noise = NoiseModel::default();
        for _ in 0..HISTORY {
            noise.record(&spike, 25e-3);
        }
        assert_eq!(noise.rule(), Rule::Learning);
        assert!(Rule::Flat(1e-6).variance(&spike) >= 25e-3 * 25e-3);
    }
}
