//! The NTS-KE server's own certificate over ACME, against Pebble (Let's
//! Encrypt's test CA, Debian's `pebble`) on loopback: first issuance,
//! reuse after a restart, a forced renewal under a chrony NTS client, a
//! CA that goes away and comes back, and garbage on the challenge port.
//!
//! Renewal and retry are sped up with sundial's test-only variables
//! `SUNDIAL_TEST_ACME_RENEW_AFTER_MS` and `SUNDIAL_TEST_ACME_RETRY_MS`;
//! Pebble's certificates are valid for years, which a test cannot wait.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pebble::{self, Pebble};
use common::{ChildGuard, TempDir, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};
use sundial_daemon::status::Status;

const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// One sundial serving NTS with an ACME certificate for `localhost`.
struct Server {
    guard: ChildGuard,
    log: PathBuf,
    config: String,
    ntp: SocketAddr,
    ke: SocketAddr,
    challenge: SocketAddr,
    socket: PathBuf,
    state: PathBuf,
}

fn config(
    dir: &TempDir,
    pebble: &Pebble,
    challenge: &str,
    challenge_port: u16,
) -> (String, SocketAddr, SocketAddr, SocketAddr) {
    let ntp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let ke: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let chal: SocketAddr = format!("127.0.0.1:{challenge_port}").parse().unwrap();
    let text = format!(
        "[[server]]\nlisten = \"{ntp}\"\n\n\
         [[nts-ke-server]]\nlisten = \"{ke}\"\n\n\
         [nts-ke-server.acme]\ndomains = [\"localhost\"]\ncontact = \"ops@example.com\"\n\
         directory = \"{}\"\nca-certificate = \"{}\"\nchallenge = \"{challenge}\"\n\
         challenge-listen = \"{chal}\"\nstate-directory = \"{}\"\n\n\
         [keyset]\nkey-storage-path = \"{}\"\n\n\
         [synchronization]\nlocal-stratum = 1\n\n\
         [observability]\nobservation-path = \"{}\"\nmetrics-exporter-listen = \"127.0.0.1:{}\"\n",
        pebble.directory,
        pebble.https_ca.display(),
        dir.join("acme").display(),
        dir.join("ntskeys").display(),
        dir.join("observe.sock").display(),
        free_tcp_port(),
    );
    (text, ntp, ke, chal)
}

fn start(
    dir: &TempDir,
    name: &str,
    config: (String, SocketAddr, SocketAddr, SocketAddr),
    env: &[(&str, &str)],
) -> Server {
    let (text, ntp, ke, challenge) = config;
    let (guard, log) = common::start_sundial_with_env(dir, name, &text, false, env);
    Server {
        guard,
        log,
        config: text,
        ntp,
        ke,
        challenge,
        socket: dir.join("observe.sock"),
        state: dir.join("acme"),
    }
}

impl Server {
    fn status_until(&self, what: &str, check: impl Fn(&Status) -> bool) -> Status {
        poll_until(PATIENCE, POLL, || {
            common::status(&self.socket).filter(|s| check(s))
        })
        .unwrap_or_else(|| {
            panic!(
                "status never showed {what}: {:?}",
                common::status(&self.socket)
            )
        })
    }

    fn acme(status: &Status) -> sundial_daemon::acme::manager::AcmeSnapshot {
        status.nts_ke_servers[0]
            .acme
            .clone()
            .expect("the KE server reports ACME")
    }

    /// Status shows `n` certificates obtained, and the KE listener is up
    /// (status says so a moment before it is).
    fn obtained(&self, n: u64) -> Status {
        let status = self.status_until(&format!("{n} certificate(s) obtained"), |s| {
            s.nts_ke_servers[0].certificate_subject.is_some()
                && s.nts_ke_servers[0]
                    .acme
                    .as_ref()
                    .is_some_and(|a| a.renewals_succeeded >= n)
        });
        assert!(wait_for_tcp(self.ke, PATIENCE), "the KE port never opened");
        status
    }

