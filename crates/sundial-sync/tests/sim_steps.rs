//! Steps and the panic thresholds.

mod common;

use common::*;
use sundial_sync::sim::SimClockConfig;
use sundial_sync::{ClockAction, NoSyncReason, PanicReason};

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
