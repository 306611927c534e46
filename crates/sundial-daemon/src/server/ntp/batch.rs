//! Batched datagram I/O for the NTP server: recvmmsg with the kernel's
//! receive timestamp (SCM_TIMESTAMPNS) per message, sendmmsg for the
//! answers. One syscall moves up to [`BATCH`] datagrams each way, which
//! is where most of a small request's cost went with recvmsg/sendto.
//!
//! nix's `MultiHeaders` gives each message its own control buffer, so no
//! unsafe code is needed here.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use nix::sys::time::TimeSpec;
use sundial_proto::ntp::timestamp::NtpTimestamp;

use super::MAX_PACKET;

/// Datagrams per syscall. Large enough that a loaded server makes few
/// syscalls, small enough that the buffers (2 x 32 x 2 KiB) stay in cache.
pub const BATCH: usize = 32;

/// One received datagram's metadata; its bytes are in [`RxBatch::packet`].
#[derive(Debug, Clone, Copy)]
pub struct RxMeta {
    pub len: usize,
    pub peer: Option<SockaddrStorage>,
    /// The kernel's receive timestamp; `None` only if the kernel sent none.
    pub timestamp: Option<NtpTimestamp>,
}

/// Receive buffers and headers, allocated once per serving thread.
pub struct RxBatch {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; MAX_PACKET]; BATCH]>,
    meta: [RxMeta; BATCH],
    len: usize,
}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

fn headers() -> MultiHeaders<SockaddrStorage> {
    // Room for SO_TIMESTAMPING's three timespecs too: with transmit
    // timestamp reporting on (txstamp.rs) the kernel adds them to
    // received datagrams beside SO_TIMESTAMPNS's one.
    MultiHeaders::preallocate(BATCH, Some(cmsg_space!(TimeSpec, [TimeSpec; 3])))
}

fn timespec_to_ntp(ts: &TimeSpec) -> NtpTimestamp {
    NtpTimestamp::from_unix(ts.tv_sec(), u32::try_from(ts.tv_nsec()).unwrap_or(0))
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    pub fn new() -> Self {
        Self {
            headers: headers(),
            bufs: Box::new([[0u8; MAX_PACKET]; BATCH]),
            meta: [RxMeta {
                len: 0,
                peer: None,
                timestamp: None,
            }; BATCH],
            len: 0,
        }
    }

    /// Receives at least one datagram (blocking up to the socket's receive
    /// timeout, then EAGAIN) and whatever else is queued, up to [`BATCH`].
    pub fn receive(&mut self, fd: RawFd) -> Result<usize, Errno> {
        self.len = 0;
        let mut missing_timestamp = false;
        {
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            let results = recvmmsg(
                fd,
                &mut self.headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )?;
            for (meta, msg) in self.meta.iter_mut().zip(results) {
                let mut timestamp = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmTimestampns(ts) = c {
                            timestamp = Some(timespec_to_ntp(&ts));
                        }
                    }
                }
                missing_timestamp |= timestamp.is_none();
                *meta = RxMeta {
                    len: msg.bytes,
                    peer: msg.address,
                    timestamp,
                };
                self.len += 1;
            }
        }
        if missing_timestamp {
            // The kernel shrinks each header's control length to what it
            // wrote, and nix does not restore it: after a message without
            // a timestamp that slot would never get one again. Fresh
            // headers restore every slot (rare: SO_TIMESTAMPNS stamps all).
            self.headers = headers();
        }
        Ok(self.len)
    }

    /// The `i`th datagram of the last batch.
    pub fn get(&self, i: usize) -> Option<(&RxMeta, &[u8])> {
        if i >= self.len {
            return None;
        }
        let meta = self.meta.get(i)?;
        let buf = self.bufs.get(i)?;
        Some((meta, buf.get(..meta.len).unwrap_or(buf)))
    }
}

/// Answers waiting to be sent together.
pub struct TxBatch {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; MAX_PACKET]; BATCH]>,
    lens: [usize; BATCH],
    addrs: [Option<SockaddrStorage>; BATCH],
    len: usize,
}

impl std::fmt::Debug for TxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What a flush did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub sent: u64,
    pub failed: u64,
}

impl Default for TxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl TxBatch {
    pub fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
            bufs: Box::new([[0u8; MAX_PACKET]; BATCH]),
            lens: [0; BATCH],
            addrs: [None; BATCH],
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len >= BATCH
    }

    /// Answers queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The `len` bytes of the last queued answer, to copy elsewhere.
    pub fn last(&self) -> &[u8] {
        let Some(i) = self.len.checked_sub(1) else {
            return &[];
        };
        let len = self.lens.get(i).copied().unwrap_or(0);
        self.bufs
            .get(i)
            .and_then(|b| b.get(..len))
            .unwrap_or_default()
    }

    /// Takes back the last queued answer (it goes in another batch).
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The buffer for the next answer (callers flush when full).
    pub fn next_buf(&mut self) -> &mut [u8] {
        match self.bufs.get_mut(self.len) {
            Some(buf) => buf,
            None => &mut [],
        }
    }

    /// Queues the `len` bytes just written to [`Self::next_buf`] for `peer`.
    pub fn push(&mut self, len: usize, peer: SockaddrStorage) {
        if let (Some(l), Some(a)) = (self.lens.get_mut(self.len), self.addrs.get_mut(self.len)) {
            *l = len;
            *a = Some(peer);
            self.len += 1;
        }
    }

    /// Sends everything queued, never blocking: an answer the kernel will
    /// not take now (full send buffer) is dropped, as a late answer would
    /// carry a stale transmit timestamp anyway.
    pub fn flush(&mut self, fd: RawFd) -> Sent {
        self.flush_counted(fd).0
    }

    /// [`Self::flush`], and how many answers from the first went out
    /// before the first that failed.
    pub fn flush_counted(&mut self, fd: RawFd) -> (Sent, usize) {
        let mut prefix = None;
        let mut outcome = Sent::default();
        let n = self.len;
        self.len = 0;
        let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
            let len = self.lens.get(i).copied().unwrap_or(0);
            let buf = self.bufs.get(i).map_or(&[][..], |b| &b[..]);
            [IoSlice::new(buf.get(..len).unwrap_or_default())]
        });
        let mut done = 0;
        while done < n {
            let result = sendmmsg(
                fd,
                &mut self.headers,
                slices.get(done..n).unwrap_or_default(),
                self.addrs.get(done..n).unwrap_or_default(),
                [],
                MsgFlags::MSG_DONTWAIT,
            );
            match result {
                Ok(results) => {
                    let k = results.count();
                    if k == 0 {
                        prefix.get_or_insert(done);
                        outcome.failed += (n - done) as u64;
                        break;
                    }
                    outcome.sent += k as u64;
                    done += k;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN | Errno::ENOBUFS) => {
                    prefix.get_or_insert(done);
                    outcome.failed += (n - done) as u64;
                    break;
                }
                // sendmmsg reports an error only for the first message it
                // could not send (an unreachable peer, say): skip that one.
                Err(e) => {
                    let peer = self
                        .addrs
                        .get(done)
                        .copied()
                        .flatten()
                        .as_ref()
                        .and_then(to_socket_addr);
                    tracing::debug!(?peer, error = %e, "NTP send error");
                    prefix.get_or_insert(done);
                    outcome.failed += 1;
                    done += 1;
                }
            }
        }
        (outcome, prefix.unwrap_or(n))
    }
}

pub fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}
