//! `sundial query`: ask one server for the time once, the way a person
//! checks a server before putting it in a config: one NTS key exchange, one
//! NTS-protected NTP exchange, and everything they showed (the certificate
//! chain, the negotiated AEAD, the cookies, the time fields).
//!
//! It never changes the clock. Every way it can fail has an exit code of
//! its own (see [`EXIT_CODES`]) so scripts can tell a certificate problem
//! from a firewall.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sundial_daemon::config::{HostPort, NTP_PORT, NTS_KE_PORT};
use sundial_daemon::oneshot::{self, KeReport, NtpExchange, NtpExchangeError};
use sundial_daemon::source::KeError;
use sundial_daemon::tls::CertificateInfo;
use sundial_proto::ntp::packet::{LeapIndicator, NtpHeader};
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::source::{Association, Discard, ResponseOutcome};

pub const EXIT_OK: u8 = 0;
/// Something unexpected on our side (no runtime, a bug).
pub const EXIT_INTERNAL: u8 = 1;
/// Bad arguments, also a `--ca` file that cannot be used (clap uses 2 too).
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TLS: u8 = 3;
pub const EXIT_KE_REFUSED: u8 = 4;
pub const EXIT_UNAUTHENTICATED: u8 = 5;
pub const EXIT_TIMEOUT: u8 = 6;
pub const EXIT_UNREACHABLE: u8 = 7;
pub const EXIT_NO_TIME: u8 = 8;

/// The `--help` text on exit codes; docs/query.md repeats it.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  authenticated time (with --ntp: a valid plain answer)
  1  internal error
  2  usage: bad arguments, a --ca file that cannot be used, a bad host name
  3  TLS failure: the certificate did not verify, handshake or stream broke
  4  the NTS-KE server refused: an Error record, no common algorithm, or a
     response that breaks RFC 8915
  5  the NTP answer was not acceptable: an NTS NAK (NTSN kiss), or answers
     that failed NTS authentication
  6  timeout: no key exchange or no NTP answer within --timeout
  7  DNS or connection failure: the name does not resolve, nothing listens
  8  the server answered but gave no usable time: it is unsynchronized, or
     sent a RATE, DENY or RSTR kiss";

/// Arguments of `sundial query`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct QueryArgs {
    /// The NTS-KE server (default port 4460) or, with --ntp, the NTP server
    /// (default port 123): `name`, `name:port`, `192.0.2.1:port`,
    /// `[2001:db8::1]:port`.
    #[arg(value_name = "HOST[:PORT]")]
    server: String,
    /// Trust the CA certificates in this PEM file as well as the system's
    /// trust anchors (for a server with a private CA, e.g. `sundial ca`).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The NTS-KE port (overrides a port given with HOST).
    #[arg(long, value_name = "N")]
    ke_port: Option<u16>,
    /// Plain (unauthenticated) NTP to HOST[:PORT], no key exchange.
    #[arg(long, conflicts_with_all = ["ca", "ke_port"])]
    ntp: bool,
    /// Print one JSON object instead of text (also on failure, with an
    /// "error" member).
    #[arg(long)]
    json: bool,
    /// Seconds allowed for the key exchange, and again for the NTP answer.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_timeout)]
    timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.01..=600.0).contains(&secs) {
        return Err("the timeout must be between 0.01 and 600 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Why the query stopped: an exit code, a short kind for scripts and the
/// sentence for a person.
#[derive(Debug)]
struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
        }
    }
}

/// What the key exchange showed.
#[derive(Debug)]
struct KeFacts {
    address: SocketAddr,
    tls_version: String,
    cipher_suite: String,
    algorithm: AeadAlgorithm,
    cookies: usize,
    /// Shortest and longest cookie (equal for every server we know).
    cookie_len: (usize, usize),
    ntp_host: String,
    ntp_port: u16,
    certificates: Vec<Result<CertificateInfo, String>>,
}

/// What the NTP answer said.
#[derive(Debug)]
struct TimeFacts {
    address: SocketAddr,
    authenticated: bool,
    /// `None` when the answer carried no usable time (kiss, unsynchronized).
    offset: Option<f64>,
    delay: Option<f64>,
    header: NtpHeader,
    kernel_timestamp: bool,
    requests: u32,
}

/// Everything learned, in the order it was learned; a failure keeps what
/// came before it (a KE that worked before the NTP server stayed silent).
#[derive(Debug, Default)]
struct Report {
    target: String,
    ke: Option<KeFacts>,
    time: Option<TimeFacts>,
    failure: Option<Failure>,
}

