//! A simulated source and the path to it.

use crate::Leap;

use super::noise::Noise;

/// One source: its own clock error and the path's behaviour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimSourceConfig {
    /// The source's clock minus true time (a falseticker is far off).
    pub error: f64,
    /// One-way base delay, seconds.
    pub delay: f64,
    /// Outbound minus inbound base delay: shifts the measured offset by
    /// half of it, which no client can detect.
    pub asymmetry: f64,
    /// Mean of the exponential queueing delay added to each direction.
    pub jitter: f64,
    /// Standard deviation of a normal delay added to each direction (drawn
    /// per packet, a leg never shorter than zero): the bench's relay draws
    /// its delays this way, and unlike queueing it makes no sample's delay
    /// say anything about its offset's error.
    pub jitter_sd: f64,
    /// Probability that a packet, in either direction, is held back by
    /// `spike` more seconds.
    pub spike_probability: f64,
    pub spike: f64,
    /// Probability that an exchange is lost.
    pub loss: f64,
    pub stratum: u8,
    pub leap: Leap,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub precision: i8,
}

impl Default for SimSourceConfig {
    /// A good stratum 1 server 10 ms away on a quiet path.
    fn default() -> Self {
        Self {
            error: 0.0,
            delay: 0.010,
            asymmetry: 0.0,
            jitter: 50e-6,
            jitter_sd: 0.0,
            spike_probability: 0.0,
            spike: 0.0,
            loss: 0.0,
            stratum: 1,
            leap: Leap::None,
            root_delay: 0.0,
            root_dispersion: 1e-5,
            precision: -20,
        }
    }
}

/// The two one-way delays of one exchange, or `None` if it is lost.
pub(crate) fn draw_path(source: &SimSourceConfig, noise: &mut Noise) -> Option<(f64, f64)> {
    if noise.chance(source.loss) {
        return None;
    }
    let outbound = leg(source, source.delay + source.asymmetry / 2.0, noise);
    let inbound = leg(source, source.delay - source.asymmetry / 2.0, noise);
    Some((outbound, inbound))
}

/// One direction's delay around `base`.
fn leg(source: &SimSourceConfig, base: f64, noise: &mut Noise) -> f64 {
    let mut delay = base + noise.exponential(source.jitter);
    if source.jitter_sd > 0.0 {
        delay += source.jitter_sd * noise.normal();
    }
    if source.spike_probability > 0.0 && noise.chance(source.spike_probability) {
        delay += source.spike;
    }
    delay.max(0.0)
}
