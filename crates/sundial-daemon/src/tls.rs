//! TLS for the NTS-KE server: the rustls configuration built from the PEM
//! files the config names, and what a certificate says about itself.
//!
//! Everything that can be wrong with those files is found here, at startup,
//! with the file named, so that a typo in a path or an expired certificate
//! stops the daemon with a sentence a sysadmin can act on instead of failing
//! every handshake later.

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The ALPN protocol id of NTS-KE (RFC 8915 section 4).
pub const NTSKE_ALPN: &[u8] = b"ntske/1";

/// Why the TLS configuration could not be built. Each variant names the
/// file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed PEM: {detail}", path.display())]
    Pem { path: PathBuf, detail: String },
    #[error("{}: no certificate found (expected a PEM \"CERTIFICATE\" block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{}: no private key found (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    #[error("{}: private key is not usable: {source}", path.display())]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "{}: private key does not match the certificate in {}",
        key.display(),
        chain.display()
    )]
    KeyMismatch { key: PathBuf, chain: PathBuf },
    #[error("{}: certificate cannot be parsed: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{}: certificate expired at {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{}: certificate is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    /// rustls refused the configuration itself; not expected with the fixed
    /// protocol versions used here.
    #[error("TLS configuration rejected: {0}")]
    Config(rustls::Error),
}

/// What the leaf certificate says about itself: for `sundial query`, status
/// and a metric on the days left before it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject distinguished name, e.g. `CN=time.example.com`.
    pub subject: String,
    /// DNS names as written, IP addresses in their usual text form, anything
    /// else as x509-parser renders it.
    pub subject_alt_names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Why a certificate could not be read as X.509.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CertificateParseError(String);

impl CertificateInfo {
    /// Reads one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateParseError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateParseError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateParseError(
                "trailing data after the certificate".to_owned(),
            ));
        }
        let subject_alt_names = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext.value.general_names.iter().map(render_name).collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(CertificateParseError(e.to_string())),
        };
        let validity = cert.validity();
        Ok(Self {
            subject: cert.subject().to_string(),
            subject_alt_names,
            not_before: unix_to_system_time(validity.not_before.timestamp()),
            not_after: unix_to_system_time(validity.not_after.timestamp()),
        })
    }
}

fn render_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => (*dns).to_owned(),
        GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
            Ok(v4) => std::net::Ipv4Addr::from(v4).to_string(),
            Err(_) => match <[u8; 16]>::try_from(*bytes) {
                Ok(v6) => std::net::Ipv6Addr::from(v6).to_string(),
                Err(_) => name.to_string(),
            },
        },
        other => other.to_string(),
    }
}

