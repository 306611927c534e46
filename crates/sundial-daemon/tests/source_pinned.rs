//! Pinned and self-signed server certificates: a source whose
//! `certificate-authority` names a server's own self-signed certificate
//! trusts exactly that certificate, at any address (a raw IP included), and
//! nothing else — not another self-signed certificate, not the system roots.
//! Both kinds of self-signed certificate pin: CA:FALSE, and CA:TRUE (what
//! `openssl req -x509` makes by default).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use sundial_daemon::server::nts_ke::{self, Announce};
use sundial_daemon::source::{KE_TIMEOUT, KeError, key_exchange};
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use tokio_util::sync::CancellationToken;

/// A self-signed (not CA) certificate for `names`, written as `<stem>.pem`
/// and `<stem>.key`.
fn self_signed(dir: &Path, stem: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
    self_signed_as(dir, stem, names, expired, IsCa::NoCa)
}

/// As [`self_signed`], with basic constraints `is_ca`.
fn self_signed_as(
    dir: &Path,
    stem: &str,
    names: &[&str],
    expired: bool,
    is_ca: IsCa,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, stem);
    params.is_ca = is_ca;
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    let pem = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&pem, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (pem, key_path)
}

/// Starts a KE server presenting `chain`/`key`; returns its port.
async fn serve(chain: &Path, key: &Path, cancel: &CancellationToken) -> u16 {
    let text = format!(
        "listen = '127.0.0.1:0'\ncertificate-chain-path = '{}'\nprivate-key-path = '{}'\n",
        chain.display(),
        key.display()
    );
    let config = toml::from_str(&text).unwrap();
    let listener = nts_ke::bind(&config, Announce::default()).await.unwrap();
    let port = listener.local_addr().port();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keys = Arc::new(RwLock::new(KeySet::generate(
        KeySetConfig::default(),
        now,
        &mut rand::rng(),
    )));
    tokio::spawn(listener.run(keys, cancel.clone()));
    port
}

async fn ke(host: &str, port: u16, pin: &Path) -> Result<usize, KeError> {
    tokio::time::timeout(
        Duration::from_secs(15),
        key_exchange(host, port, Some(pin), KE_TIMEOUT, &AeadAlgorithm::SUPPORTED),
    )
    .await
    .expect("bounded")
    .map(|outcome| outcome.cookies.len())
}

#[tokio::test]
async fn a_pinned_self_signed_certificate_is_trusted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let (server_pem, server_key) = self_signed(dir.path(), "server", &["time.internal"], false);
    let port = serve(&server_pem, &server_key, &cancel).await;

    // The pin works by name and by raw IP, though neither is in the
    // certificate: the pin, not the name, is what is trusted.
    assert_eq!(ke("localhost", port, &server_pem).await.unwrap(), 8);
    assert_eq!(ke("127.0.0.1", port, &server_pem).await.unwrap(), 8);

    // Another self-signed certificate, even for the right name, is refused.
    let (other_pem, _) = self_signed(dir.path(), "other", &["localhost", "127.0.0.1"], false);
    let error = ke("localhost", port, &other_pem).await.unwrap_err();
    assert!(matches!(error, KeError::Certificate { .. }), "{error:?}");

    // A self-signed certificate is no trust anchor without a pin.
    let error = tokio::time::timeout(
        Duration::from_secs(15),
        key_exchange(
            "localhost",
            port,
            None,
            KE_TIMEOUT,
            &AeadAlgorithm::SUPPORTED,
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(error, KeError::Certificate { .. }), "{error:?}");
    cancel.cancel();
}

#[tokio::test]
async fn an_expired_pin_is_refused() {
    // sundial refuses to serve an expired certificate, so the expired pin
    // is checked against the verifier directly.
    let dir = tempfile::tempdir().unwrap();
    let (expired_pem, _) = self_signed(dir.path(), "expired", &["localhost"], true);
    let der = rustls::pki_types::CertificateDer::from(
        rustls::pki_types::pem::PemObject::from_pem_file(&expired_pem)
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap(),
    );
    assert!(!sundial_daemon::source::trust::is_ca(&der));
    assert_refused_as_expired(der, rustls::RootCertStore::empty());
}

