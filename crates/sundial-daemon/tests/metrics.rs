//! The Prometheus endpoint on loopback: what a scrape returns for known
//! counters, sources and system state, what other requests get, and that a
//! client that says nothing is closed.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair};
use std::collections::HashMap;

use common::within;
use sundial_daemon::config::SourceMode;
use sundial_daemon::discipline::Observed;
use sundial_daemon::metrics::{self, CONTENT_TYPE, Handles, KeHandle};
use sundial_daemon::server::ntp::NtpStats;
use sundial_daemon::server::nts_ke::KeStats;
use sundial_daemon::source::{SourceId, SourceStats};
use sundial_daemon::status::SourceInfo;
use sundial_proto::server::DropClass;
use sundial_sync::{Leap, SourceState, SourceStatus, SyncStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn set(counter: &AtomicU64, value: u64) {
    counter.store(value, Ordering::Relaxed);
}

fn ntp_stats() -> Arc<NtpStats> {
    let stats = NtpStats::default();
    set(&stats.received, 100);
    set(&stats.plain, 40);
    set(&stats.nts, 30);
    set(&stats.nts_nak, 5);
    set(&stats.deny, 4);
    set(&stats.rate, 3);
    set(&stats.ignored, 2);
    set(&stats.malformed, 7);
    set(&stats.nts_dropped, 9);
    set(&stats.send_errors, 1);
    set(&stats.dropped[DropClass::Authentication as usize], 6);
    set(&stats.dropped[DropClass::UniqueId as usize], 3);
    Arc::new(stats)
}

fn ke_stats() -> Arc<KeStats> {
    let stats = KeStats::default();
    set(&stats.handshakes_ok, 20);
    set(&stats.responses, 17);
    set(&stats.refused, 2);
    set(&stats.failed_tls, 6);
    set(&stats.failed_alpn, 1);
    set(&stats.failed_bad_request, 3);
    set(&stats.failed_timeout, 4);
    set(&stats.failed_internal, 0);
    set(&stats.accept_errors, 8);
    Arc::new(stats)
}

/// A self-signed certificate that expires `days` days from now, loaded the
/// way the KE server loads its own, so the handle is the real reloadable one.
fn certificate_expiring_in(days: i64) -> (tempfile::TempDir, KeHandle) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let now = rcgen::date_time_ymd(2000, 1, 1)
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 946_684_800,
        );
    params.not_before = now - Duration::from_secs(86_400);
    params.not_after = now + Duration::from_secs(u64::try_from(days).unwrap() * 86_400);
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("chain.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&chain, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = sundial_daemon::tls::load_server_tls(&chain, &key_path, SystemTime::now()).unwrap();
    let handle = KeHandle {
        listen: "[::]:4460".parse().unwrap(),
        stats: ke_stats(),
        certificate: tls.cert,
        acme: None,
    };
    (dir, handle)
}

struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        within("exporter stop", self.task).await.unwrap();
    }
}

async fn start(handles: Handles) -> Running {
    let listener = metrics::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr();
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(listener.run(move || handles.snapshot(SystemTime::now()), cancel.clone()));
    Running { addr, cancel, task }
}