fn unix_to_system_time(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    // Saturate rather than panic on dates a SystemTime cannot hold.
    if secs >= 0 {
        UNIX_EPOCH
            .checked_add(magnitude)
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

/// A ready server configuration, the swappable certificate behind it, and
/// what its leaf certificate says.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub leaf: CertificateInfo,
    pub cert: Arc<ReloadableCert>,
}

/// Loads the certificate chain (PEM, leaf first) and its private key (PEM:
/// PKCS#8, PKCS#1 RSA or SEC1 EC) into a TLS 1.3-only configuration that
/// offers ALPN `ntske/1`.
pub fn load_server_config(chain: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    load_server_tls(chain, key, SystemTime::now()).map(|tls| tls.config)
}

/// As [`load_server_config`], checking the leaf's validity at `now`, and
/// also returning what the leaf says about itself and the handle through
/// which a renewed pair replaces it without a restart.
pub fn load_server_tls(chain: &Path, key: &Path, now: SystemTime) -> Result<ServerTls, TlsError> {
    let (certified, leaf) = load_certified_key(chain, key, now)?;
    let cert = Arc::new(ReloadableCert {
        current: RwLock::new(Some((Arc::new(certified), leaf.clone()))),
    });
    Ok(ServerTls {
        config: server_config(Arc::clone(&cert))?,
        leaf,
        cert,
    })
}

/// The TLS 1.3-only configuration with ALPN `ntske/1` that presents
/// whatever `cert` holds at each handshake.
pub fn server_config(cert: Arc<ReloadableCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // RFC 8915 4: NTS-KE is TLS 1.3 only.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![NTSKE_ALPN.to_vec()];
    // A client comes back only when its cookies run out, usually after a
    // long while, so resumption saves little; tickets would cost bytes on
    // every exchange and session state on the server.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Reads and checks one certificate/key pair: the chain parses, the leaf is
/// valid at `now`, the key loads and matches the leaf.
pub fn load_certified_key(
    chain: &Path,
    key: &Path,
    now: SystemTime,
) -> Result<(CertifiedKey, CertificateInfo), TlsError> {
    let certs = read_chain(chain)?;
    let Some(leaf_der) = certs.first() else {
        return Err(TlsError::NoCertificate {
            path: chain.to_owned(),
        });
    };
    let leaf = CertificateInfo::from_der(leaf_der).map_err(|e| TlsError::BadCertificate {
        path: chain.to_owned(),
        detail: e.0,
    })?;
    check_validity(chain, &leaf, now)?;
    let key_der = read_key(key)?;

    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::UnsupportedKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; rustls itself
        // lets that through, and a real mismatch then fails every handshake.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                key: key.to_owned(),
                chain: chain.to_owned(),
            });
        }
        Err(other) => {
            return Err(TlsError::BadCertificate {
                path: chain.to_owned(),
                detail: other.to_string(),
            });
        }
    }
    Ok((certified, leaf))
}

/// The certificate the KE server presents, swappable while it serves: each
/// new handshake takes whatever pair is current, handshakes in flight keep
/// the one they started with.
/// Empty until a first pair is loaded (an ACME server waiting for its
/// first certificate): handshakes then fail.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Option<(Arc<CertifiedKey>, CertificateInfo)>>,
}

impl ReloadableCert {
    /// Holds no certificate until the first [`reload`](Self::reload).
    #[must_use]
    pub fn empty() -> Self {
        Self {
            current: RwLock::new(None),
        }
    }

    /// What the pair now served says about its leaf.
    pub fn leaf(&self) -> Option<CertificateInfo> {
        self.current.read().ok()?.as_ref().map(|c| c.1.clone())
    }

    /// Loads the pair again and, if it is good, serves it from the next
    /// handshake on. A bad pair leaves the current one serving.
    pub fn reload(
        &self,
        chain: &Path,
        key: &Path,
        now: SystemTime,
    ) -> Result<CertificateInfo, TlsError> {
        let (certified, leaf) = load_certified_key(chain, key, now)?;
        if let Ok(mut current) = self.current.write() {
            *current = Some((Arc::new(certified), leaf.clone()));
        }
        Ok(leaf)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.as_ref().map(|c| Arc::clone(&c.0))
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => pem_error(path, other),
    })
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        pem::Error::NoItemsFound => TlsError::NoCertificate {
            path: path.to_owned(),
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

fn check_validity(path: &Path, leaf: &CertificateInfo, now: SystemTime) -> Result<(), TlsError> {
    if now > leaf.not_after {
        return Err(TlsError::Expired {
            path: path.to_owned(),
            not_after: format_unix(leaf.not_after),
        });
    }
    if now < leaf.not_before {
        return Err(TlsError::NotYetValid {
            path: path.to_owned(),
            not_before: format_unix(leaf.not_before),
        });
    }
    Ok(())
}

/// Renders a time for an error message as RFC 3339 UTC, e.g.
/// `2001-01-01T00:00:00Z`.
fn format_unix(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), so the message needs no date crate.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        let at = |s: u64| format_unix(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_unix(before), "1969-12-31T23:59:59Z");
    }
}
