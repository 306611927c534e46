//! The NTS-KE server over real TLS on loopback: a private CA made here, a
//! tokio-rustls client driving the sans-IO `KeClient`, and the certificate
//! and key loading errors a sysadmin would meet.
//!
//! Tests run on tokio's current-thread runtime: when the client sees the
//! server close, the server task has finished the poll that closed it, so
//! its counters are already updated and can be read without waiting.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use sundial_daemon::config::NtsKeServerConfig;
use sundial_daemon::keystore::SharedKeySet;
use sundial_daemon::server::nts_ke::{self, Announce, KeStartError, KeStats, NtpTarget};
use sundial_daemon::tls::{self, CertificateInfo, NTSKE_ALPN, TlsError};
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::cookie::cookie_len;
use sundial_proto::nts::ke_client::{KeClient, KeClientError, KeClientProgress, KeResponse};
use sundial_proto::nts::ke_record::{ErrorCode, NextProtocol, Record, RecordBody};
use sundial_proto::nts::ke_server::COOKIE_COUNT;
use sundial_proto::nts::key_export::derive_keys;
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// Bound on every await in these tests; far above what any step needs.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no result within {STEP:?}"),
    }
}

// ---------------------------------------------------------------- PKI ----

#[derive(Clone, Copy, Debug)]
enum KeyKind {
    EcPkcs8,
    EcSec1,
    RsaPkcs8,
    RsaPkcs1,
}

/// A CA and a leaf it signed, written as PEM files in a temp dir.
struct Pki {
    dir: TempDir,
    ca: CertificateDer<'static>,
    chain: PathBuf,
    key: PathBuf,
}

struct LeafOptions {
    kind: KeyKind,
    not_before: Option<(i32, u8, u8)>,
    not_after: Option<(i32, u8, u8)>,
}

impl Default for LeafOptions {
    fn default() -> Self {
        Self {
            kind: KeyKind::EcPkcs8,
            not_before: None,
            not_after: None,
        }
    }
}

fn pki() -> Pki {
    pki_with(LeafOptions::default())
}

fn pki_with(options: LeafOptions) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sundial test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = match options.kind {
        KeyKind::EcPkcs8 | KeyKind::EcSec1 => KeyPair::generate().unwrap(),
        KeyKind::RsaPkcs8 | KeyKind::RsaPkcs1 => {
            KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
        }
    };
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    if let Some((y, m, d)) = options.not_before {
        params.not_before = rcgen::date_time_ymd(y, m, d);
    }
    if let Some((y, m, d)) = options.not_after {
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();

    let key_pem = match options.kind {
        KeyKind::EcPkcs8 | KeyKind::RsaPkcs8 => leaf_key.serialize_pem(),
        // PKCS#8 wraps the PKCS#1 / SEC1 structure in an OCTET STRING;
        // unwrapping it gives the legacy formats openssl still writes.
        KeyKind::RsaPkcs1 => pem_block("RSA PRIVATE KEY", pkcs8_inner(leaf_key.serialized_der())),
        KeyKind::EcSec1 => pem_block("EC PRIVATE KEY", pkcs8_inner(leaf_key.serialized_der())),
    };

    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    // Leaf first, then the CA, as a server's chain file usually is.
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    Pki {
        dir,
        ca: ca_cert.der().clone(),
        chain,
        key,
    }
}

fn pem_block(label: &str, der: Vec<u8>) -> String {
    pem::encode(&pem::Pem::new(label, der))
}

/// The privateKey OCTET STRING of a PKCS#8 PrivateKeyInfo
/// (SEQUENCE { INTEGER, SEQUENCE, OCTET STRING, ... }).
fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = input[0];
        let (len, header) = match input[1] {
            n if n < 0x80 => (usize::from(n), 2),
            n => {
                let count = usize::from(n & 0x7f);
                let len = input[2..2 + count]
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                (len, 2 + count)
            }
        };
        (tag, &input[header..header + len], &input[header + len..])
    }
    let (tag, body, _) = tlv(der);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let (tag, _version, rest) = tlv(body);
    assert_eq!(tag, 0x02);
    let (tag, _algorithm, rest) = tlv(rest);
    assert_eq!(tag, 0x30);
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04);
    key.to_vec()
}

