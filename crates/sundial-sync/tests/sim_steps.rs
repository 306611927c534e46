//! Steps and the panic thresholds.

mod common;

use common::*;
use sundial_sync::sim::SimClockConfig;
use sundial_sync::{ClockAction, NoSyncReason, PanicReason, SourceState};

fn panics(sim: &sundial_sync::sim::Simulation) -> Vec<(f64, PanicReason)> {
    sim.actions()
        .iter()
        .filter_map(|(_, a)| match a {
            ClockAction::Panic { offset, reason } => Some((*offset, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_2000_s_jump_after_start_up_panics_and_is_never_stepped() {
    let mut sim = simulation(SimClockConfig::default(), good_sources(3), 20);
    sim.run_for(HOUR);
    for i in 0..3 {
        if let Some(s) = sim.source_mut(i) {
            s.error += 2000.0;
        }
    }
    sim.run_for(2.0 * HOUR);
    assert!(steps(&sim).is_empty(), "{:?}", steps(&sim));
    let p = panics(&sim);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!((p[0].0 - 2000.0).abs() < 0.01);
    assert_eq!(p[0].1, PanicReason::SingleStep);
    assert!(sim.halted());
    assert_eq!(
        sim.synchronizer().status().reason,
        Some(NoSyncReason::Panicked)
    );
}

#[test]
fn at_start_up_the_startup_threshold_rules() {
    // 2000 s behind at boot: the start-up limit (forward unlimited) lets
    // it be stepped, though a later step that large would panic.
    let clock = SimClockConfig {
        initial_error: -2000.0,
        ..SimClockConfig::default()
    };
    let mut sim = simulation(clock, good_sources(3), 21);
    sim.run_for(HOUR);
    let s = steps(&sim);
    assert_eq!(s.len(), 1);
    assert!((s[0] - 2000.0).abs() < 1e-3);
    assert!(panics(&sim).is_empty());
    assert!(max_offset(sim.trace(), 600.0) < 1e-3);

    // Two days ahead at boot: beyond the start-up backward limit of a day.
    let clock = SimClockConfig {
        initial_error: 2.0 * 86400.0,
        ..SimClockConfig::default()
    };
    let mut sim = simulation(clock, good_sources(3), 22);
    sim.run_for(HOUR);
    assert!(steps(&sim).is_empty());
    let p = panics(&sim);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].1, PanicReason::StartupStep);
}

#[test]
fn a_moderate_jump_is_stepped_after_the_stepout() {
    let mut sim = simulation(SimClockConfig::default(), good_sources(3), 23);
    sim.run_for(HOUR);
    for i in 0..3 {
        if let Some(s) = sim.source_mut(i) {
            s.error += 0.5;
        }
    }
    sim.run_for(HOUR);
    let stepped: Vec<(f64, f64)> = sim
        .actions()
        .iter()
        .filter_map(|(t, a)| match a {
            ClockAction::Step { offset } => Some((*t, *offset)),
            _ => None,
        })
        .collect();
    assert_eq!(stepped.len(), 1, "{stepped:?}");
    // Not before the 900 s stepout.
    assert!(stepped[0].0 >= HOUR + 900.0, "{stepped:?}");
    assert!((stepped[0].1 - 0.5).abs() < 1e-3);
    // The clock now follows the sources, 0.5 s ahead of true time (the
    // trace shows true time minus our clock).
    let worst = sim
        .trace()
        .iter()
        .filter(|p| p.time > 2.0 * HOUR - 600.0)
        .map(|p| (p.offset + 0.5).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-3, "{worst}");
}

/// One server's time jumps 0.5 s mid-run (a server that steps): with four
/// sources it becomes a falseticker and the other three keep steering;
/// the clock is never stepped nor pulled towards it.
#[test]
fn a_server_that_steps_is_outvoted() {
    let mut sim = simulation(SimClockConfig::default(), good_sources(4), 24);
    sim.run_for(HOUR);
    if let Some(s) = sim.source_mut(3) {
        s.error += 0.5;
    }
    sim.run_for(2.0 * HOUR);
    assert!(steps(&sim).is_empty(), "{:?}", steps(&sim));
    assert!(!sim.halted());
    let worst = max_offset(sim.trace(), 600.0);
    assert!(worst < 100e-6, "{worst}");
    let status = sim.synchronizer().status();
    assert!(status.synchronized);
    assert_eq!(status.sources[3].state, SourceState::Falseticker);
}

/// The same with only three sources: the two that agree are fewer than
/// `minimum_agreeing_sources`, so nothing is steered until the stepping
/// server returns; the clock coasts on its learned frequency meanwhile.
#[test]
fn a_server_that_steps_among_three_stops_steering_not_moves_the_clock() {
    let mut sim = simulation(bad_clock(), good_sources(3), 25);
    sim.run_for(HOUR);
    let actions_before = sim.actions().len();
    if let Some(s) = sim.source_mut(2) {
        s.error += 0.5;
    }
    sim.run_for(HOUR);
    assert_eq!(steps(&sim).len(), 1, "only the start-up step");
    let status = sim.synchronizer().status();
    assert_eq!(
        status.reason,
        Some(NoSyncReason::TooFewAgreeing {
            agreeing: 2,
            required: 3
        })
    );
    assert_eq!(status.sources[2].state, SourceState::Falseticker);
    // Nothing steered after the first poll that saw the jump.
    let late = sim
        .actions()
        .iter()
        .skip(actions_before)
        .filter(|(t, _)| *t > HOUR + 2000.0)
        .count();
    assert_eq!(late, 0);
    let worst = max_offset(sim.trace(), HOUR);
    assert!(worst < 100e-6, "{worst}");
    // Back in line: steering resumes.
    if let Some(s) = sim.source_mut(2) {
        s.error -= 0.5;
    }
    sim.run_for(HOUR);
    assert!(sim.synchronizer().status().synchronized);
    assert!(max_offset(sim.trace(), 2.0 * HOUR) < 100e-6);
}
