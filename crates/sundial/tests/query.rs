//! `sundial query` against real servers on loopback: `sundial run` as an
//! NTS server, chronyd as one, and small fake servers for the failures a
//! real server does not produce on demand. Each failure has its own exit
//! code. Nothing here changes the clock.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ChildGuard, TempDir, ca, chrony, free_tcp_port, free_udp_port, output_within, wait_for_tcp,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_record::{ErrorCode, NextProtocol};
use sundial_proto::nts::ke_server::{Negotiated, build_response, error_response};

/// Runs `sundial query ARGS`, killed after 20 s (no query may take that
/// long in these tests).
fn query(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.arg("query").args(args);
    let output = output_within(
        cmd,
        Duration::from_secs(20),
        &format!("sundial query {args:?}"),
    );
    (output, started.elapsed())
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
}

/// `sundial run` as an NTS server (stratum 1 on its local clock) on
/// loopback; returns it with its KE and NTP ports.
fn start_server(dir: &TempDir, certs: &ca::CertFiles) -> (ChildGuard, u16, u16) {
    let (ke_port, ntp_port) = (free_tcp_port(), free_udp_port());
    let config = common::nts_server_config(dir, certs, ntp_port, ke_port);
    let path = dir.write("server.toml", &common::unprivileged(dir, &config));
    let log = dir.join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["run", "-c"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("server.log"))
        .spawn()
        .expect("start sundial run");
    let guard = ChildGuard::new("sundial run", child, vec![log]);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().expect("address");
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "sundial run did not open its NTS-KE port"
    );
    (guard, ke_port, ntp_port)
}

/// A one-connection NTS-KE server over blocking rustls that answers any
/// request with `response` (records as bytes) and closes.
fn fake_ke(certs: &ca::CertFiles, response: Vec<u8>) -> u16 {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.chain)
        .expect("chain")
        .collect::<Result<_, _>>()
        .expect("chain PEM");
    let key = PrivateKeyDer::from_pem_file(&certs.key).expect("key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    config.alpn_protocols = vec![b"ntske/1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok(conn) = rustls::ServerConnection::new(config) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // The request is a few records in one TLS record; its content
        // does not matter to this server.
        let mut buf = [0u8; 1024];
        if tls.read(&mut buf).is_ok() {
            let _ = tls.write_all(&response);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

/// Everything that needs a real sundial server, against one server.
#[test]
fn query_sundial_server() {
    let dir = TempDir::new("query");
    let certs = ca::generate(dir.path());
    let (_server, ke_port, ntp_port) = start_server(&dir, &certs);
    let ca_pem = certs.ca.to_str().expect("utf-8 path");
    let target = format!("localhost:{ke_port}");

    // For a person.
    let (out, _) = query(&["--ca", ca_pem, &target]);
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "NTS key exchange with",
        "TLS 1.3",
        "AEAD_AES_SIV_CMAC_",
        "cookies          8 of",
        // No Server record: the KE server's own address (RFC 8915 4.1.7).
        &format!("NTP server       127.0.0.1:{ntp_port}"),
        "CN=localhost (server)",
        "localhost, 127.0.0.1, ::1",
        "CN=sundial test CA (issuer)",
        "(NTS-authenticated)",
        "offset           ",
        "stratum          1",
        "reference id     LOCL",
        "leap             none",
        "root dispersion",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in\n{}", text(&out));
    }

    // For a script; --ke-port overrides the port in HOST.
    let (out, _) = query(&[
        "--json",
        "--ca",
        ca_pem,
        "--ke-port",
        &ke_port.to_string(),
        "localhost:1",
    ]);
    assert_exit(&out, 0);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["mode"], "nts");
    assert!(v["error"].is_null());
    let ke = &v["key_exchange"];
    assert_eq!(ke["cookies"], 8);
    assert!(ke["cookie_length"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(ke["ntp_port"], ntp_port);
    assert_eq!(ke["tls_version"], "TLS 1.3");
    assert!(ke["aead"].as_str().is_some_and(|a| a.starts_with("AEAD_")));
    assert_eq!(ke["certificates"][0]["subject"], "CN=localhost");
    assert!(ke["certificates"][0]["not_after"].is_string());
    let ntp = &v["ntp"];
    assert_eq!(ntp["authenticated"], true);
    assert_eq!(ntp["stratum"], 1);
    assert_eq!(ntp["reference_id"], "LOCL");
    assert_eq!(ntp["leap"], "none");
    for field in ["offset", "delay", "root_delay", "root_dispersion"] {
        assert!(ntp[field].is_f64(), "{field}: {v}");
    }
    // Loopback to our own clock: the offset is tiny.
    assert!(ntp["offset"].as_f64().is_some_and(|o| o.abs() < 0.1), "{v}");

    // Plain NTP, no key exchange.
    let (out, _) = query(&["--ntp", &format!("127.0.0.1:{ntp_port}")]);
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(NOT authenticated)"), "{}", text(&out));
    assert!(!stdout.contains("NTS key exchange"), "{}", text(&out));

    // A CA that did not sign the server's certificate.
    let other = TempDir::new("query-other-ca");
    let other_ca = ca::generate(other.path());
    let (out, _) = query(&["--ca", other_ca.ca.to_str().expect("utf-8 path"), &target]);
    assert_exit(&out, 3);
    // Said in words, naming the CA file, not as rustls's `UnknownIssuer`.
    let wanted = format!(
        "the server's certificate is not signed by the CA in {}",
        other_ca.ca.display()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&wanted),
        "{}",
        text(&out)
    );

    // A KE server whose cookies the NTP server cannot open (as after the
    // NTP server's keys were replaced): the NTP server answers NTSN.
    let negotiated = Negotiated {
        protocol: NextProtocol::NtpV4,
        algorithm: AeadAlgorithm::AesSivCmac256,
        requested_server: None,
        requested_port: None,
        compliant_gcm_siv: false,
    };
    let bogus_cookie = vec![0x5a; 100];
    let response =
        build_response(&negotiated, &[bogus_cookie], None, Some(ntp_port)).expect("records");
    let fake = fake_ke(&certs, response);
    let (out, _) = query(&["--json", "--ca", ca_pem, &format!("localhost:{fake}")]);
    assert_exit(&out, 5);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["error"]["kind"], "nts-nak", "{v}");
    assert_eq!(v["key_exchange"]["cookies"], 1, "{v}");
}

