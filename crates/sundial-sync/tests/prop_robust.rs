//! No input makes the synchronizer panic, and every number it returns is
//! finite and within its documented range.

use proptest::prelude::*;
use sundial_sync::{
    ClockAction, Leap, Measurement, SourceId, StepLimit, SyncSettings, Synchronizer,
};

#[derive(Clone, Debug)]
enum Op {
    Measure(u64, Measurement),
    Unreachable(u64, f64),
    Add(u64),
    Remove(u64),
}

/// Mostly ordinary values, sometimes the worst ones.
fn number(ordinary: std::ops::Range<f64>) -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => ordinary,
        1 => any::<f64>(),
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(-f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(-0.0),
            Just(1e12),
            Just(-1e13),
        ],
    ]
}

fn leap() -> impl Strategy<Value = Leap> {
    prop_oneof![
        4 => Just(Leap::None),
        1 => Just(Leap::InsertSecond),
        1 => Just(Leap::DeleteSecond),
        1 => Just(Leap::Unsynchronized),
    ]
}

fn measurement() -> impl Strategy<Value = (f64, Measurement)> {
    (
        number(0.0..100.0),
        prop_oneof![4 => number(-0.003..0.003), 1 => -3000.0..3000.0f64],
        number(-0.01..0.3),
        0u8..=20,
        leap(),
        number(0.0..0.1),
        number(0.0..0.1),
        any::<i8>(),
        any::<[u8; 4]>(),
    )
        .prop_map(
            |(
                dt,
                offset,
                delay,
                stratum,
                leap,
                root_delay,
                root_dispersion,
                precision,
                reference_id,
            )| {
                (
                    dt,
                    Measurement {
                        time: 0.0,
                        offset,
                        delay,
                        stratum,
                        leap,
                        root_delay,
                        root_dispersion,
                        reference_id,
                        precision,
                    },
                )
            },
        )
}

fn op() -> impl Strategy<Value = (f64, Op)> {
    prop_oneof![
        12 => (0u64..5, measurement(), prop::bool::weighted(0.9)).prop_map(|(id, (dt, m), on_timeline)| {
            // Usually the measurement is taken `dt` after the previous
            // operation (NaN here stands for that); sometimes its time is
            // the raw value instead (NaN, backwards, huge).
            (dt, Op::Measure(id, Measurement { time: if on_timeline { f64::NAN } else { dt }, ..m }))
        }),
        2 => (0u64..5, number(0.0..100.0)).prop_map(|(id, dt)| (dt, Op::Unreachable(id, dt))),
        1 => (0u64..5).prop_map(|id| (0.0, Op::Add(id))),
        1 => (0u64..6).prop_map(|id| (0.0, Op::Remove(id))),
    ]
}

fn settings() -> impl Strategy<Value = SyncSettings> {
    let limit = || prop_oneof![Just(None), number(0.0..3000.0).prop_map(Some)];
    (
        0usize..5,
        (limit(), limit()),
        (limit(), limit()),
        limit(),
        number(0.0..1.0),
        any::<(i8, i8, i8)>(),
    )
        .prop_map(
            |(min, (f1, b1), (f2, b2), acc, step, (p0, p1, p2))| SyncSettings {
                minimum_agreeing_sources: min,
                single_step_panic_threshold: StepLimit {
                    forward: f1,
                    backward: b1,
                },
                startup_step_panic_threshold: StepLimit {
                    forward: f2,
                    backward: b2,
                },
                accumulated_step_panic_threshold: acc,
                step_threshold: step,
                poll_min: p0,
                poll_max: p1,
                initial_poll: p2,
                local_stratum: 16,
            },
        )
}

fn check_action(a: &ClockAction) -> Result<(), TestCaseError> {
    match *a {
        ClockAction::Step { offset } | ClockAction::Panic { offset, .. } => {
            prop_assert!(offset.is_finite(), "{a:?}");
        }
        ClockAction::Slew { offset } => {
            prop_assert!(offset.is_finite() && offset.abs() <= 0.5, "{a:?}");
        }
        ClockAction::SetFrequency { ppm } => {
            prop_assert!(ppm.is_finite() && ppm.abs() <= 500.0, "{a:?}");
        }
    }
    Ok(())
}

fn check_status(sync: &Synchronizer) -> Result<(), TestCaseError> {
    let s = sync.status();
    for x in [s.root_delay, s.root_dispersion, s.offset, s.frequency_ppm] {
        prop_assert!(x.is_finite(), "{s:?}");
    }
    prop_assert!(s.frequency_ppm.abs() <= 500.0);
    let settings = sync.settings();
    for src in &s.sources {
        for x in [src.offset, src.delay, src.jitter] {
            prop_assert!(x.is_finite(), "{src:?}");
        }
        prop_assert!((settings.poll_min..=settings.poll_max).contains(&src.poll));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_and_stays_finite(
        settings in settings(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let mut sync = Synchronizer::new(settings);
        for id in 0..4 {
            sync.add_source(SourceId(id));
        }
        let mut now = 0.0;
        for (dt, op) in ops {
            if dt.is_finite() && dt >= 0.0 {
                now += dt;
            }
            match op {
                Op::Measure(id, m) => {
                    let m = Measurement { time: if m.time.is_nan() { now } else { m.time }, ..m };
                    for a in sync.measurement(SourceId(id), m) {
                        check_action(&a)?;
                    }
                }
                Op::Unreachable(id, t) => sync.unreachable(SourceId(id), if t.is_finite() { now } else { t }),
                Op::Add(id) => sync.add_source(SourceId(id)),
                Op::Remove(id) => sync.remove_source(SourceId(id)),
            }
            check_status(&sync)?;
            let _ = sync.poll_interval(SourceId(0));
        }
    }
}