// ------------------------------------------------------------- server ----

fn ke_config(pki: &Pki, listen: &str, extra: &str) -> NtsKeServerConfig {
    let text = format!(
        "listen = '{listen}'\ncertificate-chain-path = '{}'\nprivate-key-path = '{}'\n{extra}",
        pki.chain.display(),
        pki.key.display()
    );
    toml::from_str(&text).unwrap()
}

fn keyset() -> SharedKeySet {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Arc::new(RwLock::new(KeySet::generate(
        KeySetConfig::default(),
        now,
        &mut rand::rng(),
    )))
}

struct Running {
    addr: SocketAddr,
    stats: Arc<KeStats>,
    keys: SharedKeySet,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Cancels the server and waits for `run` to return.
    async fn stop(self) {
        self.cancel.cancel();
        within("server stops", self.task).await.unwrap();
    }
}

async fn start(pki: &Pki, extra: &str, announce: Announce) -> Running {
    start_on(pki, "127.0.0.1:0", extra, announce).await
}

async fn start_on(pki: &Pki, listen: &str, extra: &str, announce: Announce) -> Running {
    let config = ke_config(pki, listen, extra);
    let listener = within("bind", nts_ke::bind(&config, announce))
        .await
        .unwrap();
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    let stats = listener.stats();
    let keys = keyset();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(listener.run(Arc::clone(&keys), cancel.clone()));
    Running {
        addr,
        stats,
        keys,
        cancel,
        task,
    }
}

fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

// ------------------------------------------------------------- client ----

fn client_config(
    pki: &Pki,
    alpn: bool,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![NTSKE_ALPN.to_vec()];
    }
    Arc::new(config)
}

fn ntske_client(pki: &Pki) -> Arc<ClientConfig> {
    client_config(pki, true, &[&rustls::version::TLS13])
}

