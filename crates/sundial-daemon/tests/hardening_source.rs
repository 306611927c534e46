//! A malicious NTS-KE server seen from the client (issue 6, item 5): small
//! hostile TLS servers on loopback answer our real `key_exchange` with
//! scripts no honest server sends, or present certificates we must refuse;
//! and an NTS source pointed at one reports the failure, schedules its
//! retry as RFC 8915 asks, and never produces a measurement (so the clock
//! is never touched by it).
//!
//! Packet-level hostility (replays, answers to requests never sent, wrong
//! or missing UID, NTSN without our UID, empty, oversized and surplus
//! cookies, kisses, unsynchronized answers) is tested on the sans-IO
//! association in `sundial-proto/src/source/tests.rs`; see
//! docs/security.md.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Leaf, Pki, pki, pki_with, within};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sundial_daemon::config;
use sundial_daemon::source::{KeError, SourceEvent, SourceStatus, key_exchange, spawn_sources};
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_record::{ErrorCode, NextProtocol, Record, RecordBody, WarningCode};
use sundial_proto::source::Association;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What the hostile server does once it has read the client's request.
#[derive(Clone)]
enum Script {
    /// Send these bytes, then close cleanly (close_notify).
    SendAndClose(Vec<u8>),
    /// Send these bytes, then keep the connection open and say nothing.
    SendAndStall(Vec<u8>),
}

/// A TLS 1.3 server with ALPN ntske/1 that plays `script` to every client.
async fn hostile_server(pki: &Pki, script: Script) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf.clone(), pki.ca.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"ntske/1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                match script {
                    Script::SendAndClose(bytes) => {
                        let _ = tls.write_all(&bytes).await;
                        let _ = tls.shutdown().await;
                    }
                    Script::SendAndStall(bytes) => {
                        let _ = tls.write_all(&bytes).await;
                        let _ = tls.flush().await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
            });
        }
    });
    addr
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.encode(&mut out).unwrap();
    }
    out
}

/// A response an honest server could send, with `cookies` as New Cookie
/// records (encoded by hand so empty and huge ones are possible).
fn response(cookies: &[Vec<u8>], end: bool) -> Vec<u8> {
    let mut out = encode(&[
        Record::critical(RecordBody::NextProtocol(vec![NextProtocol::NtpV4])),
        Record::critical(RecordBody::AeadAlgorithm(vec![
            AeadAlgorithm::AesSivCmac256,
        ])),
    ]);
    for cookie in cookies {
        out.extend_from_slice(&5u16.to_be_bytes());
        out.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
        out.extend_from_slice(cookie);
    }
    if end {
        out.extend(encode(&[Record::critical(RecordBody::EndOfMessage)]));
    }
    out
}

async fn run_ke(
    addr: SocketAddr,
    ca: &Path,
    timeout: Duration,
) -> Result<sundial_daemon::source::KeOutcome, KeError> {
    within(
        "key exchange",
        key_exchange(
            "localhost",
            addr.port(),
            Some(ca),
            timeout,
            &[AeadAlgorithm::AesSivCmac256],
        ),
    )
    .await
}

#[tokio::test]
async fn hostile_key_exchange_responses_are_refused_with_a_clear_error() {
    let pki = pki();
    let cookie = vec![7u8; 100];
    let cases: Vec<(&str, Script, &str)> = vec![
        (
            "response that never ends",
            Script::SendAndStall(response(std::slice::from_ref(&cookie), false)),
            "did not finish within",
        ),
        (
            "response closed without End of Message",
            Script::SendAndClose(response(std::slice::from_ref(&cookie), false)),
            "End of Message",
        ),
        (
            "Error record",
            Script::SendAndClose(encode(&[
                Record::critical(RecordBody::Error(ErrorCode::BadRequest)),
                Record::critical(RecordBody::EndOfMessage),
            ])),
            "error record",
        ),
        (
            "Warning record",
            Script::SendAndClose(
                [
                    encode(&[Record::critical(RecordBody::Warning(WarningCode::Unknown(
                        9,
                    )))]),
                    response(std::slice::from_ref(&cookie), true),
                ]
                .concat(),
            ),
            "arning",
        ),
        (
            "only an empty cookie",
            Script::SendAndClose(response(&[Vec::new()], true)),
            "record type 5 must not have an empty body",
        ),
        (
            "no cookie at all",
            Script::SendAndClose(response(&[], true)),
            "no cookie",
        ),
        (
            "more than 64 KiB of records",
            Script::SendAndStall(response(&vec![vec![1u8; 60_000]; 2], false)),
            "",
        ),
        (
            "garbage instead of records",
            Script::SendAndClose(vec![0xff; 300]),
            "",
        ),
    ];
    for (name, script, needle) in cases {
        let addr = hostile_server(&pki, script).await;
        let began = std::time::Instant::now();
        let result = run_ke(addr, &pki.ca_path, Duration::from_secs(1)).await;
        let took = began.elapsed();
        let error = match result {
            Ok(outcome) => panic!("{name}: accepted: {outcome:?}"),
            Err(e) => e,
        };
        let text = error.to_string();
        eprintln!("{name}: {text}");
        assert!(text.contains(needle), "{name}: unclear error: {text}");
        assert!(!error.needs_operator(), "{name}: not the operator's fault");
        assert!(took < Duration::from_millis(1500), "{name}: took {took:?}");
    }
}

