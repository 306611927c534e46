//! The first scenario: three good sources, a clock 0.5 s and 50 ppm off.

mod common;

use common::*;

#[test]
fn steps_once_then_converges_and_learns_frequency() {
    let mut sim = simulation(bad_clock(), good_sources(3), 1);
    sim.run_for(HOUR);
    let trace = sim.trace();
    let settled = settled_after(trace, 1e-3);
    eprintln!(
        "settled <1ms after {settled:?} s; rms after 30 min {:.1} us; max {:.1} us; freq err {:.3} ppm; poll {}",
        rms_offset(trace, 1800.0) * 1e6,
        max_offset(trace, 1800.0) * 1e6,
        sim.clock().correction_ppm() - sim.clock().ideal_correction_ppm(),
        sim.synchronizer().poll_interval(sundial_sync::SourceId(0)),
    );
    for p in trace.iter().step_by(12) {
        eprintln!(
            "{:6.0} {:9.1} us {:8.3} ppm poll {} sync {}",
            p.time,
            p.offset * 1e6,
            p.frequency_error_ppm,
            p.poll,
            p.synchronized
        );
    }
    let s = steps(&sim);
    assert_eq!(s.len(), 1, "{s:?}");
    assert!((s[0] - 0.5).abs() < 1e-3, "{s:?}");
    assert!(settled.is_some_and(|t| t < HOUR), "{settled:?}");
    let freq_err = sim.clock().correction_ppm() - sim.clock().ideal_correction_ppm();
    assert!(freq_err.abs() < 1.0, "{freq_err}");
}