/// Sends `request` as is and reads until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    within("send", stream.write_all(request)).await.unwrap();
    let mut out = Vec::new();
    within("read to close", stream.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    let response = raw(addr, request.as_bytes()).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// The value of the sample line that starts with `series` exactly.
fn sample(body: &str, series: &str) -> String {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{body}"))
        .to_owned()
}

#[tokio::test]
async fn a_scrape_shows_every_server_counter_with_ntpd_rs_names() {
    let listen: SocketAddr = "0.0.0.0:123".parse().unwrap();
    let (_dir, ke) = certificate_expiring_in(30);
    let running = start(Handles {
        ntp_servers: vec![(listen, ntp_stats())],
        nts_ke_servers: vec![ke],
        ..Handles::default()
    })
    .await;

    let (head, body) = get(running.addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let ntp = |name: &str| sample(&body, &format!("{name}{{listen_address=\"0.0.0.0:123\"}}"));
    for (name, value) in [
        ("ntp_server_received_packets_total", "100"),
        ("ntp_server_accepted_packets_total", "70"),
        ("ntp_server_denied_packets_total", "4"),
        ("ntp_server_ignored_packets_total", "18"),
        ("ntp_server_rate_limited_packets_total", "3"),
        ("ntp_server_response_send_errors_total", "1"),
        ("ntp_server_nts_accepted_packets_total", "30"),
        ("ntp_server_nts_nak_packets_total", "5"),
        ("sundial_ntp_server_nts_dropped_packets_total", "9"),
    ] {
        assert_eq!(ntp(name), value, "{name}");
        let family = name.trim_end_matches("_total");
        assert!(
            body.contains(&format!("# TYPE {family} counter\n")),
            "{family} not a counter:\n{body}"
        );
    }

    let ntp_reason = |reason: &str| {
        sample(
            &body,
            &format!(
                "sundial_ntp_server_dropped_packets_total{{listen_address=\"0.0.0.0:123\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(ntp_reason("authentication"), "6");
    assert_eq!(ntp_reason("unique_id"), "3");
    assert_eq!(ntp_reason("nonce"), "0", "zero classes are shown too");

    let ke = "listen_address=\"[::]:4460\"";
    for (series, value) in [
        (
            format!("sundial_nts_ke_handshakes_total{{{ke},outcome=\"cookies\"}}"),
            "17",
        ),
        (
            format!("sundial_nts_ke_handshakes_total{{{ke},outcome=\"refused\"}}"),
            "2",
        ),
        (
            format!("sundial_nts_ke_handshakes_total{{{ke},outcome=\"failed\"}}"),
            "14",
        ),
        (
            format!("sundial_nts_ke_failures_total{{{ke},reason=\"tls\"}}"),
            "6",
        ),
        (
            format!("sundial_nts_ke_failures_total{{{ke},reason=\"alpn\"}}"),
            "1",
        ),
        (
            format!("sundial_nts_ke_failures_total{{{ke},reason=\"bad_request\"}}"),
            "3",
        ),
        (
            format!("sundial_nts_ke_failures_total{{{ke},reason=\"timeout\"}}"),
            "4",
        ),
        (
            format!("sundial_nts_ke_failures_total{{{ke},reason=\"internal\"}}"),
            "0",
        ),
        (format!("sundial_nts_ke_tls_handshakes_total{{{ke}}}"), "20"),
        (format!("sundial_nts_ke_accept_errors_total{{{ke}}}"), "8"),
    ] {
        assert_eq!(sample(&body, &series), value, "{series}");
    }
    assert!(
        body.contains("# TYPE sundial_nts_ke_certificate_expiry_seconds gauge\n"),
        "{body}"
    );
    assert!(
        body.contains("# UNIT sundial_nts_ke_certificate_expiry_seconds seconds\n"),
        "{body}"
    );
    let expiry: i64 = sample(
        &body,
        &format!("sundial_nts_ke_certificate_expiry_seconds{{{ke}}}"),
    )
    .parse()
    .unwrap();
    let thirty_days = 30 * 86_400;
    assert!(
        (thirty_days - 120..=thirty_days).contains(&expiry),
        "expiry {expiry} s, expected about {thirty_days} s"
    );
    running.stop().await;
}

#[tokio::test]
async fn counters_are_read_at_each_scrape() {
    let stats = ntp_stats();
    let running = start(Handles {
        ntp_servers: vec![("127.0.0.1:123".parse().unwrap(), Arc::clone(&stats))],
        ..Handles::default()
    })
    .await;
    let series = "ntp_server_received_packets_total{listen_address=\"127.0.0.1:123\"}";
    assert_eq!(
        sample(&get(running.addr, "/metrics").await.1, series),
        "100"
    );
    stats.received.fetch_add(5, Ordering::Relaxed);
    assert_eq!(
        sample(&get(running.addr, "/metrics").await.1, series),
        "105"
    );
    running.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let running = start(Handles::default()).await;
    let (head, _) = get(running.addr, "/").await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    let (head, _) = get(running.addr, "/metrics/extra").await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    let response = raw(running.addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{response}"
    );
    let response = raw(running.addr, b"hello\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    // A head that never ends is cut off, not buffered without limit.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(64 * 1024, b'a');
    let response = raw(running.addr, &huge).await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    running.stop().await;
}

// Virtual time: the exporter's per-connection timer fires as soon as
// every task is waiting, so this takes no real seconds.
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_and_does_not_block_others() {
    let running = start(Handles::default()).await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(running.addr).await.unwrap();
    // Another client is served while the silent one holds its slot.
    let (head, _) = get(running.addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let mut buf = Vec::new();
    let n = within("silent client closed", silent.read_to_end(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "a silent client gets no answer");
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&waited),
        "closed after {waited:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn stops_on_cancel_with_a_connection_open() {
    let running = start(Handles::default()).await;
    let _idle = TcpStream::connect(running.addr).await.unwrap();
    // Let the exporter accept it before cancelling.
    let (head, _) = get(running.addr, "/nothing").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    running.stop().await;
}

#[tokio::test]
async fn a_busy_address_is_named_in_the_error() {
    let running = start(Handles::default()).await;
    let err = metrics::bind(running.addr).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("metrics endpoint {}: ", running.addr)),
        "{err}"
    );
    running.stop().await;
}

/// Two sources as the discipline would report them: an NTS source that is
/// the system peer, and a plain one that is a falseticker.
fn sources() -> (Vec<SourceInfo>, tokio::sync::watch::Sender<Observed>) {
    let nts = SourceStats::default();
    set(&nts.cookies, 7);
    set(&nts.reach, 0o377);
    set(&nts.requests, 12);
    set(&nts.samples, 11);
    set(&nts.key_exchanges, 1);
    let plain = SourceStats::default();
    set(&plain.reach, 0o17);
    set(&plain.unanswered, 2);
    let infos = vec![
        SourceInfo {
            id: SourceId(0),
            name: "nts time.example:4460".to_owned(),
            mode: SourceMode::Nts,
            stats: Arc::new(nts),
        },
        SourceInfo {
            id: SourceId(1),
            name: "server 192.0.2.9:123".to_owned(),
            mode: SourceMode::Server,
            stats: Arc::new(plain),
        },
    ];
    let source = |id, state, offset| SourceStatus {
        id: sundial_sync::SourceId(id),
        state,
        offset,
        delay: 0.002,
        jitter: 0.0005,
        reach: 0xff,
        poll: 6,
    };
    let observed = Observed {
        sync: SyncStatus {
            synchronized: true,
            reason: None,
            stratum: 2,
            reference_id: [192, 0, 2, 1],
            root_delay: 0.004,
            root_dispersion: 0.001,
            leap: Leap::None,
            offset: -0.00025,
            estimated_offset: 2e-5,
            pending_slew: -5e-5,
            uncertainty: 1e-5,
            frequency_ppm: 12.5,
            sources: vec![
                source(0, SourceState::Selected, -0.00025),
                source(1, SourceState::Falseticker, 0.75),
            ],
        },
        servers: HashMap::from([
            (SourceId(0), "192.0.2.1:123".parse().unwrap()),
            (SourceId(1), "192.0.2.9:123".parse().unwrap()),
        ]),
        strata: HashMap::from([(SourceId(0), 1), (SourceId(1), 3)]),
        virtual_correction: None,
    };
    (infos, tokio::sync::watch::Sender::new(observed))
}

#[tokio::test]
async fn sources_and_the_system_have_ntpd_rs_names() {
    let (infos, observed) = sources();
    let running = start(Handles {
        sources: infos,
        discipline: Some(observed.subscribe()),
        ..Handles::default()
    })
    .await;
    let (_, body) = get(running.addr, "/metrics").await;

    let nts = "{name=\"nts time.example:4460\",address=\"192.0.2.1:123\",id=\"0\"}";
    let plain = "{name=\"server 192.0.2.9:123\",address=\"192.0.2.9:123\",id=\"1\"}";
    let value = |series: String| -> f64 { sample(&body, &series).parse().unwrap() };
    assert_eq!(value(format!("ntp_source_offset_seconds{nts}")), -0.00025);
    assert_eq!(value(format!("ntp_source_offset_seconds{plain}")), 0.75);
    assert_eq!(value(format!("ntp_source_delay_seconds{nts}")), 0.002);
    assert_eq!(value(format!("sundial_source_jitter_seconds{nts}")), 0.0005);
    assert_eq!(
        value(format!("ntp_source_poll_interval_seconds{nts}")),
        64.0
    );
    assert_eq!(value(format!("ntp_source_unanswered_polls{plain}")), 2.0);
    assert_eq!(value(format!("sundial_source_reach{nts}")), 255.0);
    assert_eq!(value(format!("sundial_source_stratum{plain}")), 3.0);
    assert_eq!(value(format!("sundial_source_nts_cookies{nts}")), 7.0);
    assert!(
        !body.contains(&format!("sundial_source_nts_cookies{plain}")),
        "a plain source has no jar:\n{body}"
    );
    assert_eq!(value(format!("sundial_source_requests_total{nts}")), 12.0);
    assert_eq!(
        value(format!("sundial_source_nts_key_exchanges_total{nts}")),
        1.0
    );
    let state = |labels: &str, s: &str| {
        let labels = labels.trim_end_matches('}');
        value(format!("sundial_source_state{labels},state=\"{s}\"}}"))
    };
    assert_eq!(state(nts, "selected"), 1.0);
    assert_eq!(state(nts, "candidate"), 0.0);
    assert_eq!(state(plain, "falseticker"), 1.0);
    assert_eq!(state(plain, "selected"), 0.0);

    assert_eq!(value("ntp_system_stratum".to_owned()), 2.0);
    assert_eq!(value("ntp_system_leap_indicator".to_owned()), 0.0);
    assert_eq!(value("ntp_system_root_delay_seconds".to_owned()), 0.004);
    assert_eq!(
        value("ntp_system_root_dispersion_seconds".to_owned()),
        0.001
    );
    assert_eq!(value("sundial_system_synchronized".to_owned()), 1.0);
    assert_eq!(value("sundial_system_offset_seconds".to_owned()), -0.00025);
    assert_eq!(value("sundial_system_frequency_ppm".to_owned()), 12.5);
    // A steered clock: 20 µs still to gain once the -50 µs slew is done,
    // so 30 µs fast now.
    let error = value("sundial_system_clock_error_seconds".to_owned());
    assert!((error - 3e-5).abs() < 1e-12, "{error}");
    assert_eq!(
        value("sundial_system_clock_uncertainty_seconds".to_owned()),
        1e-5
    );
    assert!(
        !body.contains("sundial_system_virtual_correction"),
        "only an observe-only daemon has a virtual clock:\n{body}"
    );
    for family in [
        "ntp_source_offset_seconds",
        "ntp_system_stratum",
        "sundial_source_nts_cookies",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} gauge\n")),
            "{family} not a gauge:\n{body}"
        );
    }

    // The discipline moves on; the next scrape follows.
    observed.send_modify(|o| o.sync.sources[0].state = SourceState::Candidate);
    let (_, body) = get(running.addr, "/metrics").await;
    let labels = nts.trim_end_matches('}');
    assert_eq!(
        sample(
            &body,
            &format!("sundial_source_state{labels},state=\"candidate\"}}")
        ),
        "1.0"
    );

    // Observe-only: the error is the virtual clock's, which has taken the
    // pending slew in full, and the virtual correction is shown.
    observed.send_modify(|o| o.virtual_correction = Some(-0.125));
    let (_, body) = get(running.addr, "/metrics").await;
    let value = |series: &str| -> f64 { sample(&body, series).parse().unwrap() };
    assert_eq!(value("sundial_system_clock_error_seconds"), -2e-5);
    assert_eq!(value("sundial_system_virtual_correction_seconds"), -0.125);

    // Before the clock was ever steered there is no bound: no series
    // rather than NaN or +Inf.
    observed.send_modify(|o| o.sync.uncertainty = f64::INFINITY);
    let (_, body) = get(running.addr, "/metrics").await;
    assert!(!body.contains("sundial_system_clock_error"), "{body}");
    assert!(!body.contains("sundial_system_clock_uncertainty"), "{body}");
    assert!(!body.contains("NaN") && !body.contains("Inf"), "{body}");
    running.stop().await;
}

/// The metric names in a PromQL expression: identifiers that start with
/// `sundial_` or `ntp_` (label names and values never do here).
fn queried_metrics(expr: &str, names: &mut std::collections::BTreeSet<String>) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| is_ident(c)) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        let before = rest[..start].chars().last();
        // A whole identifier, not the tail of a longer one or a quoted value.
        if before != Some('"') && (word.starts_with("sundial_") || word.starts_with("ntp_")) {
            names.insert(word.to_owned());
        }
        rest = &tail[end..];
    }
}

/// Every query string in the dashboard: panel targets' `expr` and the
/// template variables' `query`/`definition`.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone());
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let mut queried = std::collections::BTreeSet::new();
    for query in &queries {
        queried_metrics(query, &mut queried);
    }
    assert!(queried.len() >= 30, "too few metrics found: {queried:?}");

    // A daemon with everything: sources, a steered clock, an NTP server
    // and an NTS-KE server; absent-until-set series are set.
    let (infos, observed) = sources();
    let (_dir, ke) = certificate_expiring_in(30);
    let running = start(Handles {
        sources: infos,
        discipline: Some(observed.subscribe()),
        ntp_servers: vec![("0.0.0.0:123".parse().unwrap(), ntp_stats())],
        nts_ke_servers: vec![ke],
        ..Handles::default()
    })
    .await;
    observed.send_modify(|o| o.virtual_correction = Some(-0.125));
    let (_, body) = get(running.addr, "/metrics").await;
    running.stop().await;
    let exported: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<_> = queried
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "packaging/grafana-dashboard.json queries metrics the daemon does not export: {missing:?}\nexported: {exported:?}"
    );
}
