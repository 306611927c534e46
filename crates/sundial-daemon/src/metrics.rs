//! The Prometheus endpoint: `GET /metrics` over plain HTTP on
//! `[observability] metrics-exporter-listen`, in the OpenMetrics text format.
//!
//! Two halves. [`encode`] turns a [`Snapshot`] (plain numbers, no atomics,
//! no sockets; the very [`Status`] that `sundial status` shows, so the two
//! never disagree) into the exposition text, so what a scrape shows is
//! testable without a network. [`MetricsListener`] is a deliberately tiny HTTP/1.x
//! responder: a scrape is one request per connection, so keep-alive,
//! chunking and request bodies are not worth a web framework.
//!
//! Adding metrics: add a field to [`Status`] (crate::status), fill it in
//! [`Handles::snapshot`], and register the families in [`encode`]. The names of metrics ntpd-rs's exporter also has are kept
//! identical, so existing dashboards keep working.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use sundial_proto::server::DropClass;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::small_server::serve_connections;
pub use crate::status::{Handles, KeHandle, KeServerSnapshot, NtpServerSnapshot};
use crate::status::{SourceSnapshot, SourceState, Status};

/// Largest request head read. A scrape's head is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// The content type of what [`encode`] writes. Prometheus parses the older
/// text format differently (counter names), so the type must say which.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape shows: the same snapshot `sundial status` reads.
pub type Snapshot = Status;

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
    encode_system(&mut registry, snapshot);
    encode_sources(&mut registry, &snapshot.sources);
    encode_ntp_servers(&mut registry, &snapshot.ntp_servers);
    encode_nts_ke_servers(&mut registry, &snapshot.nts_ke_servers);
    let mut out = String::new();
    encode_text(&mut out, &registry)?;
    Ok(out)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// ntpd-rs's source labels: the name, the address polled, the id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    name: String,
    address: String,
    id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceStateLabels {
    name: String,
    address: String,
    id: String,
    state: &'static str,
}

fn source_labels(s: &SourceSnapshot) -> SourceLabels {
    SourceLabels {
        name: s.name.clone(),
        address: s.address.map(|a| a.to_string()).unwrap_or_default(),
        id: s.id.to_string(),
    }
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Registers one unlabelled gauge.
fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, g),
        None => registry.register(name, help, g),
    }
}

/// ntpd-rs's system metrics where we have the number (same names), and
/// ours (`sundial_`) for what ntpd-rs does not export. Not exported:
/// ntpd-rs's accumulated steps and the deprecated system poll interval.
fn encode_system(registry: &mut Registry, status: &Status) {
    let uptime = Family::<VersionLabel, FloatGauge>::default();
    uptime
        .get_or_create(&VersionLabel {
            version: status.version.clone(),
        })
        .set(status.uptime_seconds);
    registry.register_with_unit(
        "ntp_uptime",
        "Time that the ntp daemon is running",
        Unit::Seconds,
        uptime,
    );
    let system = &status.system;
    gauge(
        registry,
        "ntp_system_stratum",
        "Stratum of our clock",
        None,
        f64::from(system.stratum),
    );
    gauge(
        registry,
        "ntp_system_leap_indicator",
        "Indicates that a leap second will take place",
        None,
        f64::from(system.leap.indicator()),
    );
    gauge(
        registry,
        "ntp_system_root_delay",
        "Distance to the closest root time source",
        Some(Unit::Seconds),
        system.root_delay_seconds,
    );
    gauge(
        registry,
        "ntp_system_root_dispersion",
        "Estimate of how precise our time is",
        Some(Unit::Seconds),
        system.root_dispersion_seconds,
    );
    gauge(
        registry,
        "sundial_system_synchronized",
        "1 while the clock is synchronized (or a local clock below stratum 16 is served), else 0",
        None,
        if system.synchronized { 1.0 } else { 0.0 },
    );
    gauge(
        registry,
        "sundial_system_offset",
        "Last combined offset of the sources from our clock",
        Some(Unit::Seconds),
        system.offset_seconds,
    );
    gauge(
        registry,
        "sundial_system_frequency_ppm",
        "Frequency correction in force, parts per million",
        None,
        system.frequency_ppm,
    );
    // Absent rather than NaN or +Inf while there is no estimate (never
    // steered, no sources) or no virtual clock: a number that is not one
    // breaks every alert and graph built on the series.
    let optional = [
        (
            "sundial_system_clock_error",
            "Estimated error of the clock, clock minus true time (positive: fast); observe-only, of the virtual clock",
            status.clock_error_seconds,
        ),
        (
            "sundial_system_clock_uncertainty",
            "One standard error of the clock error estimate",
            status.clock_uncertainty_seconds,
        ),
        (
            "sundial_system_virtual_correction",
            "Observe-only: the virtual clock minus the real one (every correction issued, none applied)",
            status.virtual_correction_seconds,
        ),
    ];
    for (name, help, value) in optional {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            gauge(registry, name, help, Some(Unit::Seconds), value);
        }
    }
}

