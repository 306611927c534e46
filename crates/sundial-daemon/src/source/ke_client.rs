//! One NTS-KE exchange as a client (RFC 8915 section 4): DNS, TCP, TLS 1.3
//! with ALPN `ntske/1`, then the sans-IO `KeClient` over the stream and the
//! keys from the TLS exporter. One timeout covers all of it.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::{ClientConfig, RootCertStore};
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::ke_client::{KeClient, KeClientError, KeClientProgress};
use sundial_proto::nts::ke_record::ErrorCode;
use sundial_proto::nts::key_export::{KeyContext, derive_keys_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::cert_error;
use super::cert_time::{CertTimeCheck, DeferredTimeVerifier};
use super::trust;
use crate::config::NTP_PORT;
use crate::tls::NTSKE_ALPN;

/// Bytes per TLS read; `KeClient` accumulates reads of any size.
const READ_CHUNK: usize = 4096;

/// What a successful key exchange gives an NTS source.
pub struct KeOutcome {
    pub keys: NtsKeys,
    pub cookies: Vec<Vec<u8>>,
    pub algorithm: AeadAlgorithm,
    /// The exporter context `keys` were derived with: chrony's legacy one
    /// for AES-128-GCM-SIV when the server did not answer record 1024.
    pub key_context: KeyContext,
    /// With the legacy context: the compliant keys, for the same cookies,
    /// to switch to when the server answers only NTS NAKs (chrony's
    /// client does the same).
    pub fallback_keys: Option<NtsKeys>,
    /// The NTP server to poll: the Server Negotiation record, else the KE
    /// server's IP address.
    pub ntp_host: String,
    /// The Port Negotiation record, else 123.
    pub ntp_port: u16,
    /// The KE server address the exchange ran with.
    pub ke_addr: SocketAddr,
}

impl std::fmt::Debug for KeOutcome {
    // Cookies are bearer tokens: count them, never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeOutcome")
            .field("algorithm", &self.algorithm)
            .field("key_context", &self.key_context)
            .field("fallback_keys", &self.fallback_keys.is_some())
            .field("cookies", &self.cookies.len())
            .field("ntp_host", &self.ntp_host)
            .field("ntp_port", &self.ntp_port)
            .field("ke_addr", &self.ke_addr)
            .finish_non_exhaustive()
    }
}

/// Why a key exchange failed; each variant is a different thing for the
/// operator to look at (`sundial query` maps them to exit codes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeError {
    /// The `certificate-authority` file is missing, unreadable or holds no
    /// certificate.
    #[error("certificate-authority {}: {detail}", path.display())]
    CaFile { path: PathBuf, detail: String },
    #[error("resolving {host}: {source}")]
    Dns {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    /// No address of the host accepted a TCP connection; the last error.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The host name cannot be a TLS server name.
    #[error("`{host}` is not a valid TLS server name")]
    ServerName { host: String },
    /// The server's certificate did not verify against the trust anchors;
    /// said in words (`cert_error.rs`), naming `trusted`, the source's
    /// `certificate-authority`.
    #[error("certificate of {host} refused: {}", cert_error::describe(reason, host, trusted.as_deref()))]
    Certificate {
        host: String,
        reason: rustls::CertificateError,
        trusted: Option<PathBuf>,
    },
    /// Any other TLS failure (handshake alert, broken stream, TLS 1.2-only
    /// server).
    #[error("TLS with {host}: {source}")]
    Tls {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The server sent an NTS-KE Error record.
    #[error("NTS-KE server {host} sent error record {code:?}")]
    ErrorRecord { host: String, code: ErrorCode },
    /// The server broke RFC 8915 (no ALPN, malformed or incomplete
    /// records, an algorithm we did not offer, no cookies...).
    #[error("NTS-KE protocol error with {host}: {detail}")]
    Protocol { host: String, detail: String },
    #[error("key exchange with {host} did not finish within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
}

impl KeError {
    /// Names `file` (the `certificate-authority` the exchange trusted) in a
    /// certificate error.
    #[must_use]
    pub fn trusting(self, file: Option<&Path>) -> Self {
        match self {
            Self::Certificate { host, reason, .. } => Self::Certificate {
                host,
                reason,
                trusted: file.map(Path::to_owned),
            },
            other => other,
        }
    }

    /// Whether a sysadmin must act (trust anchors, CA file) rather than
    /// wait for the network or the server to recover.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            Self::CaFile { .. } | Self::Certificate { .. } | Self::ServerName { .. }
        )
    }
}

/// A key exchange and the TLS session it ran in, for a person checking a
/// server (`sundial query`): which certificates it presented, and how.
#[derive(Debug)]
pub struct KeReport {
    pub outcome: KeOutcome,
    /// The chain the server presented, leaf first (DER).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// `TLS 1.3` (the only version NTS-KE allows).
    pub tls_version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
}

