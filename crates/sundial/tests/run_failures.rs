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
    assert!(!dir.join("ntskeys").exists());
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
    assert!(
        !dir.join("ntskeys").exists(),
        "a failed start leaves no key file behind"
    );
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

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("ntp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn validate(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["validate", "-c"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn a_missing_source_certificate_authority_is_named() {
    let dir = temp_dir("source-ca");
    let config = write_config(
        &dir,
        &format!(
            "[[source]]\nmode = \"nts\"\naddress = \"127.0.0.1:1\"\ncertificate-authority = \"{}/missing-ca.pem\"\n\n[synchronization]\nminimum-agreeing-sources = 1\n\n[clock]\nobserve-only = true\n",
            dir.display()
        ),
    );
    let out = run(&config);
    assert_fails_naming(&out, "missing-ca.pem");
    assert_fails_naming(&out, "127.0.0.1:1");
}

#[test]
fn fewer_sources_than_must_agree_is_an_error_for_run_and_validate() {
    let dir = temp_dir("too-few");
    let config = write_config(
        &dir,
        "[[source]]\nmode = \"server\"\naddress = \"127.0.0.1:1\"\n\n[clock]\nobserve-only = true\n",
    );
    let out = run(&config);
    assert_fails_naming(&out, "minimum-agreeing-sources");
    let checked = validate(&config);
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("minimum-agreeing-sources = 1"), "{stderr}");
    assert!(checked.stdout.is_empty());
}

#[test]
fn a_start_up_error_is_printed_once() {
    let dir = temp_dir("once");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&server_config(&dir, &addr, ""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|line| line.contains(&addr)).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn a_fleet_reader_started_before_its_owner_says_what_to_do() {
    let dir = temp_dir("reader-first");
    let config = write_config(
        &dir,
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:0\"\n\n[keyset]\nkey-storage-path = \"{}/ntskeys\"\n",
            dir.display()
        ),
    );
    let out = run(&config);
    assert_fails_naming(&out, "ntskeys");
    assert_fails_naming(&out, "start the [[nts-ke-server]] owner first");
    assert_fails_naming(&out, "copy its key file here");
    assert!(!dir.join("ntskeys").exists(), "a reader never writes it");
}

/// A client with one reference clock and nothing else to do.
fn refclock_config(dir: &Path, source: &str) -> PathBuf {
    write_config(
        dir,
        &format!("{source}\n[synchronization]\nminimum-agreeing-sources = 1\n"),
    )
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
