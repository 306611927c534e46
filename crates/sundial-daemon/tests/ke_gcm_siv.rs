//! AEAD_AES_128_GCM_SIV through the daemon's NTS-KE server and client on
//! loopback, with and without chrony's record 1024: which algorithm is
//! chosen, which exporter context the keys come from, and that the 72-byte
//! cookies open to exactly the keys the client derived.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sundial_daemon::config::NtsKeServerConfig;
use sundial_daemon::keystore::SharedKeySet;
use sundial_daemon::server::nts_ke::{self, Announce};
use sundial_daemon::source::key_exchange;
use sundial_daemon::tls::NTSKE_ALPN;
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::cookie::cookie_len;
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress, KeResponse};
use sundial_proto::nts::ke_record::{Decoded, RecordBody, decode};
use sundial_proto::nts::key_export::{KeyContext, derive_keys_with};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(10);
const GCM: AeadAlgorithm = AeadAlgorithm::Aes128GcmSiv;
const SIV: AeadAlgorithm = AeadAlgorithm::AesSivCmac256;

struct Pki {
    _dir: TempDir,
    ca: CertificateDer<'static>,
    ca_path: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sundial GCM-SIV test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let chain = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    std::fs::write(&chain, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        _dir: dir,
        ca: ca_cert.der().clone(),
        ca_path,
        chain,
        key,
    }
}

struct Running {
    addr: SocketAddr,
    keys: SharedKeySet,
    cancel: CancellationToken,
}

async fn start(pki: &Pki) -> Running {
    let text = format!(
        "listen = '127.0.0.1:0'\ncertificate-chain-path = '{}'\nprivate-key-path = '{}'\n",
        pki.chain.display(),
        pki.key.display()
    );
    let config: NtsKeServerConfig = toml::from_str(&text).unwrap();
    let listener = tokio::time::timeout(STEP, nts_ke::bind(&config, Announce::default()))
        .await
        .unwrap()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keys: SharedKeySet = Arc::new(RwLock::new(KeySet::generate(
        KeySetConfig::default(),
        now,
        &mut rand::rng(),
    )));
    let cancel = CancellationToken::new();
    let addr = listener.local_addr();
    tokio::spawn(listener.run(Arc::clone(&keys), cancel.clone()));
    Running { addr, keys, cancel }
}

fn same(a: &NtsKeys, b: &NtsKeys) -> bool {
    a.algorithm() == b.algorithm()
        && a.c2s.as_bytes() == b.c2s.as_bytes()
        && a.s2c.as_bytes() == b.s2c.as_bytes()
}

/// Every cookie is `cookie_len` bytes and opens to `keys`.
fn assert_cookies_open(running: &Running, cookies: &[Vec<u8>], keys: &NtsKeys) {
    assert!(!cookies.is_empty());
    let keyset = running.keys.read().unwrap();
    for cookie in cookies {
        assert_eq!(Some(cookie.len()), cookie_len(keys.algorithm()));
        let opened = keyset.open_cookie(cookie).unwrap();
        assert!(same(&opened, keys), "cookie holds other keys");
    }
}

/// One exchange with the proto `KeClient` (optionally without record
/// 1024, as chrony 4.4 to 4.6.0): the response, whether its raw records
/// carried 1024, and the keys for both exporter contexts.
async fn raw_exchange(
    running: &Running,
    pki: &Pki,
    client: KeClient,
) -> (KeResponse, bool, NtsKeys, NtsKeys) {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![NTSKE_ALPN.to_vec()];
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(
        STEP,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap()
    .unwrap();
    let mut client = client;
    tls.write_all(&client.request()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(STEP, tls.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let KeClientProgress::Done(response) = client.receive(&bytes).unwrap() else {
        panic!("incomplete response");
    };
    let mut echoed = false;
    let mut rest = &bytes[..];
    while let Ok(Decoded::Complete { record, consumed }) = decode(rest) {
        echoed |= record.body == RecordBody::CompliantGcmSivExport;
        rest = &rest[consumed..];
    }
    let conn = tls.get_ref().1;
    let derive = |ctx| {
        derive_keys_with(0, response.algorithm, ctx, |label, context, out| {
            conn.export_keying_material(out, label.as_bytes(), Some(context))
                .map(drop)
        })
        .unwrap()
    };
    let compliant = derive(KeyContext::Compliant);
    let legacy = derive(KeyContext::LegacyGcmSiv);
    (response, echoed, compliant, legacy)
}

#[tokio::test]
async fn daemon_client_and_server_agree_on_compliant_gcm_siv_with_72_byte_cookies() {
    let pki = pki();
    let running = start(&pki).await;
    let outcome = key_exchange(
        "localhost",
        running.addr.port(),
        Some(&pki.ca_path),
        STEP,
        &[GCM, SIV],
    )
    .await
    .unwrap();
    assert_eq!(outcome.algorithm, GCM);
    assert_eq!(outcome.key_context, KeyContext::Compliant);
    assert!(outcome.fallback_keys.is_none(), "the server echoed 1024");
    assert_eq!(outcome.cookies.len(), 8);
    assert!(outcome.cookies.iter().all(|c| c.len() == 72));
    assert_eq!(cookie_len(GCM), Some(72));
    assert!(
        cookie_len(SIV).unwrap() > 72,
        "GCM-SIV cookies are the small ones"
    );
    assert_cookies_open(&running, &outcome.cookies, &outcome.keys);
    running.cancel.cancel();
}

#[tokio::test]
async fn record_1024_is_echoed_and_keys_are_compliant() {
    let pki = pki();
    let running = start(&pki).await;
    let (response, echoed, compliant, legacy) =
        raw_exchange(&running, &pki, KeClient::new(&[GCM])).await;
    assert_eq!(response.algorithm, GCM);
    assert!(echoed);
    assert_eq!(response.key_context, KeyContext::Compliant);
    assert_cookies_open(&running, &response.cookies, &compliant);
    assert!(!same(&compliant, &legacy));
    running.cancel.cancel();
}

#[tokio::test]
async fn chrony_4_4_style_client_offering_gcm_siv_alone_gets_legacy_keys() {
    let pki = pki();
    let running = start(&pki).await;
    let old = KeClient::new(&[GCM]).without_compliant_gcm_siv_record();
    let (response, echoed, _, legacy) = raw_exchange(&running, &pki, old).await;
    assert_eq!(response.algorithm, GCM);
    assert!(!echoed);
    // What chrony 4.4 to 4.6.0 derive, and what the cookies hold.
    assert_eq!(response.key_context, KeyContext::LegacyGcmSiv);
    assert_cookies_open(&running, &response.cookies, &legacy);
    running.cancel.cancel();
}

#[tokio::test]
async fn a_client_without_record_1024_offering_more_is_steered_off_gcm_siv() {
    let pki = pki();
    let running = start(&pki).await;
    // chrony 4.4 to 4.6.0 offer [30, 15] by default.
    let old = KeClient::new(&[GCM, SIV]).without_compliant_gcm_siv_record();
    let (response, echoed, compliant, _) = raw_exchange(&running, &pki, old).await;
    assert_eq!(response.algorithm, SIV);
    assert!(!echoed);
    assert_cookies_open(&running, &response.cookies, &compliant);
    running.cancel.cancel();
}
