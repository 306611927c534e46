//! The load generator: many connected UDP sockets (one per source port),
//! requests sent with sendmmsg at a paced rate and answers drained with
//! recvmmsg, so that the generator costs a few syscalls per batch rather
//! than one per packet and is not what limits the measured rate.
//!
//! Each request's transmit timestamp carries a step tag and a sequence
//! number; the server echoes it as the origin timestamp, which is how an
//! answer is matched to its request (and a late answer from an earlier
//! step is told apart).

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::ntp::timestamp::NtpTimestamp;

/// Messages per sendmmsg/recvmmsg call.
const BATCH: usize = 32;
/// Requests sent from one source port before moving to the next: small,
/// so a server that spreads ports over sockets sees an even mix.
const PER_PORT: usize = 8;
/// The longest answer read.
const RX_LEN: usize = 2048;
/// After the last request of a step, how long late answers still count.
const GRACE: Duration = Duration::from_millis(250);
/// Every this many answers is fully verified (cryptographically for NTS).
const VERIFY_EVERY: u64 = 16;

/// What one kind of request looks like.
pub trait Workload {
    /// Builds requests 0..count for the step tagged `tag`.
    fn prepare(&mut self, tag: u8, count: usize) -> Result<(), String>;
    /// Request `seq` (prepared).
    fn request(&self, seq: usize) -> &[u8];
    /// Whether `response` is a valid answer to request `seq`.
    fn verify(&self, seq: usize, response: &[u8]) -> bool;
}

/// Request `seq` of step `tag`'s header. `interleaved`: the request asks
/// for RFC 9769's interleaved mode, as an interleaving client's does after
/// a lost answer: a receive field set, and an origin that looks like one
/// of the server's receive timestamps (lowest bit set) but names no
/// exchange it holds. The server looks it up, misses, answers in basic
/// mode, saves the exchange and has the kernel timestamp the answer: every
/// cost interleaving adds per answer (a hit costs the same lookup), while
/// the answer still echoes the transmit timestamp the generator matches.
pub fn request_header(tag: u8, seq: usize, interleaved: bool) -> NtpHeader {
    let transmit = seq_timestamp(tag, seq);
    let mut header = NtpHeader::client_request(0, transmit);
    if interleaved {
        header.origin_timestamp =
            NtpTimestamp::from_bits(transmit.to_bits() ^ 0x5a5a_0000_0000_0001 | 1);
        header.receive_timestamp = NtpTimestamp::from_bits(!transmit.to_bits());
    }
    header
}

/// The transmit timestamp of request `seq` in step `tag`.
pub fn seq_timestamp(tag: u8, seq: usize) -> NtpTimestamp {
    NtpTimestamp::from_bits((u64::from(tag) << 48) | (seq as u64 & 0xffff_ffff_ffff))
}

fn be_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at + 8)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// What one step measured.
#[derive(Debug, Default, Clone)]
pub struct StepReport {
    pub target_rate: f64,
    pub sent: u64,
    /// Sends the kernel refused (full buffers) or the schedule skipped
    /// because the generator fell behind: never offered.
    pub not_sent: u64,
    pub answered: u64,
    /// Kiss-o'-death answers (RATE, DENY, NTSN): not counted as answered.
    pub kisses: u64,
    /// Answers that matched no request of this step (late, duplicate).
    pub stray: u64,
    pub verified: u64,
    pub verify_failed: u64,
    pub send_secs: f64,
    /// Transmit minus receive timestamp of (a sample of) the answers, ns.
    pub gaps_ns: Vec<u32>,
}

impl StepReport {
    pub fn offered_rate(&self) -> f64 {
        self.sent as f64 / self.send_secs.max(1e-9)
    }

    pub fn answered_rate(&self) -> f64 {
        self.answered as f64 / self.send_secs.max(1e-9)
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - (self.answered as f64 / self.sent as f64).min(1.0)
    }

    /// The `q` quantile of the rx->tx gap in µs.
    pub fn gap_us(&mut self, q: f64) -> Option<f64> {
        if self.gaps_ns.is_empty() {
            return None;
        }
        self.gaps_ns.sort_unstable();
        let i = ((self.gaps_ns.len() - 1) as f64 * q).round() as usize;
        self.gaps_ns.get(i).map(|&ns| f64::from(ns) / 1000.0)
    }
}

