//! What the demo prints: timestamped lines as things happen, and the status
//! table at the end. Output errors (a closed pipe) are ignored: the demo
//! must still stop its servers and remove its directory.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sundial_daemon::clock::observe::WouldDo;
use sundial_daemon::server::ntp::NtpStats;
use sundial_daemon::server::nts_ke::KeStats;
use sundial_daemon::source::SourceHandle;
use sundial_daemon::status::SourceState;
use sundial_sync::SyncStatus;

/// Lines stamped with the seconds since the demo started.
#[derive(Debug)]
pub(super) struct Log<W: Write> {
    out: W,
    start: Instant,
}

impl<W: Write> Log<W> {
    pub(super) fn new(out: W) -> Self {
        Self {
            out,
            start: Instant::now(),
        }
    }

    /// Text without a timestamp.
    pub(super) fn banner(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    pub(super) fn line(&mut self, text: &str) {
        let secs = self.start.elapsed().as_secs_f64();
        let _ = writeln!(self.out, "[{secs:5.2}s] {text}");
        // A person watches it live, also through `| tee`.
        let _ = self.out.flush();
    }
}

/// What the event loop counted.
#[derive(Debug, Default)]
pub(super) struct Summary {
    /// Authenticated samples handed to the synchronizer.
    pub(super) samples: u64,
    pub(super) key_exchanges: u64,
    /// Cookies the last key exchange gave.
    pub(super) cookies_at_ke: usize,
}

fn poll_text(exponent: i8) -> String {
    let secs = 2f64.powi(i32::from(exponent));
    if secs >= 1.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.2} s")
    }
}

/// The status table: the source as the synchronizer sees it, then what the
/// server, the client and the (untouched) clock did.
pub(super) fn table<W: Write>(
    log: &mut Log<W>,
    status: &SyncStatus,
    handles: &[SourceHandle],
    summary: &Summary,
    ntp: &NtpStats,
    ke: &KeStats,
    clock: &[WouldDo],
) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut text = String::new();
    let secs = log.start.elapsed().as_secs_f64();
    text.push_str(&format!("\nStatus after {secs:.1} s\n"));
    let name_width = handles
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let row = |cells: [&str; 9]| {
        let [
            name,
            state,
            offset,
            delay,
            jitter,
            poll,
            reach,
            requests,
            answers,
        ] = cells;
        format!(
            "  {name:<name_width$}  {state:<9} {offset:>12} {delay:>10} {jitter:>10} {poll:>5} {reach:>5} {requests:>8} {answers:>7}\n"
        )
    };
    text.push_str(&row([
        "source", "state", "offset", "delay", "jitter", "poll", "reach", "requests", "answers",
    ]));
    for handle in handles {
        let id = sundial_sync::SourceId(u64::from(handle.id.0));
        let Some(s) = status.sources.iter().find(|s| s.id == id) else {
            continue;
        };
        // The synchronizer's wish, as the source clamps it into its
        // poll-interval-limits: the interval it really polls at.
        let poll = s
            .poll
            .clamp(handle.limits.min, handle.limits.max.max(handle.limits.min));
        text.push_str(&row([
            &handle.name,
            SourceState::from(s.state).name(),
            &format!("{:+.6} s", s.offset),
            &format!("{:.6} s", s.delay),
            &format!("{:.6} s", s.jitter),
            &poll_text(poll),
            &format!("{:o}", s.reach),
            &load(&handle.stats.requests).to_string(),
            &load(&handle.stats.samples).to_string(),
        ]));
    }
    let sync_line = if status.synchronized {
        format!(
            "synchronized, stratum {}, last offset {:+.6} s, frequency {:+.3} ppm",
            status.stratum, status.offset, status.frequency_ppm
        )
    } else {
        format!("not synchronized ({:?})", status.reason)
    };
    text.push_str(&format!("  synchronizer  {sync_line}\n"));
    text.push_str(&format!(
        "  NTP server    {} NTS requests answered, {} NTS NAKs, {} NTS requests dropped, {} plain\n",
        load(&ntp.nts),
        load(&ntp.nts_nak),
        load(&ntp.nts_dropped),
        load(&ntp.plain),
    ));
    text.push_str(&format!(
        "  NTS-KE server {} key exchange(s) answered, {} TLS handshake(s), {} failed\n",
        load(&ke.responses),
        load(&ke.handshakes_ok),
        load(&ke.failed_tls) + load(&ke.failed_alpn) + load(&ke.failed_bad_request),
    ));
    let unauthenticated: u64 = handles.iter().map(|h| load(&h.stats.unauthenticated)).sum();
    text.push_str(&format!(
        "  NTS client    {} key exchange(s), {} cookies from the last, {} authenticated samples, {} answers failed authentication\n",
        summary.key_exchanges, summary.cookies_at_ke, summary.samples, unauthenticated
    ));
    let count = |f: fn(&WouldDo) -> bool| clock.iter().filter(|a| f(a)).count();
    text.push_str(&format!(
        "  clock         not changed: {} steps, {} slews and {} frequency changes recorded, none applied\n",
        count(|a| matches!(a, WouldDo::Step(_))),
        count(|a| matches!(a, WouldDo::Slew(_))),
        count(|a| matches!(a, WouldDo::Frequency(_))),
    ));
    log.banner(&text);
}