/// Runs one key exchange with `host:port`. `extra_roots` is the source's
/// `certificate-authority`: trusted in addition to the system roots (or
/// pinned, see `trust.rs`).
pub async fn key_exchange(
    host: &str,
    port: u16,
    extra_roots: Option<&Path>,
    timeout: Duration,
    aead_preference: &[AeadAlgorithm],
) -> Result<KeOutcome, KeError> {
    key_exchange_report(host, port, extra_roots, timeout, aead_preference)
        .await
        .map(|report| report.outcome)
}

/// As [`key_exchange`], with certificate time checks as `cert_time` says
/// (`certificate-time-check-after`).
pub async fn key_exchange_with(
    host: &str,
    port: u16,
    trust: TrustAnchors<'_>,
    cert_time: &CertTimeCheck,
    timeout: Duration,
    aead_preference: &[AeadAlgorithm],
) -> Result<KeOutcome, KeError> {
    // Configuration problems are reported even when the network is down.
    let config = client_config_at(trust, cert_time, None)?;
    key_exchange_using(host, port, config, timeout, aead_preference)
        .await
        .map(|report| report.outcome)
        .map_err(|e| e.trusting(trust.file))
}

/// As [`key_exchange`], keeping the TLS details. `timeout` covers DNS, TCP,
/// TLS and the records.
pub async fn key_exchange_report(
    host: &str,
    port: u16,
    extra_roots: Option<&Path>,
    timeout: Duration,
    aead_preference: &[AeadAlgorithm],
) -> Result<KeReport, KeError> {
    // Configuration problems are reported even when the network is down.
    let config = client_config(extra_roots)?;
    key_exchange_using(host, port, config, timeout, aead_preference)
        .await
        .map_err(|e| e.trusting(extra_roots))
}

/// One key exchange with a TLS configuration from [`client_config_at`].
pub async fn key_exchange_using(
    host: &str,
    port: u16,
    config: Arc<ClientConfig>,
    timeout: Duration,
    aead_preference: &[AeadAlgorithm],
) -> Result<KeReport, KeError> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| KeError::ServerName {
        host: host.to_owned(),
    })?;
    match tokio::time::timeout(timeout, exchange(host, port, name, config, aead_preference)).await {
        Ok(result) => result,
        Err(_) => Err(KeError::Timeout {
            host: host.to_owned(),
            timeout,
        }),
    }
}

async fn exchange(
    host: &str,
    port: u16,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    aead_preference: &[AeadAlgorithm],
) -> Result<KeReport, KeError> {
    let (tcp, ke_addr) = connect(host, port).await?;
    let tls_error = |source: io::Error| classify_tls(host, source);
    let mut tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(tls_error)?;
    let protocol_error = |detail: String| KeError::Protocol {
        host: host.to_owned(),
        detail,
    };
    // RFC 8915 4: the client must not go on without ntske/1.
    if tls.get_ref().1.alpn_protocol() != Some(NTSKE_ALPN) {
        return Err(protocol_error(
            "server did not negotiate ALPN ntske/1".to_owned(),
        ));
    }

    let mut client = KeClient::new(aead_preference);
    tls.write_all(&client.request()).await.map_err(tls_error)?;
    tls.flush().await.map_err(tls_error)?;
    let ke_error = |e: KeClientError| match e {
        KeClientError::ServerError(code) => KeError::ErrorRecord {
            host: host.to_owned(),
            code,
        },
        other => protocol_error(other.to_string()),
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let response = loop {
        let n = tls.read(&mut buf).await.map_err(tls_error)?;
        if n == 0 {
            client.finish().map_err(ke_error)?;
            // finish() fails before End of Message, and Done ends the loop.
            return Err(protocol_error("stream ended early".to_owned()));
        }
        match client
            .receive(buf.get(..n).unwrap_or_default())
            .map_err(ke_error)?
        {
            KeClientProgress::NeedMore => {}
            KeClientProgress::Done(response) => break response,
        }
    };

    let conn = tls.get_ref().1;
    let derive = |key_context: KeyContext| {
        derive_keys_with(
            response.protocol.to_u16(),
            response.algorithm,
            key_context,
            |label, context, out| {
                conn.export_keying_material(out, label.as_bytes(), Some(context))
                    .map(|_| ())
            },
        )
        .map_err(|e| protocol_error(format!("key export: {e}")))
    };
    let keys = derive(response.key_context)?;
    let fallback_keys = response.fallback_key_context.map(derive).transpose()?;
    let peer_certificates = conn
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let tls_version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .map_or_else(String::new, |s| format!("{:?}", s.suite()));
    // A polite close; the keys are ours whatever the server does now.
    let _ = tls.shutdown().await;

    Ok(KeReport {
        outcome: KeOutcome {
            keys,
            cookies: response.cookies,
            algorithm: response.algorithm,
            key_context: response.key_context,
            fallback_keys,
            // RFC 8915 4.1.7: no Server record means the NTP server is at
            // the KE server's own IP address, not whatever the name
            // resolves to now (it may resolve to another address, or
            // another family, first).
            ntp_host: response.server.unwrap_or_else(|| ke_addr.ip().to_string()),
            ntp_port: response.port.unwrap_or(NTP_PORT),
            ke_addr,
        },
        peer_certificates,
        tls_version,
        cipher_suite,
    })
}

/// Resolves `host` and connects to its addresses in turn.
async fn connect(host: &str, port: u16) -> Result<(TcpStream, SocketAddr), KeError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| KeError::Dns {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                // The exchange is a few small writes: no Nagle delay.
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Err(source) => last = Some(KeError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| KeError::NoAddress {
        host: host.to_owned(),
    }))
}

