//! Kernel transmit timestamps of the NTP server's answers, for RFC 9769's
//! interleaved mode: SO_TIMESTAMPING on the serving socket, read back from
//! its error queue and matched to the answer by the kernel's per-socket
//! packet id (SOF_TIMESTAMPING_OPT_ID; OPT_TSONLY, so the error queue
//! holds the timestamp and the id, not a copy of the answer).
//!
//! Only answers to requests that ask for interleaving are stamped: the
//! reporting flags stay on the socket, the generation flags are switched
//! on for the sendmmsg calls that carry those answers and off before any
//! other answer goes out, so a server of basic clients pays nothing and
//! one whose clients all interleave makes no setsockopt call per batch
//! (it made two; dropping them and an empty error-queue read per batch
//! saved 3 % of an interleaved answer's CPU). The kernel counts ids only for
//! stamped datagrams, so its counter and ours stay in step; after a send
//! that failed part-way (the kernel may or may not have used an id for the
//! failed datagram) the counter is reset (OPT_ID off and on again) and the
//! answers still unreported are counted missed.
//!
//! Hardware timestamps are asked for too: a NIC whose timestamping was
//! switched on (by ptp4l, say) reports one beside the software one
//! (OPT_TX_SWHW). Its clock is the NIC's, so it is taken only when it lies
//! within [`WINDOW`] of the software estimate (the NIC's clock is kept on
//! the system's, by phc2sys for example); otherwise the software one stands.
//!
//! Everything goes through nix: no unsafe code here.

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{BorrowedFd, RawFd};

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, TimestampingFlag, recvmmsg,
    setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use sundial_proto::ntp::timestamp::NtpTimestamp;

use super::batch::{Sent, TxBatch};

/// Answers whose timestamps may still come (ids wrap through this ring).
const RING: usize = 1024;

/// A kernel timestamp is believed only this close after the transmit time
/// read for the answer (chrony allows one second).
pub const WINDOW: f64 = 1.0;

/// How much earlier than the estimate a hardware timestamp may be (a NIC
/// clock kept near the system's, not on it).
const EARLY: f64 = 0.000_1;

/// A software timestamp is read after the estimate on the same clock;
/// this much rounding is allowed.
const SOFTWARE_EARLY: f64 = 0.000_001;

/// Error-queue messages read per call: more than a batch of answers, so
/// that one call reads a whole batch's reports and sees the queue empty
/// (with exactly a batch, a second call found nothing, once per batch).
const ERR_BATCH: usize = 2 * super::batch::BATCH;

#[derive(Clone, Copy, Debug)]
struct Pending {
    id: u32,
    live: bool,
    captured: bool,
    hardware: bool,
    receive: NtpTimestamp,
    client: IpAddr,
    estimate: NtpTimestamp,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            id: 0,
            live: false,
            captured: false,
            hardware: false,
            receive: NtpTimestamp::ZERO,
            client: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            estimate: NtpTimestamp::ZERO,
        }
    }
}

/// An answer waiting in the stamped batch: the table key it is to be
/// saved under, its client, and the transmit time read for it.
#[derive(Clone, Copy, Debug)]
pub struct StampMeta {
    pub receive: NtpTimestamp,
    pub client: IpAddr,
    pub estimate: NtpTimestamp,
}

impl Default for StampMeta {
    fn default() -> Self {
        Self {
            receive: NtpTimestamp::ZERO,
            client: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            estimate: NtpTimestamp::ZERO,
        }
    }
}

/// A kernel timestamp matched to its answer.
#[derive(Clone, Copy, Debug)]
pub struct Captured {
    pub receive: NtpTimestamp,
    pub client: IpAddr,
    pub estimate: NtpTimestamp,
    pub kernel: NtpTimestamp,
    pub hardware: bool,
}

/// What a drain found, for the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drained {
    pub captured: u64,
    pub hardware: u64,
    pub missed: u64,
}

