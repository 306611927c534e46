//! The synchronizer's API driven by hand, without the simulator.

use sundial_sync::{
    ClockAction, Leap, Measurement, NoSyncReason, SourceId, SourceState, SyncSettings, Synchronizer,
};

fn m(time: f64, offset: f64) -> Measurement {
    Measurement {
        time,
        offset,
        delay: 0.02,
        stratum: 1,
        leap: Leap::None,
        root_delay: 0.0,
        root_dispersion: 0.0,
        reference_id: *b"GPS\0",
        precision: -20,
    }
}

fn three() -> Synchronizer {
    let mut sync = Synchronizer::new(SyncSettings::default());
    for id in 1..=3 {
        sync.add_source(SourceId(id));
        sync.set_source_refid(SourceId(id), [192, 0, 2, id as u8]);
    }
    sync
}

#[test]
fn acts_once_three_sources_agree() {
    let mut sync = three();
    assert!(sync.measurement(SourceId(1), m(1.0, 0.01)).is_empty());
    assert!(sync.measurement(SourceId(2), m(2.0, 0.01)).is_empty());
    assert_eq!(
        sync.status().reason,
        Some(NoSyncReason::WaitingForSources {
            usable: 2,
            required: 3
        })
    );
    let actions = sync.measurement(SourceId(3), m(3.0, 0.01));
    assert!(matches!(actions[..], [ClockAction::Slew { offset }] if (offset - 0.01).abs() < 1e-9));
    let status = sync.status();
    assert!(status.synchronized);
    assert_eq!(status.stratum, 2);
    assert_eq!(status.reference_id[..3], [192, 0, 2]);
    assert_eq!(status.leap, Leap::None);
    assert!((status.root_delay - 0.02).abs() < 1e-12);
    let selected = status
        .sources
        .iter()
        .filter(|s| s.state == SourceState::Selected)
        .count();
    assert_eq!(selected, 1);
}

#[test]
fn unknown_sources_are_ignored() {
    let mut sync = three();
    assert!(sync.measurement(SourceId(99), m(1.0, 0.5)).is_empty());
    sync.unreachable(SourceId(99), 2.0);
    assert_eq!(sync.status().sources.len(), 3);
}

#[test]
fn reach_register_counts_polls() {
    let mut sync = three();
    let _ = sync.measurement(SourceId(1), m(1.0, 0.0));
    sync.unreachable(SourceId(1), 17.0);
    let _ = sync.measurement(SourceId(1), m(33.0, 0.0));
    let reach = sync.status().sources[0].reach;
    assert_eq!(reach, 0b101);
    sync.remove_source(SourceId(1));
    assert_eq!(sync.status().sources.len(), 2);
}

#[test]
fn an_unsynchronized_source_is_unusable() {
    let mut sync = three();
    let _ = sync.measurement(
        SourceId(1),
        Measurement {
            leap: Leap::Unsynchronized,
            ..m(1.0, 0.0)
        },
    );
    assert_eq!(sync.status().sources[0].state, SourceState::Unusable);
}

#[test]
fn initial_frequency_is_the_base() {
    let mut sync = three();
    sync.set_initial_frequency(12.5);
    assert_eq!(sync.status().frequency_ppm, 12.5);
    sync.set_initial_frequency(9000.0);
    assert_eq!(sync.status().frequency_ppm, 500.0);
}

#[test]
fn poll_starts_at_the_initial_poll() {
    let sync = Synchronizer::new(SyncSettings {
        initial_poll: 6,
        ..SyncSettings::default()
    });
    assert_eq!(sync.poll_interval(SourceId(1)), 6);
}