/// `sundial query`: runs, prints, returns the exit code.
pub fn run(args: &QueryArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sundial query: cannot start the async runtime: {e}");
            return EXIT_INTERNAL;
        }
    };
    let report = runtime.block_on(query(args));
    let code = report.failure.as_ref().map_or(EXIT_OK, |f| f.code);
    let mut stdout = std::io::stdout().lock();
    let printed = if args.json {
        writeln!(stdout, "{}", to_json(&report, args.ntp))
    } else {
        stdout.write_all(to_text(&report).as_bytes())
    };
    if let Err(e) = printed.and_then(|()| stdout.flush()) {
        // A closed pipe must not turn a good answer into a panic.
        eprintln!("sundial query: cannot write the report: {e}");
    }
    if let Some(failure) = &report.failure {
        eprintln!("sundial query: {}", failure.message);
    }
    code
}

/// Whether a command line that clap refused asked for `query --json`.
pub fn wants_json(args: &[String]) -> bool {
    args.first().is_some_and(|a| a == "query") && args.iter().any(|a| a == "--json")
}

/// The JSON report of a command line that did not parse (clap's message
/// already went to stderr); returns the usage exit code.
pub fn print_usage_error(args: &[String], clap_message: &str) -> u8 {
    let message = clap_message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    let report = Report {
        failure: Some(Failure::new(EXIT_USAGE, "usage", message)),
        ..Report::default()
    };
    let plain = args.iter().any(|a| a == "--ntp");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", to_json(&report, plain));
    EXIT_USAGE
}

async fn query(args: &QueryArgs) -> Report {
    let default_port = if args.ntp { NTP_PORT } else { NTS_KE_PORT };
    let target = match HostPort::parse(&args.server, default_port) {
        Ok(mut target) => {
            if let Some(port) = args.ke_port {
                target.port = port;
            }
            target
        }
        Err(e) => {
            return Report {
                target: args.server.clone(),
                failure: Some(Failure::new(EXIT_USAGE, "usage", e)),
                ..Report::default()
            };
        }
    };
    let mut report = Report {
        target: target.to_string(),
        ..Report::default()
    };
    if args.ntp {
        let result = async {
            let server = resolve(&target.host, target.port, None, args.timeout).await?;
            let mut assoc = Association::plain(0);
            exchange(server, &mut assoc, args.timeout).await
        };
        match result.await {
            Ok(time) => report.time = Some(time),
            Err(failure) => report.failure = Some(failure),
        }
        if let Some(time) = &report.time {
            report.failure = judge(time, false);
        }
        return report;
    }

    let ke = oneshot::key_exchange_report(
        &target.host,
        target.port,
        args.ca.as_deref(),
        args.timeout,
        &AeadAlgorithm::SUPPORTED,
    )
    .await;
    let KeReport {
        outcome,
        peer_certificates,
        tls_version,
        cipher_suite,
    } = match ke {
        Ok(ke) => ke,
        Err(e) => {
            let mut failure = ke_failure(&e);
            if matches!(e, KeError::Certificate { .. }) && args.ca.is_none() {
                // The usual cause for a newcomer: a server with a private CA.
                failure.message.push_str(
                    " (if the server's certificate comes from a private CA, pass that CA with --ca FILE)",
                );
            }
            report.failure = Some(failure);
            return report;
        }
    };
    let lengths = outcome.cookies.iter().map(Vec::len);
    report.ke = Some(KeFacts {
        address: outcome.ke_addr,
        tls_version,
        cipher_suite,
        algorithm: outcome.algorithm,
        cookies: outcome.cookies.len(),
        cookie_len: (
            lengths.clone().min().unwrap_or(0),
            lengths.max().unwrap_or(0),
        ),
        ntp_host: outcome.ntp_host.clone(),
        ntp_port: outcome.ntp_port,
        certificates: peer_certificates
            .iter()
            .map(|der| CertificateInfo::from_der(der).map_err(|e| e.to_string()))
            .collect(),
    });
    // RFC 8915 4.1.7: without a Server Negotiation record the NTP server is
    // at the KE server's IP address, so the name is not looked up again
    // (it might resolve to an address family the server does not serve).
    let same_host = outcome.ntp_host == target.host;
    let result = async {
        let server = if same_host {
            SocketAddr::new(outcome.ke_addr.ip(), outcome.ntp_port)
        } else {
            resolve(
                &outcome.ntp_host,
                outcome.ntp_port,
                Some(outcome.ke_addr.ip()),
                args.timeout,
            )
            .await?
        };
        let mut assoc = Association::nts(outcome.keys, outcome.cookies, 0);
        exchange(server, &mut assoc, args.timeout).await
    };
    match result.await {
        Ok(time) => {
            report.failure = judge(&time, true);
            report.time = Some(time);
        }
        Err(failure) => report.failure = Some(failure),
    }
    report
}