/// One serving socket's transmit timestamping.
pub struct TxStamps {
    /// Reporting flags (and OPT_ID) that stay on the socket.
    base: TimestampingFlag,
    /// `base` plus the generation flags, for the stamped sendmmsg.
    stamping: TimestampingFlag,
    /// The socket has `stamping` on (else `base`).
    generating: bool,
    next_id: u32,
    /// Ids below this have been settled (captured or counted missed).
    settled: u32,
    ring: Box<[Pending]>,
    /// A stamped send failed part-way: restart the id count once the
    /// reports of what did go out are read.
    resync_after_drain: bool,
    /// Unstamped answers may have taken ids (timestamping could not be
    /// switched off): no report can be matched until the count restarts.
    ids_unknown: bool,
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; 64]; ERR_BATCH]>,
}

impl std::fmt::Debug for TxStamps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxStamps")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

fn err_headers() -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(
        ERR_BATCH,
        // SO_TIMESTAMPNS (on for receive timestamps) adds its own
        // timestamp to error-queue messages too.
        Some(cmsg_space!(
            TimeSpec,
            [TimeSpec; 3],
            libc::sock_extended_err,
            libc::sockaddr_in6
        )),
    )
}

fn to_ntp(ts: &TimeSpec) -> NtpTimestamp {
    NtpTimestamp::from_unix(ts.tv_sec(), u32::try_from(ts.tv_nsec()).unwrap_or(0))
}

fn is_zero(ts: &TimeSpec) -> bool {
    ts.tv_sec() == 0 && ts.tv_nsec() == 0
}

/// What one error-queue message says of a send: the kernel's packet id
/// (OPT_ID) and its transmit timestamps, software and hardware, each only
/// when non-zero. The server's answers and the client's requests read
/// their reports alike.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TxReport {
    pub id: Option<u32>,
    pub system: Option<TimeSpec>,
    pub hardware: Option<TimeSpec>,
}

impl TxReport {
    pub(crate) fn read(cmsgs: impl Iterator<Item = ControlMessageOwned>) -> Self {
        let mut report = Self::default();
        let nonzero = |ts: TimeSpec| (!is_zero(&ts)).then_some(ts);
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmTimestampsns(ts) => {
                    report.system = nonzero(ts.system);
                    report.hardware = nonzero(ts.hw_raw);
                }
                ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _)
                    if e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING =>
                {
                    report.id = Some(e.ee_data);
                }
                _ => {}
            }
        }
        report
    }
}

impl TxStamps {
    /// Turns timestamp reporting on for `fd`; `None` when the kernel
    /// refuses (then the server answers in basic mode only).
    pub fn new(fd: BorrowedFd<'_>) -> Option<Self> {
        let report = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID;
        let hardware = TimestampingFlag::SOF_TIMESTAMPING_RAW_HARDWARE
            | TimestampingFlag::from_bits_retain(libc::SOF_TIMESTAMPING_OPT_TX_SWHW);
        let generate = TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE;
        let generate_hw = TimestampingFlag::SOF_TIMESTAMPING_TX_HARDWARE;
        // OPT_RX_FILTER (Linux 6.12): no SCM_TIMESTAMPING on received
        // datagrams, which SO_TIMESTAMPNS already stamps; one cmsg less
        // per request on the basic path.
        let rx_filter = TimestampingFlag::from_bits_retain(libc::SOF_TIMESTAMPING_OPT_RX_FILTER);
        // With hardware if this kernel takes the flags, else software only.
        for (base, stamping) in [
            (
                report | hardware | rx_filter,
                report | hardware | rx_filter | generate | generate_hw,
            ),
            (
                report | hardware,
                report | hardware | generate | generate_hw,
            ),
            (report, report | generate),
        ] {
            if setsockopt(&fd, sockopt::Timestamping, &base).is_ok() {
                return Some(Self {
                    base,
                    stamping,
                    generating: false,
                    next_id: 0,
                    settled: 0,
                    ring: vec![Pending::default(); RING].into_boxed_slice(),
                    resync_after_drain: false,
                    ids_unknown: false,
                    headers: err_headers(),
                    bufs: Box::new([[0u8; 64]; ERR_BATCH]),
                });
            }
        }
        None
    }

