//! `sundial run` refuses to start, with an error naming the file or address
//! at fault and a non-zero exit, instead of serving half-configured.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::output_within;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sundial-runfail-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `sundial run -c FILE`, killing it if it does not exit within 10 s
/// (which would mean it started when it should not have).
fn run(config: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.args(["run", "-c"]).arg(config);
    output_within(
        cmd,
        Duration::from_secs(10),
        "sundial run (it started with a broken setup)",
    )
}

fn assert_fails_naming(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        stderr.contains(needle),
        "stderr does not name {needle:?}:\n{stderr}"
    );
}

fn server_config(dir: &Path, ntp: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[[server]]\nlisten = \"{ntp}\"\n\n[[nts-ke-server]]\nlisten = \"127.0.0.1:0\"\ncertificate-chain-path = \"{d}/missing-chain.pem\"\nprivate-key-path = \"{d}/missing.key\"\n\n[keyset]\nkey-storage-path = \"{d}/ntskeys\"\n{extra}",
        d = dir.display()
    );
    let path = dir.join("ntp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn missing_certificate_is_named() {
    let dir = temp_dir("cert");
    let out = run(&server_config(&dir, "127.0.0.1:0", ""));
    assert_fails_naming(&out, "missing-chain.pem");
}

#[test]
fn corrupt_key_file_is_named_and_kept() {
    let dir = temp_dir("keys");
    std::fs::write(dir.join("ntskeys"), b"garbage").unwrap();
    let out = run(&server_config(&dir, "127.0.0.1:0", ""));
    assert_fails_naming(&out, "ntskeys");
    assert_eq!(std::fs::read(dir.join("ntskeys")).unwrap(), b"garbage");
}

#[test]
fn port_in_use_is_named() {
    let dir = temp_dir("port");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&server_config(&dir, &addr, ""));
    assert_fails_naming(&out, &addr);
}

#[test]
fn ambiguous_announced_port_is_a_config_error() {
    let dir = temp_dir("ambiguous");
    let config = server_config(
        &dir,
        "127.0.0.1:12301",
        "\n[[server]]\nlisten = \"127.0.0.1:12302\"\n",
    );
    let out = run(&config);
    assert_fails_naming(&out, "ntp-port");
    let validate = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!validate.status.success());
    assert!(String::from_utf8_lossy(&validate.stderr).contains("nts-ke-server[0]"));
}

#[test]
fn unknown_key_is_named_with_file_and_line() {
    let dir = temp_dir("unknown");
    let config = server_config(&dir, "127.0.0.1:0", "stale-key-cont = 3\n");
    let out = run(&config);
    assert_fails_naming(&out, "stale-key-cont");
    assert_fails_naming(&out, &config.display().to_string());
    assert_fails_naming(&out, ":11:");
}

/// A client with one reference clock and nothing else to do.
fn refclock_config(dir: &Path, source: &str) -> PathBuf {
    let path = dir.join("ntp.toml");
    let text = format!("{source}\n[synchronization]\nminimum-agreeing-sources = 1\n");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_missing_pps_device_is_named() {
    let dir = temp_dir("pps");
    let device = dir.join("pps9");
    let source = format!(
        "[[source]]\nmode = \"pps\"\npath = \"{}\"\nprecision = 1e-7\n[[source]]\nmode = \"server\"\naddress = \"127.0.0.1:1\"\n",
        device.display()
    );
    let out = run(&refclock_config(&dir, &source));
    assert_fails_naming(&out, &format!("pps source {}", device.display()));
}

#[test]
fn a_sock_path_that_is_not_a_socket_is_named_and_kept() {
    let dir = temp_dir("sock");
    let file = dir.join("chrony.ttyS0.sock");
    std::fs::write(&file, b"not a socket").unwrap();
    let source = format!(
        "[[source]]\nmode = \"sock\"\npath = \"{}\"\nprecision = 1e-3\n",
        file.display()
    );
    let out = run(&refclock_config(&dir, &source));
    assert_fails_naming(&out, &format!("sock source {}", file.display()));
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
}
