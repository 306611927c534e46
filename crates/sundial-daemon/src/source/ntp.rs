//! The NTP half of every source: a UDP socket connected to the server, with
//! the kernel's receive timestamp on every datagram and its transmit
//! timestamp on every request (SO_TIMESTAMPING, read back from the error
//! queue when the answer comes), and the poll loop that
//! drives one `Association` until it needs something the loop cannot give
//! (new keys, another server, or nothing: demobilized or cancelled).

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, TimestampingFlag, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use socket2::{Domain, Protocol, Socket, Type};
use sundial_proto::ntp::packet::LeapIndicator;
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::source::{
    Association, Discard, MAX_REQUEST_LEN, PollError, ResponseOutcome, Sample, UNANSWERED_LIMIT,
};
use sundial_sync::{Leap, Measurement};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{PollControl, SourceContext, SourceEvent};
use crate::clock::system_now;
use crate::server::ntp::txstamp::TxReport;

/// Largest answer read. Ours never exceed the request; a longer datagram is
/// truncated and then fails to authenticate, which is right for it.
const MAX_RESPONSE: usize = 8192;

/// A UDP socket connected to one NTP server, with kernel receive
/// timestamps: what every source and `sundial query` poll through.
#[derive(Debug)]
pub struct NtpSocket {
    socket: UdpSocket,
    server: SocketAddr,
    /// The kernel stamps every request we send (false: it refused).
    tx_stamping: bool,
    /// The kernel's id (SOF_TIMESTAMPING_OPT_ID) of the next request,
    /// and of the last one sent.
    next_id: AtomicU32,
    sent_id: AtomicU32,
    /// A request went out whose timestamp has not been read yet.
    awaiting: AtomicBool,
}

impl NtpSocket {
    /// Binds an ephemeral port of the server's family and connects, so the
    /// kernel drops datagrams from any other address before we see them.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = Socket::new(
            Domain::for_address(server),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_nonblocking(true)?;
        // The kernel stamps the answer as it arrives (t4), so our own
        // scheduling delay stays out of the measured delay.
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        // And each request as it leaves (t1): the time read before the
        // send is early by our own scheduling and the send syscall.
        let tx_flags = TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY
            | TimestampingFlag::SOF_TIMESTAMPING_OPT_ID;
        let tx_stamping = setsockopt(&socket, sockopt::Timestamping, &tx_flags).is_ok();
        socket.bind(&local.into())?;
        socket.connect(&server.into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
            server,
            tx_stamping,
            next_id: AtomicU32::new(0),
            sent_id: AtomicU32::new(0),
            awaiting: AtomicBool::new(false),
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        // Reports of earlier requests are of no use now.
        let _ = self.take_transmit_timestamp();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.sent_id.store(id, Ordering::Relaxed);
        let sent = self.socket.send(packet).await.map(|_| ());
        self.awaiting.store(sent.is_ok(), Ordering::Relaxed);
        sent
    }

    /// The kernel's transmit timestamp of the last request sent, once
    /// (`None`: not reported, or no timestamping here). Call it when the
    /// answer is in: by then the report is long queued.
    pub fn take_transmit_timestamp(&self) -> Option<NtpTimestamp> {
        if !self.tx_stamping {
            return None;
        }
        let awaiting = self.awaiting.swap(false, Ordering::Relaxed);
        let mut found = None;
        let mut buf = [0u8; 64];
        loop {
            let mut cmsg = cmsg_space!(
                TimeSpec,
                [TimeSpec; 3],
                libc::sock_extended_err,
                libc::sockaddr_in6
            );
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<SockaddrStorage>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            ) else {
                break;
            };
            let report = msg.cmsgs().map(TxReport::read).unwrap_or_default();
            if let Some(id) = report.id {
                // A report without a software stamp still moves the ids on;
                // its zero stamp is refused below.
                let stamp = report.system.map_or(NtpTimestamp::ZERO, |ts| {
                    NtpTimestamp::from_unix(ts.tv_sec(), u32::try_from(ts.tv_nsec()).unwrap_or(0))
                });
                found = Some((id, stamp));
            }
        }
        let (id, stamp) = found?;
        // Every request is stamped, so the kernel's ids count our sends;
        // a send that failed may or may not have used one: follow the
        // kernel from its newest report on.
        self.next_id.store(id.wrapping_add(1), Ordering::Relaxed);
        (awaiting && id == self.sent_id.load(Ordering::Relaxed) && !stamp.is_zero())
            .then_some(stamp)
    }

    /// One datagram and, when the kernel gave one, its receive timestamp.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<NtpTimestamp>)> {
        self.socket
            .async_io(Interest::READABLE, || {
                recv_with_timestamp(&self.socket, buf)
            })
            .await
    }
}

