//! Scaffolding shared by the integration tests: a bound on awaits, a
//! throwaway PKI, keysets, rustls client configs for NTS-KE, and an NTS-KE
//! server on loopback.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use sundial_daemon::config::NtsKeServerConfig;
use sundial_daemon::keystore::SharedKeySet;
use sundial_daemon::server::nts_ke::{self, Announce, KeStats};
use sundial_daemon::tls::NTSKE_ALPN;
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on every await; far above what any step needs on loopback (the
/// largest the files used, so none of them gets less slack than before).
pub const STEP: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no result within {STEP:?}"),
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------- PKI ----

/// A private CA: what signs leaves, and its certificate.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

pub fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "sundial test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// What the leaf of a [`Pki`] looks like.
pub struct Leaf {
    /// Subject alternative names; rcgen turns IP literals into IP SANs.
    /// The first is also the common name.
    pub names: Vec<String>,
    /// An RSA key instead of ECDSA P-256.
    pub rsa: bool,
    pub not_before: Option<(i32, u8, u8)>,
    pub not_after: Option<(i32, u8, u8)>,
}

impl Default for Leaf {
    fn default() -> Self {
        Self {
            names: vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ],
            rsa: false,
            not_before: None,
            not_after: None,
        }
    }
}

/// A fresh CA and a leaf it signed, written as PEM files in a temp dir
/// (removed when this is dropped).
pub struct Pki {
    pub dir: TempDir,
    pub ca: CertificateDer<'static>,
    /// The CA certificate alone, for `certificate-authority`.
    pub ca_path: PathBuf,
    pub leaf: CertificateDer<'static>,
    /// The leaf, then the CA, as a server's chain file usually is.
    pub chain: PathBuf,
    /// The leaf's key as PKCS#8 PEM.
    pub key: PathBuf,
    /// The same key as PKCS#8 DER.
    pub key_der: Vec<u8>,
}

pub fn pki() -> Pki {
    pki_with(Leaf::default())
}

pub fn pki_with(leaf: Leaf) -> Pki {
    let ca = ca();
    let leaf_key = if leaf.rsa {
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
    } else {
        KeyPair::generate().unwrap()
    };
    let mut params = CertificateParams::new(leaf.names.clone()).unwrap();
    if let Some(cn) = leaf.names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    if let Some((y, m, d)) = leaf.not_before {
        params.not_before = rcgen::date_time_ymd(y, m, d);
    }
    if let Some((y, m, d)) = leaf.not_after {
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let cert = params.signed_by(&leaf_key, &ca.issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let chain = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    std::fs::write(&chain, format!("{}{}", cert.pem(), ca.pem)).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca: ca.der,
        ca_path,
        leaf: cert.der().clone(),
        chain,
        key,
        key_der: leaf_key.serialize_der(),
    }
}

// ------------------------------------------------------------- server ----

pub fn keyset() -> SharedKeySet {
    Arc::new(RwLock::new(fresh_keyset()))
}

pub fn fresh_keyset() -> KeySet {
    KeySet::generate(KeySetConfig::default(), now_secs(), &mut rand::rng())
}

pub fn ke_config(chain: &Path, key: &Path, listen: &str, extra: &str) -> NtsKeServerConfig {
    let text = format!(
        "listen = '{listen}'\ncertificate-chain-path = '{}'\nprivate-key-path = '{}'\n{extra}",
        chain.display(),
        key.display()
    );
    toml::from_str(&text).unwrap()
}

/// An NTS-KE server running on its own task with a fresh keyset.
pub struct KeServer {
    pub addr: SocketAddr,
    pub stats: Arc<KeStats>,
    pub keys: SharedKeySet,
    pub cancel: CancellationToken,
    pub task: JoinHandle<()>,
}

impl KeServer {
    /// Cancels the server and waits for `run` to return.
    pub async fn stop(self) {
        self.cancel.cancel();
        within("server stops", self.task).await.unwrap();
    }
}

/// A server for `pki` on an ephemeral loopback port; `extra` is appended
/// to its config.
pub async fn start(pki: &Pki, extra: &str, announce: Announce) -> KeServer {
    start_with(
        &ke_config(&pki.chain, &pki.key, "127.0.0.1:0", extra),
        announce,
    )
    .await
}

pub async fn start_with(config: &NtsKeServerConfig, announce: Announce) -> KeServer {
    let listener = within("bind", nts_ke::bind(config, announce))
        .await
        .unwrap();
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    let stats = listener.stats();
    let keys = keyset();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(listener.run(Arc::clone(&keys), cancel.clone()));
    KeServer {
        addr,
        stats,
        keys,
        cancel,
        task,
    }
}

pub fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

// ------------------------------------------------------------- client ----

/// A client trusting only `ca`, speaking `versions`, offering ALPN ntske/1
/// if `alpn`.
pub fn client_config(
    ca: &CertificateDer<'static>,
    alpn: bool,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
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

/// What an NTS-KE client uses: TLS 1.3 and ALPN ntske/1.
pub fn ntske_client(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    client_config(ca, true, &[&rustls::version::TLS13])
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

// ------------------------------------------------------------ NTP ----

/// One `[[server]]` on `listen`, with `extra` keys, as the config loads it.
pub fn ntp_server_config(listen: &str, extra: &str) -> sundial_daemon::config::ServerConfig {
    let text = format!("[[server]]\nlisten = \"{listen}\"\n{extra}\n");
    let mut cfg = sundial_daemon::config::parse(&text, Path::new("test.toml")).expect("config");
    cfg.servers.remove(0)
}

/// A server synchronized to itself at stratum 1 (reference id TEST).
pub fn local_state() -> sundial_daemon::server::ntp::StateFn {
    use sundial_proto::ntp::packet::ReferenceId;
    use sundial_proto::server::ServerState;
    Arc::new(|now| ServerState::local(1, ReferenceId(*b"TEST"), now))
}
