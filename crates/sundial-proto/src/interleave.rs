//! RFC 9769 interleaved client/server mode, the server's memory of its
//! previous answers, sans-IO.
//!
//! A server's transmit timestamp is read before its answer leaves, so it is
//! always early. In interleaved mode the server sends, in its next answer to
//! the same client, the kernel's real transmit time of the previous one.
//! The client names that previous answer by echoing its receive timestamp
//! as the origin of its next request; so the table is keyed, as RFC 9769
//! section 2 and chrony key it, by the receive timestamp we sent, and holds
//! the transmit timestamp of the same answer once the kernel reported it.
//!
//! Every receive timestamp a server with this table sends has its lowest
//! bit set and every transmit timestamp has it clear (1/4 ns, far below any
//! clock's precision), as chrony does: a request whose origin has the bit
//! clear (zero, or one of our transmit timestamps) cannot be interleaved,
//! and costs no lookup. The two can then never be equal either, which the
//! RFC requires so that a client tells the two kinds of answer apart.
//!
//! The table is a fixed array of buckets of [`WAYS`] slots, allocated once;
//! a new entry takes an empty slot or evicts the oldest of its bucket (the
//! one with the earliest receive timestamp), so memory is the same
//! whatever the load. A bucket is one aligned 64-byte cache line: on a
//! busy server the table is cold by the time a client asks again, and a
//! lookup or a save then costs one cache miss, not three. Each entry is
//! bound to the client address it was saved for (RFC 9769 allows
//! separating by address, never by port): a request from another address
//! cannot read it, consume it or disable it, so the table is no probe into
//! other clients' exchanges. It is used once: an interleaved answer
//! removes its entry, and a replayed request then gets a basic answer. An
//! interleaved answer is exactly as long as the basic one would have been:
//! nothing here can amplify.

use std::net::IpAddr;

use crate::ntp::timestamp::NtpTimestamp;

/// Slots per bucket: two 32-byte slots fill a cache line.
pub const WAYS: usize = 2;

/// `Slot::transmit` of an entry whose receive timestamp was sent twice
/// (a marked transmit timestamp is even and at least 2, so never this).
const DISABLED: u64 = 1;

/// The lowest bit of a server timestamp: set in receive timestamps, clear
/// in transmit timestamps.
const RECEIVE_FLAG: u64 = 1;

/// `ts` as sent in a receive field: lowest bit set.
#[must_use]
pub const fn mark_receive(ts: NtpTimestamp) -> NtpTimestamp {
    NtpTimestamp::from_bits(ts.to_bits() | RECEIVE_FLAG)
}

/// `ts` as sent in a transmit field: lowest bit clear.
#[must_use]
pub const fn mark_transmit(ts: NtpTimestamp) -> NtpTimestamp {
    NtpTimestamp::from_bits(ts.to_bits() & !RECEIVE_FLAG)
}

/// Could `origin` be one of our receive timestamps (so the request may be
/// interleaved)?
#[must_use]
pub const fn is_marked_receive(origin: NtpTimestamp) -> bool {
    origin.to_bits() & RECEIVE_FLAG != 0
}

/// Spreads a receive timestamp over buckets (and the daemon's shards): the
/// server's own kernel timestamps, never chosen by a client.
#[must_use]
pub fn key_hash(receive: NtpTimestamp) -> u64 {
    receive.to_bits().wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The transmit timestamp saved for a client's previous answer, if any;
/// the server's answer logic asks through this, so that the daemon can
/// keep the table behind locks of its own.
pub trait PreviousTransmit {
    /// The kernel transmit timestamp of the answer whose receive
    /// timestamp was `origin`, for this request's client; the entry is
    /// removed (each exchange is answered interleaved at most once).
    fn take(&mut self, origin: NtpTimestamp) -> Option<NtpTimestamp>;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    /// The receive timestamp sent (marked, so never zero); 0: empty.
    receive: u64,
    /// The kernel's transmit timestamp of that answer (marked, at least
    /// 2); 0: not reported (yet); [`DISABLED`]: two answers were sent with
    /// this receive timestamp, so neither may be answered interleaved
    /// (which transmit time would it be?).
    transmit: u64,
    /// The client's address, IPv4 as its mapped IPv6 form (two words, so
    /// that a slot is 32 bytes, not 48 with a u128's alignment).
    client: [u64; 2],
}

/// One cache line of slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
struct Bucket([Slot; WAYS]);

/// What [`InterleaveTable::save`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// In an empty slot.
    New,
    /// In the place of the oldest entry of its bucket.
    Evicted,
    /// The receive timestamp was already in the table: that entry is now
    /// unusable and nothing was saved.
    Collision,
    /// A zero receive timestamp: nothing to key on.
    Ignored,
}

