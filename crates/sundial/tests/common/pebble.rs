//! Pebble, Let's Encrypt's ACME test CA (Debian's `pebble` package), on
//! loopback for the ACME tests, and the small HTTPS and TLS probes those
//! tests need.
//!
//! Debian ships the binary without Pebble's test certificates, so the
//! HTTPS of its directory gets a throwaway CA of our own (`ca::generate`,
//! valid for `localhost` and 127.0.0.1): sundial trusts it through
//! `ca-certificate`. The certificates Pebble *issues* chain to a root it
//! generates at every start, served on its management port at
//! `/roots/0`: that root is what an NTS client must trust.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

use super::{ChildGuard, TempDir, ca, free_tcp_port, poll_until, wait_for_tcp};

/// A running Pebble.
#[derive(Debug)]
pub struct Pebble {
    pub guard: ChildGuard,
    /// The directory URL.
    pub directory: String,
    /// The CA of Pebble's own HTTPS (for sundial's `ca-certificate`).
    pub https_ca: PathBuf,
    pub listen: SocketAddr,
    pub management: SocketAddr,
}

fn find_pebble() -> PathBuf {
    ["/usr/bin/pebble", "/usr/local/bin/pebble"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pebble not found: the ACME tests need Debian's pebble; \
                 run scripts/test, which installs it (apt-get install pebble)"
            )
        })
}

/// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
/// `tls_port` of the names it is asked for (here `localhost`), with no
/// artificial validation delays and no nonce rejection; `env` adds more
/// of Pebble's knobs. Its state is in `dir/NAME`.
pub fn start(
    dir: &TempDir,
    name: &str,
    http_port: u16,
    tls_port: u16,
    env: &[(&str, &str)],
) -> Pebble {
    let port = || -> SocketAddr {
        format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("an address")
    };
    start_at(dir, name, (port(), port()), http_port, tls_port, env)
}

/// [`start`] on given directory and management addresses (a restarted
/// CA at the same URL).
pub fn start_at(
    dir: &TempDir,
    name: &str,
    (listen, management): (SocketAddr, SocketAddr),
    http_port: u16,
    tls_port: u16,
    env: &[(&str, &str)],
) -> Pebble {
    let home = dir.private_subdir(name);
    // Open to all (its key file stays 0600): the daemon, dropped to its
    // own user, reads ca.pem at every order, as it would from /etc.
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    // A restart keeps the HTTPS certificate, as a real CA would.
    let certs = if home.join("ca.pem").exists() {
        ca::CertFiles {
            ca: home.join("ca.pem"),
            chain: home.join("server-chain.pem"),
            key: home.join("server.key"),
        }
    } else {
        ca::generate(&home)
    };
    let config = format!(
        r#"{{"pebble": {{"listenAddress": "{listen}", "managementListenAddress": "{management}",
 "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": {tls_port},
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
        certs.chain.display(),
        certs.key.display()
    );
    let config_path = dir.write(&format!("{name}/pebble.json"), &config);
    let log = home.join("pebble.log");
    let mut cmd = Command::new(find_pebble());
    cmd.arg("-config")
        .arg(&config_path)
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        // Every order validates afresh: a renewal then exercises the
        // challenge listener again.
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("create pebble's log"))
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start pebble");
    let guard = ChildGuard::new(name, child, vec![config_path, log]);
    assert!(
        wait_for_tcp(listen, Duration::from_secs(30))
            && wait_for_tcp(management, Duration::from_secs(30)),
        "pebble did not start listening"
    );
    Pebble {
        guard,
        directory: format!("https://localhost:{}/dir", listen.port()),
        https_ca: certs.ca,
        listen,
        management,
    }
}

impl Pebble {
    /// The root Pebble issues under (new at each start), written to `path`.
    pub fn issuing_root(&self, path: &Path) -> PathBuf {
        let pem = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            https_get(self.management, "/roots/0", &self.https_ca).ok()
        })
        .expect("pebble's /roots/0");
        assert!(pem.contains("BEGIN CERTIFICATE"), "not a root: {pem}");
        std::fs::write(path, pem).expect("write pebble's root");
        path.to_owned()
    }
}

fn tls_client(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("trust the CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(config)
}

/// A GET over HTTPS to `localhost` at `addr`; the body.
pub fn https_get(addr: SocketAddr, path: &str, ca: &Path) -> Result<String, String> {
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(tls_client(ca, &[]), name).map_err(|e| e.to_string())?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // Go closes without close_notify sometimes; keep what arrived.
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_owned());
    }
    Ok(body.to_owned())
}

/// The leaf certificate an NTS-KE server at `addr` presents for
/// `localhost` (verified against `ca`), DER.
pub fn served_leaf(addr: SocketAddr, ca: &Path) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(tls_client(ca, &[b"ntske/1"]), name)
        .map_err(|e| e.to_string())?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?
        .to_vec();
    Ok(leaf)
}
