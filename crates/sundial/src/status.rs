//! `sundial status`: read the running daemon's snapshot from its
//! observation socket and show it as chronyc-like tables, or as JSON.
//!
//! The client parses the very serde types the daemon writes
//! (`sundial_daemon::status::Status`), so a field added there shows up in
//! `--json` at once and cannot be misread here.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sundial_daemon::status::{ClockKind, KeyRole, RefclockSnapshot, Status, unix_now};
use sundial_daemon::{build_info, config};

/// The daemon answers at once; a stalled daemon must not hang the command.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Larger than any snapshot (a few KiB per source); a bound so a wrong
/// socket cannot make us read forever.
const MAX_SNAPSHOT: u64 = 16 * 1024 * 1024;

/// Exit status when the daemon cannot be asked.
const EXIT_FAILED: u8 = 1;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Configuration file whose `[observability] observation-path` names
    /// the socket [default: as for `run`].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The observation socket, instead of reading it from the config.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's snapshot as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Why there is no status to show; each names the file or socket.
#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("{0}")]
    Config(String),
    #[error(
        "{}: [observability] observation-path is not set, so the daemon publishes no status (set it and restart sundial, or pass --socket)",
        .0.display()
    )]
    NoSocketConfigured(PathBuf),
    #[error("{}: no such socket: is sundial running with this observation-path?", .0.display())]
    Absent(PathBuf),
    #[error("{}: nobody answers: sundial is not running (the socket is left from an earlier run)", .0.display())]
    NotRunning(PathBuf),
    #[error("{}: permission denied (see observation-permissions, or run as the daemon's user)", .0.display())]
    Denied(PathBuf),
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, io::Error),
    #[error("{}: the answer is not a sundial status: {}", .0.display(), .1)]
    Parse(PathBuf, serde_json::Error),
}

pub fn run(args: &StatusArgs) -> u8 {
    match fetch_and_show(args, &mut io::stdout().lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sundial status: {e}");
            EXIT_FAILED
        }
    }
}

fn fetch_and_show(args: &StatusArgs, out: &mut impl Write) -> Result<(), StatusError> {
    let socket = socket_path(args)?;
    let bytes = fetch(&socket)?;
    let status: Status =
        serde_json::from_slice(&bytes).map_err(|e| StatusError::Parse(socket.clone(), e))?;
    if args.json {
        // Pretty, but exactly the daemon's fields and values.
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| StatusError::Parse(socket.clone(), e))?;
        if let Some(warning) = version_warning(&status, build_info::VERSION, build_info::COMMIT) {
            eprintln!("sundial status: {warning}");
        }
        writeln!(out, "{text}").map_err(|e| StatusError::Io(socket, e))
    } else {
        render(&status, unix_now(), out).map_err(|e| StatusError::Io(socket, e))
    }
}

/// `--socket`, else the config's observation-path.
fn socket_path(args: &StatusArgs) -> Result<PathBuf, StatusError> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    let path = config::resolve_path(args.config.as_deref());
    let config = config::load(&path).map_err(|e| StatusError::Config(e.to_string()))?;
    config
        .observability
        .observation_path
        .ok_or(StatusError::NoSocketConfigured(path))
}

/// One connection, one JSON document.
fn fetch(socket: &Path) -> Result<Vec<u8>, StatusError> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => StatusError::Absent(socket.to_owned()),
        io::ErrorKind::ConnectionRefused => StatusError::NotRunning(socket.to_owned()),
        io::ErrorKind::PermissionDenied => StatusError::Denied(socket.to_owned()),
        _ => StatusError::Io(socket.to_owned(), e),
    })?;
    let io_err = |e| StatusError::Io(socket.to_owned(), e);
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut bytes = Vec::new();
    stream
        .take(MAX_SNAPSHOT)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    Ok(bytes)
}

/// An offset or delay with a unit that keeps three significant digits
/// readable: µs below a millisecond, ms below a second.
fn seconds(value: f64, signed: bool) -> String {
    let (scaled, unit) = match value.abs() {
        v if v < 1e-3 => (value * 1e6, "µs"),
        v if v < 1.0 => (value * 1e3, "ms"),
        _ => (value, "s"),
    };
    if signed {
        format!("{scaled:+.1}{unit}")
    } else {
        format!("{scaled:.1}{unit}")
    }
}

