//! Reference clocks in the simulator: gpsd's serial time and a PPS line,
//! with jitter, lost edges and a whole-time source that gets the second
//! wrong. The PPS gives the fraction of the second, the other sources the
//! second itself.

mod common;

use common::*;
use sundial_sync::sim::{SimClockConfig, SimRefclockConfig, Simulation};
use sundial_sync::{Leap, NoSyncReason, SourceId, SourceState, SyncSettings};

fn settings(minimum_agreeing_sources: usize) -> SyncSettings {
    SyncSettings {
        minimum_agreeing_sources,
        ..SyncSettings::default()
    }
}

fn state(sim: &Simulation, id: SourceId) -> SourceState {
    let status = sim.synchronizer().status();
    status
        .sources
        .iter()
        .find(|s| s.id == id)
        .map_or(SourceState::Unusable, |s| s.state)
}

#[test]
fn a_pps_alone_never_selects_itself() {
    let mut sim = Simulation::new(settings(1), bad_clock(), Vec::new(), 40);
    let pps = sim.add_refclock(SimRefclockConfig::pps());
    sim.run_for(600.0);
    assert!(sim.actions().is_empty(), "{:?}", sim.actions());
    let status = sim.synchronizer().status();
    assert!(!status.synchronized);
    assert_eq!(
        status.reason,
        Some(NoSyncReason::WaitingForSources {
            usable: 0,
            required: 1
        })
    );
    assert_eq!(state(&sim, pps), SourceState::Unusable);
    let row = status.sources.iter().find(|s| s.id == pps).unwrap();
    assert!(row.unnumbered_pulses >= 590, "{row:?}");
    assert_ne!(row.reach, 0, "the edges do arrive");
}

#[test]
fn ntp_sources_number_the_pulses_and_the_pps_steers_to_microseconds() {
    // The default three agreeing NTP sources, 5 to 15 ms away, and a PPS.
    let mut sim = simulation(bad_clock(), good_sources(3), 41);
    let pps = sim.add_refclock(SimRefclockConfig::pps());
    sim.set_trace_interval(1.0);
    sim.run_for(HOUR);
    let status = sim.synchronizer().status();
    assert!(status.synchronized);
    assert_eq!(state(&sim, pps), SourceState::Selected);
    assert_eq!(status.stratum, 1);
    assert_eq!(&status.reference_id, b"PPS\0");
    // Network sources alone hold this clock to some 20 µs; the PPS to a
    // few, once the start-up step and the slew are done.
    let rms = rms_offset(sim.trace(), 0.5 * HOUR);
    let max = max_offset(sim.trace(), 0.5 * HOUR);
    eprintln!(
        "PPS numbered by NTP: RMS {:.2} µs, max {:.2} µs",
        rms * 1e6,
        max * 1e6
    );
    assert!(rms < 3e-6, "RMS {rms}");
    assert!(max < 10e-6, "max {max}");
    assert_eq!(steps(&sim).len(), 1, "only the start-up step");
}

#[test]
fn jitter_and_lost_edges_with_a_late_serial_time() {
    // A GPS receiver alone: its serial time 100 ms late (the usual NMEA
    // latency, configured as precise to 100 ms), and its PPS line with
    // 2 µs of jitter and a third of the edges lost.
    let mut sim = Simulation::new(settings(1), bad_clock(), Vec::new(), 42);
    let serial = sim.add_refclock(SimRefclockConfig::serial());
    let pps = sim.add_refclock(SimRefclockConfig {
        jitter: 2e-6,
        loss: 0.33,
        ..SimRefclockConfig::pps()
    });
    sim.set_trace_interval(1.0);
    sim.run_for(HOUR);
    let status = sim.synchronizer().status();
    assert!(status.synchronized, "{status:?}");
    assert_eq!(state(&sim, pps), SourceState::Selected);
    assert_eq!(state(&sim, serial), SourceState::Candidate);
    assert_eq!(status.stratum, 1);
    let rms = rms_offset(sim.trace(), 0.5 * HOUR);
    let max = max_offset(sim.trace(), 0.5 * HOUR);
    eprintln!(
        "PPS numbered by late serial time: RMS {:.2} µs, max {:.2} µs",
        rms * 1e6,
        max * 1e6
    );
    // The serial time's 100 ms bias does not leak into the clock.
    assert!(rms < 5e-6, "RMS {rms}");
    assert!(max < 20e-6, "max {max}");
}

