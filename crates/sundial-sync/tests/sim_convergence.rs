//! Three good sources; the clock starts 0.5 s behind and 50 ppm fast.

mod common;

use common::*;
use sundial_sync::sim::{SimClockConfig, SimSourceConfig};
use sundial_sync::{SourceId, SyncSettings};

#[test]
fn steps_once_then_converges_and_learns_frequency() {
    let mut sim = simulation(bad_clock(), good_sources(3), 1);
    sim.run_for(HOUR);
    let trace = sim.trace();

    let s = steps(&sim);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!((s[0] - 0.5).abs() < 1e-3, "{s:?}");

    let settled = settled_after(trace, 1e-3);
    assert!(settled.is_some_and(|t| t < HOUR), "{settled:?}");
    let freq_err = sim.clock().correction_ppm() - sim.clock().ideal_correction_ppm();
    assert!(freq_err.abs() < 1.0, "{freq_err}");
    let status = sim.synchronizer().status();
    assert!(status.synchronized);
    assert_eq!(status.stratum, 2);
    assert!((status.frequency_ppm - sim.clock().correction_ppm()).abs() < 1e-9);
}

#[test]
fn poll_grows_to_the_maximum_when_stable() {
    let mut sim = simulation(bad_clock(), good_sources(3), 2);
    sim.run_for(3.0 * HOUR);
    let max = SyncSettings::default().poll_max;
    assert_eq!(sim.synchronizer().poll_interval(SourceId(0)), max);
    // And the clock stayed good while the polls grew.
    assert!(max_offset(sim.trace(), HOUR) < 1e-3);
    assert!(
        sim.synchronizer()
            .status()
            .sources
            .iter()
            .all(|s| s.poll == max)
    );
}

#[test]
fn a_correct_clock_is_left_nearly_alone() {
    let mut sim = simulation(SimClockConfig::default(), good_sources(3), 3);
    sim.run_for(HOUR);
    assert!(steps(&sim).is_empty());
    assert!(max_offset(sim.trace(), 0.0) < 1e-3);
}

#[test]
fn converges_through_loss_and_jitter() {
    let sources = good_sources(3)
        .into_iter()
        .map(|s| SimSourceConfig {
            loss: 0.2,
            jitter: 1e-3,
            ..s
        })
        .collect();
    let mut sim = simulation(bad_clock(), sources, 4);
    sim.run_for(2.0 * HOUR);
    let trace = sim.trace();
    assert!(settled_after(trace, 2e-3).is_some_and(|t| t < HOUR));
    assert!(
        max_offset(trace, HOUR) < 2e-3,
        "{}",
        max_offset(trace, HOUR)
    );
    assert!(
        sim.synchronizer()
            .status()
            .sources
            .iter()
            .any(|s| s.reach != 0xff)
    );
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let mut sim = simulation(bad_clock(), good_sources(3), 7);
        sim.run_for(HOUR);
        sim.trace().to_vec()
    };
    assert_eq!(run(), run());

    // Looking at the clock more often does not change the run.
    let offset_at_end = |trace_interval: f64| {
        let mut sim = simulation(bad_clock(), good_sources(3), 7);
        sim.set_trace_interval(trace_interval);
        sim.run_for(HOUR);
        sim.clock().offset()
    };
    assert_eq!(offset_at_end(10.0), offset_at_end(1.0));
}
