//! Shared by the simulation tests: scenarios and the figures of a run.
#![allow(dead_code)]

use sundial_sync::sim::{SimClockConfig, SimSourceConfig, Simulation, TracePoint};
use sundial_sync::{ClockAction, SyncSettings};

pub const HOUR: f64 = 3600.0;

/// `n` good sources 5 to 25 ms away with slightly different true errors
/// and asymmetries, as real servers on the Internet have.
pub fn good_sources(n: usize) -> Vec<SimSourceConfig> {
    (0..n)
        .map(|i| {
            let i = i as f64;
            SimSourceConfig {
                error: 20e-6 * (i - 1.0),
                delay: 0.005 + 0.005 * i,
                asymmetry: 40e-6 * (1.0 - i),
                ..SimSourceConfig::default()
            }
        })
        .collect()
}

/// The clock of the first scenario: 0.5 s behind and 50 ppm fast.
pub fn bad_clock() -> SimClockConfig {
    SimClockConfig {
        initial_error: -0.5,
        frequency_error_ppm: 50.0,
        ..SimClockConfig::default()
    }
}

pub fn simulation(clock: SimClockConfig, sources: Vec<SimSourceConfig>, seed: u64) -> Simulation {
    Simulation::new(SyncSettings::default(), clock, sources, seed)
}

/// The first time after which |offset| stays below `bound` to the end.
pub fn settled_after(trace: &[TracePoint], bound: f64) -> Option<f64> {
    let last_bad = trace.iter().rposition(|p| p.offset.abs() >= bound);
    match last_bad {
        None => trace.first().map(|p| p.time),
        Some(i) => trace.get(i + 1).map(|p| p.time),
    }
}

/// RMS offset over the trace points from `from` on.
pub fn rms_offset(trace: &[TracePoint], from: f64) -> f64 {
    let tail: Vec<f64> = trace
        .iter()
        .filter(|p| p.time >= from)
        .map(|p| p.offset)
        .collect();
    (tail.iter().map(|o| o * o).sum::<f64>() / tail.len().max(1) as f64).sqrt()
}

pub fn max_offset(trace: &[TracePoint], from: f64) -> f64 {
    trace
        .iter()
        .filter(|p| p.time >= from)
        .map(|p| p.offset.abs())
        .fold(0.0, f64::max)
}

pub fn steps(sim: &Simulation) -> Vec<f64> {
    sim.actions()
        .iter()
        .filter_map(|(_, a)| match a {
            ClockAction::Step { offset } => Some(*offset),
            _ => None,
        })
        .collect()
}
