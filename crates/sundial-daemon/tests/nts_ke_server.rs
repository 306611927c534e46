//! The NTS-KE server over real TLS on loopback: a private CA made here, a
//! tokio-rustls client driving the sans-IO `KeClient`, and the certificate
//! and key loading errors a sysadmin would meet.
//!
//! Tests run on tokio's current-thread runtime: when the client sees the
//! server close, the server task has finished the poll that closed it, so
//! its counters are already updated and can be read without waiting.

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    KeServer, Leaf, Pki, client_config, count, ke_config, keyset, localhost, ntske_client, pki,
    pki_with, start, within,
};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use sundial_daemon::server::nts_ke::{self, Announce, KeStartError, NtpTarget};
use sundial_daemon::tls::{self, CertificateInfo, NTSKE_ALPN, TlsError};
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::cookie::cookie_len;
use sundial_proto::nts::ke_client::{KeClient, KeClientError, KeClientProgress, KeResponse};
use sundial_proto::nts::ke_record::{ErrorCode, NextProtocol, Record, RecordBody};
use sundial_proto::nts::ke_server::COOKIE_COUNT;
use sundial_proto::nts::key_export::derive_keys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- PKI ----

#[derive(Clone, Copy, Debug)]
enum KeyKind {
    EcPkcs8,
    EcSec1,
    RsaPkcs8,
    RsaPkcs1,
}

/// A test PKI whose key file is in the format `kind`.
fn pki_of_kind(kind: KeyKind) -> Pki {
    let pki = pki_with(Leaf {
        rsa: matches!(kind, KeyKind::RsaPkcs8 | KeyKind::RsaPkcs1),
        ..Leaf::default()
    });
    // PKCS#8 wraps the PKCS#1 / SEC1 structure in an OCTET STRING;
    // unwrapping it gives the legacy formats openssl still writes.
    let legacy = match kind {
        KeyKind::EcPkcs8 | KeyKind::RsaPkcs8 => None,
        KeyKind::RsaPkcs1 => Some(pem_block("RSA PRIVATE KEY", pkcs8_inner(&pki.key_der))),
        KeyKind::EcSec1 => Some(pem_block("EC PRIVATE KEY", pkcs8_inner(&pki.key_der))),
    };
    if let Some(pem) = legacy {
        std::fs::write(&pki.key, pem).unwrap();
    }
    pki
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

// ------------------------------------------------------------- client ----

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
async fn raw_exchange(running: &KeServer, pki: &Pki, request: &[u8]) -> Vec<u8> {
    let mut tls = connect(running.addr, localhost(), ntske_client(&pki.ca))
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
fn assert_cookies_open(running: &KeServer, response: &KeResponse, client_keys: &NtsKeys) {
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
        ntske_client(&pki.ca),
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
        ntske_client(&pki.ca),
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
            ntske_client(&pki.ca),
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
            exchange(running.addr, localhost(), ntske_client(&pki.ca), &offer).await;
        assert_eq!(response.algorithm, offer[0]);
        assert_cookies_open(&running, &response, &client_keys);
    }
    running.stop().await;
}

#[tokio::test]
async fn serves_on_ipv6_loopback_with_an_ip_address_name() {
    let pki = pki();
    let config = ke_config(&pki.chain, &pki.key, "[::1]:0", "");
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
        exchange(addr, name, ntske_client(&pki.ca), &AeadAlgorithm::SUPPORTED).await;
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
    let config = client_config(&pki.ca, false, &[&rustls::version::TLS13]);
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
    let config = client_config(&pki.ca, true, &[&rustls::version::TLS12]);
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
    let mut tls = connect(running.addr, localhost(), ntske_client(&pki.ca))
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
        ntske_client(&pki.ca),
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
    let mut tls = connect(running.addr, localhost(), ntske_client(&pki.ca))
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
        let pki = pki_of_kind(kind);
        let running = start(&pki, "", Announce::default()).await;
        let (response, client_keys) = exchange(
            running.addr,
            localhost(),
            ntske_client(&pki.ca),
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
    let pki = pki_with(Leaf {
        not_after: Some((2090, 1, 2)),
        ..Leaf::default()
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
    let pki = pki_with(Leaf {
        not_before: Some((2000, 1, 1)),
        not_after: Some((2001, 1, 1)),
        ..Leaf::default()
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
    let pki = pki_with(Leaf {
        not_before: Some((2090, 1, 1)),
        not_after: Some((2091, 1, 1)),
        ..Leaf::default()
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
    let mut config = ke_config(&pki.chain, &pki.key, "127.0.0.1:0", "");
    config.private_key_path = pki.dir.path().join("absent-key.pem");
    let e = within("bind", nts_ke::bind(&config, Announce::default()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("absent-key.pem"), "{e}");

    // A port in use names the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ke_config(&pki.chain, &pki.key, &addr.to_string(), "");
    let e = within("bind", nts_ke::bind(&config, Announce::default()))
        .await
        .unwrap_err();
    assert!(matches!(e, KeStartError::Bind { .. }), "{e:?}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[tokio::test]
async fn a_server_name_that_cannot_be_sent_is_refused_at_bind() {
    let pki = pki();
    let config = ke_config(&pki.chain, &pki.key, "127.0.0.1:0", "");
    let announce = Announce::single(Some("bad\u{7f}name".to_owned()), None);
    let e = within("bind", nts_ke::bind(&config, announce))
        .await
        .unwrap_err();
    assert!(matches!(e, KeStartError::Announce { .. }), "{e:?}");
}