    fn guard_alive(&self) -> bool {
        common::status(&self.socket).is_some()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One NTS-KE and one authenticated NTP answer, trusting `root`.
fn serves_nts(server: &Server, root: &Path) {
    let (keys, response) = common::nts::key_exchange(server.ke, root);
    let cookie = response.cookies.first().expect("a cookie");
    common::nts::nts_query(server.ntp, &keys, cookie).expect("an authenticated answer");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A raw exchange on the challenge port: what came back before close.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = tcp.write_all(bytes);
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn first_issuance_then_a_restart_reuses_the_stored_certificate() {
    let dir = TempDir::new("acme-first");
    let http_port = free_tcp_port();
    let ca = pebble::start(&dir, "pebble", http_port, free_tcp_port(), &[]);
    let cfg = config(&dir, &ca, "http-01", http_port);
    let mut server = start(&dir, "sundial", cfg.clone(), &[]);
    let status = server.obtained(1);
    assert_eq!(
        status.nts_ke_servers[0].certificate_subject.as_deref(),
        Some("CN=localhost")
    );
    let root = ca.issuing_root(&dir.join("pebble-root.pem"));
    serves_nts(&server, &root);

    // State: private directory, private files.
    assert_eq!(mode(&server.state), 0o700);
    for file in ["account.json", "certificate.pem", "private-key.pem"] {
        assert_eq!(mode(&server.state.join(file)), 0o600, "{file}");
    }

    // Only pending tokens are answered; garbage gets a plain refusal.
    let unknown = raw(
        server.challenge,
        b"GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    let garbage = raw(
        server.challenge,
        b"\x16\x03\x01\x02\x00\x01\xff\xfe garbage \x00\r\n\r\n",
    );
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let mut noise = vec![0u8; 8192];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    let _ = raw(server.challenge, &noise);
    assert!(server.guard.try_wait().is_none(), "sundial died of garbage");

    let served = pebble::served_leaf(server.ke, &root).expect("a handshake");
    assert!(server.guard.terminate(Duration::from_secs(20)).is_some());
    let log = server.log_text();
    assert!(log.contains("placing an ACME order"), "{log}");
    // Dropped to its own user, it still reads Pebble's CA at every order,
    // and warns of nothing it cannot read.
    assert!(
        !log.contains("not readable after the privilege drop"),
        "{log}"
    );

    // Restart: the stored certificate is served at once, no new order.
    let again = start(&dir, "sundial-again", cfg, &[]);
    let status = again.status_until("the stored certificate", |s| {
        s.nts_ke_servers[0].certificate_subject.is_some()
    });
    let acme = Server::acme(&status);
    assert_eq!(
        (acme.renewals_succeeded, acme.renewals_failed),
        (0, 0),
        "{acme:?}"
    );
    // Status reports the certificate a moment before the listener is up.
    assert!(wait_for_tcp(again.ke, PATIENCE), "the KE port never opened");
    assert_eq!(
        pebble::served_leaf(again.ke, &root).expect("a handshake"),
        served
    );
    serves_nts(&again, &root);
    let log = again.log_text();
    assert!(log.contains("serving the stored ACME certificate"), "{log}");
    assert!(!log.contains("placing an ACME order"), "{log}");
}

#[test]
fn a_forced_renewal_swaps_the_certificate_while_chrony_keeps_getting_answers() {
    let programs = common::chrony::programs();
    let dir = TempDir::new("acme-renew");
    let http_port = free_tcp_port();
    let ca = pebble::start(&dir, "pebble", http_port, free_tcp_port(), &[]);
    let server = start(
        &dir,
        "sundial",
        config(&dir, &ca, "http-01", http_port),
        // Renew every few seconds: long enough for chrony to settle in.
        &[("SUNDIAL_TEST_ACME_RENEW_AFTER_MS", "4000")],
    );
    server.obtained(1);
    let root = ca.issuing_root(&dir.join("pebble-root.pem"));
    let first = pebble::served_leaf(server.ke, &root).expect("a handshake");

    let line = format!(
        "server localhost port {} nts ntsport {} iburst minpoll 0 maxpoll 1",
        server.ntp.port(),
        server.ke.port()
    );
    let chrony = common::chrony::start_client(&programs, &dir, &line, &root);
    poll_until(PATIENCE, POLL, || {
        chrony.ntpdata().filter(|d| d.authenticated)
    })
    .unwrap_or_else(|| panic!("chrony never authenticated:\n{}", chrony.report()));

    // A renewal: a new certificate from the next handshake on.
    let renewed = server.obtained(2);
    let before = renewed.ntp_servers[0].nts;
    let second = poll_until(PATIENCE, POLL, || {
        pebble::served_leaf(server.ke, &root)
            .ok()
            .filter(|leaf| *leaf != first)
    })
    .expect("the served certificate changed");
    assert_ne!(first, second);

    // chrony, whose cookies do not depend on the certificate, goes on
    // getting authenticated answers.
    server.status_until("NTS answers after the renewal", |s| {
        s.ntp_servers[0].nts >= before + 3
    });
    let data = chrony.ntpdata().expect("chrony's ntpdata");
    assert!(data.authenticated, "{}", chrony.report());
    // And a new client gets the new certificate, which still verifies.
    serves_nts(&server, &root);
}

#[test]
fn a_failing_ca_leaves_the_old_certificate_serving_and_retries_back_off() {
    let dir = TempDir::new("acme-fail");
    let http_port = free_tcp_port();
    let tls_port = free_tcp_port();
    let mut ca = pebble::start(&dir, "pebble", http_port, tls_port, &[]);
    let server = start(
        &dir,
        "sundial",
        config(&dir, &ca, "http-01", http_port),
        &[
            ("SUNDIAL_TEST_ACME_RENEW_AFTER_MS", "1500"),
            ("SUNDIAL_TEST_ACME_RETRY_MS", "400"),
        ],
    );
    server.obtained(1);
    let root = ca.issuing_root(&dir.join("pebble-root.pem"));
    let served = pebble::served_leaf(server.ke, &root).expect("a handshake");

    // The CA goes away.
    let addresses = (ca.listen, ca.management);
    assert!(ca.guard.terminate(Duration::from_secs(20)).is_some());
    let mut delays: BTreeMap<u32, u64> = BTreeMap::new();
    poll_until(PATIENCE, Duration::from_millis(50), || {
        let acme = Server::acme(&common::status(&server.socket)?);
        if let Some(delay) = acme.retry_delay_ms {
            delays.entry(acme.consecutive_failures).or_insert(delay);
        }
        (acme.consecutive_failures >= 4).then_some(())
    })
    .unwrap_or_else(|| panic!("no repeated failures: {delays:?}"));
    // Equal jitter on a doubling step: each wait at least the last one's
    // ceiling's half, so the sequence never shrinks until the cap.
    let seen: Vec<u64> = (1..=3).filter_map(|n| delays.get(&n).copied()).collect();
    assert!(seen.len() >= 2, "{delays:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "retries did not back off: {delays:?}"
    );
    assert!(
        delays.values().all(|&d| (200..=3200).contains(&d)),
        "{delays:?}"
    );

    // The old certificate keeps serving.
    assert_eq!(
        pebble::served_leaf(server.ke, &root).expect("a handshake"),
        served
    );
    serves_nts(&server, &root);
    let status = common::status(&server.socket).unwrap();
    let acme = Server::acme(&status);
    assert!(
        acme.last_error.is_some() && acme.renewals_failed >= 4,
        "{acme:?}"
    );
    assert!(
        server
            .log_text()
            .contains("the current certificate keeps serving")
    );
    let metrics_addr: SocketAddr = server
        .config
        .lines()
        .find_map(|l| l.strip_prefix("metrics-exporter-listen = "))
        .map(|v| v.trim_matches('"').parse().unwrap())
        .expect("a metrics address");
    let metrics = raw(metrics_addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("sundial_acme_orders_total{") && l.contains("outcome=\"failure\""))
        .unwrap_or_else(|| panic!("no failure counter in:\n{metrics}"));
    let count: f64 = failures.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 4.0, "{failures}");

    // The CA comes back (a new root, and it forgot our account): the next
    // retry registers anew and renews.
    let ca = pebble::start_at(&dir, "pebble", addresses, http_port, tls_port, &[]);
    let recovered = server.status_until("a renewal after the CA came back", |s| {
        s.nts_ke_servers[0]
            .acme
            .as_ref()
            .is_some_and(|a| a.renewals_succeeded >= 2 && a.consecutive_failures == 0)
    });
    assert!(Server::acme(&recovered).last_error.is_none());
    let new_root = ca.issuing_root(&dir.join("pebble-root-2.pem"));
    serves_nts(&server, &new_root);
}

#[test]
fn tls_alpn_01_issuance_and_garbage_on_the_challenge_port() {
    let dir = TempDir::new("acme-alpn");
    let tls_port = free_tcp_port();
    let ca = pebble::start(&dir, "pebble", free_tcp_port(), tls_port, &[]);
    let server = start(
        &dir,
        "sundial",
        config(&dir, &ca, "tls-alpn-01", tls_port),
        &[("SUNDIAL_TEST_ACME_RENEW_AFTER_MS", "3000")],
    );
    server.obtained(1);
    let root = ca.issuing_root(&dir.join("pebble-root.pem"));
    serves_nts(&server, &root);

    // Garbage, a TLS client without acme-tls/1, and plain HTTP: each is
    // refused (closed, or a TLS alert), and the daemon carries on.
    let garbage = raw(server.challenge, &[0x42; 3000]);
    assert!(!garbage.contains("200"), "{garbage}");
    let http = raw(
        server.challenge,
        b"GET /.well-known/acme-challenge/x HTTP/1.1\r\n\r\n",
    );
    assert!(!http.starts_with("HTTP/1.1 200"), "{http}");
    assert!(
        pebble::served_leaf(server.challenge, &root).is_err(),
        "the challenge port must not hand out a certificate to an ordinary client"
    );
    let before = common::status(&server.socket).unwrap();
    assert!(before.nts_ke_servers[0].acme.is_some());

    // The listener still answers real validations: a renewal succeeds.
    server.obtained(2);
    serves_nts(&server, &root);
}

#[test]
fn without_a_certificate_the_ke_listener_stays_off_and_status_says_why() {
    let dir = TempDir::new("acme-none");
    let ntp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let ke: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    // Nothing listens at the CA's address.
    let text = format!(
        "[[server]]\nlisten = \"{ntp}\"\n\n\
         [[nts-ke-server]]\nlisten = \"{ke}\"\n\
         acme = {{ domains = [\"localhost\"], directory = \"https://localhost:{}/dir\", \
         challenge-listen = \"127.0.0.1:{}\", state-directory = \"{}\" }}\n\n\
         [synchronization]\nlocal-stratum = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n",
        free_tcp_port(),
        free_tcp_port(),
        dir.join("acme").display(),
        dir.join("observe.sock").display(),
    );
    let server = start(
        &dir,
        "sundial",
        (text, ntp, ke, ke),
        &[("SUNDIAL_TEST_ACME_RETRY_MS", "300")],
    );
    let status = server.status_until("failed orders", |s| {
        s.nts_ke_servers[0]
            .acme
            .as_ref()
            .is_some_and(|a| a.consecutive_failures >= 2)
    });
    assert!(status.nts_ke_servers[0].certificate_subject.is_none());
    assert!(Server::acme(&status).last_error.is_some());
    // Bound (nobody else can take it) but not listening: refused at once.
    assert!(TcpStream::connect_timeout(&ke, Duration::from_secs(2)).is_err());
    let log = server.log_text();
    assert!(log.contains("NTS-KE server not started yet"), "{log}");
    assert!(
        log.contains("the NTS-KE server stays off until a certificate is obtained"),
        "{log}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["status", "--socket"])
        .arg(&server.socket)
        .output()
        .expect("sundial status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("waiting for ACME"), "{text}");
    assert!(text.contains("ACME FAILING"), "{text}");
}

#[test]
fn a_ca_that_refuses_the_validation_leaves_the_ke_server_off_and_backs_off() {
    let dir = TempDir::new("acme-refused");
    // Pebble validates on a port where nobody answers: every order fails
    // validation and the CA marks it invalid.
    let ca = pebble::start(&dir, "pebble", free_tcp_port(), free_tcp_port(), &[]);
    let server = start(
        &dir,
        "sundial",
        config(&dir, &ca, "http-01", free_tcp_port()),
        &[("SUNDIAL_TEST_ACME_RETRY_MS", "300")],
    );
    let status = server.status_until("two refused orders", |s| {
        s.nts_ke_servers[0]
            .acme
            .as_ref()
            .is_some_and(|a| a.consecutive_failures >= 2)
    });
    let acme = Server::acme(&status);
    assert!(status.nts_ke_servers[0].certificate_subject.is_none());
    let error = acme.last_error.unwrap_or_default();
    // The CA's own problem document, passed on.
    assert!(error.contains("urn:ietf:params:acme:error:"), "{error}");
    assert!(TcpStream::connect_timeout(&server.ke, Duration::from_secs(2)).is_err());
    assert!(server.guard_alive());
}
