//! The issue's example, as written: "from a 50 ms offset and 50 ppm error
//! with 1 ms jitter, the offset stays under 100 µs after convergence".
//!
//! - Three stratum 1 sources (`good_sources(3)`: 5, 10 and 15 ms away,
//!   ±20 µs true errors and ±20 µs path asymmetries that cancel), three
//!   being the fewest that `minimum_agreeing_sources` lets steer.
//! - Jitter as the simulator models it: each direction of each exchange
//!   queues for an exponentially distributed time of mean 1 ms on top of
//!   the base delay, so a round trip carries 2 ms of queueing on average
//!   and a single sample's offset is off by up to half its round-trip
//!   queueing (hundreds of µs typically). No loss: the lossy variant is
//!   `sim_figures::lossy_jittery_network`, with looser bounds.
//! - The clock starts 50 ms off (below the 128 ms step threshold, so it is
//!   slewed, never stepped) and its frequency is 50 ppm off.
//! - Convergence window: 30 minutes. After it, |offset| must stay below
//!   100 µs for the remaining 3.5 hours, sampled every second, for each of
//!   ten seeds; both signs of the initial offset and of the frequency
//!   error, and ±100 ppm, are covered.

mod common;

use common::*;
use sundial_sync::ClockAction;
use sundial_sync::sim::{SimClockConfig, SimSourceConfig};

const CONVERGENCE: f64 = 1800.0;
const BOUND: f64 = 100e-6;

fn jittery_sources() -> Vec<SimSourceConfig> {
    good_sources(3)
        .into_iter()
        .map(|s| SimSourceConfig {
            jitter: 1e-3,
            loss: 0.0,
            ..s
        })
        .collect()
}

/// Runs four hours; returns the worst |offset| after the convergence
/// window and the number of steps taken.
fn run(initial_error: f64, frequency_error_ppm: f64, seed: u64) -> (f64, usize) {
    let clock = SimClockConfig {
        initial_error,
        frequency_error_ppm,
        ..SimClockConfig::default()
    };
    let mut sim = simulation(clock, jittery_sources(), seed);
    sim.set_trace_interval(1.0);
    sim.run_for(4.0 * HOUR);
    let stepped = sim
        .actions()
        .iter()
        .filter(|(_, a)| matches!(a, ClockAction::Step { .. }))
        .count();
    (max_offset(sim.trace(), CONVERGENCE), stepped)
}

#[test]
fn fifty_ms_and_fifty_ppm_with_1_ms_jitter_stays_under_100_us() {
    for seed in 300..310 {
        // Odd seeds start ahead and run slow, even ones behind and fast.
        let sign = if seed % 2 == 0 { 1.0 } else { -1.0 };
        let (worst, steps) = run(-sign * 0.050, sign * 50.0, seed);
        assert_eq!(steps, 0, "seed {seed}: 50 ms must be slewed");
        assert!(worst < BOUND, "seed {seed}: {:.1} us", worst * 1e6);
    }
}

#[test]
fn a_hundred_ppm_either_way_too() {
    for seed in 400..404 {
        let sign = if seed % 2 == 0 { 1.0 } else { -1.0 };
        let (worst, steps) = run(sign * 0.050, sign * 100.0, seed);
        assert_eq!(steps, 0, "seed {seed}");
        assert!(worst < BOUND, "seed {seed}: {:.1} us", worst * 1e6);
    }
}