#[tokio::test]
async fn surplus_and_oversized_cookies_never_enter_the_jar() {
    let pki = pki();
    // 20 cookies, some huge: the exchange succeeds (there is a usable
    // cookie), and the association keeps at most 8 of acceptable size.
    let mut cookies = vec![vec![3u8; 100]; 16];
    cookies.extend(vec![vec![4u8; 4000]; 4]);
    let addr = hostile_server(&pki, Script::SendAndClose(response(&cookies, true))).await;
    let outcome = run_ke(addr, &pki.ca_path, Duration::from_secs(2))
        .await
        .unwrap();
    let assoc = Association::nts(outcome.keys, outcome.cookies, 4);
    assert_eq!(assoc.cookies(), 8);
    assert_eq!(assoc.stats().cookies_rejected, 12);
    // Only oversized cookies: nothing usable, the next poll asks for a
    // new key exchange instead of sending a cookie we refused.
    let addr = hostile_server(
        &pki,
        Script::SendAndClose(response(&[vec![5u8; 4000]], true)),
    )
    .await;
    let outcome = run_ke(addr, &pki.ca_path, Duration::from_secs(2))
        .await
        .unwrap();
    let mut assoc = Association::nts(outcome.keys, outcome.cookies, 4);
    assert_eq!(assoc.cookies(), 0);
    let mut buf = [0u8; 2048];
    let poll = assoc.poll(
        sundial_proto::ntp::timestamp::NtpTimestamp::from_bits(1 << 62),
        &mut rand::rng(),
        &mut buf,
    );
    assert_eq!(poll, Err(sundial_proto::source::PollError::NeedKeyExchange));
}

#[tokio::test]
async fn wrong_name_expired_and_untrusted_certificates_are_refused() {
    let wrong_name = pki_with(Leaf {
        names: vec!["ntp.example.invalid".to_owned()],
        ..Leaf::default()
    });
    let expired = pki_with(Leaf {
        not_before: Some((2000, 1, 1)),
        not_after: Some((2001, 1, 1)),
        ..Leaf::default()
    });
    let stranger = pki();
    let trusted = pki();
    let good = response(&[vec![1u8; 100]], true);
    for (name, server_pki, ca) in [
        ("wrong name", &wrong_name, &wrong_name.ca_path),
        ("expired", &expired, &expired.ca_path),
        ("untrusted CA", &stranger, &trusted.ca_path),
    ] {
        let addr = hostile_server(server_pki, Script::SendAndClose(good.clone())).await;
        let error = run_ke(addr, ca, Duration::from_secs(2)).await.unwrap_err();
        eprintln!("{name}: {error}");
        assert!(
            matches!(error, KeError::Certificate { .. }),
            "{name}: {error:?}"
        );
        assert!(error.needs_operator(), "{name}: the operator must act");
    }
}

#[tokio::test]
async fn a_source_facing_a_hostile_server_retries_on_schedule_and_never_measures() {
    let pki = pki();
    let addr = hostile_server(
        &pki,
        Script::SendAndClose(response(&[vec![1u8; 100]], false)),
    )
    .await;
    let text = format!(
        "[[source]]\nmode = \"nts\"\naddress = \"localhost:{}\"\ncertificate-authority = \"{}\"\n",
        addr.port(),
        pki.ca_path.display()
    );
    let config = config::parse(&text, Path::new("test.toml")).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let mut sources = spawn_sources(&config, std::time::Instant::now(), tx, cancel.clone())
        .expect("no refclock to open");
    let event = within("first event", rx.recv()).await.unwrap();
    match event {
        SourceEvent::Status(
            _,
            SourceStatus::KeyExchangeFailed {
                error,
                operator,
                retry_in,
            },
        ) => {
            assert!(error.contains("End of Message"), "{error}");
            assert!(!operator);
            // RFC 8915 4.1: back off, starting around 10 s.
            assert_eq!(retry_in, Duration::from_secs(10));
        }
        other => panic!("unexpected first event {other:?}"),
    }
    // Nothing else within a second: no measurement, no tight retry loop.
    let next = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    assert!(next.is_err(), "unexpected event {next:?}");
    cancel.cancel();
    while sources.tasks.join_next().await.is_some() {}
}
