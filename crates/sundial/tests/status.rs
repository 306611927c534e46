//! `sundial status` against running daemons on loopback: a pure server
//! shows its NTP listener and counters; an observe-only client whose NTS
//! source is another sundial shows that source selected with a full jar of
//! 8 cookies, and the server shows the key exchange it served. The socket
//! is removed when the daemon stops, and a missing one is named.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ChildGuard, TempDir, ca, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};
use sundial_daemon::status::{ClockKind, KeyRole, SourceState, Status};

fn start(dir: &TempDir, name: &str, config: &str, observe: bool) -> ChildGuard {
    common::start_sundial(dir, name, config, observe).0
}

fn status_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sundial"))
        .arg("status")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `sundial status --json --socket PATH`, parsed; `None` while it fails.
fn status_json(socket: &Path) -> Option<Status> {
    let out = status_cmd(&["--json", "--socket", socket.to_str()?]);
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("status --json is a Status"))
}

/// Polls the status until `check` accepts it (20 s at most).
fn status_until(socket: &Path, what: &str, check: impl Fn(&Status) -> bool) -> Status {
    let mut last = None;
    let found = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let status = status_json(socket)?;
        let ok = check(&status);
        last = Some(status.clone());
        ok.then_some(status)
    });
    found.unwrap_or_else(|| panic!("{what}: never seen; last status: {last:#?}"))
}

/// One plain NTPv4 client request; the answer is not needed.
fn ntp_request(server: SocketAddr) {
    let mut packet = [0u8; 48];
    packet[0] = 0x23; // LI 0, version 4, mode 3 (client)
    packet[40..48].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&packet, server).unwrap();
    let mut answer = [0u8; 128];
    let _ = socket.recv(&mut answer);
}

