//! Observe-only operation: the real clock is never corrected, and the
//! synchronizer is fed each measured offset minus what its own actions would
//! have corrected by then (`AppliedCorrections`). Its model must then stay
//! true: it learns the real clock's frequency error, reports a small
//! residual offset, and never asks for a step or a panic on a clock that is
//! merely drifting.

use sundial_sync::{
    AppliedCorrections, ClockAction, Leap, Measurement, SourceId, SyncSettings, Synchronizer,
};

#[test]
fn an_uncorrected_drifting_clock_is_modelled_not_chased() {
    let settings = SyncSettings {
        minimum_agreeing_sources: 1,
        ..SyncSettings::default()
    };
    let mut sync = Synchronizer::new(settings);
    let id = SourceId(0);
    sync.add_source(id);
    let mut applied = AppliedCorrections::new(0.0);
    // The real clock is 20 ms behind and loses 30 ppm; nothing corrects it.
    let true_offset = |t: f64| 0.020 + 30e-6 * t;
    let mut actions = Vec::new();
    let mut t = 0.0;
    while t < 4.0 * 3600.0 {
        let measured = true_offset(t);
        let m = Measurement {
            time: t,
            offset: measured - applied.at(t),
            delay: 0.001,
            stratum: 1,
            leap: Leap::None,
            root_delay: 0.0,
            root_dispersion: 0.0,
            reference_id: *b"GPS\0",
            precision: -20,
        };
        for action in sync.measurement(id, m) {
            applied.apply(&action, t);
            actions.push(action);
        }
        t += 2f64.powi(i32::from(sync.poll_interval(id)));
    }
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, ClockAction::Step { .. } | ClockAction::Panic { .. })),
        "a drifting clock needs no step: {:?}",
        actions.iter().find(|a| !matches!(
            a,
            ClockAction::Slew { .. } | ClockAction::SetFrequency { .. }
        ))
    );
    let status = sync.status();
    assert!(status.synchronized);
    assert!(
        (status.frequency_ppm - 30.0).abs() < 0.5,
        "frequency it would set: {} ppm",
        status.frequency_ppm
    );
    // What the virtual clock would be off by now, and what the real one is
    // off from it (the whole uncorrected error), are both known.
    assert!(status.offset.abs() < 1e-3, "residual {}", status.offset);
    let would_have_corrected = applied.at(t);
    assert!((would_have_corrected - true_offset(t)).abs() < 1e-3);
}
