//! Step panic thresholds: `1000`, `"inf"` or `{ forward = .., backward = .. }`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Largest clock step, in seconds, allowed in each direction; `None` means
/// no limit (written `"inf"`, or a direction left out of the table, as in
/// ntpd-rs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepThreshold {
    /// Limit on stepping the clock forward, seconds.
    pub forward: Option<f64>,
    /// Limit on stepping the clock backward, seconds.
    pub backward: Option<f64>,
}

impl StepThreshold {
    /// The same limit both ways.
    #[must_use]
    pub fn both(seconds: f64) -> Self {
        Self {
            forward: Some(seconds),
            backward: Some(seconds),
        }
    }

    /// Whether a step of `offset` seconds (positive: forward) is within the
    /// limits.
    #[must_use]
    pub fn allows(&self, offset: f64) -> bool {
        if offset >= 0.0 {
            self.forward.is_none_or(|limit| offset <= limit)
        } else {
            self.backward.is_none_or(|limit| -offset <= limit)
        }
    }
}

fn seconds<E: de::Error>(value: f64) -> Result<f64, E> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(E::invalid_value(
            de::Unexpected::Float(value),
            &"a non-negative number of seconds or \"inf\"",
        ))
    }
}

fn infinite<E: de::Error>(text: &str, expected: &dyn de::Expected) -> Result<Option<f64>, E> {
    if text == "inf" {
        Ok(None)
    } else {
        Err(E::invalid_value(de::Unexpected::Str(text), expected))
    }
}

/// One direction of a threshold: seconds or `"inf"`.
struct Limit(Option<f64>);

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;

        impl Visitor<'_> for LimitVisitor {
            type Value = Limit;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number of seconds or \"inf\"")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Limit, E> {
                seconds(v).map(|s| Limit(Some(s)))
            }

            #[allow(clippy::cast_precision_loss, reason = "seconds; exact below 2^53")]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                self.visit_f64(v as f64)
            }

            #[allow(clippy::cast_precision_loss, reason = "seconds; exact below 2^53")]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                self.visit_f64(v as f64)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                infinite(v, &self).map(Limit)
            }
        }

        deserializer.deserialize_any(LimitVisitor)
    }
}

impl<'de> Deserialize<'de> for StepThreshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;

        impl<'de> Visitor<'de> for ThresholdVisitor {
            type Value = StepThreshold;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds, \"inf\" or { forward = .., backward = .. }")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StepThreshold, E> {
                seconds(v).map(StepThreshold::both)
            }

            #[allow(clippy::cast_precision_loss, reason = "seconds; exact below 2^53")]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StepThreshold, E> {
                self.visit_f64(v as f64)
            }

            #[allow(clippy::cast_precision_loss, reason = "seconds; exact below 2^53")]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StepThreshold, E> {
                self.visit_f64(v as f64)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StepThreshold, E> {
                infinite(v, &self).map(|limit| StepThreshold {
                    forward: limit,
                    backward: limit,
                })
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<StepThreshold, M::Error> {
                let mut forward: Option<Limit> = None;
                let mut backward: Option<Limit> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "forward" => &mut forward,
                        "backward" => &mut backward,
                        _ => {
                            return Err(de::Error::unknown_field(&key, &["forward", "backward"]));
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(StepThreshold {
                    forward: forward.and_then(|l| l.0),
                    backward: backward.and_then(|l| l.0),
                })
            }
        }

        deserializer.deserialize_any(ThresholdVisitor)
    }
}

/// `accumulated-step-panic-threshold`: seconds, where 0 (or `"inf"`) means
/// disabled, as in ntpd-rs.
pub(crate) fn deserialize_accumulated<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    let limit = Limit::deserialize(deserializer)?;
    Ok(limit.0.filter(|seconds| *seconds > 0.0))
}