/// A receiver whose serial time is right to a millisecond, and its PPS,
/// added to `sim` and run for half an hour: the PPS is selected by then.
fn settled_receiver(sim: &mut Simulation) -> (SourceId, SourceId) {
    let serial = sim.add_refclock(SimRefclockConfig {
        error: 0.0,
        precision: 1e-3,
        ..SimRefclockConfig::serial()
    });
    let pps = sim.add_refclock(SimRefclockConfig::pps());
    sim.set_trace_interval(1.0);
    sim.run_for(0.5 * HOUR);
    assert_eq!(state(sim, pps), SourceState::Selected);
    (serial, pps)
}

#[test]
fn a_wrong_second_is_outvoted_and_the_pps_keeps_the_right_one() {
    let mut sim = simulation(SimClockConfig::default(), good_sources(3), 43);
    let (serial, pps) = settled_receiver(&mut sim);
    // The receiver's serial time is suddenly a second ahead.
    if let Some(r) = sim.refclock_mut(0) {
        r.error = 1.0;
    }
    sim.run_for(0.5 * HOUR);
    assert_eq!(state(&sim, serial), SourceState::Falseticker);
    assert_eq!(state(&sim, pps), SourceState::Selected);
    assert!(steps(&sim).is_empty(), "{:?}", steps(&sim));
    let max = max_offset(sim.trace(), 0.25 * HOUR);
    assert!(max < 10e-6, "max {max}");
}

#[test]
fn a_short_wrong_second_from_the_only_whole_time_source_steps_nothing() {
    let mut sim = Simulation::new(settings(1), SimClockConfig::default(), Vec::new(), 44);
    let (serial, pps) = settled_receiver(&mut sim);
    // A minute of the wrong second: the PPS has nothing else to number
    // its edges by and follows it, but the discipline only steps an
    // offset that persists (900 s), so the clock runs on.
    if let Some(r) = sim.refclock_mut(0) {
        r.error = 1.0;
    }
    sim.run_for(60.0);
    let status = sim.synchronizer().status();
    assert!(status.offset > 0.9, "{status:?}");
    if let Some(r) = sim.refclock_mut(0) {
        r.error = 0.0;
    }
    sim.run_for(0.5 * HOUR);
    assert!(steps(&sim).is_empty(), "{:?}", steps(&sim));
    assert_eq!(state(&sim, pps), SourceState::Selected);
    assert_eq!(state(&sim, serial), SourceState::Candidate);
    let max = max_offset(sim.trace(), 0.25 * HOUR);
    eprintln!(
        "through a minute of the wrong second: max {:.2} µs",
        max * 1e6
    );
    assert!(max < 20e-6, "max {max}");
}

#[test]
fn the_receivers_leap_warning_is_announced() {
    let mut sim = Simulation::new(settings(1), SimClockConfig::default(), Vec::new(), 45);
    let _serial = sim.add_refclock(SimRefclockConfig::serial());
    let _pps = sim.add_refclock(SimRefclockConfig::pps());
    sim.run_for(600.0);
    assert_eq!(sim.synchronizer().status().leap, Leap::None);
    if let Some(r) = sim.refclock_mut(0) {
        r.leap = Leap::InsertSecond;
    }
    sim.run_for(60.0);
    // The PPS cannot know of leap seconds and is not counted against it.
    assert_eq!(sim.synchronizer().status().leap, Leap::InsertSecond);
    // A receiver without a fix is not used at all, and with it the PPS.
    if let Some(r) = sim.refclock_mut(0) {
        r.leap = Leap::Unsynchronized;
    }
    sim.run_for(60.0);
    let status = sim.synchronizer().status();
    assert!(!status.synchronized, "{status:?}");
}