/// Which number of a source's snapshot a gauge shows.
type SourceValue = fn(&SourceSnapshot) -> f64;
/// Which counter of a source's snapshot a counter shows.
type SourceCount = fn(&SourceSnapshot) -> u64;

/// Per-source gauges with ntpd-rs's labels (`name`, `address`, `id`).
fn encode_sources(registry: &mut Registry, sources: &[SourceSnapshot]) {
    let table: [(&str, &str, Option<Unit>, SourceValue); 7] = [
        (
            "ntp_source_poll_interval",
            "Time between polls of the source",
            Some(Unit::Seconds),
            |s| 2f64.powi(i32::from(s.poll_exponent)),
        ),
        (
            "ntp_source_unanswered_polls",
            "Number of polls since the last successful poll with a maximum of eight",
            None,
            |s| s.unanswered_polls.min(8) as f64,
        ),
        (
            "ntp_source_offset",
            "Offset between the upstream source and system time",
            Some(Unit::Seconds),
            |s| s.offset_seconds,
        ),
        (
            "ntp_source_delay",
            "Current round-trip delay to the upstream source",
            Some(Unit::Seconds),
            |s| s.delay_seconds,
        ),
        (
            "sundial_source_jitter",
            "Jitter of the source's recent offsets",
            Some(Unit::Seconds),
            |s| s.jitter_seconds,
        ),
        (
            "sundial_source_reach",
            "Reach register: one bit per poll, newest lowest (chronyc shows it in octal)",
            None,
            |s| f64::from(s.reach),
        ),
        (
            "sundial_source_stratum",
            "Stratum of the source's last answer (16 before any)",
            None,
            |s| f64::from(s.stratum.unwrap_or(16)),
        ),
    ];
    for (name, help, unit, value) in table {
        let family = Family::<SourceLabels, FloatGauge>::default();
        for s in sources {
            family.get_or_create(&source_labels(s)).set(value(s));
        }
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, family),
            None => registry.register(name, help, family),
        }
    }
    let counter_table: [(&str, &str, SourceCount); 6] = [
        (
            "sundial_source_requests",
            "Requests sent to the source",
            |s| s.counters.requests,
        ),
        (
            "sundial_source_samples",
            "Answers believed and handed to the synchronizer",
            |s| s.counters.samples,
        ),
        (
            "sundial_source_unauthenticated_responses",
            "NTS answers that did not verify (forged, tampered or plain)",
            |s| s.counters.unauthenticated,
        ),
        (
            "sundial_source_nts_naks",
            "NTS NAKs: the server no longer opens our cookies",
            |s| s.counters.nts_naks,
        ),
        (
            "sundial_source_nts_key_exchanges",
            "Successful NTS key exchanges with the source",
            |s| s.counters.key_exchanges,
        ),
        (
            "sundial_source_nts_key_exchange_failures",
            "Failed NTS key exchanges with the source",
            |s| s.counters.key_exchange_failures,
        ),
    ];
    for (name, help, value) in counter_table {
        let family = CounterFamily::<SourceLabels>::default();
        for s in sources {
            family.get_or_create(&source_labels(s)).inc_by(value(s));
        }
        registry.register(name, help, family);
    }
    // Only NTS sources have a jar: a plain source shows no sample rather
    // than a misleading 0.
    let cookies = Family::<SourceLabels, FloatGauge>::default();
    for s in sources {
        if let Some(n) = s.nts_cookies {
            cookies.get_or_create(&source_labels(s)).set(n as f64);
        }
    }
    registry.register(
        "sundial_source_nts_cookies",
        "NTS cookies left in the source's jar (8 when full)",
        cookies,
    );
    // A state set: 1 for the state the source is in, 0 for the others.
    let states = Family::<SourceStateLabels, FloatGauge>::default();
    for s in sources {
        let l = source_labels(s);
        for state in [
            SourceState::Selected,
            SourceState::Candidate,
            SourceState::Falseticker,
            SourceState::Unusable,
        ] {
            let key = SourceStateLabels {
                name: l.name.clone(),
                address: l.address.clone(),
                id: l.id.clone(),
                state: state.name(),
            };
            states
                .get_or_create(&key)
                .set(if s.state == state { 1.0 } else { 0.0 });
        }
    }
    registry.register(
        "sundial_source_state",
        "The source's part in the last selection: selected, candidate, falseticker, unusable",
        states,
    );
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
    // Every class, zeros included, so a rate() over a reason never starts
    // from a missing series.
    let reasons = CounterFamily::<ReasonLabels>::default();
    for s in servers {
        for class in DropClass::ALL {
            let key = ReasonLabels {
                listen_address: listen(s).to_string(),
                reason: class.name(),
            };
            let n = s.dropped.get(class.name()).copied().unwrap_or(0);
            reasons.get_or_create(&key).inc_by(n);
        }
    }
    registry.register(
        "sundial_ntp_server_dropped_packets",
        "Requests dropped without an answer, by reason: header, version, mode, nts_required, no_keys, fields, unique_id, cookie_count, authenticator_placement, placeholder, nonce, authentication, too_large",
        reasons,
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
    let renewals = CounterFamily::<OutcomeLabels>::default();
    for s in servers {
        let Some(acme) = &s.acme else { continue };
        for (outcome, n) in [
            ("success", acme.renewals_succeeded),
            ("failure", acme.renewals_failed),
        ] {
            let key = OutcomeLabels {
                listen_address: label(s),
                outcome,
            };
            renewals.get_or_create(&key).inc_by(n);
        }
    }
    registry.register(
        "sundial_acme_orders",
        "ACME certificate orders (first issuance and renewals) by outcome: success, failure",
        renewals,
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
        tracing::info!(addr = %self.local_addr, "serving metrics");
        let listener = &self.listener;
        serve_connections(
            "metrics",
            || async move { listener.accept().await.map(|(stream, _)| stream) },
            |stream| {
                let collect = Arc::clone(&collect);
                async move { serve(stream, &*collect).await }
            },
            cancel,
        )
        .await;
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
    fn an_empty_snapshot_still_ends_in_eof() {
        let text = encode(&Snapshot::default()).unwrap_or_default();
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_clock_error_without_a_value_is_left_out() {
        let mut snapshot = Snapshot {
            clock_error_seconds: Some(-1.5e-5),
            clock_uncertainty_seconds: Some(f64::INFINITY),
            ..Snapshot::default()
        };
        let text = encode(&snapshot).unwrap_or_default();
        let error = text
            .lines()
            .find_map(|l| l.strip_prefix("sundial_system_clock_error_seconds "))
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(error, Some(-1.5e-5), "{text}");
        assert!(!text.contains("clock_uncertainty"), "{text}");
        assert!(!text.contains("virtual_correction"), "{text}");
        snapshot.clock_error_seconds = Some(f64::NAN);
        let text = encode(&snapshot).unwrap_or_default();
        assert!(!text.contains("clock_error"), "{text}");
        assert!(!text.contains("NaN") && !text.contains("Inf"), "{text}");
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