#[test]
fn a_pure_server_reports_its_listener() {
    let dir = TempDir::new("status-server");
    let socket = dir.join("observe");
    let port = free_udp_port();
    let config = format!(
        "[[server]]\nlisten = \"127.0.0.1:{port}\"\n\n[synchronization]\nlocal-stratum = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n",
        socket.display()
    );
    let mut daemon = start(&dir, "server", &config, false);
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let status = status_until(&socket, "the daemon's status", |_| true);
    assert_eq!(status.ntp_servers.len(), 1, "{status:#?}");
    assert_eq!(status.ntp_servers[0].listen, listen);
    assert_eq!(status.system.clock, ClockKind::Local);
    assert!(status.system.synchronized);
    assert_eq!(status.system.stratum, 1);
    assert_eq!(status.system.reference_id, "LOCL");
    assert!(status.sources.is_empty() && status.keyset.is_none());
    assert!(!status.observe_only);
    // A local clock has no estimated error, and no virtual clock.
    assert_eq!(status.clock_error_seconds, None);
    assert_eq!(status.clock_uncertainty_seconds, None);
    assert_eq!(status.virtual_correction_seconds, None);
    // ntpd-rs's default mode: anyone on the machine may read the status.
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "socket mode {mode:o}");

    ntp_request(listen);
    let status = status_until(&socket, "the request counted", |s| {
        s.ntp_servers[0].received >= 1
    });
    assert_eq!(status.ntp_servers[0].plain, 1, "{status:#?}");

    // The tables, reading the socket path from the config.
    let out = status_cmd(&["-c", dir.join("server.toml").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Synchronized: yes (local clock, no sources), stratum 1"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");

    let stopped = daemon.terminate(Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    assert!(!socket.exists(), "the socket outlived the daemon");
    let out = status_cmd(&["--socket", socket.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!("{}: no such socket", socket.display())),
        "{err}"
    );
}

#[test]
fn an_nts_source_shows_selected_with_a_full_cookie_jar() {
    let dir = TempDir::new("status-nts");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let server_socket = dir.join("server.sock");
    let client_socket = dir.join("client.sock");
    let server_config = format!(
        "[[server]]\nlisten = \"127.0.0.1:{ntp_port}\"\n\n\
         [[nts-ke-server]]\nlisten = \"127.0.0.1:{ke_port}\"\n\
         certificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n\n\
         [keyset]\nkey-storage-path = \"{}\"\n\n\
         [synchronization]\nlocal-stratum = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n",
        certs.chain.display(),
        certs.key.display(),
        dir.join("ntskeys").display(),
        server_socket.display()
    );
    let _server = start(&dir, "server", &server_config, false);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().unwrap();
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "KE port did not open"
    );

    // Observe-only: measures and reports, never touches the clock.
    let client_config = format!(
        "[[source]]\nmode = \"nts\"\naddress = \"localhost:{ke_port}\"\ncertificate-authority = \"{}\"\n\n\
         [source-defaults]\npoll-interval-limits = {{ min = 0, max = 2 }}\ninitial-poll-interval = 0\n\n\
         [synchronization]\nminimum-agreeing-sources = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n",
        certs.ca.display(),
        client_socket.display()
    );
    let _client = start(&dir, "client", &client_config, true);

    // The clock error follows the first correction, which synchronization
    // needs too; waiting for both keeps the test as fast as before.
    let status = status_until(&client_socket, "a selected source with 8 cookies", |s| {
        s.sources
            .first()
            .is_some_and(|src| src.state == SourceState::Selected && src.nts_cookies == Some(8))
            && s.clock_error_seconds.is_some()
    });
    assert!(status.observe_only);
    // The server reads the same system clock, so the real clock is right
    // and the virtual one, which took every correction, is near it. The
    // bound is loose because a busy machine delays loopback packets by
    // milliseconds, unevenly.
    let error = status.clock_error_seconds.unwrap();
    let sigma = status.clock_uncertainty_seconds.unwrap();
    let correction = status.virtual_correction_seconds.unwrap();
    assert!(error.abs() < 0.05, "{status:#?}");
    assert!(sigma > 0.0 && sigma < 0.05, "{status:#?}");
    assert!(correction.abs() < 0.05, "{status:#?}");
    let source = &status.sources[0];
    assert_eq!(source.mode, "nts");
    assert_eq!(
        source.address,
        Some(format!("127.0.0.1:{ntp_port}").parse().unwrap())
    );
    assert_eq!(source.stratum, Some(1));
    assert!(source.last_key_exchange.is_some(), "{source:#?}");
    assert!(source.counters.key_exchanges >= 1, "{source:#?}");
    assert!(source.counters.samples >= 1, "{source:#?}");
    assert!(source.reach & 1 == 1, "{source:#?}");
    assert!(
        source.delay_seconds > 0.0 && source.delay_seconds < 1.0,
        "{source:#?}"
    );
    assert_eq!(status.system.clock, ClockKind::Sources);
    assert!(status.system.synchronized, "{:#?}", status.system);
    assert_eq!(status.system.stratum, 2);
    assert_eq!(status.system.reference_id, "127.0.0.1");

    let text =
        String::from_utf8_lossy(&status_cmd(&["--socket", client_socket.to_str().unwrap()]).stdout)
            .into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("* nts localhost:{ke_port}"))),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("  virtual clock: ") && l.contains(" of true time (± ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("  virtual correction: ")),
        "{text}"
    );

    let server = status_until(&server_socket, "the served exchange", |s| {
        s.ntp_servers.first().is_some_and(|n| n.nts >= 1)
    });
    let ke_server = &server.nts_ke_servers[0];
    assert!(ke_server.responses >= 1, "{ke_server:#?}");
    assert_eq!(
        ke_server.certificate_subject.as_deref(),
        Some("CN=localhost")
    );
    assert!(ke_server.certificate_expiry_seconds.is_some_and(|s| s > 0));
    let keys = server.keyset.expect("the KE server has keys");
    assert_eq!(keys.role, KeyRole::Owner);
    assert_eq!(keys.storage_path, Some(dir.join("ntskeys")));
    assert!(keys.keys >= 1);
}

#[test]
fn a_local_clock_at_stratum_2_announces_127_127_1_1_and_says_so() {
    let dir = TempDir::new("status-stratum2");
    let socket = dir.join("observe");
    let port = free_udp_port();
    let config = format!(
        "[[server]]\nlisten = \"127.0.0.1:{port}\"\n\n[synchronization]\nlocal-stratum = 2\n\n\
         [observability]\nobservation-path = \"{}\"\n",
        socket.display()
    );
    let mut daemon = start(&dir, "server", &config, false);
    let status = status_until(&socket, "the daemon's status", |_| true);
    assert_eq!(status.system.stratum, 2);
    // chrony's `local stratum N` choice: not "LOCL", which at stratum 2
    // reads as the upstream 76.79.67.76.
    assert_eq!(status.system.reference_id, "127.127.1.1");
    let out = status_cmd(&["--socket", socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reference 127.127.1.1 (local clock, no upstream)"),
        "{text}"
    );

    // On the wire, as `sundial query` reads it.
    let out = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["query", "--ntp", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.127.1.1 (local clock, no upstream)"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped = daemon.terminate(Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
}
