//! Which sources the clock follows.

mod common;

use common::*;
use sundial_sync::sim::{SimClockConfig, SimSourceConfig};
use sundial_sync::{Leap, NoSyncReason, SourceState};

#[test]
fn a_falseticker_is_marked_and_ignored() {
    let mut sources = good_sources(3);
    sources.push(SimSourceConfig {
        error: 1.0,
        ..SimSourceConfig::default()
    });
    let mut sim = simulation(SimClockConfig::default(), sources, 10);
    sim.run_for(HOUR);
    assert!(steps(&sim).is_empty());
    assert!(max_offset(sim.trace(), 0.0) < 1e-3);
    let status = sim.synchronizer().status();
    assert!(status.synchronized);
    let states: Vec<SourceState> = status.sources.iter().map(|s| s.state).collect();
    assert_eq!(states[3], SourceState::Falseticker, "{states:?}");
    assert!(states[..3].contains(&SourceState::Selected), "{states:?}");
    assert!(states[..3].iter().all(|s| *s != SourceState::Falseticker));
}

#[test]
fn too_few_agreeing_sources_do_nothing() {
    // Two good sources and one 1 s off: no majority of three.
    let mut sources = good_sources(2);
    sources.push(SimSourceConfig {
        error: 1.0,
        ..SimSourceConfig::default()
    });
    let mut sim = simulation(bad_clock(), sources, 11);
    sim.run_for(HOUR);
    assert!(sim.actions().is_empty(), "{:?}", sim.actions());
    let status = sim.synchronizer().status();
    assert!(!status.synchronized);
    assert_eq!(status.stratum, 16);
    assert_eq!(status.leap, Leap::Unsynchronized);
    assert_eq!(
        status.reason,
        Some(NoSyncReason::TooFewAgreeing {
            agreeing: 2,
            required: 3
        })
    );
}

#[test]
fn too_few_sources_do_nothing() {
    let mut sim = simulation(bad_clock(), good_sources(2), 12);
    sim.run_for(HOUR);
    assert!(sim.actions().is_empty());
    let status = sim.synchronizer().status();
    assert!(!status.synchronized);
    assert_eq!(
        status.reason,
        Some(NoSyncReason::WaitingForSources {
            usable: 2,
            required: 3
        })
    );
}

#[test]
fn leap_second_follows_the_majority() {
    let mut sim = simulation(SimClockConfig::default(), good_sources(3), 13);
    sim.run_for(600.0);
    if let Some(s) = sim.source_mut(0) {
        s.leap = Leap::InsertSecond;
    }
    sim.run_for(600.0);
    assert_eq!(sim.synchronizer().status().leap, Leap::None);
    if let Some(s) = sim.source_mut(1) {
        s.leap = Leap::InsertSecond;
    }
    sim.run_for(600.0);
    assert_eq!(sim.synchronizer().status().leap, Leap::InsertSecond);
}

#[test]
fn an_unreachable_source_becomes_unusable() {
    let mut sources = good_sources(4);
    sources[3].loss = 1.0;
    let mut sim = simulation(SimClockConfig::default(), sources, 14);
    sim.run_for(HOUR);
    let status = sim.synchronizer().status();
    assert!(status.synchronized);
    assert_eq!(status.sources[3].reach, 0);
    assert_eq!(status.sources[3].state, SourceState::Unusable);
}
