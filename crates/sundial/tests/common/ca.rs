//! A throwaway private CA and a CA-signed server certificate, written as
//! PEM the way a sysadmin would deploy them. The CA is a real CA
//! (basicConstraints CA:TRUE): chrony (GnuTLS) and rustls refuse a
//! self-signed leaf as a trust anchor.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

/// The files [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate: the trust anchor for clients.
    pub ca: PathBuf,
    /// The server certificate, then the CA (leaf first).
    pub chain: PathBuf,
    /// The server's private key, PKCS#8 PEM, mode 0600.
    pub key: PathBuf,
}

fn validity(params: &mut CertificateParams) {
    // Wide enough for any test machine's clock, short of UTCTime's 2050
    // limit so every TLS stack parses it the same way.
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2049, 12, 31);
}

/// An EC P-256 CA and a leaf for `localhost` (SANs localhost, 127.0.0.1,
/// ::1) signed by it, in `dir`: `ca.pem`, `server-chain.pem`, `server.key`.
pub fn generate(dir: &Path) -> CertFiles {
    let ca_key = KeyPair::generate().expect("generate the CA key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sundial test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("generate the server key");
    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("server certificate names");
    leaf_params.distinguished_name = rcgen::DistinguishedName::new();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    validity(&mut leaf_params);
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("sign the server certificate");

    let files = CertFiles {
        ca: dir.join("ca.pem"),
        chain: dir.join("server-chain.pem"),
        key: dir.join("server.key"),
    };
    write(&files.ca, &ca_cert.pem());
    write(&files.chain, &(leaf_cert.pem() + &ca_cert.pem()));
    write(&files.key, &leaf_key.serialize_pem());
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600))
        .expect("chmod 600 server.key");
    files
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