#[test]
fn an_error_record_exits_4() {
    let dir = TempDir::new("query-err");
    let certs = ca::generate(dir.path());
    let fake = fake_ke(&certs, error_response(ErrorCode::BadRequest));
    let (out, _) = query(&[
        "--ca",
        certs.ca.to_str().expect("utf-8 path"),
        &format!("localhost:{fake}"),
    ]);
    assert_exit(&out, 4);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error record"),
        "{}",
        text(&out)
    );
}

#[test]
fn nothing_listening_exits_7() {
    let (out, _) = query(&[&format!("127.0.0.1:{}", free_tcp_port())]);
    assert_exit(&out, 7);
    // Plain NTP: ICMP port unreachable comes back on the connected socket.
    let (out, _) = query(&["--ntp", &format!("127.0.0.1:{}", free_udp_port())]);
    assert_exit(&out, 7);
}

#[test]
fn a_silent_server_times_out_with_6() {
    // The kernel accepts the TCP connection; nobody ever reads from it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (out, took) = query(&["--timeout", "1", &format!("127.0.0.1:{port}")]);
    assert_exit(&out, 6);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let (out, _) = query(&["--json", "--timeout", "0.5", &format!("127.0.0.1:{port}")]);
    assert_exit(&out, 6);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["error"]["kind"], "timeout");
    drop(listener);
}

#[test]
fn usage_errors_exit_2() {
    let (out, _) = query(&["[::1"]);
    assert_exit(&out, 2);
    let (out, _) = query(&["--ca", "/nonexistent/ca.pem", "localhost"]);
    assert_exit(&out, 2);
    // --json keeps its promise of one JSON object on bad arguments too.
    for args in [
        &["--json", "--timeout", "0", "localhost"][..],
        &["--json"][..],
        &["--json", "--bogus", "localhost"][..],
        &["--json", "[::1"][..],
    ] {
        let (out, _) = query(args);
        assert_exit(&out, 2);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out)));
        assert_eq!(v["error"]["kind"], "usage", "{v}");
        assert_eq!(v["exit_code"], 2, "{v}");
    }
    let (out, _) = query(&["--help"]);
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Exit codes:"),
        "{}",
        text(&out)
    );
}

#[test]
fn query_chronyd_over_nts() {
    let programs = chrony::programs();
    let dir = TempDir::new("query-chrony");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let _chronyd =
        chrony::start_server(&programs, &dir, ntp_port, ke_port, &certs.chain, &certs.key);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().expect("address");
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "chronyd's NTS-KE port did not open"
    );
    let (out, _) = query(&[
        "--json",
        "--ca",
        certs.ca.to_str().expect("utf-8 path"),
        &format!("localhost:{ke_port}"),
    ]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["ntp"]["authenticated"], true, "{v}");
    assert_eq!(v["ntp"]["stratum"], 1, "{v}");
    assert_eq!(v["key_exchange"]["ntp_port"], ntp_port, "{v}");
    assert!(
        v["key_exchange"]["cookies"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
}