/// Sockets and preallocated batch state.
pub struct Generator {
    sockets: Vec<UdpSocket>,
    send_headers: MultiHeaders<SockaddrStorage>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    rx: Box<[[u8; RX_LEN]; BATCH]>,
    tag: u8,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("ports", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// `ports` sockets on the loopback (or unspecified) address of the
    /// server's family, each connected to `server`.
    pub fn new(server: SocketAddr, ports: usize) -> Result<Self, String> {
        let local: SocketAddr = if server.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|e| format!("{e}"))?;
        let mut sockets = Vec::with_capacity(ports);
        for _ in 0..ports.max(1) {
            let s = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
            s.connect(server)
                .map_err(|e| format!("connect {server}: {e}"))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push(s);
        }
        Ok(Self {
            sockets,
            send_headers: MultiHeaders::preallocate(BATCH, None),
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            rx: Box::new([[0u8; RX_LEN]; BATCH]),
            tag: 0,
        })
    }

    /// Offers `rate` requests per second for `secs` seconds, then waits a
    /// grace period for late answers.
    pub fn step(
        &mut self,
        workload: &mut impl Workload,
        rate: f64,
        secs: f64,
    ) -> Result<StepReport, String> {
        self.tag = self.tag.wrapping_add(1);
        let count = (rate * secs).ceil().max(1.0) as usize;
        workload.prepare(self.tag, count)?;
        let mut report = StepReport {
            target_rate: rate,
            ..StepReport::default()
        };
        let mut seen = vec![0u64; count.div_ceil(64)];
        let mut answered_total: u64 = 0;
        // More than this much backlog means the generator was descheduled:
        // catch up by skipping, never by a burst that would measure the
        // socket buffer instead of the server.
        let max_lag = ((rate * 0.002) as usize).max(BATCH);
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(secs);
        let mut next = 0usize;
        let mut port = 0usize;
        loop {
            let now = Instant::now();
            if now >= end || next >= count {
                break;
            }
            let elapsed = now.duration_since(started).as_secs_f64();
            let due = ((elapsed * rate) as usize + 1).min(count);
            if due > next + max_lag {
                report.not_sent += (due - max_lag - next) as u64;
                next = due - max_lag;
            }
            while next < due {
                let n = (due - next).min(PER_PORT);
                let sent = self.send(port, workload, next, n)?;
                report.sent += sent as u64;
                report.not_sent += (n - sent) as u64;
                next += n;
                port = (port + 1) % self.sockets.len();
            }
            // Sleep in poll only when the next request is at least a
            // millisecond away; otherwise just look.
            let wait = if next < count && ((next as f64 + 1.0) / rate) - elapsed > 0.001 {
                1u16
            } else {
                0
            };
            self.receive(workload, wait, &mut seen, &mut report, &mut answered_total)?;
        }
        report.send_secs = started.elapsed().as_secs_f64();
        let grace_end = Instant::now() + GRACE;
        while Instant::now() < grace_end {
            self.receive(workload, 5, &mut seen, &mut report, &mut answered_total)?;
        }
        Ok(report)
    }

