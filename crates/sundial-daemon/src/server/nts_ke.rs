//! NTS-KE over TLS 1.3 on TCP (RFC 8915 section 4): accept, handshake,
//! read one request into the sans-IO `KeServer`, answer with cookies sealed
//! under the shared keyset, close.
//!
//! Every connection is bounded: at most `concurrent-connections` are served
//! at once, one timeout covers the whole exchange (handshake, request,
//! response), and the request size cap lives in `KeServer`. Everything a
//! remote peer can cause is logged at debug and counted in [`KeStats`].
//!
//! The listener accepts always and sheds instead of queueing. Taking a
//! permit before `accept()` (the first design) let a few hundred idle TCP
//! connections (slowloris: connect, never speak TLS) hold every permit
//! until their timeout while genuine clients waited behind them in the
//! kernel's accept queue, and an attacker who reconnects as fast as he is
//! timed out keeps that queue full for good. Now, when every slot is taken,
//! a newcomer evicts the *oldest connection still in its TLS handshake*: an
//! idle connection costs the attacker nothing, so it is what we give up
//! first, and a genuine client, whose handshake takes a round trip or two,
//! is evicted only if a full table's worth of connections arrives during
//! that round trip. Connections past their handshake cost the peer a full
//! TLS 1.3 handshake and are never evicted; when all slots hold such
//! connections the newcomer is closed at once (counted in
//! `rejected_full`). Memory is bounded by the table: one task, one socket
//! and one rustls session per slot.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::cookie::cookie_len;
use sundial_proto::nts::ke_record::{EncodeError, ErrorCode, NextProtocol};
use sundial_proto::nts::ke_server::{
    COOKIE_COUNT, KeServer, KeServerProgress, Negotiated, build_response, build_response_sealing,
    error_response, refusal_response,
};
use sundial_proto::nts::key_export::derive_keys_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::cert_watch::CertWatch;
use crate::config::NtsKeServerConfig;
use crate::keystore::SharedKeySet;
use crate::small_server::{ACCEPT_BACKOFF, AcceptWarnings};
use crate::tls::{self, CertificateInfo, NTSKE_ALPN, ReloadableCert, TlsError};

/// Bytes per TLS read. `KeServer` accumulates reads of any size and caps
/// the request; a typical request is a few dozen bytes.
const READ_CHUNK: usize = 512;

/// What one response puts in its Server and Port Negotiation records
/// (RFC 8915 4.1.7, 4.1.8); `None` sends no record, so clients use this
/// host and port 123.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NtpTarget {
    pub server: Option<String>,
    pub port: Option<u16>,
}

/// What the responses announce: one target, or several named in turn (one
/// per key exchange) to spread clients over NTP servers that share the key
/// file. No target sends no record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announce {
    pub targets: Vec<NtpTarget>,
}

impl Announce {
    /// Every response names `server` and `port`.
    pub fn single(server: Option<String>, port: Option<u16>) -> Self {
        Self {
            targets: vec![NtpTarget { server, port }],
        }
    }

    /// The target for the `n`th key exchange.
    fn nth(&self, n: usize) -> Option<&NtpTarget> {
        self.targets.get(n.checked_rem(self.targets.len())?)
    }
}

/// Why a KE listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeStartError {
    #[error("[[nts-ke-server]] {listen}: {source}")]
    Tls {
        listen: SocketAddr,
        #[source]
        source: TlsError,
    },
    #[error("[[nts-ke-server]] cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The server name cannot be sent in a Server Negotiation record.
    #[error("[[nts-ke-server]] {listen}: cannot announce NTP server {server:?}: {source}")]
    Announce {
        listen: SocketAddr,
        server: String,
        #[source]
        source: EncodeError,
    },
}