/// Resolves `host`, preferring the address family of `near` (the KE
/// server's address) when there is one.
async fn resolve(
    host: &str,
    port: u16,
    near: Option<IpAddr>,
    timeout: Duration,
) -> Result<SocketAddr, Failure> {
    let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<SocketAddr> = match lookup {
        Err(_) => {
            return Err(Failure::new(
                EXIT_TIMEOUT,
                "timeout",
                format!("resolving {host} took longer than {timeout:?}"),
            ));
        }
        Ok(Err(e)) => {
            return Err(Failure::new(
                EXIT_UNREACHABLE,
                "unreachable",
                format!("resolving {host}: {e}"),
            ));
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    let same_family = addrs
        .iter()
        .find(|a| near.is_some_and(|n| n.is_ipv4() == a.is_ipv4()));
    same_family.or(addrs.first()).copied().ok_or_else(|| {
        Failure::new(
            EXIT_UNREACHABLE,
            "unreachable",
            format!("{host} resolves to no address"),
        )
    })
}

/// One NTP exchange; an answer is returned whatever it said, and judged by
/// [`judge`].
async fn exchange(
    server: SocketAddr,
    assoc: &mut Association,
    timeout: Duration,
) -> Result<TimeFacts, Failure> {
    // One retry a second: a lost datagram should not fail the query.
    let retry = Duration::from_secs(1);
    let answer: NtpExchange = oneshot::ntp_exchange(server, assoc, timeout, retry)
        .await
        .map_err(|e| ntp_failure(&e))?;
    if let ResponseOutcome::NeedKeyExchange = answer.outcome {
        return Err(Failure::new(
            EXIT_UNAUTHENTICATED,
            "nts-nak",
            format!(
                "{server} answered with an NTS NAK (NTSN): it cannot open the cookies its own key exchange gave"
            ),
        ));
    }
    let Ok((header, _)) = NtpHeader::parse(&answer.packet) else {
        // handle_response parsed it already; this cannot happen.
        return Err(Failure::new(
            EXIT_INTERNAL,
            "internal",
            "the answer was accepted but cannot be parsed",
        ));
    };
    let sample = answer.sample();
    // Without a sample (a kiss, an unsynchronized server) the answer still
    // passed NTS verification if the association is NTS.
    let authenticated = sample.map_or(assoc.is_nts(), |s| s.authenticated);
    Ok(TimeFacts {
        address: server,
        authenticated,
        offset: sample.map(|s| s.offset),
        delay: sample.map(|s| s.delay),
        header,
        kernel_timestamp: answer.kernel_timestamp,
        requests: answer.requests,
    })
}

/// Whether an answer that arrived is good time.
fn judge(time: &TimeFacts, want_nts: bool) -> Option<Failure> {
    let server = time.address;
    if want_nts && !time.authenticated {
        return Some(Failure::new(
            EXIT_UNAUTHENTICATED,
            "unauthenticated",
            format!("{server} answered without NTS authentication"),
        ));
    }
    if time.offset.is_some() {
        return None;
    }
    let header = &time.header;
    let why = if header.stratum == 0 {
        format!(
            "{server} sent the kiss code {}",
            ascii_or_hex(header.reference_id.0)
        )
    } else {
        format!(
            "{server} is not synchronized (leap {}, stratum {})",
            leap_name(header.leap),
            header.stratum
        )
    };
    Some(Failure::new(EXIT_NO_TIME, "no-usable-time", why))
}

fn ke_failure(error: &KeError) -> Failure {
    let message = error.to_string();
    let (code, kind) = match error {
        KeError::CaFile { .. } | KeError::ServerName { .. } => (EXIT_USAGE, "usage"),
        KeError::Dns { .. } | KeError::NoAddress { .. } | KeError::Connect { .. } => {
            (EXIT_UNREACHABLE, "unreachable")
        }
        KeError::Certificate { .. } => (EXIT_TLS, "certificate"),
        KeError::Tls { .. } => (EXIT_TLS, "tls"),
        KeError::ErrorRecord { .. } | KeError::Protocol { .. } => {
            (EXIT_KE_REFUSED, "nts-ke-refused")
        }
        KeError::Timeout { .. } => (EXIT_TIMEOUT, "timeout"),
        _ => (EXIT_INTERNAL, "internal"),
    };
    Failure::new(code, kind, message)
}

fn ntp_failure(error: &NtpExchangeError) -> Failure {
    let message = error.to_string();
    match error {
        NtpExchangeError::Refused { .. } => Failure::new(EXIT_UNREACHABLE, "unreachable", message),
        NtpExchangeError::Timeout { discarded, .. }
            if discarded.iter().any(|d| matches!(d, Discard::Nts(_))) =>
        {
            Failure::new(
                EXIT_UNAUTHENTICATED,
                "unauthenticated",
                format!(
                    "{message}: {} answer(s) failed NTS authentication",
                    discarded.len()
                ),
            )
        }
        NtpExchangeError::Timeout { .. } => Failure::new(EXIT_TIMEOUT, "timeout", message),
        NtpExchangeError::Socket { .. } | NtpExchangeError::Receive { .. } => {
            Failure::new(EXIT_UNREACHABLE, "unreachable", message)
        }
        _ => Failure::new(EXIT_INTERNAL, "internal", message),
    }
}

/// The IANA name of an AEAD algorithm.
fn leap_name(leap: LeapIndicator) -> &'static str {
    match leap {
        LeapIndicator::NoWarning => "none",
        LeapIndicator::InsertSecond => "insert second",
        LeapIndicator::DeleteSecond => "delete second",
        LeapIndicator::Unsynchronized => "unsynchronized",
    }
}

/// Four bytes as text when they are printable ASCII (trailing NULs
/// dropped), else as hex.
fn ascii_or_hex(bytes: [u8; 4]) -> String {
    let text: Vec<u8> = bytes.iter().copied().take_while(|&b| b != 0).collect();
    if !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&text).into_owned()
    } else {
        format!("0x{}", hex(&bytes))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// RFC 5905 7.3: at stratum 0 (kiss) and 1 (reference clock) the
/// reference id is four ASCII characters; above, the upstream server's IPv4
/// address (or the first bytes of an MD5 of its IPv6 address).
fn reference_id(header: &NtpHeader) -> String {
    let bytes = header.reference_id.0;
    if header.stratum <= 1 {
        ascii_or_hex(bytes)
    } else {
        std::net::Ipv4Addr::from(bytes).to_string()
    }
}

/// A UTC date as `2049-12-31 00:00:00 UTC` (and its RFC 3339 form).
fn utc(time: SystemTime, rfc3339: bool) -> String {
    let t = time::OffsetDateTime::from(time);
    let (date, clock) = (
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    );
    if rfc3339 {
        format!("{date}T{clock}Z")
    } else {
        format!("{date} {clock} UTC")
    }
}

fn days_left(not_after: SystemTime) -> String {
    match not_after.duration_since(SystemTime::now()) {
        Ok(left) => format!("{} days left", left.as_secs() / 86_400),
        Err(_) => "EXPIRED".to_owned(),
    }
}

fn to_text(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let w = &mut out;
    if let Some(ke) = &report.ke {
        let _ = writeln!(
            w,
            "NTS key exchange with {} ({})",
            report.target, ke.address
        );
        let _ = writeln!(
            w,
            "  TLS              {}, {}, ALPN ntske/1",
            ke.tls_version, ke.cipher_suite
        );
        let _ = writeln!(
            w,
            "  AEAD             {} (id {})",
            ke.algorithm,
            ke.algorithm.to_u16()
        );
        let lengths = match ke.cookie_len {
            (min, max) if min == max => format!("{min} bytes"),
            (min, max) => format!("{min} to {max} bytes"),
        };
        let _ = writeln!(w, "  cookies          {} of {lengths}", ke.cookies);
        let _ = writeln!(
            w,
            "  NTP server       {}",
            HostPort {
                host: ke.ntp_host.clone(),
                port: ke.ntp_port
            }
        );
        for (i, cert) in ke.certificates.iter().enumerate() {
            let role = if i == 0 { "server" } else { "issuer" };
            match cert {
                Ok(info) => {
                    let _ = writeln!(w, "  certificate {i}    {} ({role})", info.subject);
                    if !info.subject_alt_names.is_empty() {
                        let _ = writeln!(
                            w,
                            "    names          {}",
                            info.subject_alt_names.join(", ")
                        );
                    }
                    let _ = writeln!(
                        w,
                        "    not after      {} ({})",
                        utc(info.not_after, false),
                        days_left(info.not_after)
                    );
                }
                Err(e) => {
                    let _ = writeln!(w, "  certificate {i}    cannot be read: {e}");
                }
            }
        }
        let _ = writeln!(w);
    }
    if let Some(time) = &report.time {
        let how = if time.authenticated {
            "NTS-authenticated"
        } else {
            "NOT authenticated"
        };
        let _ = writeln!(w, "Time from {} ({how})", time.address);
        if let Some(offset) = time.offset {
            let side = if offset >= 0.0 { "ahead of" } else { "behind" };
            let _ = writeln!(
                w,
                "  offset           {offset:+.6} s (the server is {side} this machine)"
            );
        }
        if let Some(delay) = time.delay {
            let _ = writeln!(w, "  delay            {delay:.6} s");
        }
        let h = &time.header;
        let _ = writeln!(w, "  stratum          {}", h.stratum);
        let id = reference_id(h);
        match sundial_daemon::status::reference_id_meaning(&id) {
            Some(meaning) => {
                let _ = writeln!(w, "  reference id     {id} ({meaning})");
            }
            None => {
                let _ = writeln!(w, "  reference id     {id}");
            }
        }
        let _ = writeln!(w, "  leap             {}", leap_name(h.leap));
        let _ = writeln!(w, "  root delay       {:.6} s", h.root_delay.as_seconds());
        let _ = writeln!(
            w,
            "  root dispersion  {:.6} s",
            h.root_dispersion.as_seconds()
        );
        let _ = writeln!(
            w,
            "  precision        2^{} s, NTP version {}",
            h.precision, h.version
        );
        let stamp = if time.kernel_timestamp {
            "kernel timestamp"
        } else {
            "system clock after the read"
        };
        let _ = writeln!(
            w,
            "  receive time     {stamp}; {} request(s) sent",
            time.requests
        );
    }
    out
}

fn to_json(report: &Report, plain: bool) -> Value {
    let ke = report.ke.as_ref().map(|ke| {
        let certificates: Vec<Value> = ke
            .certificates
            .iter()
            .map(|cert| match cert {
                Ok(info) => json!({
                    "subject": info.subject,
                    "subject_alt_names": info.subject_alt_names,
                    "not_before": utc(info.not_before, true),
                    "not_after": utc(info.not_after, true),
                }),
                Err(e) => json!({ "error": e }),
            })
            .collect();
        json!({
            "address": ke.address.to_string(),
            "tls_version": ke.tls_version,
            "cipher_suite": ke.cipher_suite,
            "aead": ke.algorithm.to_string(),
            "aead_id": ke.algorithm.to_u16(),
            "cookies": ke.cookies,
            "cookie_length": ke.cookie_len.1,
            "ntp_server": ke.ntp_host,
            "ntp_port": ke.ntp_port,
            "certificates": certificates,
        })
    });
    let time = report.time.as_ref().map(|t| {
        let h = &t.header;
        json!({
            "address": t.address.to_string(),
            "authenticated": t.authenticated,
            "offset": t.offset,
            "delay": t.delay,
            "stratum": h.stratum,
            "reference_id": reference_id(h),
            "reference_id_hex": hex(&h.reference_id.0),
            "leap": leap_name(h.leap),
            "root_delay": h.root_delay.as_seconds(),
            "root_dispersion": h.root_dispersion.as_seconds(),
            "precision": h.precision,
            "version": h.version,
            "kernel_timestamp": t.kernel_timestamp,
            "requests": t.requests,
        })
    });
    let error = report
        .failure
        .as_ref()
        .map(|f| json!({ "kind": f.kind, "message": f.message }));
    json!({
        "server": report.target,
        "mode": if plain { "ntp" } else { "nts" },
        "exit_code": report.failure.as_ref().map_or(EXIT_OK, |f| f.code),
        "key_exchange": ke,
        "ntp": time,
        "error": error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_ids_read_as_text_or_address() {
        let mut h = NtpHeader {
            stratum: 1,
            reference_id: sundial_proto::ntp::packet::ReferenceId(*b"GPS\0"),
            ..NtpHeader::default()
        };
        assert_eq!(reference_id(&h), "GPS");
        h.stratum = 2;
        h.reference_id.0 = [192, 0, 2, 1];
        assert_eq!(reference_id(&h), "192.0.2.1");
        h.stratum = 1;
        assert_eq!(reference_id(&h), "0xc0000201");
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("abc").is_err());
        assert!(parse_timeout("1e9").is_err());
    }

    #[test]
    fn exit_codes_are_distinct() {
        let mut codes = [
            EXIT_OK,
            EXIT_INTERNAL,
            EXIT_USAGE,
            EXIT_TLS,
            EXIT_KE_REFUSED,
            EXIT_UNAUTHENTICATED,
            EXIT_TIMEOUT,
            EXIT_UNREACHABLE,
            EXIT_NO_TIME,
        ];
        codes.sort_unstable();
        let len = codes.len();
        let mut unique = codes.to_vec();
        unique.dedup();
        assert_eq!(unique.len(), len);
    }
}
