//! Starting without a correct clock (`[synchronization]
//! certificate-time-check-after = N`, in the spirit of chrony's
//! `nocerttimecheck`): a board without a battery-backed clock boots in 1970
//! or 2000, every certificate looks not yet valid (or, on a clock ahead,
//! expired), and NTS, the thing that would fix the clock, cannot start.
//!
//! [`DeferredTimeVerifier`] wraps the source's usual verifier. It verifies
//! with the real time first; only when that fails because of a validity
//! time, and while the daemon has had fewer than N clock updates while
//! synchronized, it verifies again at a time inside the validity of every
//! certificate presented (the latest notBefore plus one second). Names,
//! chains, key usages and handshake signatures are checked as always: only
//! the clock is taken out of the decision, and only until the clock has
//! been set by sources that were themselves checked this way.
//!
//! The risk, said in docs/security.md: until then an attacker holding an
//! expired (say, leaked after it expired) or not-yet-valid certificate for
//! the server's name can act as the server and set our clock once.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Clock updates made while synchronized, since the daemon started: the
/// discipline counts, NTS sources read.
#[derive(Debug, Clone, Default)]
pub struct SynchronizedUpdates(Arc<AtomicU64>);

impl SynchronizedUpdates {
    pub fn new() -> Self {
        Self::default()
    }

    /// One more update while synchronized.
    pub fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// When certificate validity times count.
#[derive(Debug, Clone, Default)]
pub struct CertTimeCheck {
    /// 0: always (the default).
    after: u64,
    updates: SynchronizedUpdates,
}

impl CertTimeCheck {
    /// Validity times always count.
    pub fn always() -> Self {
        Self::default()
    }

    /// Validity times count once `updates` reaches `after` (0: always).
    pub fn after(after: u64, updates: SynchronizedUpdates) -> Self {
        Self { after, updates }
    }

    /// Whether time checks are deferred right now.
    pub fn deferred(&self) -> bool {
        self.updates.get() < self.after
    }

    /// Whether the option is on at all (a verifier wrapper is needed).
    pub fn is_enabled(&self) -> bool {
        self.after > 0
    }
}

/// A verifier that defers certificate time checks while [`CertTimeCheck`]
/// says so, and is `inner` otherwise.
#[derive(Debug)]
pub struct DeferredTimeVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    check: CertTimeCheck,
}

impl DeferredTimeVerifier {
    pub fn new(inner: Arc<dyn ServerCertVerifier>, check: CertTimeCheck) -> Self {
        Self { inner, check }
    }
}

fn is_time_error(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
        )
    )
}

/// A time inside the validity of every certificate given (one second after
/// the latest notBefore), or `None` when the windows do not overlap or a
/// certificate does not parse.
fn time_inside_all<'a>(certs: impl Iterator<Item = &'a [u8]>) -> Option<UnixTime> {
    let mut latest_start = i64::MIN;
    let mut earliest_end = i64::MAX;
    for der in certs {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        latest_start = latest_start.max(cert.validity().not_before.timestamp());
        earliest_end = earliest_end.min(cert.validity().not_after.timestamp());
    }
    let t = latest_start.checked_add(1)?;
    if t > earliest_end {
        return None;
    }
    u64::try_from(t)
        .ok()
        .map(|secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)))
}

impl ServerCertVerifier for DeferredTimeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let first = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match first {
            Err(e) if is_time_error(&e) && self.check.deferred() => {
                let chain = std::iter::once(end_entity.as_ref())
                    .chain(intermediates.iter().map(|c| c.as_ref()));
                let Some(inside) = time_inside_all(chain) else {
                    return Err(e);
                };
                tracing::debug!(
                    error = %e,
                    "certificate time check deferred: the clock is not synchronized yet"
                );
                self.inner.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    inside,
                )
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}
