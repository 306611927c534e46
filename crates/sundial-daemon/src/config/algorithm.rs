//! `[synchronization.algorithm]`: ntpd-rs's tuning knobs for its own
//! estimator. sundial has a different algorithm, so these load (an ntpd-rs
//! file must not be rejected for them) and are otherwise ignored; the daemon
//! may warn that they have no effect.

use serde::Deserialize;

/// ntpd-rs algorithm tuning, accepted for compatibility and unused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "mirrors ntpd-rs's keys one to one; see docs/config.md"
)]
pub struct AlgorithmConfig {
    pub precision_low_probability: Option<f64>,
    pub precision_high_probability: Option<f64>,
    pub precision_hysteresis: Option<u32>,
    pub precision_minimum_weight: Option<f64>,
    pub poll_interval_low_weight: Option<f64>,
    pub poll_interval_high_weight: Option<f64>,
    pub poll_interval_hysteresis: Option<u32>,
    pub poll_interval_step_threshold: Option<f64>,
    pub delay_outlier_threshold: Option<f64>,
    pub initial_wander: Option<f64>,
    pub initial_frequency_uncertainty: Option<f64>,
    pub maximum_source_uncertainty: Option<f64>,
    pub range_statistical_weight: Option<f64>,
    pub range_delay_weight: Option<f64>,
    pub steer_offset_threshold: Option<f64>,
    pub steer_offset_leftover: Option<f64>,
    pub steer_frequency_threshold: Option<f64>,
    pub steer_frequency_leftover: Option<f64>,
    pub step_threshold: Option<f64>,
    pub slew_maximum_frequency_offset: Option<f64>,
    pub slew_minimum_duration: Option<f64>,
    pub maximum_frequency_steer: Option<f64>,
    pub ignore_server_dispersion: Option<bool>,
    pub meddling_threshold: Option<f64>,
}

impl AlgorithmConfig {
    /// Whether the file set any of these keys.
    #[must_use]
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}
