//! The figures quoted in README.md, over ten seeds per scenario. Run with
//! `cargo test -p sundial-sync --test sim_figures -- --nocapture` to see
//! them; the assertions hold the worst seed to the README's claims.

mod common;

use common::*;
use sundial_sync::sim::{SimClockConfig, SimSourceConfig, Simulation};

struct Figures {
    settled: f64,
    rms: f64,
    max: f64,
    freq_err: f64,
}

fn run(clock: SimClockConfig, sources: Vec<SimSourceConfig>, seed: u64, bound: f64) -> Figures {
    let mut sim = simulation(clock, sources, seed);
    sim.set_trace_interval(1.0);
    sim.run_for(4.0 * HOUR);
    figures(&sim, bound)
}

fn figures(sim: &Simulation, bound: f64) -> Figures {
    let trace = sim.trace();
    Figures {
        settled: settled_after(trace, bound).unwrap_or(f64::INFINITY),
        // Steady state: the last two of the four hours.
        rms: rms_offset(trace, 2.0 * HOUR),
        max: max_offset(trace, 2.0 * HOUR),
        freq_err: sim.clock().correction_ppm() - sim.clock().ideal_correction_ppm(),
    }
}

fn report(name: &str, all: &[Figures]) -> Figures {
    let worst = Figures {
        settled: all.iter().map(|f| f.settled).fold(0.0, f64::max),
        rms: all.iter().map(|f| f.rms).fold(0.0, f64::max),
        max: all.iter().map(|f| f.max).fold(0.0, f64::max),
        freq_err: all.iter().map(|f| f.freq_err.abs()).fold(0.0, f64::max),
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    eprintln!(
        "{name}: settled median {:.0} s worst {:.0} s | steady RMS median {:.1} us worst {:.1} us | max {:.1} us | freq err worst {:.4} ppm",
        median(all.iter().map(|f| f.settled).collect()),
        worst.settled,
        median(all.iter().map(|f| f.rms).collect()) * 1e6,
        worst.rms * 1e6,
        worst.max * 1e6,
        worst.freq_err,
    );
    worst
}

#[test]
fn good_sources_bad_clock() {
    let all: Vec<Figures> = (100..110)
        .map(|seed| run(bad_clock(), good_sources(3), seed, 1e-3))
        .collect();
    let worst = report("3 good sources, 0.5 s and 50 ppm off", &all);
    assert!(worst.settled < 600.0);
    assert!(worst.max < 100e-6);
    assert!(worst.freq_err < 0.1);
}

#[test]
fn lossy_jittery_network() {
    let sources: Vec<SimSourceConfig> = good_sources(3)
        .into_iter()
        .map(|s| SimSourceConfig {
            loss: 0.2,
            jitter: 1e-3,
            ..s
        })
        .collect();
    let all: Vec<Figures> = (200..210)
        .map(|seed| run(bad_clock(), sources.clone(), seed, 1e-3))
        .collect();
    let worst = report("20% loss, 1 ms jitter", &all);
    assert!(worst.settled < HOUR);
    assert!(worst.max < 150e-6);
}

/// The issue's example (see `sim_issue_example.rs`): 50 ms and 50 ppm
/// off, 1 ms jitter, no loss; settled means within 100 µs for good.
#[test]
fn issue_example_1_ms_jitter() {
    let clock = SimClockConfig {
        initial_error: -0.050,
        frequency_error_ppm: 50.0,
        ..SimClockConfig::default()
    };
    let all: Vec<Figures> = (300..310)
        .map(|seed| run(clock, jittery(), seed, 100e-6))
        .collect();
    let worst = report("issue example: 50 ms, 50 ppm, 1 ms jitter", &all);
    assert!(worst.settled < 1800.0);
    assert!(worst.max < 100e-6);
}

/// The same network, the clock 50 ms ahead and 100 ppm slow.
#[test]
fn minus_100_ppm_1_ms_jitter() {
    let clock = SimClockConfig {
        initial_error: 0.050,
        frequency_error_ppm: -100.0,
        ..SimClockConfig::default()
    };
    let all: Vec<Figures> = (400..410)
        .map(|seed| run(clock, jittery(), seed, 100e-6))
        .collect();
    let worst = report("50 ms, -100 ppm, 1 ms jitter", &all);
    assert!(worst.settled < 1800.0);
    assert!(worst.max < 100e-6);
}

fn jittery() -> Vec<SimSourceConfig> {
    good_sources(3)
        .into_iter()
        .map(|s| SimSourceConfig { jitter: 1e-3, ..s })
        .collect()
}
