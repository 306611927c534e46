//! `sundial ca`: the files it writes, their modes, and that real TLS stacks
//! accept them: openssl's verifier, rustls (the stack `sundial run` serves
//! with) in a full handshake, and, when chrony is installed, chronyd
//! (GnuTLS) doing NTS with `sundial run` — whose metrics endpoint must then
//! count that exchange.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{ChildGuard, TempDir, poll_until};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const FILES: [&str; 5] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server-chain.pem",
    "server.key",
];

/// Bound on each blocking socket operation and on waits for the daemon.
const STEP: Duration = Duration::from_secs(10);

fn sundial(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sundial")
}

fn ca(hostname: &str, ips: &[&str], out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().expect("utf-8 temp path");
    // `=`: a hostname starting with '-' must reach our check, not clap's.
    let hostname = format!("--hostname={hostname}");
    let mut args = vec!["ca", &hostname, "--out", out];
    for ip in ips {
        args.extend(["--ip", ip]);
    }
    args.extend(extra);
    sundial(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "sundial ca failed: {}\n{}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// openssl, or `None` with a note when the machine has none.
fn openssl(args: &[&str]) -> Option<Output> {
    match Command::new("openssl").args(args).output() {
        Ok(output) => Some(output),
        Err(e) => {
            eprintln!("openssl not available ({e}): skipping the openssl check");
            None
        }
    }
}

#[test]
fn writes_the_ca_and_server_files_with_private_keys_private() {
    let dir = TempDir::new("ca-files");
    let out = dir.join("tls/nested");
    let stdout = assert_ok(&ca("time.test", &["127.0.0.1", "::1"], &out, &[]));

    // Open to other users (chronyd reads ca.pem as _chrony); the keys are
    // protected by their own mode.
    assert_eq!(mode(&out), 0o755, "a directory it creates can be passed");
    for name in FILES {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    assert_eq!(mode(&out.join("ca.key")), 0o600);
    assert_eq!(mode(&out.join("server.key")), 0o600);
    for name in ["ca.pem", "server.pem", "server-chain.pem"] {
        assert_eq!(mode(&out.join(name)) & 0o600, 0o600, "{name}");
    }
    let key = fs::read_to_string(out.join("server.key")).unwrap_or_default();
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8: {key}"
    );
    let chain = fs::read_to_string(out.join("server-chain.pem")).unwrap_or_default();
    let leaf = fs::read_to_string(out.join("server.pem")).unwrap_or_default();
    let ca_pem = fs::read_to_string(out.join("ca.pem")).unwrap_or_default();
    assert_eq!(chain, format!("{leaf}{ca_pem}"), "leaf first, then the CA");

    // What to paste, with absolute paths.
    let abs = fs::canonicalize(&out).unwrap_or(out);
    for line in [
        format!(
            "certificate-chain-path = \"{}\"",
            abs.join("server-chain.pem").display()
        ),
        format!(
            "private-key-path = \"{}\"",
            abs.join("server.key").display()
        ),
        format!(
            "certificate-authority = \"{}\"",
            abs.join("ca.pem").display()
        ),
        "address = \"time.test\"".to_owned(),
        format!("ntstrustedcerts {}", abs.join("ca.pem").display()),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn openssl_verifies_the_chain_and_sees_the_constraints() {
    let dir = TempDir::new("ca-openssl");
    let out = dir.join("tls");
    assert_ok(&ca("time.test", &["192.0.2.10"], &out, &["--days", "30"]));
    let path = |name: &str| out.join(name).display().to_string();

    let Some(verify) = openssl(&["verify", "-CAfile", &path("ca.pem"), &path("server.pem")]) else {
        return;
    };
    assert!(
        verify.status.success(),
        "openssl verify: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );

    let Some(shown) = openssl(&["x509", "-noout", "-text", "-in", &path("server.pem")]) else {
        return;
    };
    let shown = text(&shown.stdout);
    for expected in [
        "DNS:time.test",
        "IP Address:192.0.2.10",
        "TLS Web Server Authentication",
        "Digital Signature",
        "CA:FALSE",
        "ASN1 OID: prime256v1",
    ] {
        assert!(
            shown.contains(expected),
            "server.pem lacks {expected}:\n{shown}"
        );
    }
    let Some(ca_shown) = openssl(&["x509", "-noout", "-text", "-in", &path("ca.pem")]) else {
        return;
    };
    let ca_shown = text(&ca_shown.stdout);
    for expected in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Name Constraints: critical",
        "DNS:time.test",
        "IP:192.0.2.10/255.255.255.255",
    ] {
        assert!(
            ca_shown.contains(expected),
            "ca.pem lacks {expected}:\n{ca_shown}"
        );
    }
    // --days 30 for the server; the CA lives longer.
    let Some(end) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(31 * 86_400).to_string(),
        "-in",
        &path("server.pem"),
    ]) else {
        return;
    };
    assert!(!end.status.success(), "server.pem outlives --days 30");
    let Some(end) = openssl(&[
        "x509",
        "-noout",
        "-checkend",
        &(29 * 86_400).to_string(),
        "-in",
        &path("server.pem"),
    ]) else {
        return;
    };
    assert!(end.status.success(), "server.pem expires before --days 30");
}

/// A leaked ca.key still cannot vouch for another server: openssl refuses
/// a certificate it signs for a name outside the CA's constraints.
#[test]
fn the_ca_cannot_sign_for_other_names() {
    let dir = TempDir::new("ca-constraint");
    let out = dir.join("tls");
    assert_ok(&ca("time.test", &[], &out, &[]));
    let path = |name: &str| out.join(name).display().to_string();
    let evil_key = dir.join("evil.key").display().to_string();
    let evil_csr = dir.join("evil.csr").display().to_string();
    let evil_pem = dir.join("evil.pem").display().to_string();
    let ext = dir.write("evil.ext", "subjectAltName = DNS:evil.test, IP:127.0.0.1\n");
    let (ca_pem, ca_key) = (path("ca.pem"), path("ca.key"));
    let steps: [Vec<&str>; 3] = [
        vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &evil_key,
        ],
        vec![
            "req",
            "-new",
            "-key",
            &evil_key,
            "-subj",
            "/CN=evil.test",
            "-out",
            &evil_csr,
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &evil_csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            ext.to_str().unwrap_or_default(),
            "-out",
            &evil_pem,
        ],
    ];
    for step in &steps {
        let Some(result) = openssl(step) else { return };
        assert!(
            result.status.success(),
            "openssl {step:?}: {}",
            text(&result.stderr)
        );
    }
    let Some(verify) = openssl(&["verify", "-CAfile", &path("ca.pem"), &evil_pem]) else {
        return;
    };
    assert!(
        !verify.status.success(),
        "a certificate for evil.test verified"
    );
    let said = text(&verify.stdout) + &text(&verify.stderr);
    assert!(said.contains("subtree violation"), "{said}");
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let dir = TempDir::new("ca-force");
    let out = dir.join("tls");
    assert_ok(&ca("time.test", &[], &out, &[]));
    let before = fs::read(out.join("server.key")).unwrap_or_default();

    let again = ca("time.test", &[], &out, &[]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(err.contains("already exist"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(
        err.contains(&out.join("ca.key").display().to_string()),
        "{err}"
    );
    assert_eq!(fs::read(out.join("server.key")).unwrap_or_default(), before);

    // One file in the way is enough to stop it, and nothing else is written.
    let partial = dir.join("partial");
    fs::create_dir(&partial).unwrap_or_else(|e| panic!("{e}"));
    fs::write(partial.join("ca.pem"), "mine").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ca("time.test", &[], &partial, &[]).status.code(), Some(1));
    assert!(!partial.join("server.key").exists());
    assert_eq!(
        fs::read_to_string(partial.join("ca.pem")).unwrap_or_default(),
        "mine"
    );

    // --force replaces, and a replaced key file is still 0600 even if the
    // old one was not.
    fs::set_permissions(out.join("server.key"), fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&ca("time.test", &[], &out, &["--force"]));
    assert_ne!(fs::read(out.join("server.key")).unwrap_or_default(), before);
    assert_eq!(mode(&out.join("server.key")), 0o600);
    assert!(!out.join("server.key.tmp").exists());
}

#[test]
fn a_bad_hostname_writes_nothing() {
    let dir = TempDir::new("ca-bad");
    let out = dir.join("tls");
    for bad in ["bad name", "-x.test", "a..b", ""] {
        let result = ca(bad, &[], &out, &[]);
        assert_eq!(result.status.code(), Some(1), "{bad:?}");
        assert!(
            text(&result.stderr).contains("not a DNS name or an IP address"),
            "{}",
            text(&result.stderr)
        );
    }
    assert!(!out.exists());
    let result = sundial(&[
        "ca",
        "--hostname",
        "a.test",
        "--out",
        "/nonexistent-x",
        "--days",
        "0",
    ]);
    assert_eq!(result.status.code(), Some(2), "clap refuses --days 0");
}

// ------------------------------------------------------------- rustls ----

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read ca.pem") {
        roots
            .add(cert.expect("parse ca.pem"))
            .expect("trust ca.pem");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"ntske/1".to_vec()];
    Arc::new(config)
}

/// A full TLS 1.3 handshake on loopback: the server loaded the way
/// `sundial run` loads it, the client trusting only `ca.pem` and asking for
/// `name`. Returns the client's error, if any.
fn handshake(out: &Path, name: &str) -> Result<(), String> {
    let server_config = sundial_daemon::tls::load_server_config(
        &out.join("server-chain.pem"),
        &out.join("server.key"),
    )
    .map_err(|e| format!("server config: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = thread::spawn(move || -> Result<(), String> {
        let (mut tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(STEP))
            .map_err(|e| e.to_string())?;
        let mut conn = rustls::ServerConnection::new(server_config).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        stream.write_all(b"hello").map_err(|e| e.to_string())?;
        stream.flush().map_err(|e| e.to_string())
    });

    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(client_config(&out.join("ca.pem")), server_name)
        .map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(STEP))
        .map_err(|e| e.to_string())?;
    let result = (|| {
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        let mut greeting = [0u8; 5];
        stream
            .read_exact(&mut greeting)
            .map_err(|e| e.to_string())?;
        if &greeting != b"hello" {
            return Err(format!("read {greeting:?}"));
        }
        Ok(())
    })();
    drop(tcp);
    let _ = server.join();
    result
}