/// Tells certificate rejections apart from other TLS failures: they need a
/// sysadmin, the others usually time.
fn classify_tls(host: &str, source: io::Error) -> KeError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(reason)) => KeError::Certificate {
            host: host.to_owned(),
            reason: reason.clone(),
            trusted: None,
        },
        _ => KeError::Tls {
            host: host.to_owned(),
            source,
        },
    }
}

/// The system trust anchors, read once: the bundle is large and does not
/// change under a running daemon often enough to matter for a rare KE.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        for error in &result.errors {
            tracing::debug!(%error, "reading system trust anchors");
        }
        if result.certs.is_empty() {
            tracing::debug!("no system trust anchors found");
        }
        result.certs
    })
}

/// What a source trusts: its `certificate-authority` file (CAs, and every
/// certificate in it as a pin), and the system roots unless left out.
#[derive(Debug, Clone, Copy)]
pub struct TrustAnchors<'a> {
    /// `certificate-authority`.
    pub file: Option<&'a Path>,
    /// `system-roots` (default true): also trust the system's CA bundle.
    /// Even when true, a file holding a non-CA certificate means "exactly
    /// this server", and the system roots are left out.
    pub system_roots: bool,
}

impl<'a> TrustAnchors<'a> {
    /// The system roots plus `file`, the default of a source.
    #[must_use]
    pub fn with_system(file: Option<&'a Path>) -> Self {
        Self {
            file,
            system_roots: true,
        }
    }
}

/// TLS 1.3 only, ALPN `ntske/1`, system roots plus the CAs in
/// `extra_roots`; or, when that file holds server certificates that are not
/// CAs (a self-signed server, say), exactly those pinned certificates plus
/// the file's CAs, and no system root. Every certificate in the file is
/// trusted when presented as it is (`trust.rs`).
pub(crate) fn client_config(extra_roots: Option<&Path>) -> Result<Arc<ClientConfig>, KeError> {
    client_config_at(
        TrustAnchors::with_system(extra_roots),
        &CertTimeCheck::always(),
        None,
    )
}

/// Reads a `certificate-authority` file: every PEM certificate in it, at
/// least one. The daemon calls this at start so a typo stops it there.
pub fn read_certificate_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, KeError> {
    let ca_error = |detail: String| KeError::CaFile {
        path: path.to_owned(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_error("no PEM certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// As `client_config`, with `trust`, deferring certificate time checks as
/// `cert_time` says, and reading the time from `time` (the system clock if
/// `None`; a test passes a clock ten years off).
pub fn client_config_at(
    trust: TrustAnchors<'_>,
    cert_time: &CertTimeCheck,
    time: Option<Arc<dyn TimeProvider>>,
) -> Result<Arc<ClientConfig>, KeError> {
    let extra_roots = trust.file;
    let ca_error = |detail: String| KeError::CaFile {
        path: extra_roots.map(Path::to_owned).unwrap_or_default(),
        detail,
    };
    let file_certs = match extra_roots {
        Some(path) => read_certificate_file(path)?,
        None => Vec::new(),
    };
    let mut roots = RootCertStore::empty();
    let mut has_leaf = false;
    for cert in &file_certs {
        if trust::is_ca(cert) {
            roots
                .add(cert.clone())
                .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
        } else {
            has_leaf = true;
        }
    }
    if trust.system_roots && !has_leaf {
        // Unparsable system certificates are skipped, as browsers do.
        let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let time = time.unwrap_or_else(|| Arc::new(DefaultTimeProvider));
    let builder = ClientConfig::builder_with_details(Arc::clone(&provider), time)
        // RFC 8915 4: NTS-KE is TLS 1.3 only.
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| KeError::Protocol {
            host: String::new(),
            detail: format!("TLS configuration: {e}"),
        })?;
    let verifier: Arc<dyn ServerCertVerifier> = if file_certs.is_empty() {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| ca_error(e.to_string()))?
    } else {
        Arc::new(
            trust::PinnedVerifier::new(file_certs, roots, provider)
                .map_err(|e| ca_error(e.to_string()))?,
        )
    };
    let verifier: Arc<dyn ServerCertVerifier> = if cert_time.is_enabled() {
        Arc::new(DeferredTimeVerifier::new(verifier, cert_time.clone()))
    } else {
        verifier
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![NTSKE_ALPN.to_vec()];
    Ok(Arc::new(config))
}
