//! Poll intervals, as log2 seconds (4 means 16 s), and `[source-defaults]`.

use serde::Deserialize;

use super::{KeyPath, Problem};

/// Smallest poll exponent accepted (1/64 s); below this a source would flood
/// its server.
pub const MIN_POLL: i8 = -6;
/// Largest poll exponent accepted (about 36 hours, NTP's MAXPOLL).
pub const MAX_POLL: i8 = 17;

/// `{ min, max }` bounds on how often a source is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PollIntervalLimits {
    /// Shortest poll interval, log2 seconds.
    pub min: i8,
    /// Longest poll interval, log2 seconds.
    pub max: i8,
}

impl Default for PollIntervalLimits {
    fn default() -> Self {
        Self {
            min: default_poll_min(),
            max: default_poll_max(),
        }
    }
}

fn default_poll_min() -> i8 {
    4
}

fn default_poll_max() -> i8 {
    10
}

fn default_initial_poll_interval() -> i8 {
    4
}

/// Per-source poll limits: either bound may be given alone and the other
/// falls back to `[source-defaults]` (ntpd-rs's per-source override shape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PartialPollIntervalLimits {
    /// Overrides `source-defaults.poll-interval-limits.min`.
    pub min: Option<i8>,
    /// Overrides `source-defaults.poll-interval-limits.max`.
    pub max: Option<i8>,
}

/// Poll settings one source may override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOverrides {
    /// `poll-interval-limits` on the source.
    pub poll_interval_limits: Option<PartialPollIntervalLimits>,
    /// `initial-poll-interval` on the source.
    pub initial_poll_interval: Option<i8>,
}

impl PollOverrides {
    /// The limits in force for this source given the defaults.
    #[must_use]
    pub fn limits(&self, defaults: &SourceDefaults) -> PollIntervalLimits {
        let partial = self.poll_interval_limits.unwrap_or_default();
        PollIntervalLimits {
            min: partial.min.unwrap_or(defaults.poll_interval_limits.min),
            max: partial.max.unwrap_or(defaults.poll_interval_limits.max),
        }
    }

    /// The first poll interval for this source, clamped into its limits (an
    /// ntpd-rs file may raise `min` above the default initial interval).
    #[must_use]
    pub fn initial(&self, defaults: &SourceDefaults) -> i8 {
        let limits = self.limits(defaults);
        self.initial_poll_interval
            .unwrap_or(defaults.initial_poll_interval)
            .clamp(limits.min, limits.max.max(limits.min))
    }
}

/// `[source-defaults]`: settings shared by every source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceDefaults {
    /// Default `{ min = 4, max = 10 }`.
    #[serde(default)]
    pub poll_interval_limits: PollIntervalLimits,
    /// Default 4 (16 s).
    #[serde(default = "default_initial_poll_interval")]
    pub initial_poll_interval: i8,
}

impl Default for SourceDefaults {
    fn default() -> Self {
        Self {
            poll_interval_limits: PollIntervalLimits::default(),
            initial_poll_interval: default_initial_poll_interval(),
        }
    }
}

impl SourceDefaults {
    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        let limits_at = at.key("poll-interval-limits");
        check_limits(
            Some(self.poll_interval_limits.min),
            Some(self.poll_interval_limits.max),
            &limits_at,
            problems,
        );
        check_exponent(
            self.initial_poll_interval,
            &at.key("initial-poll-interval"),
            problems,
        );
    }
}

/// A bound given on a source combines with the other bound inherited from
/// `[source-defaults]`: `{ min = 11 }` under the default max 10 is min >
/// max though each table alone is fine. Checks the limits in force.
pub(crate) fn check_effective(
    source: &super::SourceConfig,
    defaults: &SourceDefaults,
    at: &KeyPath,
    problems: &mut Vec<Problem>,
) {
    let Some(overrides) = source.poll() else {
        return;
    };
    let Some(written) = overrides.poll_interval_limits else {
        return;
    };
    let limits = overrides.limits(defaults);
    if limits.min <= limits.max {
        return;
    }
    let inherited = match (written.min, written.max) {
        (Some(_), None) => format!(
            "max ({}) comes from [source-defaults] poll-interval-limits",
            limits.max
        ),
        (None, Some(_)) => format!(
            "min ({}) comes from [source-defaults] poll-interval-limits",
            limits.min
        ),
        _ => return, // both written: check_limits reported it
    };
    problems.push(Problem::new(
        at.key("poll-interval-limits"),
        format!(
            "the poll interval limits in force are min {} > max {}: {inherited}; give both bounds here",
            limits.min, limits.max
        ),
    ));
}

pub(crate) fn check_exponent(value: i8, at: &KeyPath, problems: &mut Vec<Problem>) {
    if !(MIN_POLL..=MAX_POLL).contains(&value) {
        problems.push(Problem::new(
            at.clone(),
            format!(
                "poll interval {value} is out of range: it is log2 seconds and must be from {MIN_POLL} to {MAX_POLL}"
            ),
        ));
    }
}

pub(crate) fn check_limits(
    min: Option<i8>,
    max: Option<i8>,
    at: &KeyPath,
    problems: &mut Vec<Problem>,
) {
    if let Some(min) = min {
        check_exponent(min, &at.key("min"), problems);
    }
    if let Some(max) = max {
        check_exponent(max, &at.key("max"), problems);
    }
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            problems.push(Problem::new(
                at.clone(),
                format!("min ({min}) is larger than max ({max})"),
            ));
        }
    }
}