#[test]
fn rustls_completes_a_handshake_for_every_name_and_no_other() {
    let dir = TempDir::new("ca-rustls");
    let out = dir.join("tls");
    assert_ok(&ca("time.test", &["127.0.0.1", "::1"], &out, &[]));
    for name in ["time.test", "127.0.0.1", "::1"] {
        handshake(&out, name).unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
    }
    let err = handshake(&out, "other.test").expect_err("a name not in the certificate");
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );
}

#[test]
fn an_ip_address_as_hostname_works_with_rustls() {
    let dir = TempDir::new("ca-ip");
    let out = dir.join("tls");
    assert_ok(&ca("127.0.0.1", &[], &out, &[]));
    handshake(&out, "127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
}

// ------------------------------------------ chrony + run + metrics ----

fn find_chronyd() -> Option<PathBuf> {
    ["/usr/sbin/chronyd", "/sbin/chronyd", "/usr/bin/chronyd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// `GET /metrics` with a raw socket; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect_timeout(&addr, STEP).expect("connect to metrics");
    tcp.set_read_timeout(Some(STEP)).expect("timeout");
    tcp.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read metrics");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// chronyd (GnuTLS) does one NTS-KE and one authenticated NTP exchange with
/// `sundial run` serving the generated certificate, and the metrics
/// endpoint of that daemon counts both. Never touches the clock: chronyd
/// runs with -x -Q, sundial has no sources.
#[test]
fn chrony_accepts_the_certificate_and_metrics_count_the_exchange() {
    let Some(chronyd) = find_chronyd() else {
        eprintln!("chronyd not installed: skipping (scripts/test installs it)");
        return;
    };
    let dir = TempDir::new("ca-chrony");
    let out = dir.join("tls");
    assert_ok(&ca("localhost", &["127.0.0.1"], &out, &[]));
    let (ntp, ke, metrics) = (
        common::free_udp_port(),
        common::free_tcp_port(),
        common::free_tcp_port(),
    );
    let config = dir.write(
        "ntp.toml",
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{ntp}\"\n\n\
             [[nts-ke-server]]\nlisten = \"127.0.0.1:{ke}\"\n\
             certificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n\n\
             [synchronization]\nlocal-stratum = 1\n\n\
             [observability]\nansi-colors = false\nmetrics-exporter-listen = \"127.0.0.1:{metrics}\"\n",
            out.join("server-chain.pem").display(),
            out.join("server.key").display(),
        ),
    );
    let stderr = dir.join("sundial.stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start sundial run");
    let mut guard = ChildGuard::new("sundial run", child, vec![config, stderr]);
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics));
    let ke_addr = SocketAddr::from(([127, 0, 0, 1], ke));
    let up = poll_until(STEP, Duration::from_millis(20), || {
        if guard.try_wait().is_some() {
            return Some(false);
        }
        (common::wait_for_tcp(ke_addr, Duration::from_millis(1))
            && common::wait_for_tcp(metrics_addr, Duration::from_millis(1)))
        .then_some(true)
    });
    assert_eq!(up, Some(true), "sundial run did not come up");

    let body = scrape(metrics_addr);
    let ke_label = format!("listen_address=\"{ke_addr}\"");
    let cookies = format!("sundial_nts_ke_handshakes_total{{{ke_label},outcome=\"cookies\"}}");
    assert_eq!(sample(&body, &cookies), Some(0), "{body}");
    let expiry = sample(
        &body,
        &format!("sundial_nts_ke_certificate_expiry_seconds{{{ke_label}}}"),
    );
    assert!(
        expiry.is_some_and(|s| (364 * 86_400..=365 * 86_400).contains(&s)),
        "default --days 365: {expiry:?}\n{body}"
    );

    let ca_pem = out.join("ca.pem");
    let query = Command::new(&chronyd)
        .args(["-u", "root", "-x", "-Q", "-t", "10", "-f", "/dev/null"])
        .arg(format!("ntstrustedcerts {}", ca_pem.display()))
        .arg("nosystemcert")
        .arg(format!(
            "server 127.0.0.1 port {ntp} nts ntsport {ke} iburst maxsamples 1"
        ))
        .output()
        .expect("run chronyd -Q");
    let said = text(&query.stdout) + &text(&query.stderr);
    assert!(
        said.contains("System clock wrong by"),
        "chronyd got no NTS sample: {said}"
    );

    let body = scrape(metrics_addr);
    assert_eq!(sample(&body, &cookies), Some(1), "{body}");
    let ntp_label = format!("listen_address=\"127.0.0.1:{ntp}\"");
    let nts_accepted = sample(
        &body,
        &format!("ntp_server_nts_accepted_packets_total{{{ntp_label}}}"),
    );
    assert!(
        nts_accepted.is_some_and(|n| n >= 1),
        "{nts_accepted:?}\n{body}"
    );
    assert!(
        guard.terminate(STEP).is_some_and(|s| s.success()),
        "sundial exit"
    );
}

#[test]
fn ca_pem_behind_a_closed_directory_is_pointed_out() {
    let dir = TempDir::new("ca-closed");
    // The test's own directory is open; one below it is closed.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let closed = dir.join("private");
    fs::create_dir_all(&closed).unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
    let out = closed.join("tls");
    let stdout = assert_ok(&ca("time.test", &[], &out, &[]));
    assert_eq!(mode(&out.join("ca.pem")), 0o644);
    assert!(
        stdout.contains(&format!(
            "Note: {} is closed to other users",
            closed.display()
        )),
        "{stdout}"
    );
    // Where every directory can be passed, no note.
    let stdout = assert_ok(&ca("time.test", &[], &dir.join("open/tls"), &[]));
    assert!(!stdout.contains("Note:"), "{stdout}");
}
