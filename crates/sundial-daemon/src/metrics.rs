//! The Prometheus endpoint: `GET /metrics` over plain HTTP on
//! `[observability] metrics-exporter-listen`, in the OpenMetrics text format.
//!
//! Two halves. [`encode`] turns a [`Snapshot`] (plain numbers, no atomics,
//! no sockets) into the exposition text, so what a scrape shows is testable
//! without a network. [`MetricsListener`] is a deliberately tiny HTTP/1.x
//! responder: a scrape is one request per connection, so keep-alive,
//! chunking and request bodies are not worth a web framework.
//!
//! Adding metrics (the NTS client's sources, for one): add a field to
//! [`Snapshot`], fill it in [`Handles::snapshot`], and register the families
//! in [`encode`]. The names of metrics ntpd-rs's exporter also has are kept
//! identical, so existing dashboards keep working.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::server::ntp::NtpStats;
use crate::server::nts_ke::{KeListener, KeStats};
use crate::tls::ReloadableCert;

/// Scrapes served at once. Prometheus scrapes one connection at a time;
/// the headroom is for a person with curl. Beyond it, connections wait in
/// the kernel's accept queue.
const MAX_CONNECTIONS: usize = 8;

/// A connection must deliver its request and take its answer within this,
/// so a silent or trickling client cannot hold a slot.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request head read. A scrape's head is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Pause after an accept error such as EMFILE, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The content type of what [`encode`] writes. Prometheus parses the older
/// text format differently (counter names), so the type must say which.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The counters of one `[[server]]` listener at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpServerSnapshot {
    /// The configured listen address (the `listen_address` label).
    pub listen: SocketAddr,
    pub received: u64,
    /// Answered with time, without NTS.
    pub plain: u64,
    /// Answered with time, with NTS.
    pub nts: u64,
    /// Answered with an NTS NAK (a cookie we cannot open).
    pub nts_nak: u64,
    /// Answered with a DENY kiss.
    pub deny: u64,
    /// Answered with a RATE kiss.
    pub rate: u64,
    /// Dropped by a filter with action "ignore" or by `require-nts`.
    pub ignored: u64,
    /// Dropped as not a client request we answer (bad header, version, mode).
    pub malformed: u64,
    /// NTS requests dropped (unauthenticated, malformed NTS fields, no keys).
    pub nts_dropped: u64,
    pub send_errors: u64,
}

impl NtpServerSnapshot {
    /// Reads the live counters. Each is read on its own, so a scrape racing
    /// a packet may see `received` one ahead of the outcome counters.
    #[must_use]
    pub fn read(listen: SocketAddr, stats: &NtpStats) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            listen,
            received: get(&stats.received),
            plain: get(&stats.plain),
            nts: get(&stats.nts),
            nts_nak: get(&stats.nts_nak),
            deny: get(&stats.deny),
            rate: get(&stats.rate),
            ignored: get(&stats.ignored),
            malformed: get(&stats.malformed),
            nts_dropped: get(&stats.nts_dropped),
            send_errors: get(&stats.send_errors),
        }
    }
}

/// The counters of one `[[nts-ke-server]]` listener at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeServerSnapshot {
    pub listen: SocketAddr,
    pub handshakes_ok: u64,
    pub responses: u64,
    pub refused: u64,
    pub failed_tls: u64,
    pub failed_alpn: u64,
    pub failed_bad_request: u64,
    pub failed_timeout: u64,
    pub failed_internal: u64,
    pub accept_errors: u64,
    /// Seconds from the snapshot to the served leaf certificate's
    /// notAfter; negative once it has expired. `None` if it cannot be read.
    pub certificate_expiry_seconds: Option<i64>,
}

impl KeServerSnapshot {
    /// Reads the live counters; `now` is when the expiry is counted from.
    #[must_use]
    pub fn read(
        listen: SocketAddr,
        stats: &KeStats,
        not_after: Option<SystemTime>,
        now: SystemTime,
    ) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            listen,
            handshakes_ok: get(&stats.handshakes_ok),
            responses: get(&stats.responses),
            refused: get(&stats.refused),
            failed_tls: get(&stats.failed_tls),
            failed_alpn: get(&stats.failed_alpn),
            failed_bad_request: get(&stats.failed_bad_request),
            failed_timeout: get(&stats.failed_timeout),
            failed_internal: get(&stats.failed_internal),
            accept_errors: get(&stats.accept_errors),
            certificate_expiry_seconds: not_after.map(|t| seconds_between(now, t)),
        }
    }
}