#[tokio::test]
async fn a_pinned_self_signed_ca_true_certificate_is_trusted_exactly() {
    // `openssl req -x509 -addext subjectAltName=...` marks the certificate
    // CA:TRUE. A chain check refuses it as the server's own certificate
    // (CaUsedAsEndEntity); as a pin it is what the server presents, byte
    // for byte, and is trusted.
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let ca_true = IsCa::Ca(BasicConstraints::Unconstrained);
    let (server_pem, server_key) =
        self_signed_as(dir.path(), "server", &["localhost"], false, ca_true);
    assert!(sundial_daemon::source::trust::is_ca(&der_of(&server_pem)));
    let port = serve(&server_pem, &server_key, &cancel).await;
    assert_eq!(ke("localhost", port, &server_pem).await.unwrap(), 8);
    assert_eq!(ke("127.0.0.1", port, &server_pem).await.unwrap(), 8);

    // Another CA:TRUE self-signed certificate for the same name is no pin
    // of this server, and no CA of it either.
    let (other_pem, _) = self_signed_as(dir.path(), "other", &["localhost"], false, ca_true);
    let error = ke("localhost", port, &other_pem).await.unwrap_err();
    assert!(matches!(error, KeError::Certificate { .. }), "{error:?}");
    cancel.cancel();
}

#[test]
fn an_expired_ca_true_pin_is_refused() {
    // The dates of a pin count whatever its basic constraints: the file's
    // CA:TRUE certificate is both a pin and a root, as the source sets it up.
    let dir = tempfile::tempdir().unwrap();
    let (expired_pem, _) = self_signed_as(
        dir.path(),
        "expired",
        &["localhost"],
        true,
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let der = der_of(&expired_pem);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    assert_refused_as_expired(der, roots);
}

/// `der`, pinned (and with `roots`), presented by "localhost": refused
/// because its dates are over, whatever else it is.
fn assert_refused_as_expired(
    der: rustls::pki_types::CertificateDer<'static>,
    roots: rustls::RootCertStore,
) {
    use rustls::client::danger::ServerCertVerifier;
    let verifier = sundial_daemon::source::trust::PinnedVerifier::new(
        vec![der.clone()],
        roots,
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .unwrap();
    let now = rustls::pki_types::UnixTime::now();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let result = verifier.verify_server_cert(&der, &[], &name, &[], now);
    assert!(
        matches!(
            result,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
            ))
        ),
        "{result:?}"
    );
}

fn der_of(pem: &Path) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem).unwrap()
}

#[test]
fn a_ca_certificate_presented_as_the_server_s_own_is_explained() {
    // A trusted CA signed a CA:TRUE certificate that the server presents
    // as its own: not a pin, and no server certificate either.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let verifier = sundial_daemon::source::trust::PinnedVerifier::new(
        vec![ca_cert.der().clone()],
        roots,
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .unwrap();
    use rustls::client::danger::ServerCertVerifier;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let now = rustls::pki_types::UnixTime::now();
    let Err(rustls::Error::InvalidCertificate(reason)) =
        verifier.verify_server_cert(leaf.der(), &[], &name, &[], now)
    else {
        panic!("a CA certificate as the server's own must be refused");
    };
    let said = sundial_daemon::source::cert_error::describe(&reason, "localhost", None);
    assert!(
        said.starts_with("the server presents a CA certificate (CA:TRUE) as its own"),
        "{said} ({reason:?})"
    );
}

#[tokio::test]
async fn a_name_mismatch_says_which_names_against_which_address() {
    // A CA-signed certificate for `localhost` only, reached by IP: the
    // error says both, in words, and what to do.
    let (_dir, ca, chain, key) = common_pki_for_localhost_only();
    let cancel = CancellationToken::new();
    let port = serve(&chain, &key, &cancel).await;
    let error = ke("127.0.0.1", port, &ca).await.unwrap_err();
    let said = error.to_string();
    assert!(
        said.contains("the certificate is for localhost, you connected to 127.0.0.1"),
        "{said}"
    );
    assert!(said.contains("IP:127.0.0.1"), "{said}");
    // Trusting another CA: the file is named.
    let dir = tempfile::tempdir().unwrap();
    let (other_ca, _) = self_signed_as(
        dir.path(),
        "other-ca",
        &[],
        false,
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let said = ke("localhost", port, &other_ca)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        said.contains(&format!(
            "the server's certificate is not signed by the CA in {}",
            other_ca.display()
        )),
        "{said}"
    );
    cancel.cancel();
}

/// A CA (its PEM path), and a server chain and key it signed for
/// `localhost` alone, in the returned directory.
fn common_pki_for_localhost_only() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_owned();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "name test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let ca = dir.join("ca.pem");
    let chain = dir.join("chain.pem");
    let key = dir.join("key.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (temp, ca, chain, key)
}