/// Counters for one listener, for `sundial status` and the metrics. Every
/// connection ends in exactly one of `responses`, `refused` or a `failed_*`
/// counter (or none, if the daemon shuts down while it is in flight).
#[derive(Debug, Default)]
pub struct KeStats {
    /// TLS handshakes that completed with ALPN `ntske/1`.
    pub handshakes_ok: AtomicU64,
    /// Exchanges answered with cookies.
    pub responses: AtomicU64,
    /// Well-formed requests with no protocol or algorithm in common.
    pub refused: AtomicU64,
    /// The TLS handshake failed, or the TLS stream broke mid-exchange.
    pub failed_tls: AtomicU64,
    /// The handshake completed without ALPN `ntske/1`.
    pub failed_alpn: AtomicU64,
    /// The request was malformed; an Error record was sent.
    pub failed_bad_request: AtomicU64,
    /// The exchange did not finish within `key-exchange-timeout-ms`.
    pub failed_timeout: AtomicU64,
    /// Our side failed (keyset unavailable, key export or sealing failed).
    pub failed_internal: AtomicU64,
    /// `accept()` failed (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Connections still in their TLS handshake that were closed to make
    /// room for a newcomer while every slot was taken (slowloris defence).
    pub shed_handshakes: AtomicU64,
    /// Newcomers closed at once because every slot held a connection past
    /// its handshake.
    pub rejected_full: AtomicU64,
    /// Connections being served now (a gauge; never above
    /// `concurrent-connections`).
    pub in_flight: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A bound NTS-KE listener, ready to [`run`](KeListener::run).
pub struct KeListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    cert_watch: CertWatch,
    timeout: Duration,
    concurrent_connections: usize,
    announce: Arc<Announce>,
    stats: Arc<KeStats>,
}

impl std::fmt::Debug for KeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeListener")
            .field("local_addr", &self.local_addr)
            .field("certificate", &self.cert_watch.chain)
            .field("timeout", &self.timeout)
            .field("concurrent_connections", &self.concurrent_connections)
            .field("announce", &self.announce)
            .finish_non_exhaustive()
    }
}

/// Loads the certificate and key, checks that `announce` can be encoded and
/// binds the TCP socket. Everything that can be wrong with the
/// configuration fails here, before the daemon reports ready.
pub async fn bind(
    config: &NtsKeServerConfig,
    announce: Announce,
) -> Result<KeListener, KeStartError> {
    let listen = config.listen;
    let (chain, key) = config.certificate_files();
    let tls = tls::load_server_tls(&chain, &key, std::time::SystemTime::now())
        .map_err(|source| KeStartError::Tls { listen, source })?;
    check_announce(listen, &announce)?;

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| KeStartError::Bind {
            addr: listen,
            source,
        })?;
    assemble(
        config,
        announce,
        listener,
        tls.config,
        tls.cert,
        Arc::new(KeStats::default()),
    )
}

fn assemble(
    config: &NtsKeServerConfig,
    announce: Announce,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cert: Arc<ReloadableCert>,
    stats: Arc<KeStats>,
) -> Result<KeListener, KeStartError> {
    let local_addr = listener.local_addr().map_err(|source| KeStartError::Bind {
        addr: config.listen,
        source,
    })?;
    let (chain, key) = config.certificate_files();
    Ok(KeListener {
        listener,
        local_addr,
        acceptor: TlsAcceptor::from(tls),
        cert_watch: CertWatch { chain, key, cert },
        timeout: Duration::from_millis(config.key_exchange_timeout_ms.max(1)),
        concurrent_connections: config.concurrent_connections.max(1),
        announce: Arc::new(announce),
        stats,
    })
}

/// A KE server whose certificate is still to come (ACME): its address is
/// bound at start, before any privilege drop, but not listening, so
/// clients are refused at once instead of failing a handshake.
#[derive(Debug)]
pub struct PendingKe {
    socket: socket2::Socket,
    config: NtsKeServerConfig,
    announce: Announce,
    cert: Arc<ReloadableCert>,
    stats: Arc<KeStats>,
}

/// Checks `announce` and binds the address without listening.
pub fn reserve(
    config: &NtsKeServerConfig,
    announce: Announce,
    cert: Arc<ReloadableCert>,
) -> Result<PendingKe, KeStartError> {
    let addr = config.listen;
    check_announce(addr, &announce)?;
    let bind_err = |source| KeStartError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(bind_err)?;
    // As tokio's bind does: a restart may reuse the port at once.
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(PendingKe {
        socket,
        config: config.clone(),
        announce,
        cert,
        stats: Arc::new(KeStats::default()),
    })
}

impl PendingKe {
    /// The status handle, valid before and after the listener starts.
    pub fn handle(&self) -> (SocketAddr, Arc<KeStats>, Arc<ReloadableCert>) {
        let addr = self
            .socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(self.config.listen);
        (addr, Arc::clone(&self.stats), Arc::clone(&self.cert))
    }

    /// Starts listening; the certificate must be in place by now.
    pub fn listen(self) -> Result<KeListener, KeStartError> {
        let addr = self.config.listen;
        let bind_err = |source| KeStartError::Bind { addr, source };
        self.socket.listen(1024).map_err(bind_err)?;
        self.socket.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(self.socket.into()).map_err(bind_err)?;
        let tls =
            tls::server_config(Arc::clone(&self.cert)).map_err(|source| KeStartError::Tls {
                listen: addr,
                source,
            })?;
        assemble(
            &self.config,
            self.announce,
            listener,
            tls,
            self.cert,
            self.stats,
        )
    }
}

