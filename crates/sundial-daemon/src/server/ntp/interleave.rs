//! The interleaved-mode table (`sundial_proto::interleave`) shared by a
//! listener's serving threads: a client that changes its source port
//! between requests (as RFC 9109 recommends) may reach another socket of
//! the SO_REUSEPORT group, so every thread must see every entry. The
//! table is split in shards, each behind its own lock, chosen by a hash of
//! the receive timestamp (which the client cannot choose); only requests
//! that ask for interleaving take a lock.

use std::net::IpAddr;
use std::sync::Mutex;

use sundial_proto::interleave::{InterleaveTable, PreviousTransmit, Saved, key_hash};
use sundial_proto::ntp::timestamp::NtpTimestamp;

/// Entries per listener: the interleaved exchanges remembered at once.
/// 32 bytes each (512 KiB), allocated at start.
pub const ENTRIES: usize = 16_384;

/// Locks per table.
const SHARDS: usize = 16;

/// A listener's table.
#[derive(Debug)]
pub struct SharedTable {
    shards: Box<[Mutex<InterleaveTable>]>,
}

impl Default for SharedTable {
    fn default() -> Self {
        Self::with_capacity(ENTRIES)
    }
}

impl SharedTable {
    pub fn with_capacity(entries: usize) -> Self {
        let per_shard = entries.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(InterleaveTable::with_capacity(per_shard)))
                .collect(),
        }
    }

    fn shard(&self, receive: NtpTimestamp) -> Option<&Mutex<InterleaveTable>> {
        // Bits below those the table's buckets use.
        let index = (key_hash(receive) >> 24) as usize % self.shards.len().max(1);
        self.shards.get(index)
    }

    pub fn save(&self, receive: NtpTimestamp, client: IpAddr) -> Saved {
        match self.shard(receive).and_then(|s| s.lock().ok()) {
            Some(mut table) => table.save(receive, client),
            None => Saved::Ignored,
        }
    }

    pub fn insert(&self, receive: NtpTimestamp, client: IpAddr, transmit: NtpTimestamp) -> Saved {
        match self.shard(receive).and_then(|s| s.lock().ok()) {
            Some(mut table) => table.insert(receive, client, transmit),
            None => Saved::Ignored,
        }
    }

    pub fn set_transmit(&self, receive: NtpTimestamp, transmit: NtpTimestamp) -> bool {
        self.shard(receive)
            .and_then(|s| s.lock().ok())
            .is_some_and(|mut table| table.set_transmit(receive, transmit))
    }

    /// The table as `client` may use it.
    pub fn client(&self, client: IpAddr) -> View<'_> {
        View {
            table: self,
            client,
        }
    }

    /// Entries the table holds at most.
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|t| t.capacity()))
            .sum()
    }
}

/// One client's view, for `sundial_proto::server::handle_request`.
#[derive(Debug)]
pub struct View<'a> {
    table: &'a SharedTable,
    client: IpAddr,
}

impl PreviousTransmit for View<'_> {
    fn take(&mut self, origin: NtpTimestamp) -> Option<NtpTimestamp> {
        let mut table = self.table.shard(origin)?.lock().ok()?;
        table.take(origin, self.client)
    }
}