    /// Sends requests first..first+n on socket `port`; how many the kernel took.
    fn send(
        &mut self,
        port: usize,
        workload: &impl Workload,
        first: usize,
        n: usize,
    ) -> Result<usize, String> {
        let Some(socket) = self.sockets.get(port) else {
            return Ok(0);
        };
        let slices: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(workload.request(first + i.min(n - 1)))]);
        let addrs = [None::<SockaddrStorage>; BATCH];
        let mut done = 0;
        while done < n {
            let result = sendmmsg(
                socket.as_raw_fd(),
                &mut self.send_headers,
                slices.get(done..n).unwrap_or_default(),
                addrs.get(done..n).unwrap_or_default(),
                [],
                MsgFlags::MSG_DONTWAIT,
            );
            match result {
                Ok(results) => {
                    let k = results.count();
                    if k == 0 {
                        break;
                    }
                    done += k;
                }
                // A full socket buffer: these are not offered.
                Err(Errno::EAGAIN | Errno::ENOBUFS) => break,
                // An ICMP error from an earlier datagram (server not up
                // yet, or it dropped one): the next call goes through.
                Err(Errno::ECONNREFUSED) => continue,
                Err(e) => return Err(format!("sendmmsg: {e}")),
            }
        }
        Ok(done)
    }

    /// Drains every socket that has answers, waiting up to `wait_ms` for one.
    fn receive(
        &mut self,
        workload: &impl Workload,
        wait_ms: u16,
        seen: &mut [u64],
        report: &mut StepReport,
        answered_total: &mut u64,
    ) -> Result<(), String> {
        let mut fds: Vec<PollFd<'_>> = self
            .sockets
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(wait_ms)) {
            Ok(0) | Err(Errno::EINTR) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for i in ready {
            let fd = match self.sockets.get(i) {
                Some(s) => s.as_raw_fd(),
                None => continue,
            };
            loop {
                let mut lens = [0usize; BATCH];
                let received = {
                    let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                        self.rx.each_mut().map(|b| [IoSliceMut::new(b)]);
                    match recvmmsg(
                        fd,
                        &mut self.recv_headers,
                        iovs.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(results) => {
                            let mut n = 0;
                            for (len, msg) in lens.iter_mut().zip(results) {
                                *len = msg.bytes;
                                n += 1;
                            }
                            n
                        }
                        Err(Errno::EAGAIN | Errno::ECONNREFUSED | Errno::EINTR) => 0,
                        Err(e) => return Err(format!("recvmmsg: {e}")),
                    }
                };
                for (buf, &len) in self.rx.iter().zip(&lens).take(received) {
                    let packet = buf.get(..len).unwrap_or_default();
                    account(workload, self.tag, packet, seen, report, answered_total);
                }
                if received < BATCH {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn account(
    workload: &impl Workload,
    tag: u8,
    packet: &[u8],
    seen: &mut [u64],
    report: &mut StepReport,
    answered_total: &mut u64,
) {
    let Some(origin) = be_u64(packet, 24) else {
        report.stray += 1;
        return;
    };
    let seq = (origin & 0xffff_ffff_ffff) as usize;
    let word = seen.get_mut(seq / 64);
    let bit = 1u64 << (seq % 64);
    let fresh = (origin >> 48) as u8 == tag && word.as_ref().is_some_and(|w| **w & bit == 0);
    if !fresh {
        report.stray += 1;
        return;
    }
    if let Some(w) = word {
        *w |= bit;
    }
    // Stratum 0 from a server is a kiss-o'-death, not time.
    if packet.get(1) == Some(&0) {
        report.kisses += 1;
        return;
    }
    report.answered += 1;
    *answered_total += 1;
    if let (Some(rx), Some(tx)) = (be_u64(packet, 32), be_u64(packet, 40)) {
        // 32.32 fixed point to nanoseconds; a negative gap (a server whose
        // clock stepped between the two reads) shows as a huge value.
        let ns = (u128::from(tx.wrapping_sub(rx)) * 1_000_000_000) >> 32;
        if *answered_total % 4 == 0 {
            report.gaps_ns.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
    }
    if *answered_total % VERIFY_EVERY == 1 {
        if workload.verify(seq, packet) {
            report.verified += 1;
        } else {
            report.verify_failed += 1;
        }
    }
}

/// Plain NTP client requests.
#[derive(Debug, Default)]
pub struct NtpWorkload {
    requests: Vec<[u8; 48]>,
    /// Requests ask for interleaved mode ([`request_header`]).
    pub interleaved: bool,
}

impl Workload for NtpWorkload {
    fn prepare(&mut self, tag: u8, count: usize) -> Result<(), String> {
        self.requests.clear();
        let interleaved = self.interleaved;
        self.requests
            .extend((0..count).map(|seq| request_header(tag, seq, interleaved).to_bytes()));
        Ok(())
    }

    fn request(&self, seq: usize) -> &[u8] {
        self.requests.get(seq).map_or(&[], |r| r.as_slice())
    }

    fn verify(&self, seq: usize, response: &[u8]) -> bool {
        use sundial_proto::ntp::packet::{Mode, NtpHeader};
        match NtpHeader::parse(response) {
            Ok((header, _)) => {
                header.mode == Mode::Server
                    && header.origin_timestamp == request_timestamp(self.request(seq))
                    && !header.transmit_timestamp.is_zero()
            }
            Err(_) => false,
        }
    }
}

/// The transmit timestamp a request carries.
pub fn request_timestamp(request: &[u8]) -> NtpTimestamp {
    be_u64(request, 40).map_or(NtpTimestamp::ZERO, NtpTimestamp::from_bits)
}