/// Encodes the records once with no cookies, so a server name that cannot
/// go on the wire stops the start instead of failing every exchange.
fn check_announce(listen: SocketAddr, announce: &Announce) -> Result<(), KeStartError> {
    let probe = Negotiated {
        protocol: NextProtocol::NtpV4,
        algorithm: AeadAlgorithm::AesSivCmac256,
        requested_server: None,
        requested_port: None,
        compliant_gcm_siv: false,
    };
    for target in &announce.targets {
        if let Err(source) = build_response(&probe, &[], target.server.as_deref(), target.port) {
            return Err(KeStartError::Announce {
                listen,
                server: target.server.clone().unwrap_or_default(),
                source,
            });
        }
    }
    Ok(())
}

impl KeListener {
    /// The bound address (the real port when the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters; they stay readable after `run` consumes the listener.
    pub fn stats(&self) -> Arc<KeStats> {
        Arc::clone(&self.stats)
    }

    /// What the leaf certificate served now says (subject, names, expiry).
    pub fn certificate(&self) -> Option<CertificateInfo> {
        self.cert_watch.cert.leaf()
    }

    /// The served certificate, which hot reload may replace: read it for
    /// the current expiry.
    pub fn certificate_handle(&self) -> Arc<ReloadableCert> {
        Arc::clone(&self.cert_watch.cert)
    }

    /// Serves until `cancel` fires, then waits for the connections in
    /// flight, which stop at once because they watch `cancel` too.
    pub async fn run(self, keys: SharedKeySet, cancel: CancellationToken) {
        let slots = Arc::new(Slots::new(
            self.concurrent_connections,
            Arc::clone(&self.stats),
        ));
        let conn = Arc::new(Connection {
            acceptor: self.acceptor,
            keys,
            announce: self.announce,
            turn: AtomicUsize::new(0),
            stats: Arc::clone(&self.stats),
            timeout: self.timeout,
        });
        let mut tasks = JoinSet::new();
        tokio::spawn(self.cert_watch.run(cancel.clone()));
        // A full descriptor table would otherwise log ten lines a second.
        let mut warnings = AcceptWarnings::default();
        tracing::info!(addr = %self.local_addr, "NTS-KE server listening");

        loop {
            // Reap finished connections so the set holds only live ones.
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "NTS-KE connection task panicked");
                    }
                }
            }
            let accepted = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => {
                    // The peer gave up before we got to it: nothing to fix.
                    bump(&self.stats.accept_errors);
                    tracing::debug!(error = %e, "NTS-KE accept failed");
                    continue;
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: the pending connection stays
                    // in the queue and the socket stays readable, so
                    // retrying at once would spin a core. Wait; connections
                    // in flight end within the timeout and free descriptors.
                    bump(&self.stats.accept_errors);
                    if warnings.should_warn(Instant::now()) {
                        tracing::warn!(addr = %self.local_addr, error = %e, "NTS-KE accept failed; backing off");
                    } else {
                        tracing::debug!(error = %e, "NTS-KE accept failed again");
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            let Some(slot) = slots.admit() else {
                tracing::debug!(%peer, "every NTS-KE slot is past its handshake; closing newcomer");
                drop(stream);
                continue;
            };
            let conn = Arc::clone(&conn);
            let cancel = cancel.clone();
            let guard = SlotGuard {
                slots: Arc::clone(&slots),
                slot,
            };
            let span = tracing::debug_span!("nts_ke", %peer);
            tasks.spawn(
                async move {
                    let evicted = guard.slot.evict.clone();
                    tokio::select! {
                        () = cancel.cancelled() => tracing::debug!("shutting down mid-exchange"),
                        () = evicted.cancelled() => tracing::debug!("evicted: oldest handshake while every slot was taken"),
                        () = conn.serve(stream, &guard) => {}
                    }
                    // The guard gives the slot back here, however we ended.
                    drop(guard);
                }
                .instrument(span),
            );
        }

        while tasks.join_next().await.is_some() {}
        tracing::debug!(addr = %self.local_addr, "NTS-KE server stopped");
    }
}

/// One connection's hold on a slot of the table.
#[derive(Debug)]
struct Slot {
    id: u64,
    /// Cleared exactly once, under the table's lock, by whichever comes
    /// first: the connection ending or a newcomer evicting it.
    held: AtomicBool,
    /// Fired to evict the connection; its task then ends at once.
    evict: CancellationToken,
}