fn recv_with_timestamp(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<NtpTimestamp>)> {
    // SO_TIMESTAMPING (on for transmit timestamps) adds its own cmsg.
    let mut cmsg = cmsg_space!(TimeSpec, [TimeSpec; 3]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut timestamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                timestamp = Some(NtpTimestamp::from_unix(
                    ts.tv_sec(),
                    u32::try_from(ts.tv_nsec()).unwrap_or(0),
                ));
            }
        }
    }
    Ok((msg.bytes, timestamp))
}

/// Why the poll loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoopExit {
    Cancelled,
    /// NTSN, or the cookie jar ran dry.
    NeedKeyExchange,
    /// [`UNANSWERED_LIMIT`] polls in a row without a believed answer.
    Unreachable,
    /// DENY or RSTR from the server.
    Demobilized,
}

/// The interval for a poll exponent (log2 seconds, may be negative).
pub(crate) fn interval(exponent: i8) -> Duration {
    Duration::from_secs_f64(2f64.powi(i32::from(exponent)))
}

/// Converts the association's sample into the synchronizer's measurement,
/// stamped on the daemon's monotonic timeline.
pub(crate) fn measurement(sample: &Sample, time: f64) -> Measurement {
    Measurement {
        time,
        offset: sample.offset,
        delay: sample.delay,
        stratum: sample.stratum,
        leap: leap(sample.leap),
        root_delay: sample.root_delay,
        root_dispersion: sample.root_dispersion,
        reference_id: sample.reference_id,
        precision: sample.precision,
    }
}

/// The synchronizer's name for a leap indicator off the wire.
pub(crate) fn leap(indicator: LeapIndicator) -> Leap {
    match indicator {
        LeapIndicator::NoWarning => Leap::None,
        LeapIndicator::InsertSecond => Leap::InsertSecond,
        LeapIndicator::DeleteSecond => Leap::DeleteSecond,
        LeapIndicator::Unsynchronized => Leap::Unsynchronized,
    }
}

/// Polls `assoc` through `socket` until one of [`LoopExit`]. `on_sample`
/// runs after every measurement handed on (the NTS task confirms its key
/// exchange there).
pub(crate) async fn run_polls(
    ctx: &SourceContext,
    poll: &mut PollControl,
    assoc: &mut Association,
    socket: &NtpSocket,
    mut on_sample: impl FnMut(),
) -> LoopExit {
    // Not Send-safe ThreadRng; a ChaCha generator seeded from the OS once
    // per loop is as good for nonces and UIDs.
    let mut rng = StdRng::from_os_rng();
    let mut request = vec![0u8; MAX_REQUEST_LEN];
    let mut response = vec![0u8; MAX_RESPONSE];
    let mut last_sent: Option<Instant> = None;
    let mut next_poll = Instant::now();
    let mut last_stats = assoc.stats();
    assoc.set_interleaved(ctx.interleaved);
    loop {
        let exit = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => Some(LoopExit::Cancelled),
            changed = poll.changed() => {
                if changed {
                    // A shorter interval takes effect now, not after the
                    // long wait already scheduled.
                    let due = last_sent.map_or(next_poll, |t| t + interval(poll.exponent()));
                    next_poll = next_poll.min(due);
                } else {
                    // The synchronizer dropped the sender: keep the current
                    // interval, and stop watching.
                    poll.stop_watching();
                }
                None
            }
            () = tokio::time::sleep_until(next_poll) => {
                let exit = send_poll(ctx, poll, assoc, socket, &mut rng, &mut request).await;
                let now = Instant::now();
                last_sent = Some(now);
                next_poll = now + interval(poll.exponent());
                exit
            }
            received = socket.recv(&mut response) => match received {
                Ok((len, kernel_ts)) => {
                    if let Some(t1) = socket.take_transmit_timestamp()
                        && assoc.set_transmit_timestamp(t1)
                    {
                        ctx.stats.kernel_tx_timestamps.fetch_add(1, Ordering::Relaxed);
                    }
                    let t4 = kernel_ts.unwrap_or_else(system_now);
                    let packet = response.get(..len).unwrap_or_default();
                    handle(ctx, poll, assoc, packet, t4, &mut on_sample).await
                }
                Err(e) => {
                    // ICMP errors (port unreachable) surface here: the
                    // silence they mean is counted at the next poll.
                    tracing::debug!(error = %e, "NTP receive error");
                    None
                }
            },
        };
        let stats = assoc.stats();
        ctx.stats.add(&last_stats, &stats);
        last_stats = stats;
        ctx.stats.observe(assoc);
        if let Some(exit) = exit {
            return exit;
        }
    }
}