async fn connect(
    addr: SocketAddr,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = within("TCP connect", TcpStream::connect(addr)).await?;
    within(
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Everything the server sent until it closed; errors after some bytes
/// (e.g. a close without close_notify) end the read too.
async fn read_all(tls: &mut TlsStream<TcpStream>) -> (Vec<u8>, Option<io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within("read", tls.read(&mut buf)).await {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// One complete key exchange; returns the response and the keys the
/// client derived from its own TLS exporter.
async fn exchange(
    addr: SocketAddr,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    offer: &[AeadAlgorithm],
) -> (KeResponse, NtsKeys) {
    let mut tls = connect(addr, name, config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(NTSKE_ALPN));
    let mut client = KeClient::new(offer);
    within("write request", tls.write_all(&client.request()))
        .await
        .unwrap();
    let (bytes, error) = read_all(&mut tls).await;
    // The server closes with close_notify after its response.
    assert!(error.is_none(), "unclean close: {error:?}");
    let response = match client.receive(&bytes).unwrap() {
        KeClientProgress::Done(response) => response,
        KeClientProgress::NeedMore => panic!("incomplete response: {bytes:?}"),
    };
    client.finish().unwrap();
    let conn = tls.get_ref().1;
    let keys = derive_keys(
        response.protocol.to_u16(),
        response.algorithm,
        |label, context, out| {
            conn.export_keying_material(out, label.as_bytes(), Some(context))
                .map(|_| ())
        },
    )
    .unwrap();
    (response, keys)
}

/// Sends raw bytes as the request and returns what came back.
async fn raw_exchange(running: &Running, pki: &Pki, request: &[u8]) -> Vec<u8> {
    let mut tls = connect(running.addr, localhost(), ntske_client(pki))
        .await
        .unwrap();
    within("write request", tls.write_all(request))
        .await
        .unwrap();
    let (bytes, error) = read_all(&mut tls).await;
    assert!(error.is_none(), "unclean close: {error:?}");
    bytes
}

fn assert_same_keys(a: &NtsKeys, b: &NtsKeys) {
    assert_eq!(a.algorithm(), b.algorithm());
    assert_eq!(a.c2s.as_bytes(), b.c2s.as_bytes());
    assert_eq!(a.s2c.as_bytes(), b.s2c.as_bytes());
}

/// The response's cookies all open with the server's keyset, to the keys
/// the client derived.
fn assert_cookies_open(running: &Running, response: &KeResponse, client_keys: &NtsKeys) {
    assert_eq!(response.cookies.len(), COOKIE_COUNT);
    let keyset = running.keys.read().unwrap();
    for cookie in &response.cookies {
        assert_eq!(Some(cookie.len()), cookie_len(response.algorithm));
        let opened = keyset.open_cookie(cookie).unwrap();
        assert_same_keys(&opened, client_keys);
    }
    let distinct: std::collections::HashSet<_> = response.cookies.iter().collect();
    assert_eq!(distinct.len(), COOKIE_COUNT, "every cookie is fresh");
}

// -------------------------------------------------------------- tests ----

#[tokio::test]
async fn full_exchange_gives_eight_cookies_that_open_to_the_clients_keys() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let (response, client_keys) = exchange(
        running.addr,
        localhost(),
        ntske_client(&pki),
        &AeadAlgorithm::SUPPORTED,
    )
    .await;
    assert_eq!(response.protocol, NextProtocol::NtpV4);
    assert_eq!(response.algorithm, AeadAlgorithm::SUPPORTED[0]);
    assert_eq!(response.server, None, "no Server record unless announced");
    assert_eq!(response.port, None, "no Port record unless announced");
    assert!(response.warnings.is_empty());
    assert_cookies_open(&running, &response, &client_keys);

    assert_eq!(count(&running.stats.handshakes_ok), 1);
    assert_eq!(count(&running.stats.responses), 1);
    running.stop().await;
}

#[tokio::test]
async fn announced_server_and_port_are_sent() {
    let pki = pki();
    let announce = Announce::single(Some("ntp.example.test".to_owned()), Some(12300));
    let running = start(&pki, "", announce).await;
    let (response, client_keys) = exchange(
        running.addr,
        localhost(),
        ntske_client(&pki),
        &AeadAlgorithm::SUPPORTED,
    )
    .await;
    assert_eq!(response.server.as_deref(), Some("ntp.example.test"));
    assert_eq!(response.port, Some(12300));
    assert_cookies_open(&running, &response, &client_keys);
    running.stop().await;
}

#[tokio::test]
async fn several_ntp_servers_are_announced_in_turn() {
    let pki = pki();
    let target = |name: &str, port| NtpTarget {
        server: Some(name.to_owned()),
        port: Some(port),
    };
    let announce = Announce {
        targets: vec![
            target("a.example.test", 123),
            target("b.example.test", 1123),
        ],
    };
    let running = start(&pki, "", announce).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (response, _) = exchange(
            running.addr,
            localhost(),
            ntske_client(&pki),
            &AeadAlgorithm::SUPPORTED,
        )
        .await;
        seen.push((response.server.unwrap_or_default(), response.port));
    }
    assert_eq!(
        seen,
        [
            ("a.example.test".to_owned(), Some(123)),
            ("b.example.test".to_owned(), Some(1123)),
            ("a.example.test".to_owned(), Some(123)),
        ]
    );
    running.stop().await;
}

#[tokio::test]
async fn the_clients_first_supported_algorithm_is_chosen() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    for offer in [
        [AeadAlgorithm::AesSivCmac512, AeadAlgorithm::AesSivCmac256],
        [AeadAlgorithm::Aes128GcmSiv, AeadAlgorithm::AesSivCmac384],
    ] {
        let (response, client_keys) =
            exchange(running.addr, localhost(), ntske_client(&pki), &offer).await;
        assert_eq!(response.algorithm, offer[0]);
        assert_cookies_open(&running, &response, &client_keys);
    }
    running.stop().await;
}

#[tokio::test]
async fn serves_on_ipv6_loopback_with_an_ip_address_name() {
    let pki = pki();
    let config = ke_config(&pki, "[::1]:0", "");
    let listener = match within("bind", nts_ke::bind(&config, Announce::default())).await {
        Ok(listener) => listener,
        // A host without IPv6 on loopback cannot run this test.
        Err(KeStartError::Bind { .. }) => return,
        Err(e) => panic!("{e}"),
    };
    let addr = listener.local_addr();
    let keys = keyset();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(listener.run(Arc::clone(&keys), cancel.clone()));
    let name = ServerName::IpAddress("::1".parse::<IpAddr>().unwrap().into());
    let (response, client_keys) =
        exchange(addr, name, ntske_client(&pki), &AeadAlgorithm::SUPPORTED).await;
    let opened = keys
        .read()
        .unwrap()
        .open_cookie(&response.cookies[0])
        .unwrap();
    assert_same_keys(&opened, &client_keys);
    cancel.cancel();
    within("server stops", task).await.unwrap();
}

#[tokio::test]
async fn a_client_without_alpn_gets_no_ke_response() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let config = client_config(&pki, false, &[&rustls::version::TLS13]);
    // rustls completes the handshake without ALPN; the server then hangs up.
    let mut tls = connect(running.addr, localhost(), config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    // The write may fail if the close is already here; only the read matters.
    let _ = within("write", tls.write_all(&KeClient::new(&[]).request())).await;
    let (bytes, _) = read_all(&mut tls).await;
    assert!(bytes.is_empty(), "no KE response: {bytes:?}");
    assert_eq!(count(&running.stats.failed_alpn), 1);
    assert_eq!(count(&running.stats.handshakes_ok), 0);
    assert_eq!(count(&running.stats.responses), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_tls12_only_client_cannot_connect() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let config = client_config(&pki, true, &[&rustls::version::TLS12]);
    let result = connect(running.addr, localhost(), config).await;
    assert!(result.is_err(), "TLS 1.2 handshake must fail");
    assert_eq!(count(&running.stats.failed_tls), 1);
    assert_eq!(count(&running.stats.responses), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_silent_tcp_client_is_closed_after_the_timeout() {
    let pki = pki();
    let running = start(&pki, "key-exchange-timeout-ms = 300", Announce::default()).await;
    let began = Instant::now();
    let mut tcp = within("connect", TcpStream::connect(running.addr))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // EOF, or a reset if the kernel prefers; either way nothing is sent.
    let read = within("read", tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert_eq!(count(&running.stats.failed_timeout), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_no_request_is_closed_after_the_timeout() {
    let pki = pki();
    let running = start(&pki, "key-exchange-timeout-ms = 300", Announce::default()).await;
    let began = Instant::now();
    let mut tls = connect(running.addr, localhost(), ntske_client(&pki))
        .await
        .unwrap();
    let (bytes, _) = read_all(&mut tls).await;
    assert!(bytes.is_empty());
    assert!(began.elapsed() >= Duration::from_millis(250));
    assert_eq!(count(&running.stats.handshakes_ok), 1);
    assert_eq!(count(&running.stats.failed_timeout), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_malformed_request_gets_an_error_record() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    // End of Message alone: no Next Protocol record.
    let mut request = Vec::new();
    Record::critical(RecordBody::EndOfMessage)
        .encode(&mut request)
        .unwrap();
    let bytes = raw_exchange(&running, &pki, &request).await;
    let mut client = KeClient::new(&[]);
    assert_eq!(
        client.receive(&bytes),
        Err(KeClientError::ServerError(ErrorCode::BadRequest))
    );
    assert_eq!(count(&running.stats.failed_bad_request), 1);
    running.stop().await;
}

#[tokio::test]
async fn an_unknown_protocol_is_refused_with_an_empty_next_protocol() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let mut request = Vec::new();
    for record in [
        Record::critical(RecordBody::NextProtocol(vec![NextProtocol::Unknown(
            0x7777,
        )])),
        Record::critical(RecordBody::EndOfMessage),
    ] {
        record.encode(&mut request).unwrap();
    }
    let bytes = raw_exchange(&running, &pki, &request).await;
    let mut client = KeClient::new(&[]);
    assert_eq!(client.receive(&bytes), Err(KeClientError::ProtocolRefused));
    assert_eq!(count(&running.stats.refused), 1);
    running.stop().await;
}

#[tokio::test]
async fn at_the_connection_limit_an_idle_handshake_is_shed_for_a_newcomer() {
    let pki = pki();
    let running = start(
        &pki,
        "key-exchange-timeout-ms = 5000\nconcurrent-connections = 1",
        Announce::default(),
    )
    .await;
    // The first connection takes the only slot and never starts TLS; the
    // genuine client evicts it instead of waiting for its timeout.
    let began = Instant::now();
    let mut idle = within("connect", TcpStream::connect(running.addr))
        .await
        .unwrap();
    let (response, _) = exchange(
        running.addr,
        localhost(),
        ntske_client(&pki),
        &AeadAlgorithm::SUPPORTED,
    )
    .await;
    assert_eq!(response.cookies.len(), COOKIE_COUNT);
    let waited = began.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "served only after the idle connection's timeout: {waited:?}"
    );
    // The idle connection was closed by the server, long before its 5 s.
    let mut buf = [0u8; 8];
    let read = within("idle read", idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(count(&running.stats.shed_handshakes), 1);
    assert_eq!(count(&running.stats.failed_timeout), 0);
    assert_eq!(count(&running.stats.responses), 1);
    running.stop().await;
}

#[tokio::test]
async fn cancel_stops_the_server_with_connections_in_flight() {
    let pki = pki();
    let running = start(&pki, "key-exchange-timeout-ms = 60000", Announce::default()).await;
    let mut tls = connect(running.addr, localhost(), ntske_client(&pki))
        .await
        .unwrap();
    let stats = Arc::clone(&running.stats);
    // The client's handshake ends before the server has read the client's
    // Finished; wait until the server is past it too, so its connection
    // task is waiting for a request that never comes.
    within("server handshake", async {
        while count(&stats.handshakes_ok) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // stop() must not wait for the 60 s timeout of that connection.
    running.stop().await;
    let (bytes, _) = read_all(&mut tls).await;
    assert!(bytes.is_empty());
    assert_eq!(count(&stats.failed_timeout), 0);
}

#[tokio::test]
async fn every_key_format_serves() {
    for kind in [
        KeyKind::EcPkcs8,
        KeyKind::EcSec1,
        KeyKind::RsaPkcs8,
        KeyKind::RsaPkcs1,
    ] {
        let pki = pki_with(LeafOptions {
            kind,
            ..LeafOptions::default()
        });
        let running = start(&pki, "", Announce::default()).await;
        let (response, client_keys) = exchange(
            running.addr,
            localhost(),
            ntske_client(&pki),
            &AeadAlgorithm::SUPPORTED,
        )
        .await;
        assert_cookies_open(&running, &response, &client_keys);
        running.stop().await;
    }
}

// ------------------------------------------------ loading and errors ----

fn load_error(chain: &Path, key: &Path) -> TlsError {
    match tls::load_server_config(chain, key) {
        Ok(_) => panic!("{} / {} loaded", chain.display(), key.display()),
        Err(e) => e,
    }
}

#[test]
fn the_config_is_tls13_only_with_alpn_ntske() {
    let pki = pki();
    let config = tls::load_server_config(&pki.chain, &pki.key).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"ntske/1".to_vec()]);
    assert_eq!(config.max_early_data_size, 0, "no replayable 0-RTT");
}

#[test]
fn certificate_info_describes_the_leaf() {
    let pki = pki_with(LeafOptions {
        not_after: Some((2090, 1, 2)),
        ..LeafOptions::default()
    });
    let loaded = tls::load_server_tls(&pki.chain, &pki.key, SystemTime::now()).unwrap();
    let CertificateInfo {
        subject,
        subject_alt_names,
        not_before,
        not_after,
    } = loaded.leaf;
    assert_eq!(subject, "CN=localhost");
    assert_eq!(subject_alt_names, ["localhost", "127.0.0.1", "::1"]);
    assert!(not_before < SystemTime::now());
    // 2090-01-02T00:00:00Z
    assert_eq!(not_after, UNIX_EPOCH + Duration::from_secs(3_786_998_400));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let ours = pki();
    let theirs = pki();
    let e = load_error(&ours.chain, &theirs.key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains(&theirs.key.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&ours.chain.display().to_string()),
        "{message}"
    );
}

#[test]
fn missing_files_are_named() {
    let pki = pki();
    let nowhere = pki.dir.path().join("missing.pem");
    for (chain, key) in [(&nowhere, &pki.key), (&pki.chain, &nowhere)] {
        let e = load_error(chain, key);
        assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&nowhere.display().to_string()),
            "{e}"
        );
    }
}

#[test]
fn files_with_the_wrong_contents_are_named() {
    let pki = pki();
    // The key file as the chain: no certificate in it.
    let e = load_error(&pki.key, &pki.key);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&pki.key.display().to_string()),
        "{e}"
    );
    // The chain file as the key: no key in it.
    let e = load_error(&pki.chain, &pki.chain);
    assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&pki.chain.display().to_string()),
        "{e}"
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let pki = pki_with(LeafOptions {
        not_before: Some((2000, 1, 1)),
        not_after: Some((2001, 1, 1)),
        ..LeafOptions::default()
    });
    let e = load_error(&pki.chain, &pki.key);
    assert!(matches!(e, TlsError::Expired { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains(&pki.chain.display().to_string()),
        "{message}"
    );
    assert!(message.contains("2001-01-01T00:00:00Z"), "{message}");
}

#[test]
fn a_not_yet_valid_certificate_is_refused() {
    let pki = pki_with(LeafOptions {
        not_before: Some((2090, 1, 1)),
        not_after: Some((2091, 1, 1)),
        ..LeafOptions::default()
    });
    let e = load_error(&pki.chain, &pki.key);
    assert!(matches!(e, TlsError::NotYetValid { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&pki.chain.display().to_string()),
        "{e}"
    );
}

#[tokio::test]
async fn bind_names_the_file_and_the_address() {
    let pki = pki();
    // A certificate problem names the file.
    let mut config = ke_config(&pki, "127.0.0.1:0", "");
    config.private_key_path = pki.dir.path().join("absent-key.pem");
    let e = within("bind", nts_ke::bind(&config, Announce::default()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("absent-key.pem"), "{e}");

    // A port in use names the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ke_config(&pki, &addr.to_string(), "");
    let e = within("bind", nts_ke::bind(&config, Announce::default()))
        .await
        .unwrap_err();
    assert!(matches!(e, KeStartError::Bind { .. }), "{e:?}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[tokio::test]
async fn a_server_name_that_cannot_be_sent_is_refused_at_bind() {
    let pki = pki();
    let config = ke_config(&pki, "127.0.0.1:0", "");
    let announce = Announce::single(Some("bad\u{7f}name".to_owned()), None);
    let e = within("bind", nts_ke::bind(&config, announce))
        .await
        .unwrap_err();
    assert!(matches!(e, KeStartError::Announce { .. }), "{e:?}");
}
