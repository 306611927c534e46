//! Answering the CA's challenges ourselves: HTTP-01 (RFC 8555 8.3) and
//! TLS-ALPN-01 (RFC 8737), on the address the config gives.
//!
//! The listener is bound once at start and kept: a port below 1024 can
//! then still be served after the daemon gives up root, and the CA's
//! validation never races a bind. What it answers is only what an order
//! pending now asked for: HTTP-01 a GET of `/.well-known/acme-challenge/`
//! and a token we hold, everything else a 404 (and 400 for what is not
//! HTTP); TLS-ALPN-01 a handshake with ALPN `acme-tls/1` for a name being
//! validated, everything else a TLS alert. Everything a peer sends is
//! counted and logged at debug.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::ChallengeType;
use crate::small_server::serve_connections;

/// RFC 8737 3: the ALPN id a TLS-ALPN-01 validation offers.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
const HTTP_PREFIX: &str = "/.well-known/acme-challenge/";
/// A request head longer than this is not a validation request.
const MAX_HEAD: usize = 4096;

/// The answers an order pending now has asked for.
#[derive(Debug, Default)]
pub struct Challenges {
    /// HTTP-01: token -> key authorization.
    http: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: lower-case name -> its validation certificate.
    tls: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Validation answers given.
    pub answered: AtomicU64,
    /// Requests refused: unknown token or name, wrong path, not HTTP, no
    /// `acme-tls/1`.
    pub refused: AtomicU64,
}

impl Challenges {
    pub fn add_http(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Makes and holds the self-signed certificate that carries the key
    /// authorization's digest in its acmeIdentifier extension.
    pub fn add_tls(&self, name: &str, digest: &[u8]) -> Result<(), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::aws_lc_rs::default_provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| rcgen::Error::PemError(e.to_string()))?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signer);
        lock(&self.tls).insert(name.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }

    /// Forgets every answer: the order is over, whatever its outcome.
    pub fn clear(&self) {
        lock(&self.http).clear();
        lock(&self.tls).clear();
    }

    fn http_answer(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    fn tls_answer(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.tls).get(&name.to_ascii_lowercase()).cloned()
    }

    fn count(&self, answered: bool) {
        let counter = if answered {
            &self.answered
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A map of strings is consistent after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bound challenge listener, ready to [`run`](ChallengeListener::run).
#[derive(Debug)]
pub struct ChallengeListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    kind: ChallengeType,
    challenges: Arc<Challenges>,
}

/// Binds now (before any privilege drop); serving starts with `run`.
pub async fn bind(
    addr: SocketAddr,
    kind: ChallengeType,
    challenges: Arc<Challenges>,
) -> io::Result<ChallengeListener> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    Ok(ChallengeListener {
        listener,
        local_addr,
        kind,
        challenges,
    })
}

impl ChallengeListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(addr = %self.local_addr, challenge = self.kind.as_str(), "answering ACME challenges");
        let listener = &self.listener;
        let accept = || async move { listener.accept().await.map(|(stream, _)| stream) };
        match self.kind {
            ChallengeType::Http01 => {
                let challenges = self.challenges;
                serve_connections(
                    "acme-http-01",
                    accept,
                    |stream| serve_http(stream, Arc::clone(&challenges)),
                    cancel,
                )
                .await;
            }
            ChallengeType::TlsAlpn01 => {
                let acceptor = TlsAcceptor::from(tls_config(self.challenges));
                serve_connections(
                    "acme-tls-alpn-01",
                    accept,
                    |stream| serve_tls(stream, acceptor.clone()),
                    cancel,
                )
                .await;
            }
        }
    }
}

async fn serve_http(mut stream: TcpStream, challenges: Arc<Challenges>) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let response = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match http_response(&head, &challenges) {
            Some(response) => break response,
            None if head.len() > MAX_HEAD => {
                challenges.count(false);
                break plain("400 Bad Request", "");
            }
            None => {}
        }
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The answer to a request head, `None` while it is incomplete.
fn http_response(head: &[u8], challenges: &Challenges) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(e) => {
            tracing::debug!(error = %e, "not an HTTP request on the ACME challenge port");
            challenges.count(false);
            Some(plain("400 Bad Request", ""))
        }
        Ok(httparse::Status::Complete(_)) => {
            let answer = match (request.method, request.path) {
                (Some("GET" | "HEAD"), Some(path)) => path
                    .strip_prefix(HTTP_PREFIX)
                    .and_then(|token| challenges.http_answer(token)),
                _ => None,
            };
            challenges.count(answer.is_some());
            Some(match answer {
                Some(key_authorization) => {
                    tracing::debug!(path = ?request.path, "answered an HTTP-01 validation");
                    if request.method == Some("HEAD") {
                        head_only(&key_authorization)
                    } else {
                        plain("200 OK", &key_authorization)
                    }
                }
                None => {
                    tracing::debug!(method = ?request.method, path = ?request.path, "refused a request on the ACME challenge port");
                    plain("404 Not Found", "")
                }
            })
        }
    }
}

