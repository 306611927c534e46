//! `sundial demo`: the README's first command runs an NTS server and client
//! on loopback, shows a key exchange and authenticated samples, ends by
//! itself and leaves no file behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TempDir, output_within};

#[test]
fn demo_shows_nts_working_and_cleans_up() {
    // The demo's temporary directory goes under TMPDIR: a private one here,
    // so "nothing left behind" is checked without racing other tests.
    let tmp = TempDir::new("demo");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.args(["demo", "--seconds", "3"])
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_LOG");
    let output = output_within(cmd, Duration::from_secs(15), "sundial demo --seconds 3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let all = format!(
        "{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{all}");

    let key_exchange = stdout
        .lines()
        .find(|l| l.contains("] key exchange with 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no key exchange line:\n{all}"));
    assert!(key_exchange.contains("TLS 1.3"), "{key_exchange}");
    assert!(key_exchange.contains("8 cookies of"), "{key_exchange}");
    assert!(key_exchange.contains("AEAD_"), "{key_exchange}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("] sample 1: offset") && l.contains("(NTS-authenticated)")),
        "no authenticated sample:\n{all}"
    );
    assert!(stdout.contains("Status after"), "no status table:\n{all}");
    assert!(stdout.contains("selected"), "source not selected:\n{all}");
    assert!(stdout.contains("clock         not changed"), "{all}");

    // The throwaway directory was inside TMPDIR, and is gone.
    assert!(
        stdout.contains(&format!("in {}/sundial-demo-", tmp.path().display())),
        "{all}"
    );
    assert!(stdout.contains("] removed "), "{all}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read TMPDIR")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{all}");
}