/// `3d 04h`, `2h 03m`, `5m 09s`, `42s`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

/// `12.3µs fast` or `4.0ms slow`: an error (clock minus true time) the
/// way chronyc's tracking says it, so the sign needs no convention.
fn fast_or_slow(error: f64) -> String {
    let way = if error < 0.0 { "slow" } else { "fast" };
    format!("{} {way}", seconds(error.abs(), false))
}

/// chronyc's "System time": how far the clock is from true time, with its
/// standard error. Observe-only, that is the virtual clock the discipline
/// steers; the real one is off by that minus the corrections never applied.
fn clock_error(status: &Status, out: &mut impl Write) -> io::Result<()> {
    let which = if status.observe_only {
        "virtual clock"
    } else {
        "clock"
    };
    match (status.clock_error_seconds, status.clock_uncertainty_seconds) {
        (Some(error), Some(sigma)) => writeln!(
            out,
            "  {which}: {} of true time (± {}, one standard error)",
            fast_or_slow(error),
            seconds(sigma, false),
        )?,
        _ => writeln!(out, "  {which}: error unknown until the first correction")?,
    }
    if let Some(correction) = status.virtual_correction_seconds {
        write!(
            out,
            "  virtual correction: {} (virtual minus real clock, not applied)",
            seconds(correction, true)
        )?;
        if let Some(error) = status.clock_error_seconds {
            write!(
                out,
                "; the real clock is {} of true time",
                fast_or_slow(error - correction)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// A warning when the daemon is not the build of this command: after an
/// upgrade the old binary keeps running until the daemon is restarted.
/// Commits are compared only when both are known.
fn version_warning(status: &Status, version: &str, commit: &str) -> Option<String> {
    let known = |c: &str| !c.is_empty() && c != "unknown";
    let same_commit = !(known(&status.commit) && known(commit)) || status.commit == commit;
    if status.version == version && same_commit {
        return None;
    }
    Some(format!(
        "warning: this command is sundial {version} ({commit}), but the daemon still runs {}{}: \
         restart it (systemctl restart sundial) to run the installed version",
        status.version,
        if status.commit.is_empty() {
            String::new()
        } else {
            format!(" ({})", status.commit)
        }
    ))
}

/// A reference clock's samples and what it refused, under the table:
/// `  sock /run/gps.sock: 120 samples, 3 refused (length 2, magic 1), 0 silent intervals`.
fn refclock_line(
    name: &str,
    samples: u64,
    refclock: &RefclockSnapshot,
    out: &mut impl Write,
) -> io::Result<()> {
    write!(
        out,
        "  {name}: {samples} samples, {} refused",
        refclock.rejected_total()
    )?;
    if !refclock.rejected.is_empty() {
        let reasons: Vec<String> = refclock
            .rejected
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        write!(out, " ({})", reasons.join(", "))?;
    }
    writeln!(out, ", {} silent intervals", refclock.missed_intervals)
}

/// The ACME line under a KE server: where it stands and what failed.
fn write_acme(
    out: &mut impl Write,
    acme: &sundial_daemon::acme::manager::AcmeSnapshot,
    now: u64,
) -> io::Result<()> {
    let next = match acme.next_attempt_unix {
        _ if acme.ordering => "ordering now".to_owned(),
        Some(at) if at > now => format!("next order in {}", span(at - now)),
        Some(_) => "next order now".to_owned(),
        None => "no order planned".to_owned(),
    };
    writeln!(
        out,
        "  ACME {} from {}: {next}; {} obtained, {} failed",
        acme.domains.join(", "),
        acme.directory,
        acme.renewals_succeeded,
        acme.renewals_failed,
    )?;
    if let Some(error) = &acme.last_error {
        writeln!(
            out,
            "  ACME FAILING ({} in a row): {error}",
            acme.consecutive_failures
        )?;
    }
    Ok(())
}

/// The tables. `now` (Unix seconds) is for "ago" and "in".
fn render(status: &Status, now: u64, out: &mut impl Write) -> io::Result<()> {
    // Uptime is a float only for the metric; whole seconds read better.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let up = status.uptime_seconds.max(0.0) as u64;
    write!(out, "sundial {}", status.version)?;
    if !status.commit.is_empty() {
        write!(out, " ({})", status.commit)?;
    }
    write!(out, ", up {}", span(up))?;
    if status.observe_only {
        write!(out, ", observe-only (the clock is never changed)")?;
    }
    writeln!(out)?;
    if let Some(warning) = version_warning(status, build_info::VERSION, build_info::COMMIT) {
        writeln!(out, "{warning}")?;
    }

    let sys = &status.system;
    let source = match sys.clock {
        ClockKind::Sources => "from sources",
        ClockKind::Local => "local clock, no sources",
    };
    let state = if sys.synchronized { "yes" } else { "no" };
    let reference = match sundial_daemon::status::reference_id_meaning(&sys.reference_id) {
        Some(meaning) => format!("{} ({meaning})", sys.reference_id),
        None => sys.reference_id.clone(),
    };
    writeln!(
        out,
        "Synchronized: {state} ({source}), stratum {}, reference {}, leap {}",
        sys.stratum,
        reference,
        serde_json::to_value(sys.leap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    )?;
    if let Some(reason) = &sys.reason {
        writeln!(out, "  why not: {reason}")?;
    }
    if sys.clock == ClockKind::Sources {
        writeln!(
            out,
            "  offset {}, frequency {:+.3} ppm, root delay {}, root dispersion {}",
            seconds(sys.offset_seconds, true),
            sys.frequency_ppm,
            seconds(sys.root_delay_seconds, false),
            seconds(sys.root_dispersion_seconds, false),
        )?;
        clock_error(status, out)?;
    }

    if !status.sources.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "S Name                           Address                St Poll Reach Cookies     Offset      Delay     Jitter  Last KE  Mode         AEAD"
        )?;
        for s in &status.sources {
            let address = s
                .address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".to_owned());
            let stratum = s.stratum.map_or_else(|| "-".to_owned(), |v| v.to_string());
            let cookies = s
                .nts_cookies
                .map_or_else(|| "-".to_owned(), |c| c.to_string());
            let ke = s.last_key_exchange.map_or_else(
                || "-".to_owned(),
                |t| format!("{} ago", span(now.saturating_sub(t))),
            );
            let aead = s.nts_aead.as_deref().unwrap_or("-");
            writeln!(
                out,
                "{} {:<30} {:<22} {:>2} {:>4} {:>5o} {:>7} {:>10} {:>10} {:>10}  {:<8} {:<12} {}",
                s.state.marker(),
                s.name,
                address,
                stratum,
                s.poll_exponent,
                s.reach,
                cookies,
                seconds(s.offset_seconds, true),
                seconds(s.delay_seconds, false),
                seconds(s.jitter_seconds, false),
                ke,
                s.interleave,
                aead,
            )?;
        }
        writeln!(
            out,
            "  (* selected, + candidate, x falseticker, ? unusable; Poll is log2 seconds; Reach in octal;\n   Mode: interleaved = RFC 9769 answers with the server's kernel transmit time, basic = asked\n   for interleaved but answered in basic mode, off = not asked)"
        )?;
        for s in &status.sources {
            if let Some(refclock) = &s.refclock {
                refclock_line(&s.name, s.counters.samples, refclock, out)?;
            }
        }
    }

    if !status.ntp_servers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "NTP server                      Received   Answered        NTS    NTS NAK   Deny   Rate    Ignored  Send errors"
        )?;
        for s in &status.ntp_servers {
            writeln!(
                out,
                "{:<30} {:>9} {:>10} {:>10} {:>10} {:>6} {:>6} {:>10} {:>12}",
                s.listen.to_string(),
                s.received,
                s.plain + s.nts,
                s.nts,
                s.nts_nak,
                s.deny,
                s.rate,
                s.ignored + s.malformed + s.nts_dropped,
                s.send_errors,
            )?;
            if s.interleaved + s.interleave_missed + s.tx_timestamps_captured > 0 {
                writeln!(
                    out,
                    "  interleaved {} (missed {}), kernel tx timestamps {} ({} from the NIC), missed {}",
                    s.interleaved,
                    s.interleave_missed,
                    s.tx_timestamps_captured,
                    s.tx_timestamps_hardware,
                    s.tx_timestamps_missed,
                )?;
            }
            if !s.dropped.is_empty() {
                let reasons: Vec<String> =
                    s.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
                writeln!(out, "  dropped by reason: {}", reasons.join(", "))?;
            }
        }
    }

    if !status.nts_ke_servers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "NTS-KE server                   Cookies sent  Refused   Failed  Certificate"
        )?;
        for s in &status.nts_ke_servers {
            let failed = s.failed_tls
                + s.failed_alpn
                + s.failed_bad_request
                + s.failed_timeout
                + s.failed_internal;
            let cert = match (&s.certificate_subject, s.certificate_expiry_seconds) {
                (Some(subject), Some(left)) if left < 0 => {
                    format!("{subject}, EXPIRED {} days ago", -left / 86_400)
                }
                (Some(subject), Some(left)) => {
                    format!("{subject}, expires in {} days", left / 86_400)
                }
                _ if s.acme.is_some() => {
                    "none yet: waiting for ACME (listener not started)".to_owned()
                }
                _ => "unreadable".to_owned(),
            };
            writeln!(
                out,
                "{:<30} {:>13} {:>8} {:>8}  {cert}",
                s.listen.to_string(),
                s.responses,
                s.refused,
                failed,
            )?;
            if let Some(acme) = &s.acme {
                write_acme(out, acme, now)?;
            }
        }
    }

    if let Some(keys) = &status.keyset {
        writeln!(out)?;
        let role = match keys.role {
            KeyRole::Owner => "owner: generates, rotates and stores",
            KeyRole::Reader => "reader: follows the file its KE server writes",
        };
        let path = keys
            .storage_path
            .as_ref()
            .map_or_else(|| "memory only".to_owned(), |p| p.display().to_string());
        writeln!(
            out,
            "Cookie keys: current id {}, {} key{}, next rotation in {}, {path} ({role})",
            keys.current_key_id,
            keys.keys,
            if keys.keys == 1 { "" } else { "s" },
            span(keys.next_rotation.saturating_sub(now)),
        )?;
    }
    if let Some(sandbox) = &status.sandbox {
        writeln!(out)?;
        let caps = if sandbox.capabilities.is_empty() {
            "none".to_owned()
        } else {
            sandbox.capabilities.join(" ")
        };
        writeln!(
            out,
            "Sandbox: user {} (uid {}), capabilities {caps}, no-new-privs {}, Landlock {}, seccomp {}",
            sandbox.user,
            sandbox.uid,
            if sandbox.no_new_privs { "on" } else { "off" },
            sandbox.landlock,
            sandbox.seccomp,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_daemon::status::{
        KeServerSnapshot, KeysetSnapshot, NtpServerSnapshot, SourceCounters, SourceSnapshot,
        SourceState, SystemStatus,
    };

    fn example() -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: String::new(),
            uptime_seconds: 7384.2,
            observe_only: true,
            system: SystemStatus {
                clock: ClockKind::Sources,
                synchronized: true,
                stratum: 2,
                reference_id: "127.0.0.1".to_owned(),
                offset_seconds: -1.23e-5,
                frequency_ppm: 12.5,
                root_delay_seconds: 2.5e-4,
                ..SystemStatus::default()
            },
            clock_error_seconds: Some(2.3e-5),
            clock_uncertainty_seconds: Some(4.1e-5),
            virtual_correction_seconds: Some(-1.5e-3),
            sources: vec![SourceSnapshot {
                id: 0,
                name: "nts localhost:4460".to_owned(),
                mode: "nts".to_owned(),
                address: "127.0.0.1:12300".parse().ok(),
                state: SourceState::Selected,
                stratum: Some(1),
                offset_seconds: -1.23e-5,
                delay_seconds: 2.1e-4,
                jitter_seconds: 5e-6,
                reach: 0o377,
                unanswered_polls: 0,
                poll_exponent: 4,
                nts_cookies: Some(8),
                last_key_exchange: Some(1_000_000 - 65),
                nts_aead: Some("AEAD_AES_SIV_CMAC_256".to_owned()),
                interleave: "interleaved".to_owned(),
                counters: SourceCounters::default(),
                refclock: None,
            }],
            ntp_servers: vec![NtpServerSnapshot {
                listen: "[::]:123".parse().unwrap_or_else(|e| panic!("{e}")),
                received: 10,
                plain: 3,
                nts: 6,
                nts_nak: 1,
                deny: 0,
                rate: 0,
                ignored: 0,
                malformed: 0,
                nts_dropped: 0,
                send_errors: 0,
                interleaved: 4,
                interleave_missed: 1,
                tx_timestamps_captured: 5,
                tx_timestamps_hardware: 0,
                tx_timestamps_missed: 0,
                dropped: [("authentication".to_owned(), 2)].into(),
            }],
            nts_ke_servers: vec![KeServerSnapshot {
                listen: "[::]:4460".parse().unwrap_or_else(|e| panic!("{e}")),
                handshakes_ok: 4,
                responses: 4,
                refused: 0,
                failed_tls: 1,
                failed_alpn: 0,
                failed_bad_request: 0,
                failed_timeout: 0,
                failed_internal: 0,
                accept_errors: 0,
                certificate_subject: Some("CN=localhost".to_owned()),
                certificate_expiry_seconds: Some(30 * 86_400 + 5),
                acme: None,
            }],
            keyset: Some(KeysetSnapshot {
                current_key_id: 7,
                keys: 9,
                next_rotation: 1_000_000 + 3600,
                storage_path: Some(PathBuf::from("/var/lib/sundial/ntskeys")),
                role: KeyRole::Owner,
            }),
            sandbox: Some(sundial_daemon::sandbox::SandboxStatus {
                user: "sundial".to_owned(),
                uid: 998,
                capabilities: vec!["cap_sys_time".to_owned()],
                no_new_privs: true,
                landlock: "enforced (ABI 7)".to_owned(),
                seccomp: "off".to_owned(),
            }),
        }
    }

    #[test]
    fn a_daemon_of_another_build_is_warned_about() {
        let daemon = Status {
            version: "0.1.0".to_owned(),
            commit: "1a2b3c4d5e6f".to_owned(),
            ..Status::default()
        };
        assert_eq!(version_warning(&daemon, "0.1.0", "1a2b3c4d5e6f"), None);
        assert_eq!(version_warning(&daemon, "0.1.0", "unknown"), None);
        let warning = version_warning(&daemon, "0.2.0", "0f0e0d0c0b0a").unwrap_or_default();
        assert!(
            warning.contains("this command is sundial 0.2.0 (0f0e0d0c0b0a), but the daemon still runs 0.1.0 (1a2b3c4d5e6f)"),
            "{warning}"
        );
        assert!(version_warning(&daemon, "0.1.0", "0f0e0d0c0b0a").is_some());
        let old = Status {
            version: "0.0.9".to_owned(),
            ..Status::default()
        };
        let warning = version_warning(&old, "0.1.0", "1a2b3c4d5e6f").unwrap_or_default();
        assert!(warning.contains("still runs 0.0.9: restart"), "{warning}");
    }

    #[test]
    fn the_tables_show_what_an_operator_looks_for() {
        let mut out = Vec::new();
        render(&example(), 1_000_000, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("sundial 0.1.0, up 2h 03m, observe-only"),
            "{text}"
        );
        assert!(
            text.contains("Synchronized: yes (from sources), stratum 2"),
            "{text}"
        );
        assert!(
            text.contains("\nSandbox: user sundial (uid 998), capabilities cap_sys_time, no-new-privs on, Landlock enforced (ABI 7), seccomp off\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  virtual clock: 23.0µs fast of true time (± 41.0µs, one standard error)\n"
            ),
            "{text}"
        );
        // 23 µs fast after a -1.5 ms correction that was never applied: the
        // real clock is 1.523 ms fast.
        assert!(
            text.contains(
                "\n  virtual correction: -1.5ms (virtual minus real clock, not applied); the real clock is 1.5ms fast of true time\n"
            ),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("* nts localhost:4460"))
            .unwrap_or_else(|| panic!("no source line:\n{text}"));
        for part in [
            "127.0.0.1:12300",
            " 377 ",
            " 8 ",
            "-12.3µs",
            "210.0µs",
            "1m 05s ago",
        ] {
            assert!(line.contains(part), "{part:?} missing in {line:?}");
        }
        assert!(
            text.contains("  dropped by reason: authentication 2"),
            "{text}"
        );
        assert!(text.contains("CN=localhost, expires in 30 days"), "{text}");
        assert!(
            text.contains("current id 7, 9 keys, next rotation in 1h 00m"),
            "{text}"
        );
    }

    #[test]
    fn one_key_is_one_key() {
        let mut status = example();
        if let Some(keys) = status.keyset.as_mut() {
            keys.keys = 1;
        }
        let mut out = Vec::new();
        render(&status, 1_000_000, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("current id 7, 1 key, next"), "{text}");
    }

    #[test]
    fn a_steered_clock_shows_what_is_left_to_correct() {
        let mut status = Status {
            observe_only: false,
            virtual_correction_seconds: None,
            clock_error_seconds: Some(-4e-3),
            ..example()
        };
        let mut out = Vec::new();
        render(&status, 1_000_000, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\n  clock: 4.0ms slow of true time (± 41.0µs"),
            "{text}"
        );
        assert!(!text.contains("virtual"), "{text}");

        status.clock_error_seconds = None;
        status.clock_uncertainty_seconds = None;
        let mut out = Vec::new();
        render(&status, 1_000_000, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\n  clock: error unknown until the first correction\n"),
            "{text}"
        );
    }

    #[test]
    fn a_reference_clock_shows_what_it_refused() {
        let mut status = example();
        status.system.stratum = 1;
        status.system.reference_id = "GPS".to_owned();
        status.sources = vec![SourceSnapshot {
            id: 3,
            name: "sock /run/sundial/gps.sock".to_owned(),
            mode: "sock".to_owned(),
            address: None,
            state: SourceState::Selected,
            stratum: Some(0),
            offset_seconds: 2e-3,
            delay_seconds: 0.0,
            jitter_seconds: 5e-5,
            reach: 0o377,
            unanswered_polls: 0,
            poll_exponent: 4,
            nts_cookies: None,
            last_key_exchange: None,
            nts_aead: None,
            interleave: "off".to_owned(),
            counters: SourceCounters {
                samples: 120,
                ..SourceCounters::default()
            },
            refclock: Some(RefclockSnapshot {
                path: PathBuf::from("/run/sundial/gps.sock"),
                rejected: [("length".to_owned(), 2), ("magic".to_owned(), 1)].into(),
                missed_intervals: 4,
            }),
        }];
        let mut out = Vec::new();
        render(&status, 1_000_000, &mut out).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("stratum 1, reference GPS"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("* sock /run/sundial/gps.sock") && l.contains("+2.0ms")),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  sock /run/sundial/gps.sock: 120 samples, 3 refused (length 2, magic 1), 4 silent intervals\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn units_follow_the_magnitude() {
        assert_eq!(seconds(-1.23e-5, true), "-12.3µs");
        assert_eq!(seconds(0.0021, false), "2.1ms");
        assert_eq!(seconds(1.5, true), "+1.5s");
        assert_eq!(span(42), "42s");
        assert_eq!(span(3 * 86_400 + 4 * 3600), "3d 04h");
    }

    #[test]
    fn a_missing_socket_is_named() {
        let path = PathBuf::from("/nonexistent/sundial-test/observe");
        let args = StatusArgs {
            config: None,
            socket: Some(path.clone()),
            json: false,
        };
        let err = fetch_and_show(&args, &mut Vec::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!("{}: no such socket", path.display())),
            "{err}"
        );
    }
}
