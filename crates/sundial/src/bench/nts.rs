//! The NTS side of `sundial bench`: real key exchanges over TLS 1.3 to
//! gather cookies, and a precomputed NTS request per sequence number, each
//! with its own fresh Unique Identifier.
//!
//! Cookies are reused across requests (round robin over every cookie of
//! every key exchange). A server does not track cookie reuse (RFC 8915
//! leaves unlinkability to the client), so this costs the server exactly
//! what fresh cookies would: one cookie open, one authenticator check, one
//! fresh cookie sealed per request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::client::{UID_LEN, VerifiedResponse, verify_response, write_request};
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress};
use sundial_proto::nts::key_export::derive_keys;
use sundial_proto::reader::Writer;

use super::load::{Workload, request_timestamp};

/// One key exchange's keys and the cookies it brought.
pub struct Session {
    keys: NtsKeys,
    pub cookies: Vec<Vec<u8>>,
}

/// A TLS 1.3 client configuration for NTS-KE that trusts `ca`. Session
/// resumption is off: every key exchange is a full handshake, as the
/// benchmark means to measure (and as a client with no ticket makes).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"ntske/1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Runs `count` key exchanges with `ke` (trusting `ca`, checking the
/// certificate for `name`).
pub fn gather(ke: SocketAddr, ca: &Path, name: &str, count: usize) -> Result<NtsWorkload, String> {
    let config = client_config(ca)?;
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|e| format!("server name {name}: {e}"))?;
    let mut sessions = Vec::with_capacity(count);
    for i in 0..count {
        let session = key_exchange(ke, &config, server_name.clone())
            .map_err(|e| format!("key exchange {} with {ke}: {e}", i + 1))?;
        sessions.push(session);
    }
    let cookies = sessions
        .iter()
        .enumerate()
        .flat_map(|(s, session)| session.cookies.iter().map(move |c| (s, c.clone())))
        .collect();
    Ok(NtsWorkload {
        sessions,
        cookies,
        requests: Vec::new(),
        stride: 0,
        lens: Vec::new(),
        uids: Vec::new(),
        rng: StdRng::from_os_rng(),
        interleaved: false,
    })
}

/// One full key exchange on a new connection.
pub fn key_exchange(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Result<Session, String> {
    let mut conn =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    // The request follows the handshake's last flight in its own segment:
    // with Nagle it would wait for the server's delayed ACK (40 ms).
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut client = KeClient::new(&[AeadAlgorithm::AesSivCmac256]);
    tls.write_all(&client.request())
        .map_err(|e| format!("TLS: {e}"))?;
    let mut buf = [0u8; 4096];
    let response = loop {
        let n = tls.read(&mut buf).map_err(|e| format!("TLS: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection early".to_owned());
        }
        let got = buf.get(..n).unwrap_or_default();
        if let KeClientProgress::Done(r) = client.receive(got).map_err(|e| e.to_string())? {
            break r;
        }
    };
    let keys = derive_keys(0, response.algorithm, |label, context, out| {
        conn.export_keying_material(out, label.as_bytes(), Some(context))
            .map(|_| ())
    })
    .map_err(|e| format!("key export: {e}"))?;
    Ok(Session {
        keys,
        cookies: response.cookies,
    })
}

/// Precomputed NTS requests for one step.
pub struct NtsWorkload {
    sessions: Vec<Session>,
    /// (session index, cookie), in the order requests use them.
    cookies: Vec<(usize, Vec<u8>)>,
    /// `lens.len()` requests, `stride` bytes apart.
    requests: Vec<u8>,
    stride: usize,
    lens: Vec<u16>,
    uids: Vec<[u8; UID_LEN]>,
    rng: StdRng,
    /// Requests ask for interleaved mode (`load::request_header`).
    pub interleaved: bool,
}

impl std::fmt::Debug for NtsWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtsWorkload")
            .field("sessions", &self.sessions.len())
            .field("cookies", &self.cookies.len())
            .finish_non_exhaustive()
    }
}

impl NtsWorkload {
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn cookies(&self) -> usize {
        self.cookies.len()
    }

    fn session_of(&self, seq: usize) -> Option<&Session> {
        let (s, _) = self.cookies.get(seq % self.cookies.len().max(1))?;
        self.sessions.get(*s)
    }
}

impl Workload for NtsWorkload {
    fn prepare(&mut self, tag: u8, count: usize) -> Result<(), String> {
        let longest = self.cookies.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        // Header, UID, cookie and authenticator fields with their headers,
        // nonce and tag: generous, the exact length is recorded per request.
        self.stride = 48 + 4 + UID_LEN + 4 + longest + 4 + 4 + 16 + 16 + 16;
        self.requests.clear();
        self.requests.resize(self.stride * count, 0);
        self.lens.clear();
        self.uids.clear();
        if self.cookies.is_empty() {
            return Err("the key exchanges brought no cookies".to_owned());
        }
        for (seq, slot) in self.requests.chunks_exact_mut(self.stride).enumerate() {
            let (s, cookie) = &self.cookies[seq % self.cookies.len()];
            let keys = &self.sessions[*s].keys;
            let mut uid = [0u8; UID_LEN];
            self.rng.fill_bytes(&mut uid);
            let header = super::load::request_header(tag, seq, self.interleaved);
            let mut w = Writer::new(slot);
            write_request(&mut w, &header, &uid, cookie, 0, keys, &mut self.rng)
                .map_err(|e| format!("building request {seq}: {e}"))?;
            self.lens.push(u16::try_from(w.len()).unwrap_or(u16::MAX));
            self.uids.push(uid);
        }
        Ok(())
    }

    fn request(&self, seq: usize) -> &[u8] {
        let len = usize::from(self.lens.get(seq).copied().unwrap_or(0));
        let start = seq * self.stride;
        self.requests.get(start..start + len).unwrap_or_default()
    }

    fn verify(&self, seq: usize, response: &[u8]) -> bool {
        let (Some(uid), Some(session)) = (self.uids.get(seq), self.session_of(seq)) else {
            return false;
        };
        match verify_response(response, uid, &session.keys) {
            Ok(VerifiedResponse::Time { header, cookies }) => {
                header.origin_timestamp == request_timestamp(self.request(seq))
                    && !cookies.is_empty()
            }
            _ => false,
        }
    }
}
