//! What an NTS source trusts: the system roots plus the CAs in its
//! `certificate-authority` file — or, when that file holds a server's own
//! (e.g. self-signed) certificate rather than a CA, exactly that
//! certificate and nothing else (pinning, for private deployments).
//!
//! Every certificate in the file is also a pin: a server presenting
//! exactly one of them (same bytes, hence the same key) is trusted whatever
//! its basic constraints say. `openssl req -x509` marks a self-signed
//! certificate CA:TRUE by default, and a chain check then refuses it as a
//! leaf (`CaUsedAsEndEntity`) although the operator plainly meant "trust
//! this server". Byte equality is the stronger check anyway.
//!
//! A pinned certificate is accepted byte for byte: its name is not checked
//! against the address (the pin is stronger than a name), its validity
//! dates are, and the server must still prove it holds the private key (the
//! TLS 1.3 handshake signature is verified as usual). Its trade-off, said in
//! the docs: replacing the server certificate means updating every client's
//! pin, and nothing revokes a pin but removing it.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Whether `der` is a CA certificate (basicConstraints CA:TRUE); anything
/// else in a `certificate-authority` file is a pinned server certificate.
pub fn is_ca(der: &[u8]) -> bool {
    X509Certificate::from_der(der)
        .ok()
        .and_then(|(_, cert)| {
            cert.basic_constraints()
                .ok()
                .flatten()
                .map(|bc| bc.value.ca)
        })
        .unwrap_or(false)
}

/// Accepts exactly the pinned certificates, and (if any root is given) what
/// chains to those roots.
#[derive(Debug)]
pub struct PinnedVerifier {
    pinned: Vec<CertificateDer<'static>>,
    cas: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// `pinned`: certificates trusted as they are; `cas`: roots a
    /// presented chain may lead to instead (may be empty: pins only).
    pub fn new(
        pinned: Vec<CertificateDer<'static>>,
        cas: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let cas = if cas.is_empty() {
            None
        } else {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(cas), Arc::clone(&provider))
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?;
            Some(verifier)
        };
        Ok(Self {
            pinned,
            cas,
            provider,
        })
    }
}

fn within_validity(der: &[u8], now: UnixTime) -> Result<(), Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }
    if now < validity.not_before.timestamp() {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    Ok(())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self
            .pinned
            .iter()
            .any(|pin| pin.as_ref() == end_entity.as_ref())
        {
            within_validity(end_entity, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        match &self.cas {
            Some(cas) => {
                cas.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
