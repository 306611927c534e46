//! `sundial bench` runs against `sundial run --observe` on loopback and
//! prints its RESULT lines. A smoke test of the measuring tool, not a
//! timed test: it checks that the modes work and verify what they get,
//! never how fast.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{
    TempDir, ca, free_tcp_port, free_udp_port, nts_server_config, output_within, start_sundial,
    wait_for_tcp,
};

/// Runs `sundial bench ARGS` (killed after 60 s), which must succeed, and
/// returns what it printed.
fn bench(args: &[String]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.arg("bench").args(args);
    let out = output_within(
        cmd,
        Duration::from_secs(60),
        &format!("sundial bench {args:?}"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value of `key=` on the RESULT line.
fn field(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .filter(|l| l.starts_with("RESULT"))
        .flat_map(str::split_whitespace)
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in:\n{stdout}"))
        .to_owned()
}

#[test]
fn bench_ke_and_nts_complete_verified_exchanges_against_sundial() {
    let dir = TempDir::new("bench");
    let certs = ca::generate(dir.path());
    let (ke_port, ntp_port) = (free_tcp_port(), free_udp_port());
    let config = nts_server_config(&dir, &certs, ntp_port, ke_port);
    let (server, _log) = start_sundial(&dir, "server", &config, true);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().expect("address");
    assert!(wait_for_tcp(ke, Duration::from_secs(10)), "KE port not up");
    let pid = server.id().to_string();
    let ca = certs.ca.display().to_string();

    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let stdout = bench(&args(&[
        "ke",
        "--ke",
        &ke.to_string(),
        "--ca",
        &ca,
        "--connections",
        "2",
        "--duration",
        "1",
        "--server-pid",
        &pid,
    ]));
    assert_eq!(field(&stdout, "failed"), "0", "{stdout}");
    assert_eq!(field(&stdout, "cookies_per_handshake"), "8.00", "{stdout}");
    assert!(field(&stdout, "handshakes").parse::<u64>().expect("count") > 0);
    // The server's CPU is read from /proc.
    assert!(
        field(&stdout, "cpu_us_per_handshake")
            .parse::<f64>()
            .is_ok(),
        "{stdout}"
    );

    let stdout = bench(&args(&[
        "nts",
        "--server",
        &format!("127.0.0.1:{ntp_port}"),
        "--ke",
        &ke.to_string(),
        "--ca",
        &ca,
        "--key-exchanges",
        "2",
        "--rate",
        "2000",
        "--duration",
        "1",
    ]));
    assert_eq!(field(&stdout, "bad"), "0", "{stdout}");
    assert!(
        field(&stdout, "verified").parse::<u64>().expect("verified") > 0,
        "{stdout}"
    );
}
