//! NTS sources against our own NTS-KE and NTP servers on loopback, with a
//! private CA made here: key exchange, authenticated measurements, trust
//! anchors, IP-literal server names, Error records, and re-keying by itself
//! after the server's keys change (NTSN).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{Pki, fresh_keyset, ke_config, pki, within};
use sundial_daemon::config;
use sundial_daemon::keystore::SharedKeySet;
use sundial_daemon::server::ntp::{self, NtpStats, StateFn};
use sundial_daemon::server::nts_ke::{self, Announce, KeStats};
use sundial_daemon::source::{
    KE_TIMEOUT, KeError, SourceEvent, SourceStatus, Sources, key_exchange, spawn_sources,
};
use sundial_daemon::tls;
use sundial_proto::ntp::packet::ReferenceId;
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_client::KeClient;
use sundial_proto::nts::ke_record::{ErrorCode, Record, RecordBody};
use sundial_proto::server::ServerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Our NTS-KE and NTP servers sharing one keyset, as `sundial run` has them.
struct Servers {
    ke: SocketAddr,
    ke_stats: Arc<KeStats>,
    ntp_stats: Arc<NtpStats>,
    keys: SharedKeySet,
    cancel: CancellationToken,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn servers(pki: &Pki) -> Servers {
    let cancel = CancellationToken::new();
    let keys: SharedKeySet = Arc::new(RwLock::new(fresh_keyset()));

    let cfg = config::parse(
        "[[server]]\nlisten = \"127.0.0.1:0\"\n",
        Path::new("test.toml"),
    )
    .unwrap();
    let listener = ntp::bind(&cfg.servers[0], false).unwrap();
    let ntp_port = listener.local_addr().unwrap().port();
    let ntp_stats = listener.stats();
    let state: StateFn = Arc::new(|now| ServerState::local(1, ReferenceId(*b"TEST"), now));
    tokio::spawn(listener.run(Some(Arc::clone(&keys)), state, cancel.clone()));

    let ke_config = ke_config(&pki.chain, &pki.key, "127.0.0.1:0", "");
    let announce = Announce::single(None, Some(ntp_port));
    let ke = within("KE bind", nts_ke::bind(&ke_config, announce))
        .await
        .unwrap();
    let ke_addr = ke.local_addr();
    let ke_stats = ke.stats();
    tokio::spawn(ke.run(Arc::clone(&keys), cancel.clone()));
    Servers {
        ke: ke_addr,
        ke_stats,
        ntp_stats,
        keys,
        cancel,
    }
}

/// A config with one NTS source polled every 1/64 s.
fn nts_config(host: &str, port: u16, ca: Option<&Path>) -> config::Config {
    let ca = ca.map_or(String::new(), |p| {
        format!("certificate-authority = \"{}\"\n", p.display())
    });
    let text = format!(
        "[source-defaults]\npoll-interval-limits = {{ min = -6, max = -6 }}\ninitial-poll-interval = -6\n\
         [[source]]\nmode = \"nts\"\naddress = \"{host}:{port}\"\n{ca}"
    );
    config::parse(&text, Path::new("test.toml")).unwrap()
}

struct Running {
    sources: Sources,
    events: mpsc::Receiver<SourceEvent>,
    cancel: CancellationToken,
}

fn run_sources(config: &config::Config) -> Running {
    let (tx, events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let sources =
        spawn_sources(config, Instant::now(), tx, cancel.clone()).expect("no refclock to open");
    Running {
        sources,
        events,
        cancel,
    }
}

impl Running {
    async fn next(&mut self) -> SourceEvent {
        within("source event", self.events.recv())
            .await
            .expect("source tasks alive")
    }

    /// Waits for `n` measurements, checking each is loopback-sized.
    async fn measurements(&mut self, n: usize) {
        let mut seen = 0;
        while seen < n {
            match self.next().await {
                SourceEvent::Measurement(_, m) => {
                    assert!(m.offset.abs() < 0.010, "offset {}", m.offset);
                    assert!((0.0..0.010).contains(&m.delay), "delay {}", m.delay);
                    assert_eq!(m.stratum, 1);
                    assert_eq!(m.reference_id, *b"TEST");
                    seen += 1;
                }
                SourceEvent::Unreachable(id) => panic!("{id} unreachable"),
                SourceEvent::Status(_, status) => match status {
                    SourceStatus::KeyExchangeFailed { error, .. } => panic!("KE failed: {error}"),
                    SourceStatus::Demobilized { .. } => panic!("demobilized"),
                    _ => {}
                },
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        while within("source task ends", self.sources.tasks.join_next())
            .await
            .is_some()
        {}
    }
}

async fn first_ke_status(running: &mut Running) -> (SocketAddr, AeadAlgorithm, usize) {
    loop {
        match running.next().await {
            SourceEvent::Status(
                _,
                SourceStatus::KeyExchanged {
                    ntp_server,
                    algorithm,
                    cookies,
                    ..
                },
            ) => return (ntp_server, algorithm, cookies),
            SourceEvent::Status(_, SourceStatus::KeyExchangeFailed { error, .. }) => {
                panic!("KE failed: {error}")
            }
            // Answers still in flight when the server's keys changed.
            SourceEvent::Measurement(..) => {}
            other => panic!("unexpected before KE: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_nts_source_key_exchanges_and_measures_authenticated_time() {
    let pki = pki();
    let servers = servers(&pki).await;
    let mut running = run_sources(&nts_config(
        "localhost",
        servers.ke.port(),
        Some(&pki.ca_path),
    ));
    assert_eq!(running.sources.handles.len(), 1);

    let (ntp_server, algorithm, cookies) = first_ke_status(&mut running).await;
    assert!(ntp_server.ip().is_loopback());
    assert_eq!(algorithm, AeadAlgorithm::SUPPORTED[0]);
    assert_eq!(cookies, 8);
    running.measurements(5).await;

    // Every answer the server gave was NTS; it never saw plain NTP.
    assert!(servers.ntp_stats.nts.load(Ordering::Relaxed) >= 5);
    assert_eq!(servers.ntp_stats.plain.load(Ordering::Relaxed), 0);
    assert_eq!(servers.ke_stats.responses.load(Ordering::Relaxed), 1);
    let stats = &running.sources.handles[0].stats;
    assert_eq!(stats.key_exchanges.load(Ordering::Relaxed), 1);
    assert_eq!(stats.unauthenticated.load(Ordering::Relaxed), 0);
    running.stop().await;
}

#[tokio::test]
async fn after_the_server_keys_change_the_source_rekeys_by_itself() {
    let pki = pki();
    let servers = servers(&pki).await;
    let mut running = run_sources(&nts_config(
        "localhost",
        servers.ke.port(),
        Some(&pki.ca_path),
    ));
    first_ke_status(&mut running).await;
    running.measurements(2).await;

    // New master keys: the NTP server answers our cookies with NTSN.
    *servers.keys.write().unwrap() = fresh_keyset();
    let (_, _, cookies) = first_ke_status(&mut running).await;
    assert_eq!(cookies, 8);
    running.measurements(3).await;

    assert!(servers.ntp_stats.nts_nak.load(Ordering::Relaxed) >= 1);
    assert_eq!(servers.ke_stats.responses.load(Ordering::Relaxed), 2);
    let stats = &running.sources.handles[0].stats;
    assert_eq!(stats.key_exchanges.load(Ordering::Relaxed), 2);
    assert!(stats.nts_naks.load(Ordering::Relaxed) >= 1);
    running.stop().await;
}

#[tokio::test]
async fn key_exchange_trusts_the_configured_ca_and_only_it() {
    let pki = pki();
    let servers = servers(&pki).await;
    let port = servers.ke.port();
    let all = &AeadAlgorithm::SUPPORTED;

    let outcome = within(
        "KE with CA",
        key_exchange("localhost", port, Some(&pki.ca_path), KE_TIMEOUT, all),
    )
    .await
    .unwrap();
    assert_eq!(outcome.cookies.len(), 8);
    assert_eq!(
        outcome.ntp_host,
        outcome.ke_addr.ip().to_string(),
        "no Server record: the KE server's own address (RFC 8915 4.1.7)"
    );
    assert_ne!(outcome.ntp_port, 123, "Port Negotiation is honoured");

    // An IP literal verifies against the certificate's IP SAN.
    let outcome = within(
        "KE by IP",
        key_exchange("127.0.0.1", port, Some(&pki.ca_path), KE_TIMEOUT, all),
    )
    .await
    .unwrap();
    assert_eq!(outcome.ntp_host, "127.0.0.1");

    // Without the CA, the system roots do not know ours.
    let error = within(
        "KE without CA",
        key_exchange("localhost", port, None, KE_TIMEOUT, all),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, KeError::Certificate { .. }), "{error:?}");
    assert!(error.needs_operator());

    // A certificate-authority file that is missing, or holds no
    // certificate, is an error naming the file.
    let wrong_name = pki.dir.path().join("none.pem");
    let error = within(
        "KE with missing CA file",
        key_exchange("localhost", port, Some(&wrong_name), KE_TIMEOUT, all),
    )
    .await
    .unwrap_err();
    match &error {
        KeError::CaFile { path, .. } => assert_eq!(path, &wrong_name),
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("none.pem"), "{error}");

    let not_pem = pki.dir.path().join("empty.pem");
    std::fs::write(&not_pem, "no certificates here\n").unwrap();
    let error = within(
        "KE with an empty CA file",
        key_exchange("localhost", port, Some(&not_pem), KE_TIMEOUT, all),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, KeError::CaFile { .. }), "{error:?}");
    assert!(error.to_string().contains("empty.pem"), "{error}");

    // A source without the CA reports a certificate failure, never time.
    let mut running = run_sources(&nts_config("localhost", port, None));
    match running.next().await {
        SourceEvent::Status(
            _,
            SourceStatus::KeyExchangeFailed {
                operator, error, ..
            },
        ) => {
            assert!(operator, "{error}");
        }
        other => panic!("{other:?}"),
    }
    running.stop().await;
    assert_eq!(servers.ntp_stats.received.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn connection_refused_and_timeouts_are_told_apart() {
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let error = within(
        "KE to a closed port",
        key_exchange("127.0.0.1", port, None, KE_TIMEOUT, &[]),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, KeError::Connect { .. }), "{error:?}");

    // A listener that never answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let error = within(
        "KE to a silent server",
        key_exchange("127.0.0.1", port, None, Duration::from_millis(200), &[]),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, KeError::Timeout { .. }), "{error:?}");
    drop(silent);
}

#[tokio::test]
async fn an_error_record_is_reported_as_such() {
    let pki = pki();
    let config = tls::load_server_config(&pki.chain, &pki.key).unwrap();
    let acceptor = TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A KE server that reads the request and answers Bad Request.
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let want = KeClient::new(&AeadAlgorithm::SUPPORTED).request().len();
        let mut request = vec![0u8; want];
        tls.read_exact(&mut request).await.unwrap();
        let mut response = Vec::new();
        Record::critical(RecordBody::Error(ErrorCode::BadRequest))
            .encode(&mut response)
            .unwrap();
        Record::critical(RecordBody::EndOfMessage)
            .encode(&mut response)
            .unwrap();
        tls.write_all(&response).await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let error = within(
        "KE against an erroring server",
        key_exchange(
            "localhost",
            port,
            Some(&pki.ca_path),
            KE_TIMEOUT,
            &AeadAlgorithm::SUPPORTED,
        ),
    )
    .await
    .unwrap_err();
    match error {
        KeError::ErrorRecord { code, .. } => assert_eq!(code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    within("fake server", server).await.unwrap();
}
