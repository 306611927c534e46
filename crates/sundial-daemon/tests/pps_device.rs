//! A real kernel PPS device, where the machine has one: `/dev/pps0`, or
//! the device named by `SUNDIAL_TEST_PPS`. It must answer the ioctls and,
//! when a signal is connected, deliver edges that count up and sit near
//! the system clock. Without a device the test says so on stderr and
//! passes: CI machines have none.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sundial_daemon::source::pps::{KernelPps, PpsDevice};

#[test]
fn a_real_pps_device_answers_and_counts_its_edges() {
    let path = std::env::var_os("SUNDIAL_TEST_PPS")
        .map_or_else(|| PathBuf::from("/dev/pps0"), PathBuf::from);
    if !path.exists() {
        eprintln!(
            "skipped: no PPS device at {} (set SUNDIAL_TEST_PPS to test another one)",
            path.display()
        );
        return;
    }
    let mut device = KernelPps::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut edges = Vec::new();
    for _ in 0..3 {
        match device.fetch(Duration::from_secs(2)) {
            Ok(Some(edge)) => edges.push(edge),
            Ok(None) => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    if edges.iter().all(|e| e.sequence == 0) {
        eprintln!(
            "{}: answers, but no edge in 6 s (is a signal connected?)",
            path.display()
        );
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for pair in edges.windows(2) {
        assert!(pair[1].sequence >= pair[0].sequence, "{edges:?}");
    }
    let last = edges.last().unwrap();
    let age = i64::try_from(now).unwrap() - last.time.secs;
    assert!((0..=10).contains(&age), "edge {last:?} is {age} s from now");
}
