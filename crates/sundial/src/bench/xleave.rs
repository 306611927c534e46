//! `sundial bench xleave`: how far a server's transmit timestamp (T3) is
//! from the answer's true send time, in basic and in RFC 9769 interleaved
//! mode. Run it beside a load (`sundial bench ntp --rate R` in another
//! process) to see it under load.
//!
//! "True send time" is the server's kernel transmit timestamp of the
//! answer, which an interleaving server reports in its next answer. So the
//! probe sends pairs of requests from one socket: A asks for interleaving
//! with no previous exchange and gets a basic answer, whose T3 is the
//! server's estimate and whose receive timestamp names the exchange; B
//! names it and gets an interleaved answer, whose T3 is the kernel's send
//! time of answer A. For each pair:
//!
//! - basic: T3 − true send time = T3(A) − T3(B), the error the basic mode
//!   carries into every offset (halved);
//! - interleaved: T3 − true send time is zero by construction (the T3 *is*
//!   the kernel's timestamp), so what the client sees is the other side:
//!   T4 − T3, the probe's kernel receive time of answer A minus each T3,
//!   whose spread is the loopback delivery's plus, in basic mode, the T3
//!   error's.
//!
//! It is a measuring tool: bounded by `--duration`, it stops by itself.

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::ntp::timestamp::NtpTimestamp;

/// Longest wait for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);

struct Probe {
    socket: UdpSocket,
}

impl Probe {
    fn exchange(&self, header: &NtpHeader) -> Option<(NtpHeader, NtpTimestamp)> {
        self.socket.send(&header.to_bytes()).ok()?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            let mut buf = [0u8; 512];
            let mut cmsg = cmsg_space!(TimeSpec);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<SockaddrStorage>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .ok()?;
            let mut t4 = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        t4 = Some(NtpTimestamp::from_unix(
                            ts.tv_sec(),
                            u32::try_from(ts.tv_nsec()).unwrap_or(0),
                        ));
                    }
                }
            }
            let len = msg.bytes;
            let Ok((answer, _)) = NtpHeader::parse(buf.get(..len).unwrap_or_default()) else {
                continue;
            };
            let ours = answer.origin_timestamp == header.transmit_timestamp
                || answer.origin_timestamp == header.receive_timestamp;
            if ours {
                return Some((answer, t4?));
            }
        }
    }
}

/// Quantiles of a set of nanosecond values.
fn summary(name: &str, values: &mut [f64]) -> String {
    if values.is_empty() {
        return format!("{name}: no data");
    }
    values.sort_by(f64::total_cmp);
    let q = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    format!(
        "{name}: n={} p1={:.0} p50={:.0} p99={:.0} spread_p1_p99={:.0} sd={:.0} (ns)",
        values.len(),
        q(0.01),
        q(0.5),
        q(0.99),
        q(0.99) - q(0.01),
        sd
    )
}

pub fn run(server: SocketAddr, seconds: f64, pairs_per_second: f64) -> Result<(), String> {
    let local = if server.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(server)
        .map_err(|e| format!("connect {server}: {e}"))?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    socket
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let probe = Probe { socket };
    println!(
        "# sundial bench xleave -> {server}: {pairs_per_second} pairs/s for {seconds:.0} s; T3 against the kernel's send time"
    );
    let interval = Duration::from_secs_f64(1.0 / pairs_per_second.max(0.1));
    let end = Instant::now() + Duration::from_secs_f64(seconds.clamp(1.0, 600.0));
    let (mut error, mut basic_t4, mut interleaved_t4) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pairs, mut missed, mut lost) = (0u64, 0u64, 0u64);
    let mut seq: u64 = 1;
    let mut next = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        pairs += 1;
        seq += 2;
        let a = NtpHeader {
            receive_timestamp: NtpTimestamp::from_bits(seq << 20 | 0xa),
            ..NtpHeader::client_request(0, NtpTimestamp::from_bits(seq << 20 | 0xb))
        };
        let Some((answer_a, t4_a)) = probe.exchange(&a) else {
            lost += 1;
            continue;
        };
        let b = NtpHeader {
            origin_timestamp: answer_a.receive_timestamp,
            receive_timestamp: NtpTimestamp::from_bits((seq + 1) << 20 | 0xa),
            ..NtpHeader::client_request(0, NtpTimestamp::from_bits((seq + 1) << 20 | 0xb))
        };
        let Some((answer_b, _)) = probe.exchange(&b) else {
            lost += 1;
            continue;
        };
        if answer_b.origin_timestamp != b.receive_timestamp {
            missed += 1;
            continue;
        }
        let ns = |d: sundial_proto::ntp::timestamp::NtpDuration| d.as_seconds() * 1e9;
        let estimate = answer_a.transmit_timestamp;
        let true_send = answer_b.transmit_timestamp;
        error.push(ns(estimate - true_send));
        basic_t4.push(ns(t4_a - estimate));
        interleaved_t4.push(ns(t4_a - true_send));
    }
    println!(
        "# pairs {pairs}, interleaved {}, answered basic {missed}, lost {lost}",
        error.len()
    );
    println!("{}", summary("basic T3 - true send", &mut error));
    println!("interleaved T3 - true send: 0 by construction (T3 is the kernel's send time)");
    println!("{}", summary("basic T4 - T3", &mut basic_t4));
    println!("{}", summary("interleaved T4 - T3", &mut interleaved_t4));
    if error.is_empty() {
        return Err(
            "no interleaved answer: is the server sundial with kernel timestamps?".to_owned(),
        );
    }
    Ok(())
}