/// The bounded table of connections being served: how many slots are held,
/// and which holders are still in their TLS handshake, oldest first.
#[derive(Debug)]
struct Slots {
    limit: usize,
    stats: Arc<KeStats>,
    inner: Mutex<SlotsInner>,
}

#[derive(Debug, Default)]
struct SlotsInner {
    held: usize,
    next_id: u64,
    /// At most `limit` entries: every entry holds a slot.
    handshaking: VecDeque<Arc<Slot>>,
}

impl Slots {
    fn new(limit: usize, stats: Arc<KeStats>) -> Self {
        Self {
            limit: limit.max(1),
            stats,
            inner: Mutex::new(SlotsInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotsInner> {
        // Every update below leaves the table consistent before anything
        // that could panic, so a poisoned lock still holds good data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection, evicting the oldest connection still in
    /// its handshake when the table is full; `None` when every slot holds a
    /// connection past its handshake.
    fn admit(&self) -> Option<Arc<Slot>> {
        let mut inner = self.lock();
        if inner.held >= self.limit {
            let Some(victim) = inner.handshaking.pop_front() else {
                bump(&self.stats.rejected_full);
                return None;
            };
            if victim.held.swap(false, Ordering::Relaxed) {
                inner.held -= 1;
            }
            victim.evict.cancel();
            bump(&self.stats.shed_handshakes);
        }
        let slot = Arc::new(Slot {
            id: inner.next_id,
            held: AtomicBool::new(true),
            evict: CancellationToken::new(),
        });
        inner.next_id = inner.next_id.wrapping_add(1);
        inner.held += 1;
        inner.handshaking.push_back(Arc::clone(&slot));
        self.stats
            .in_flight
            .store(inner.held as u64, Ordering::Relaxed);
        Some(slot)
    }

    /// The connection finished its TLS handshake: no longer evictable.
    fn handshake_done(&self, slot: &Slot) {
        self.lock().handshaking.retain(|s| s.id != slot.id);
    }

    /// The connection ended (or was evicted): its slot is free.
    fn release(&self, slot: &Slot) {
        let mut inner = self.lock();
        if slot.held.swap(false, Ordering::Relaxed) {
            inner.held -= 1;
        }
        inner.handshaking.retain(|s| s.id != slot.id);
        self.stats
            .in_flight
            .store(inner.held as u64, Ordering::Relaxed);
    }
}

/// Gives a connection's slot back when its task ends, however it ends
/// (finished, timed out, evicted, cancelled or panicked).
struct SlotGuard {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl SlotGuard {
    fn handshake_done(&self) {
        self.slots.handshake_done(&self.slot);
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.release(&self.slot);
    }
}

/// Accept errors that concern one connection only (RST before accept);
/// they need no back-off.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// What every connection task shares.
struct Connection {
    acceptor: TlsAcceptor,
    keys: SharedKeySet,
    announce: Arc<Announce>,
    /// Key exchanges answered, to take the announced targets in turn.
    turn: AtomicUsize,
    stats: Arc<KeStats>,
    timeout: Duration,
}

/// How one exchange ended, for the counters.
enum Outcome {
    Served,
    Refused,
    TlsFailed,
    NoAlpn,
    BadRequest,
    Internal,
}

impl Connection {
    async fn serve(&self, stream: TcpStream, slot: &SlotGuard) {
        let outcome = match tokio::time::timeout(self.timeout, self.exchange(stream, slot)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::debug!(timeout = ?self.timeout, "key exchange timed out");
                bump(&self.stats.failed_timeout);
                return;
            }
        };
        let counter = match outcome {
            Outcome::Served => &self.stats.responses,
            Outcome::Refused => &self.stats.refused,
            Outcome::TlsFailed => &self.stats.failed_tls,
            Outcome::NoAlpn => &self.stats.failed_alpn,
            Outcome::BadRequest => &self.stats.failed_bad_request,
            Outcome::Internal => &self.stats.failed_internal,
        };
        bump(counter);
    }

    async fn exchange(&self, stream: TcpStream, slot: &SlotGuard) -> Outcome {
        let mut tls = match self.acceptor.accept(stream).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return Outcome::TlsFailed;
            }
        };
        slot.handshake_done();
        // rustls refuses a client that offers only other ALPN ids, but lets
        // one that offers none through; RFC 8915 4 requires ntske/1.
        if tls.get_ref().1.alpn_protocol() != Some(NTSKE_ALPN) {
            tracing::debug!("client did not negotiate ALPN ntske/1; closing");
            return Outcome::NoAlpn;
        }
        bump(&self.stats.handshakes_ok);

        let mut ke = KeServer::new(&AeadAlgorithm::SUPPORTED);
        let mut buf = [0u8; READ_CHUNK];
        let progress = loop {
            let step = match tls.read(&mut buf).await {
                Ok(0) => match ke.finish() {
                    Err(e) => Err(e),
                    // Only after an outcome, which ends this loop; never
                    // read again after end of stream, whatever happens.
                    Ok(()) => break Ok(KeServerProgress::NeedMore),
                },
                Ok(n) => ke.receive(buf.get(..n).unwrap_or_default()),
                Err(e) => {
                    tracing::debug!(error = %e, "reading the request failed");
                    return Outcome::TlsFailed;
                }
            };
            match step {
                Ok(KeServerProgress::NeedMore) => continue,
                Ok(done) => break Ok(done),
                Err(e) => break Err(e),
            }
        };

        let (response, outcome) = match progress {
            Ok(KeServerProgress::Request(negotiated)) => match self.respond(&tls, &negotiated) {
                Ok(response) => {
                    tracing::debug!(
                        algorithm = ?negotiated.algorithm,
                        key_context = ?negotiated.key_context(),
                        "serving cookies"
                    );
                    (response, Outcome::Served)
                }
                Err(()) => (
                    error_response(ErrorCode::InternalServerError),
                    Outcome::Internal,
                ),
            },
            Ok(KeServerProgress::Refused(refusal)) => {
                tracing::debug!(?refusal, "refusing request");
                (refusal_response(refusal), Outcome::Refused)
            }
            // The loop above breaks only on a final outcome.
            Ok(KeServerProgress::NeedMore) => (
                error_response(ErrorCode::InternalServerError),
                Outcome::Internal,
            ),
            Err(e) => {
                tracing::debug!(error = %e, "bad request");
                (error_response(e.error_code()), Outcome::BadRequest)
            }
        };

        if let Err(e) = send(&mut tls, &response).await {
            tracing::debug!(error = %e, "sending the response failed");
            return match outcome {
                Outcome::Served | Outcome::Refused => Outcome::TlsFailed,
                other => other,
            };
        }
        outcome
    }

    /// Derives the association's keys from the TLS exporter, seals the
    /// cookies and encodes the response. Failures here are ours, not the
    /// client's, and are logged as such. AES-128-GCM-SIV keys use chrony's
    /// legacy exporter context unless the client sent record 1024, which
    /// the response then echoes (`Negotiated::key_context`).
    fn respond(&self, tls: &TlsStream<TcpStream>, negotiated: &Negotiated) -> Result<Vec<u8>, ()> {
        let conn = tls.get_ref().1;
        let keys = derive_keys_with(
            negotiated.protocol.to_u16(),
            negotiated.algorithm,
            negotiated.key_context(),
            |label, context, out| {
                conn.export_keying_material(out, label.as_bytes(), Some(context))
                    .map(|_| ())
            },
        )
        .map_err(|e| tracing::warn!(error = %e, "NTS-KE key export failed"))?;
        let algorithm = keys.algorithm();
        let len = cookie_len(algorithm).ok_or_else(|| {
            tracing::warn!(?algorithm, "negotiated an algorithm cookies cannot carry");
        })?;
        // Round robin over the announced NTP servers, one per exchange.
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let target = self.announce.nth(turn).cloned().unwrap_or_default();
        // A poisoned lock means the rotation task panicked mid-update; a
        // cookie from a half-updated set could be unopenable, so refuse.
        // The guard and the thread-local RNG live in this synchronous
        // function only: neither may be held across an await.
        let keyset = self
            .keys
            .read()
            .map_err(|_| tracing::warn!("keyset lock poisoned; cannot issue cookies"))?;
        let mut rng = rand::rng();
        // The cookies are sealed straight into their records.
        build_response_sealing(
            negotiated,
            len,
            COOKIE_COUNT,
            target.server.as_deref(),
            target.port,
            |out| keyset.seal_cookie(&keys, &mut rng, out),
        )
        .map_err(|e| tracing::warn!(error = %e, "building the NTS-KE response failed"))
    }
}

/// Writes the whole response, then closes the TLS session (close_notify)
/// and the TCP write side, so the client sees a clean end of the stream.
async fn send(tls: &mut TlsStream<TcpStream>, response: &[u8]) -> io::Result<()> {
    tls.write_all(response).await?;
    tls.shutdown().await
}