/// The server's fixed-size table of (receive, transmit) pairs.
#[derive(Clone)]
pub struct InterleaveTable {
    buckets: Box<[Bucket]>,
    /// Buckets - 1 (a power of two).
    mask: u64,
    bucket_bits: u32,
}

impl std::fmt::Debug for InterleaveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterleaveTable")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

fn client_key(ip: IpAddr) -> [u64; 2] {
    let bits = match ip_or(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(bits >> 64) as u64, bits as u64]
}

impl InterleaveTable {
    /// A table of at least `entries` slots (rounded up to a power of two
    /// buckets of [`WAYS`]), allocated now and never again.
    #[must_use]
    pub fn with_capacity(entries: usize) -> Self {
        let buckets = entries.div_ceil(WAYS).max(1).next_power_of_two();
        Self {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            mask: buckets as u64 - 1,
            bucket_bits: buckets.trailing_zeros(),
        }
    }

    /// Entries the table can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Entries held now (a scan: for tests and status, not per packet).
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| &b.0)
            .filter(|s| s.receive != 0)
            .count()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&mut self, receive: u64) -> &mut [Slot] {
        // The top bits of the product: a multiplicative hash mixes upward.
        let hash = key_hash(NtpTimestamp::from_bits(receive));
        let index = if self.bucket_bits == 0 {
            0
        } else {
            (hash >> (64 - self.bucket_bits)) & self.mask
        };
        match self.buckets.get_mut(index as usize) {
            Some(bucket) => &mut bucket.0,
            None => &mut [],
        }
    }

    /// Remembers an answer sent with receive timestamp `receive` (as sent,
    /// marked) to `client`; its transmit timestamp comes later, through
    /// [`Self::set_transmit`].
    pub fn save(&mut self, receive: NtpTimestamp, client: IpAddr) -> Saved {
        self.insert(receive, client, NtpTimestamp::ZERO)
    }

    /// Saves an answer together with its kernel transmit timestamp, in one
    /// visit to its bucket (what a server does once the kernel reported).
    pub fn insert(
        &mut self,
        receive: NtpTimestamp,
        client: IpAddr,
        transmit: NtpTimestamp,
    ) -> Saved {
        let transmit = if transmit.is_zero() {
            0
        } else {
            mark_transmit(transmit).to_bits().max(2)
        };
        let receive = receive.to_bits();
        if receive == 0 {
            return Saved::Ignored;
        }
        let bucket = self.bucket(receive);
        if let Some(existing) = bucket.iter_mut().find(|s| s.receive == receive) {
            existing.transmit = DISABLED;
            return Saved::Collision;
        }
        let entry = Slot {
            receive,
            transmit,
            client: client_key(client),
        };
        if let Some(empty) = bucket.iter_mut().find(|s| s.receive == 0) {
            *empty = entry;
            return Saved::New;
        }
        // The oldest: the receive timestamp furthest behind this one, era
        // wrap-around included.
        let oldest = bucket
            .iter_mut()
            .max_by_key(|s| receive.wrapping_sub(s.receive));
        match oldest {
            Some(slot) => {
                *slot = entry;
                Saved::Evicted
            }
            None => Saved::Ignored,
        }
    }

    /// Records the kernel's transmit timestamp of the answer sent with
    /// `receive`. False when that entry is gone (evicted, or never saved).
    pub fn set_transmit(&mut self, receive: NtpTimestamp, transmit: NtpTimestamp) -> bool {
        let receive = receive.to_bits();
        if receive == 0 {
            return false;
        }
        let bucket = self.bucket(receive);
        match bucket.iter_mut().find(|s| s.receive == receive) {
            Some(slot) if slot.transmit != DISABLED => {
                // Never zero, which would read as "not reported".
                slot.transmit = mark_transmit(transmit).to_bits().max(2);
                true
            }
            _ => false,
        }
    }

    /// The transmit timestamp saved under `origin` for `client`, removing
    /// the entry. An entry of another client is left as it is.
    pub fn take(&mut self, origin: NtpTimestamp, client: IpAddr) -> Option<NtpTimestamp> {
        let origin = origin.to_bits();
        if origin == 0 {
            return None;
        }
        let client = client_key(client);
        let bucket = self.bucket(origin);
        let slot = bucket
            .iter_mut()
            .find(|s| s.receive == origin && s.client == client)?;
        let found = *slot;
        *slot = Slot::default();
        if found.transmit == DISABLED || found.transmit == 0 {
            return None;
        }
        Some(NtpTimestamp::from_bits(found.transmit))
    }

    /// This table seen from one client, for [`crate::server::handle_request`].
    pub fn client(&mut self, ip: IpAddr) -> ClientView<'_> {
        ClientView { table: self, ip }
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 client it maps (a dual-stack
/// socket reports IPv4 clients so).
fn ip_or(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The table as one client may use it.
#[derive(Debug)]
pub struct ClientView<'a> {
    table: &'a mut InterleaveTable,
    ip: IpAddr,
}

impl PreviousTransmit for ClientView<'_> {
    fn take(&mut self, origin: NtpTimestamp) -> Option<NtpTimestamp> {
        self.table.take(origin, self.ip)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn ts(bits: u64) -> NtpTimestamp {
        mark_receive(NtpTimestamp::from_bits(bits))
    }

    #[test]
    fn marks_keep_receive_and_transmit_apart() {
        let t = NtpTimestamp::from_bits(0x1234_5678_9abc_def0);
        assert!(is_marked_receive(mark_receive(t)));
        assert!(!is_marked_receive(mark_transmit(t)));
        assert_ne!(mark_receive(t), mark_transmit(t));
        assert!(!is_marked_receive(NtpTimestamp::ZERO));
    }

    #[test]
    fn an_entry_is_read_once_by_its_own_client_only() {
        let mut table = InterleaveTable::with_capacity(16);
        assert_eq!(table.save(ts(100 << 32), A), Saved::New);
        assert!(table.set_transmit(ts(100 << 32), NtpTimestamp::from_bits(101 << 32)));
        // Another address: nothing, and the entry stays.
        assert_eq!(table.take(ts(100 << 32), B), None);
        let got = table.take(ts(100 << 32), A);
        assert_eq!(got, Some(NtpTimestamp::from_bits(101 << 32)));
        assert_eq!(table.take(ts(100 << 32), A), None);
        assert!(table.is_empty());
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_client() {
        let mut table = InterleaveTable::with_capacity(16);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        let _ = table.save(ts(7 << 32), mapped);
        table.set_transmit(ts(7 << 32), NtpTimestamp::from_bits(8 << 32));
        assert!(table.take(ts(7 << 32), A).is_some());
        let _ = table.save(ts(9 << 32), IpAddr::V6(Ipv6Addr::LOCALHOST));
        table.set_transmit(ts(9 << 32), NtpTimestamp::from_bits(10 << 32));
        assert!(table.take(ts(9 << 32), A).is_none());
    }

    #[test]
    fn without_a_kernel_timestamp_there_is_nothing_to_give() {
        let mut table = InterleaveTable::with_capacity(16);
        let _ = table.save(ts(5 << 32), A);
        assert_eq!(table.take(ts(5 << 32), A), None);
        // ... and the entry is spent.
        assert!(!table.set_transmit(ts(5 << 32), NtpTimestamp::from_bits(6 << 32)));
    }

    #[test]
    fn insert_is_save_and_set_transmit_at_once() {
        let mut table = InterleaveTable::with_capacity(16);
        assert_eq!(
            table.insert(ts(11 << 32), A, NtpTimestamp::from_bits(12 << 32)),
            Saved::New
        );
        assert_eq!(
            table.take(ts(11 << 32), A),
            Some(NtpTimestamp::from_bits(12 << 32))
        );
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn a_receive_timestamp_sent_twice_is_never_interleaved() {
        let mut table = InterleaveTable::with_capacity(16);
        assert_eq!(table.save(ts(3 << 32), A), Saved::New);
        assert_eq!(table.save(ts(3 << 32), A), Saved::Collision);
        assert!(!table.set_transmit(ts(3 << 32), NtpTimestamp::from_bits(4 << 32)));
        assert_eq!(table.take(ts(3 << 32), A), None);
    }

    #[test]
    fn memory_is_fixed_and_the_oldest_goes_first() {
        let mut table = InterleaveTable::with_capacity(64);
        let capacity = table.capacity();
        assert_eq!(capacity, 64);
        for i in 1..=10_000u64 {
            let _ = table.save(ts(i << 20), B);
        }
        assert_eq!(table.capacity(), capacity);
        assert!(table.len() <= capacity);
        // The newest survive, the first are long gone.
        let _ = table.save(ts(20_000 << 20), A);
        assert!(table.set_transmit(ts(20_000 << 20), NtpTimestamp::from_bits(1 << 40)));
        assert!(table.take(ts(20_000 << 20), A).is_some());
        assert!(!table.set_transmit(ts(1 << 20), NtpTimestamp::from_bits(1 << 40)));
    }
}