async fn send_poll(
    ctx: &SourceContext,
    poll: &PollControl,
    assoc: &mut Association,
    socket: &NtpSocket,
    rng: &mut StdRng,
    buf: &mut [u8],
) -> Option<LoopExit> {
    if assoc.unanswered() >= UNANSWERED_LIMIT {
        return Some(LoopExit::Unreachable);
    }
    assoc.set_poll_exponent(poll.exponent());
    // t1 is read here, as late as the association allows.
    let len = match assoc.poll(system_now(), rng, buf) {
        Ok(len) => len,
        Err(PollError::NeedKeyExchange) => return Some(LoopExit::NeedKeyExchange),
        Err(e) => {
            // Cannot happen with a MAX_REQUEST_LEN buffer; never spin on it.
            tracing::error!(error = %e, "cannot build an NTP request");
            return Some(LoopExit::Unreachable);
        }
    };
    let packet = buf.get(..len).unwrap_or_default();
    if let Err(e) = socket.send(packet).await {
        // Network down or no route: the unanswered count takes care of it.
        tracing::debug!(server = %socket.server(), error = %e, "NTP send failed");
        ctx.stats.send_errors.fetch_add(1, Ordering::Relaxed);
    }
    None
}

async fn handle(
    ctx: &SourceContext,
    poll: &mut PollControl,
    assoc: &mut Association,
    packet: &[u8],
    t4: NtpTimestamp,
    on_sample: &mut impl FnMut(),
) -> Option<LoopExit> {
    match assoc.handle_response(packet, t4) {
        ResponseOutcome::Sample(sample) => {
            let time = ctx.origin.elapsed().as_secs_f64();
            tracing::trace!(
                offset = sample.offset,
                delay = sample.delay,
                nts = sample.authenticated,
                "sample"
            );
            on_sample();
            ctx.reach.reachable();
            let event = SourceEvent::Measurement(ctx.id, measurement(&sample, time));
            if ctx.events.send(event).await.is_err() {
                // Nobody listens any more: the daemon is shutting down.
                return Some(LoopExit::Cancelled);
            }
            None
        }
        ResponseOutcome::Discarded(reason) => {
            // Stray, late, forged or replayed: a remote peer's doing.
            if !matches!(reason, Discard::NoRequest | Discard::WrongOrigin) {
                tracing::debug!(%reason, "NTP response discarded");
            }
            None
        }
        ResponseOutcome::Unusable(reason) => {
            tracing::debug!(%reason, "server answered without usable time");
            ctx.reach.reachable();
            None
        }
        ResponseOutcome::RateLimited => {
            ctx.stats.rate_kisses.fetch_add(1, Ordering::Relaxed);
            poll.rate_limited();
            tracing::debug!(exponent = poll.exponent(), "RATE kiss: polling less often");
            None
        }
        ResponseOutcome::Demobilize => Some(LoopExit::Demobilized),
        ResponseOutcome::NeedKeyExchange => {
            ctx.stats.nts_naks.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("NTSN: the server no longer accepts our cookies");
            Some(LoopExit::NeedKeyExchange)
        }
    }
}