/// `to - from` in whole seconds, negative when `to` is earlier, saturating.
fn seconds_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => i64::try_from(behind.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Everything one scrape shows, as plain values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub ntp_servers: Vec<NtpServerSnapshot>,
    pub nts_ke_servers: Vec<KeServerSnapshot>,
}

/// What an NTS-KE listener exposes to the metrics: its counters and the
/// certificate it serves, read at each scrape because a reload may have
/// replaced it.
#[derive(Debug, Clone)]
pub struct KeHandle {
    pub listen: SocketAddr,
    pub stats: Arc<KeStats>,
    pub certificate: Arc<ReloadableCert>,
}

impl KeHandle {
    /// The handle of a bound listener (before `run` consumes it).
    #[must_use]
    pub fn of(listener: &KeListener) -> Self {
        Self {
            listen: listener.local_addr(),
            stats: listener.stats(),
            certificate: listener.certificate_handle(),
        }
    }
}

/// The live state the endpoint reads at each scrape.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    /// Each `[[server]]`'s configured address and its counters.
    pub ntp_servers: Vec<(SocketAddr, Arc<NtpStats>)>,
    pub nts_ke_servers: Vec<KeHandle>,
}

impl Handles {
    /// Reads every counter now.
    #[must_use]
    pub fn snapshot(&self, now: SystemTime) -> Snapshot {
        Snapshot {
            ntp_servers: self
                .ntp_servers
                .iter()
                .map(|(listen, stats)| NtpServerSnapshot::read(*listen, stats))
                .collect(),
            nts_ke_servers: self
                .nts_ke_servers
                .iter()
                .map(|ke| {
                    let not_after = ke.certificate.leaf().map(|leaf| leaf.not_after);
                    KeServerSnapshot::read(ke.listen, &ke.stats, not_after, now)
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenLabel {
    listen_address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    listen_address: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listen_address: String,
    reason: &'static str,
}

type CounterFamily<L> = Family<L, Counter>;

/// Registers a counter family per listener under `name` (the encoder adds
/// `_total`) and fills it with `value` of each item.
fn counters<T>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    items: &[T],
    listen: impl Fn(&T) -> SocketAddr,
    value: impl Fn(&T) -> u64,
) {
    let family = CounterFamily::<ListenLabel>::default();
    for item in items {
        let label = ListenLabel {
            listen_address: listen(item).to_string(),
        };
        family.get_or_create(&label).inc_by(value(item));
    }
    registry.register(name, help, family);
}

/// The exposition text of one snapshot, ending in `# EOF`.
///
/// A fresh registry per scrape: the daemon's counters live in the
/// listeners (they also feed `sundial status`), and copying a few dozen
/// numbers per scrape is cheaper than keeping two sets in step.
pub fn encode(snapshot: &Snapshot) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    encode_ntp_servers(&mut registry, &snapshot.ntp_servers);
    encode_nts_ke_servers(&mut registry, &snapshot.nts_ke_servers);
    let mut out = String::new();
    encode_text(&mut out, &registry)?;
    Ok(out)
}

/// Which number of a listener's snapshot a metric shows.
type NtpValue = fn(&NtpServerSnapshot) -> u64;

/// ntpd-rs's server metrics, same names and label. ntpd-rs also has
/// `ntp_server_nts_{received,denied,rate_limited}_packets_total`; our
/// counters cannot tell an NTS request that got a DENY or RATE kiss from a
/// plain one, so those are left out rather than shown wrong.
fn encode_ntp_servers(registry: &mut Registry, servers: &[NtpServerSnapshot]) {
    let listen = |s: &NtpServerSnapshot| s.listen;
    let table: [(&str, &str, NtpValue); 8] = [
        (
            "ntp_server_received_packets",
            "Number of incoming packets",
            |s| s.received,
        ),
        (
            "ntp_server_accepted_packets",
            "Number of packets answered with time (plain and NTS)",
            |s| s.plain + s.nts,
        ),
        (
            "ntp_server_denied_packets",
            "Number of packets answered with a DENY kiss",
            |s| s.deny,
        ),
        (
            "ntp_server_ignored_packets",
            "Number of packets dropped without an answer",
            |s| s.ignored + s.malformed + s.nts_dropped,
        ),
        (
            "ntp_server_rate_limited_packets",
            "Number of packets answered with a RATE kiss",
            |s| s.rate,
        ),
        (
            "ntp_server_response_send_errors",
            "Number of packets where there was an error sending the answer",
            |s| s.send_errors,
        ),
        (
            "ntp_server_nts_accepted_packets",
            "Number of NTS packets answered with time",
            |s| s.nts,
        ),
        (
            "ntp_server_nts_nak_packets",
            "Number of NTS packets answered with an NTS NAK",
            |s| s.nts_nak,
        ),
    ];
    for (name, help, value) in table {
        counters(registry, name, help, servers, listen, value);
    }
    counters(
        registry,
        "sundial_ntp_server_nts_dropped_packets",
        "Number of NTS packets dropped: not authentic, malformed NTS fields, or no keys",
        servers,
        listen,
        |s| s.nts_dropped,
    );
}

/// NTS-KE server metrics; ntpd-rs exports none, so the names are ours.
fn encode_nts_ke_servers(registry: &mut Registry, servers: &[KeServerSnapshot]) {
    let label = |s: &KeServerSnapshot| s.listen.to_string();

    let outcomes = CounterFamily::<OutcomeLabels>::default();
    let reasons = CounterFamily::<ReasonLabels>::default();
    let expiry = Family::<ListenLabel, Gauge>::default();
    for s in servers {
        let failed = [
            ("tls", s.failed_tls),
            ("alpn", s.failed_alpn),
            ("bad_request", s.failed_bad_request),
            ("timeout", s.failed_timeout),
            ("internal", s.failed_internal),
        ];
        let failed_total = failed.iter().map(|(_, n)| n).sum();
        for (outcome, n) in [
            ("cookies", s.responses),
            ("refused", s.refused),
            ("failed", failed_total),
        ] {
            let key = OutcomeLabels {
                listen_address: label(s),
                outcome,
            };
            outcomes.get_or_create(&key).inc_by(n);
        }
        for (reason, n) in failed {
            let key = ReasonLabels {
                listen_address: label(s),
                reason,
            };
            reasons.get_or_create(&key).inc_by(n);
        }
        if let Some(seconds) = s.certificate_expiry_seconds {
            expiry
                .get_or_create(&ListenLabel {
                    listen_address: label(s),
                })
                .set(seconds);
        }
    }
    registry.register(
        "sundial_nts_ke_handshakes",
        "NTS-KE connections by how they ended: cookies sent, refused (no protocol or algorithm in common), failed",
        outcomes,
    );
    registry.register(
        "sundial_nts_ke_failures",
        "Failed NTS-KE connections by reason: tls, alpn (no ntske/1), bad_request, timeout, internal",
        reasons,
    );
    counters(
        registry,
        "sundial_nts_ke_tls_handshakes",
        "TLS handshakes completed with ALPN ntske/1",
        servers,
        |s| s.listen,
        |s| s.handshakes_ok,
    );
    counters(
        registry,
        "sundial_nts_ke_accept_errors",
        "Failed accept() calls, e.g. out of file descriptors",
        servers,
        |s| s.listen,
        |s| s.accept_errors,
    );
    registry.register_with_unit(
        "sundial_nts_ke_certificate_expiry",
        "Time until the served certificate expires (negative once expired)",
        Unit::Seconds,
        expiry,
    );
}

/// The metrics address could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {source}")]
pub struct MetricsStartError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// A bound metrics endpoint, ready to [`run`](MetricsListener::run).
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// Binds the endpoint's TCP socket; a failure names the address.
pub async fn bind(addr: SocketAddr) -> Result<MetricsListener, MetricsStartError> {
    let err = |source| MetricsStartError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local_addr = listener.local_addr().map_err(err)?;
    Ok(MetricsListener {
        listener,
        local_addr,
    })
}

impl MetricsListener {
    /// The bound address (the real port when the config said port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `cancel` fires. `collect` is called once per scrape.
    pub async fn run<F>(self, collect: F, cancel: CancellationToken)
    where
        F: Fn() -> Snapshot + Send + Sync + 'static,
    {
        let collect = Arc::new(collect);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        let mut accept_failing = false;
        tracing::info!(addr = %self.local_addr, "serving metrics");
        loop {
            while tasks.try_join_next().is_some() {}
            // A permit before accept: at the limit, clients queue in the
            // kernel instead of costing us memory.
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    accept_failing = false;
                    stream
                }
                Err(e) => {
                    if !accept_failing {
                        tracing::warn!(addr = %self.local_addr, error = %e, "metrics accept failed; backing off");
                    }
                    accept_failing = true;
                    drop(permit);
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            let collect = Arc::clone(&collect);
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let _permit = permit;
                tokio::select! {
                    () = cancel.cancelled() => {}
                    result = tokio::time::timeout(CONNECTION_TIMEOUT, serve(stream, &*collect)) => {
                        if let Ok(Err(e)) = result {
                            tracing::debug!(error = %e, "metrics connection failed");
                        }
                    }
                }
            });
        }
        tasks.shutdown().await;
    }
}

/// One request, one answer, then close.
async fn serve(
    mut stream: TcpStream,
    collect: &(dyn Fn() -> Snapshot + Send + Sync),
) -> io::Result<()> {
    let response = match read_head(&mut stream).await? {
        Some(head) => respond(&head, collect),
        None => plain_response(
            "400 Bad Request",
            "request head too large or not HTTP\n",
            false,
        ),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Reads until the blank line that ends the request head. `None` when the
/// head grows past [`MAX_REQUEST_HEAD`] or the peer stops sending.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

/// The answer to a request head: 200 with the metrics for `GET /metrics`
/// (a query string is ignored), 404 for other paths, 405 for other methods.
fn respond(head: &[u8], collect: &(dyn Fn() -> Snapshot + Send + Sync)) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return plain_response("400 Bad Request", "malformed request line\n", false);
    };
    if !version.starts_with("HTTP/1.") {
        return plain_response("400 Bad Request", "HTTP/1.x only\n", false);
    }
    let path = target.split('?').next().unwrap_or_default();
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return plain_response("405 Method Not Allowed", "GET or HEAD only\n", false),
    };
    if path != "/metrics" {
        return plain_response("404 Not Found", "metrics are at /metrics\n", head_only);
    }
    match encode(&collect()) {
        Ok(body) => response("200 OK", CONTENT_TYPE, &body, head_only),
        Err(fmt::Error) => {
            tracing::warn!("metrics could not be encoded");
            plain_response("500 Internal Server Error", "encoding failed\n", head_only)
        }
    }
}

fn plain_response(status: &str, body: &str, head_only: bool) -> Vec<u8> {
    response(status, "text/plain; charset=utf-8", body, head_only)
}

fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" },
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_down_and_goes_negative() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(seconds_between(t, t + Duration::from_secs(90)), 90);
        assert_eq!(seconds_between(t, t - Duration::from_secs(90)), -90);
        assert_eq!(seconds_between(t, t), 0);
    }

    #[test]
    fn an_empty_snapshot_still_ends_in_eof() {
        let text = encode(&Snapshot::default()).unwrap_or_default();
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn request_lines_are_checked() {
        let collect = Snapshot::default;
        let status = |req: &str| {
            let out = respond(req.as_bytes(), &collect);
            let text = String::from_utf8_lossy(&out).into_owned();
            text.lines().next().unwrap_or_default().to_owned()
        };
        assert_eq!(status("GET /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
        assert_eq!(
            status("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(status("HEAD /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        assert_eq!(
            status("POST /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(status("GET /metrics\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status("GET /metrics SPDY/3\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
    }

    #[test]
    fn head_gets_no_body() {
        let out = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &Snapshot::default);
        assert!(out.ends_with(b"\r\n\r\n"));
    }
}