    fn slot(&mut self, id: u32) -> Option<&mut Pending> {
        self.ring.get_mut(id as usize % RING)
    }

    /// Switches transmit timestamping off until the next [`Self::send`]:
    /// to be called before anything else is sent on the socket.
    pub fn before_unstamped(&mut self, fd: BorrowedFd<'_>) {
        if self.generating {
            // It does not fail on a socket it worked on before; if it
            // did, the flags would stay on and unstamped answers take
            // ids: match nothing until the count restarts at the next
            // drain, rather than pair an answer with another's timestamp.
            if setsockopt(&fd, sockopt::Timestamping, &self.base).is_ok() {
                self.generating = false;
            } else {
                self.ids_unknown = true;
            }
        }
    }

    /// Sends the stamped answers (`meta[i]` describes the i-th), with
    /// transmit timestamping on (it stays on until
    /// [`Self::before_unstamped`]).
    pub fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        batch: &mut TxBatch,
        meta: &[StampMeta],
        missed: &mut u64,
    ) -> Sent {
        let n = batch.len();
        if !self.generating {
            self.generating = setsockopt(&fd, sockopt::Timestamping, &self.stamping).is_ok();
        }
        let (sent, done) = batch.flush_counted(fd_raw(fd));
        if !self.generating {
            return sent;
        }
        // The first `done` went out, in order, with consecutive ids.
        for m in meta.iter().take(done) {
            // A slot still waiting from a full ring ago is missed.
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if let Some(slot) = self.slot(id) {
                if slot.live && !slot.captured {
                    *missed += 1;
                }
                *slot = Pending {
                    id,
                    live: true,
                    captured: false,
                    hardware: false,
                    receive: m.receive,
                    client: m.client,
                    estimate: m.estimate,
                };
            }
        }
        if done < n {
            // The kernel may or may not have used an id for the datagram
            // that failed: the next drain settles what is known, then
            // restarts the count.
            self.resync_after_drain = true;
        }
        sent
    }

    /// Reads every timestamp the error queue holds and hands each matched
    /// one to `on_capture`.
    pub fn drain(&mut self, fd: BorrowedFd<'_>, mut on_capture: impl FnMut(Captured)) -> Drained {
        let mut outcome = Drained::default();
        let mut newest: Option<u32> = None;
        loop {
            let mut found: [Option<(u32, TimeSpec, bool)>; ERR_BATCH] = [None; ERR_BATCH];
            let mut incomplete = false;
            let received = {
                let mut iovs: [[IoSliceMut<'_>; 1]; ERR_BATCH] =
                    self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
                match recvmmsg(
                    fd_raw(fd),
                    &mut self.headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    Ok(results) => {
                        let mut count = 0;
                        for (slot, msg) in found.iter_mut().zip(results) {
                            count += 1;
                            let report = msg.cmsgs().map(TxReport::read).unwrap_or_default();
                            let stamp = match (report.hardware, report.system) {
                                (Some(hw), _) => Some((hw, true)),
                                (None, Some(system)) => Some((system, false)),
                                (None, None) => None,
                            };
                            match (report.id, stamp) {
                                (Some(id), Some((ts, hw))) => *slot = Some((id, ts, hw)),
                                _ => incomplete = true,
                            }
                        }
                        count
                    }
                    Err(_) => 0,
                }
            };
            if incomplete {
                // A truncated or odd message shrank its header's control
                // length for good (see batch.rs): fresh headers.
                self.headers = err_headers();
            }
            let matchable = if self.ids_unknown { 0 } else { received };
            for (id, ts, hardware) in found.iter().take(matchable).flatten().copied() {
                newest =
                    Some(newest.map_or(id, |n| if id.wrapping_sub(n) < 1 << 31 { id } else { n }));
                let Some(slot) = self.slot(id) else {
                    continue;
                };
                if !slot.live || slot.id != id || (slot.captured && (slot.hardware || !hardware)) {
                    continue;
                }
                let kernel = to_ntp(&ts);
                let lag = (kernel - slot.estimate).as_seconds();
                let early = if hardware { -EARLY } else { -SOFTWARE_EARLY };
                if !(early..=WINDOW).contains(&lag) {
                    continue;
                }
                if !slot.captured {
                    outcome.captured += 1;
                }
                if hardware {
                    outcome.hardware += 1;
                }
                slot.captured = true;
                slot.hardware = hardware;
                on_capture(Captured {
                    receive: slot.receive,
                    client: slot.client,
                    estimate: slot.estimate,
                    kernel,
                    hardware,
                });
            }
            if received < ERR_BATCH {
                break;
            }
        }
        // Software timestamps come in order: every id before the newest
        // seen that has none by now will not get one.
        // (Only ids issued since the last restart of the count: a stale
        // report from before it says nothing about the new ones.)
        if let Some(newest) = newest
            && newest.wrapping_sub(self.settled) < self.next_id.wrapping_sub(self.settled)
        {
            while self.settled != newest.wrapping_add(1)
                && newest.wrapping_sub(self.settled) < 1 << 31
            {
                let id = self.settled;
                self.settled = self.settled.wrapping_add(1);
                if let Some(slot) = self.slot(id)
                    && slot.id == id
                    && slot.live
                    && !slot.captured
                {
                    slot.live = false;
                    outcome.missed += 1;
                }
            }
        }
        if self.resync_after_drain || self.ids_unknown {
            self.resync_after_drain = false;
            self.resync(fd, &mut outcome.missed);
        }
        outcome
    }

    /// Restarts the kernel's id count at zero; answers not yet reported
    /// are missed.
    fn resync(&mut self, fd: BorrowedFd<'_>, missed: &mut u64) {
        let without_id = self
            .base
            .difference(TimestampingFlag::SOF_TIMESTAMPING_OPT_ID);
        let off = setsockopt(&fd, sockopt::Timestamping, &without_id).is_ok();
        let restarted = off && setsockopt(&fd, sockopt::Timestamping, &self.base).is_ok();
        // If either call failed the flags on the socket are unknown: try
        // switching generation off again before the next unstamped send,
        // and restart again at the next drain.
        self.generating = !restarted;
        self.ids_unknown = !restarted;
        for slot in self.ring.iter_mut() {
            if slot.live && !slot.captured {
                *missed += 1;
            }
            *slot = Pending::default();
        }
        self.next_id = 0;
        self.settled = 0;
    }

    /// Answers sent stamped whose timestamp may still come.
    pub fn waiting(&self) -> bool {
        self.settled != self.next_id
    }
}

fn fd_raw(fd: BorrowedFd<'_>) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use nix::sys::socket::SockaddrStorage;

    use super::*;
    use crate::server::ntp::now_ntp;

    /// Queues five 8-byte answers to `peer`, keyed by `round`; their meta.
    fn queue_five(batch: &mut TxBatch, peer: SockaddrStorage, round: u64) -> Vec<StampMeta> {
        (0..5u64)
            .map(|i| {
                batch.next_buf()[..8].copy_from_slice(&i.to_be_bytes());
                batch.push(8, peer);
                StampMeta {
                    receive: NtpTimestamp::from_bits((round << 8) | (i << 1) | 1),
                    client: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    estimate: now_ntp(),
                }
            })
            .collect()
    }

    /// Stamped answers get their kernel timestamp back, matched by id;
    /// answers sent without stamping use no id.
    #[test]
    fn stamped_answers_are_matched_to_their_kernel_timestamps() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = SockaddrStorage::from(client.local_addr().unwrap());
        // As the server's sockets have it.
        setsockopt(&server, sockopt::ReceiveTimestampns, &true).unwrap();
        let Some(mut stamps) = TxStamps::new(server.as_fd()) else {
            eprintln!("no SO_TIMESTAMPING here");
            return;
        };
        let fd = server.as_fd();
        let mut plain = TxBatch::new();
        let mut batch = TxBatch::new();
        let mut missed = 0;
        for round in 0..3u64 {
            // Unstamped sends between stamped ones must not shift ids.
            stamps.before_unstamped(fd);
            plain.next_buf()[..4].copy_from_slice(b"none");
            plain.push(4, peer);
            plain.flush(fd_raw(fd));
            let meta = queue_five(&mut batch, peer, round);
            let sent = stamps.send(fd, &mut batch, &meta, &mut missed);
            assert_eq!(sent.sent, 5);
            let mut got = Vec::new();
            let drained = stamps.drain(fd, |c| got.push(c));
            assert_eq!(drained.captured, 5, "round {round}: {drained:?}");
            assert_eq!(missed + drained.missed, 0);
            let keys: Vec<_> = got.iter().map(|c| c.receive).collect();
            let want: Vec<_> = meta.iter().map(|m| m.receive).collect();
            assert_eq!(keys, want);
            for c in &got {
                let lag = (c.kernel - c.estimate).as_seconds();
                assert!((0.0..0.1).contains(&lag), "{lag}");
            }
        }
        // Stamped batches back to back: timestamping stays on between
        // them, and every answer is still matched.
        let mut want = Vec::new();
        for round in 3..5u64 {
            let meta = queue_five(&mut batch, peer, round);
            want.extend(meta.iter().map(|m| m.receive));
            let _ = stamps.send(fd, &mut batch, &meta, &mut missed);
        }
        let mut got = Vec::new();
        let drained = stamps.drain(fd, |c| got.push(c.receive));
        assert_eq!(got, want, "{drained:?}");
        assert_eq!(missed + drained.missed, 0);
    }

    /// A batch in which one answer fails: what went out before it is
    /// captured, the id count restarts, and the next batch matches again.
    #[test]
    fn a_failed_send_restarts_the_count() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        setsockopt(&server, sockopt::ReceiveTimestampns, &true).unwrap();
        let peer = SockaddrStorage::from(client.local_addr().unwrap());
        // An IPv6 destination on an IPv4 socket: refused before the
        // kernel gives the datagram an id.
        let bad = SockaddrStorage::from(std::net::SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            9,
        )));
        let Some(mut stamps) = TxStamps::new(server.as_fd()) else {
            return;
        };
        let fd = server.as_fd();
        let mut batch = TxBatch::new();
        let mut missed = 0;
        let key = |round: u64, i: u64| NtpTimestamp::from_bits((round << 8) | (i << 1) | 1);
        let meta = |round: u64| -> Vec<StampMeta> {
            (0..4)
                .map(|i| StampMeta {
                    receive: key(round, i),
                    client: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    estimate: now_ntp(),
                })
                .collect()
        };
        for (i, to) in [peer, bad, peer, peer].into_iter().enumerate() {
            batch.next_buf()[..1].copy_from_slice(&[i as u8]);
            batch.push(1, to);
        }
        let first = meta(0);
        let sent = stamps.send(fd, &mut batch, &first, &mut missed);
        assert_eq!((sent.sent, sent.failed), (3, 1));
        let mut got = Vec::new();
        let drained = stamps.drain(fd, |c| got.push(c.receive));
        assert_eq!(got, vec![key(0, 0)], "{drained:?}");
        assert!(!stamps.waiting());
        // The next batch is matched from id 0 again.
        for i in 0..4u8 {
            batch.next_buf()[..1].copy_from_slice(&[i]);
            batch.push(1, peer);
        }
        let second = meta(1);
        let _ = stamps.send(fd, &mut batch, &second, &mut missed);
        got.clear();
        let drained = stamps.drain(fd, |c| got.push(c.receive));
        assert_eq!(
            got,
            (0..4).map(|i| key(1, i)).collect::<Vec<_>>(),
            "{drained:?}"
        );
    }
}
