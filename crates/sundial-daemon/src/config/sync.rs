//! `[synchronization]`: how measurements become clock corrections.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::algorithm::AlgorithmConfig;
use super::step::{StepThreshold, deserialize_accumulated};
use super::{KeyPath, Problem};

fn default_minimum_agreeing_sources() -> usize {
    3
}

fn default_single_step_panic_threshold() -> StepThreshold {
    StepThreshold::both(1000.0)
}

fn default_startup_step_panic_threshold() -> StepThreshold {
    // A machine that booted without a clock is usually behind, so any
    // forward step is fine; a large backward step is suspicious.
    StepThreshold {
        forward: None,
        backward: Some(86_400.0),
    }
}

fn default_local_stratum() -> u8 {
    16
}

fn default_warn_on_jump() -> bool {
    true
}

/// The largest `certificate-time-check-after`: a bootstrap window of up to
/// a thousand clock updates (hours to days of polling); beyond that the
/// option stops being a bootstrap aid and becomes "never check".
pub const MAX_CERTIFICATE_TIME_CHECK_AFTER: u32 = 1000;

/// Clock discipline settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SynchronizationConfig {
    /// Sources that must agree before the clock is steered (default 3).
    #[serde(default = "default_minimum_agreeing_sources")]
    pub minimum_agreeing_sources: usize,
    /// Largest step after startup before the daemon stops (default 1000 s).
    #[serde(default = "default_single_step_panic_threshold")]
    pub single_step_panic_threshold: StepThreshold,
    /// Largest step at startup (default: any forward, 86400 s backward).
    #[serde(default = "default_startup_step_panic_threshold")]
    pub startup_step_panic_threshold: StepThreshold,
    /// Sum of all steps after which the daemon stops; `None` disables.
    #[serde(default, deserialize_with = "deserialize_accumulated")]
    pub accumulated_step_panic_threshold: Option<f64>,
    /// Stratum served while not synchronized (1-16, default 16).
    #[serde(default = "default_local_stratum")]
    pub local_stratum: u8,
    /// Reference ID served at stratum 1 (e.g. `"GPS"`): by a server
    /// without sources at `local-stratum = 1`, and while a reference
    /// clock is the system peer (instead of its "GPS" or "PPS").
    #[serde(default)]
    pub reference_id: Option<ReferenceId>,
    /// Log a warning when the clock is found to have jumped (default true).
    #[serde(default = "default_warn_on_jump")]
    pub warn_on_jump: bool,
    /// NTS certificates' validity times are not checked until this many
    /// clock updates while synchronized (chrony's `nocerttimecheck`), so a
    /// machine booting with a clock far off can bootstrap; 0 (default)
    /// always checks them. Names, chains and signatures are always checked.
    #[serde(default)]
    pub certificate_time_check_after: u32,
    /// ntpd-rs tuning; accepted, unused by sundial.
    #[serde(default)]
    pub algorithm: AlgorithmConfig,
}

impl Default for SynchronizationConfig {
    fn default() -> Self {
        Self {
            minimum_agreeing_sources: default_minimum_agreeing_sources(),
            single_step_panic_threshold: default_single_step_panic_threshold(),
            startup_step_panic_threshold: default_startup_step_panic_threshold(),
            accumulated_step_panic_threshold: None,
            local_stratum: default_local_stratum(),
            reference_id: None,
            warn_on_jump: default_warn_on_jump(),
            certificate_time_check_after: 0,
            algorithm: AlgorithmConfig::default(),
        }
    }
}

/// What a server without sources announces as its reference at stratum 2
/// and above: 127.127.1.1, the address of ntpd's local-clock driver, as
/// chrony's `local stratum N` does at every stratum. At stratum 2+ a
/// reference id reads as the upstream's IPv4 address, so "LOCL" would show
/// as 76.79.67.76, a real-looking upstream; 127.127.1.1 is in loopback
/// space and every NTP tool of the last decades knows it as "local clock".
pub const LOCAL_CLOCK_REFID: [u8; 4] = [127, 127, 1, 1];

impl SynchronizationConfig {
    /// The reference id a server without sources announces at
    /// `local-stratum`: at 1, `reference-id` or "LOCL"; above,
    /// [`LOCAL_CLOCK_REFID`]; at 16 (unsynchronized), "LOCL" (no client
    /// uses it).
    #[must_use]
    pub fn local_reference_id(&self) -> [u8; 4] {
        match self.local_stratum {
            2..=15 => LOCAL_CLOCK_REFID,
            _ => self.reference_id.map_or(*b"LOCL", |r| r.0),
        }
    }

    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        if self.minimum_agreeing_sources == 0 {
            problems.push(Problem::new(
                at.key("minimum-agreeing-sources"),
                "at least one source must agree (minimum-agreeing-sources >= 1)",
            ));
        }
        if !(1..=16).contains(&self.local_stratum) {
            problems.push(Problem::new(
                at.key("local-stratum"),
                format!(
                    "stratum {} is out of range: it must be from 1 to 16 (16 means unsynchronized)",
                    self.local_stratum
                ),
            ));
        }
        if self.certificate_time_check_after > MAX_CERTIFICATE_TIME_CHECK_AFTER {
            problems.push(Problem::new(
                at.key("certificate-time-check-after"),
                format!(
                    "{} updates is more than a bootstrap window: at most {} \
                     (0, the default, always checks certificate times)",
                    self.certificate_time_check_after, MAX_CERTIFICATE_TIME_CHECK_AFTER
                ),
            ));
        }
    }
}

/// A 4-byte NTP reference identifier, written as up to four ASCII
/// characters (`"GPS"`, `"PPS"`) or as a 32-bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReferenceId(pub [u8; 4]);

impl fmt::Display for ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.iter().take_while(|b| **b != 0) {
            write!(f, "{}", char::from(*byte))?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ReferenceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = ReferenceId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one to four ASCII characters, or a 32-bit number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ReferenceId, E> {
                if v.is_empty() || v.len() > 4 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(E::invalid_value(de::Unexpected::Str(v), &self));
                }
                let mut id = [0u8; 4];
                for (slot, byte) in id.iter_mut().zip(v.bytes()) {
                    *slot = byte;
                }
                Ok(ReferenceId(id))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ReferenceId, E> {
                u32::try_from(v)
                    .map(|n| ReferenceId(n.to_be_bytes()))
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ReferenceId, E> {
                u32::try_from(v)
                    .map(|n| ReferenceId(n.to_be_bytes()))
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}