fn plain(status: &str, body: &str) -> Vec<u8> {
    let mut out = head(status, body);
    out.extend_from_slice(body.as_bytes());
    out
}

fn head_only(body: &str) -> Vec<u8> {
    head("200 OK", body)
}

fn head(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes()
}

/// TLS 1.2 and 1.3 (the CA chooses), ALPN `acme-tls/1` only, and the
/// certificate of the name asked for, if we are validating it.
fn tls_config(challenges: Arc<Challenges>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // Not expected: the provider supports its own defaults.
        .unwrap_or_else(|_| ServerConfig::builder());
    let mut config = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(challenges)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

#[derive(Debug)]
struct Resolver(Arc<Challenges>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut ids| ids.any(|id| id == ACME_TLS_ALPN));
        let answer = hello
            .server_name()
            .filter(|_| offers_acme)
            .and_then(|name| self.0.tls_answer(name));
        // No certificate: rustls ends the handshake with an alert.
        self.0.count(answer.is_some());
        answer
    }
}

async fn serve_tls(stream: TcpStream, acceptor: TlsAcceptor) -> io::Result<()> {
    match acceptor.accept(stream).await {
        Ok(mut tls) => {
            tracing::debug!("answered a TLS-ALPN-01 validation");
            // The handshake was the answer; nothing more is exchanged.
            tls.shutdown().await
        }
        Err(e) => {
            tracing::debug!(error = %e, "refused a TLS handshake on the ACME challenge port");
            // A handshake the resolver refused was counted there.
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<Vec<u8>>) -> String {
        String::from_utf8(v.unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn only_pending_tokens_are_answered() {
        let c = Challenges::default();
        c.add_http("tok", "tok.thumb");
        let ok = text(http_response(
            b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a\r\n\r\n",
            &c,
        ));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\ntok.thumb"), "{ok}");
        let other = text(http_response(
            b"GET /.well-known/acme-challenge/nope HTTP/1.1\r\n\r\n",
            &c,
        ));
        assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
        let root = text(http_response(b"GET / HTTP/1.1\r\n\r\n", &c));
        assert!(root.starts_with("HTTP/1.1 404"), "{root}");
        let post = text(http_response(
            b"POST /.well-known/acme-challenge/tok HTTP/1.1\r\n\r\n",
            &c,
        ));
        assert!(post.starts_with("HTTP/1.1 404"), "{post}");
        c.clear();
        let gone = text(http_response(
            b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\n\r\n",
            &c,
        ));
        assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");
        assert_eq!(c.answered.load(Ordering::Relaxed), 1);
        assert_eq!(c.refused.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn garbage_is_a_400_and_a_partial_head_waits() {
        let c = Challenges::default();
        assert!(http_response(b"GET /.well-known/acme", &c).is_none());
        let bad = text(http_response(
            b"\x16\x03\x01\x00\xff\x00garbage\r\n\r\n",
            &c,
        ));
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_end_in_an_answer_or_a_wait() {
        use rand::{Rng, SeedableRng};
        let c = Challenges::default();
        c.add_http("tok", "tok.thumb");
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        for _ in 0..5_000 {
            let len = rng.random_range(0..600);
            let mut head: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.3) {
                head.splice(0..0, b"GET /.well-known/acme-challenge/".iter().copied());
            }
            if let Some(answer) = http_response(&head, &c) {
                assert!(!answer.starts_with(b"HTTP/1.1 200"));
            }
        }
    }

    #[test]
    fn a_validation_certificate_is_made() {
        let c = Challenges::default();
        assert!(c.add_tls("Time.Example.com", &[7u8; 32]).is_ok());
        assert!(c.tls_answer("time.example.com").is_some());
        assert!(c.tls_answer("other.example.com").is_none());
    }
}
