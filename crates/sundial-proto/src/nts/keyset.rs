//! The server's master keys: one current key that seals cookies, plus the
//! last few keys, which still open the cookies clients hold. Rotation runs
//! on a schedule of unix seconds the caller passes in, so a cookie lives at
//! most `(stale_key_count + 1) * rotation_interval_secs`.
//!
//! The set encodes to bytes for the key file, which survives restarts and is
//! what a fleet of servers shares. Storage format, version 1 (integers BE):
//!
//! ```text
//! magic "SUNDIALK" (8) | version u16 = 1 | flags u16 | key count u16
//! count x { key id u32 | created_at u64 | algorithm u16 = 15 | key (32) }
//! CRC-32 (IEEE) u32 over everything before it
//! ```
//!
//! The first key is the current one, then the stale keys, newest first.
//! With flag `0x0001` (`FLAG_NEXT_KEY`) the last record is the pre-published
//! next key: it seals nothing yet but already opens cookies, so NTP servers
//! that read a copy of the file (fleet mode) accept the cookies the KE
//! server seals right after its next rotation even when their copy lags by
//! up to one rotation interval. A reader refuses any flag it does not know
//! rather than misread what follows. The per-key algorithm lets a later
//! version change the master key algorithm without a new layout.

use std::collections::VecDeque;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::nts::aead::NtsKeys;
use crate::nts::cookie::{
    CookieError, MASTER_KEY_ALGORITHM, MASTER_KEY_LEN, MasterKey, cookie_key_id,
};
use crate::reader::Reader;

/// The most stale keys a set keeps, whatever the configuration says; bounds
/// memory, the work of one rotation and the size of a key file we accept.
pub const MAX_STALE_KEYS: usize = 256;
/// The most keys (current plus stale) a key file may hold.
pub const MAX_KEYS: usize = MAX_STALE_KEYS + 1;

const MAGIC: [u8; 8] = *b"SUNDIALK";
const VERSION: u16 = 1;
const RECORD_LEN: usize = 4 + 8 + 2 + MASTER_KEY_LEN;
const HEADER_LEN: usize = MAGIC.len() + 2 + 2 + 2;
const CRC_LEN: usize = 4;
/// Flag: the last key record is the pre-published next key.
pub const FLAG_NEXT_KEY: u16 = 0x0001;

/// How often keys rotate and how many old keys stay able to open cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySetConfig {
    /// Seconds between rotations; 0 is treated as 1.
    pub rotation_interval_secs: u64,
    /// Old keys kept after rotation; capped at [`MAX_STALE_KEYS`].
    pub stale_key_count: usize,
}

impl Default for KeySetConfig {
    /// ntpd-rs's defaults: rotate daily, keep a week of old keys.
    fn default() -> Self {
        Self {
            rotation_interval_secs: 86_400,
            stale_key_count: 7,
        }
    }
}

impl KeySetConfig {
    fn interval(&self) -> u64 {
        self.rotation_interval_secs.max(1)
    }

    fn stale_limit(&self) -> usize {
        self.stale_key_count.min(MAX_STALE_KEYS)
    }
}

/// Why a stored key set could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    #[error("not a sundial key file (bad magic)")]
    BadMagic,
    #[error("key file version {0} is not supported")]
    UnsupportedVersion(u16),
    #[error("key file uses flags {0:#06x} this version does not know")]
    UnsupportedFlags(u16),
    #[error("key file is truncated")]
    Truncated,
    #[error("key file checksum mismatch")]
    Checksum,
    #[error("key file is corrupt: {0}")]
    Corrupt(&'static str),
}

/// The current master key plus up to `stale_key_count` older ones, and the
/// pre-published key that becomes current at the next rotation.
#[derive(Debug, Clone)]
pub struct KeySet {
    config: KeySetConfig,
    current: MasterKey,
    /// Newest first; never longer than `config.stale_limit()`.
    stale: VecDeque<MasterKey>,
    /// Created at `next_rotation()`; opens cookies, seals none yet.
    next: Option<MasterKey>,
}

impl KeySet {
    /// A new set with one fresh key created at `now` (unix seconds).
    pub fn generate(config: KeySetConfig, now: u64, rng: &mut impl CryptoRng) -> Self {
        let id = rng.next_u32();
        let mut set = Self {
            config,
            current: MasterKey::generate(id, now, rng),
            stale: VecDeque::new(),
            next: None,
        };
        set.publish_next(rng);
        set
    }

    /// Generates the key that the next rotation will make current.
    fn publish_next(&mut self, rng: &mut impl CryptoRng) {
        self.next = None;
        let id = self.fresh_id(rng);
        self.next = Some(MasterKey::generate(id, self.next_rotation(), rng));
    }

    /// Rotates once per whole interval elapsed since the current key was
    /// created; returns whether anything changed. New keys are stamped on the
    /// schedule (`created_at + k * interval`), not at `now`, so servers
    /// sharing a key file agree on when the next rotation is due. After a long
    /// downtime old keys age out as if the server had kept rotating, so a
    /// cookie's lifetime stays bounded by time; only the keys that can survive
    /// are generated. A clock that went backwards rotates nothing.
    pub fn rotate_if_due(&mut self, now: u64, rng: &mut impl CryptoRng) -> bool {
        let interval = self.config.interval();
        let due = now.saturating_sub(self.current.created_at()) / interval;
        if due == 0 {
            return false;
        }
        let keep = self.config.stale_limit();
        let survivors = u64::try_from(keep.saturating_add(1)).unwrap_or(u64::MAX);
        let make = due.min(survivors);
        let base = self.current.created_at();
        for k in (due - make + 1)..=due {
            let created_at = base.saturating_add(k.saturating_mul(interval));
            // The first scheduled rotation promotes the pre-published key,
            // which copies of the key file already know.
            let new = match self.next.take() {
                Some(next) if k == 1 && next.created_at() == created_at => next,
                _ => {
                    let id = self.fresh_id(rng);
                    MasterKey::generate(id, created_at, rng)
                }
            };
            let old = std::mem::replace(&mut self.current, new);
            self.stale.push_front(old);
            self.stale.truncate(keep);
        }
        self.publish_next(rng);
        true
    }

    /// A random id not used by any key in the set. Ids only need to be unique
    /// within the set (they pick the key for a cookie); randomness keeps a
    /// restarted server without its key file from reusing a recent id.
    fn fresh_id(&self, rng: &mut impl CryptoRng) -> u32 {
        for _ in 0..16 {
            let id = rng.next_u32();
            if self.find(id).is_none() {
                return id;
            }
        }
        // Only a broken generator gets here; step to a free id, which exists
        // within MAX_KEYS steps because the set is never larger than that.
        let mut id = rng.next_u32();
        while self.find(id).is_some() {
            id = id.wrapping_add(1);
        }
        id
    }

    /// Unix seconds at which `rotate_if_due` will next rotate.
    pub fn next_rotation(&self) -> u64 {
        self.current
            .created_at()
            .saturating_add(self.config.interval())
    }

    /// The id of the key that seals new cookies.
    pub fn current_id(&self) -> u32 {
        self.current.id()
    }

    /// The key that seals new cookies (id and creation time, for status).
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Ids of every key that opens cookies: current first, then stale keys
    /// newest first.
    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys().map(MasterKey::id)
    }

    /// The id of the pre-published key the next rotation makes current.
    pub fn next_id(&self) -> Option<u32> {
        self.next.as_ref().map(MasterKey::id)
    }

    /// Number of keys that seal or have sealed cookies (current and stale;
    /// the pre-published next key is not counted).
    pub fn len(&self) -> usize {
        self.stale.len().saturating_add(1)
    }

    /// Always false: a set has a current key. Here for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn config(&self) -> KeySetConfig {
        self.config
    }

    /// Applies a new configuration; a lower stale count drops the oldest keys
    /// at once, a new interval moves `next_rotation`.
    pub fn set_config(&mut self, config: KeySetConfig) {
        self.config = config;
        self.stale.truncate(config.stale_limit());
    }

    fn keys(&self) -> impl Iterator<Item = &MasterKey> + '_ {
        std::iter::once(&self.current).chain(self.stale.iter())
    }

    /// Every key that opens cookies: current, stale and the next key.
    fn find(&self, id: u32) -> Option<&MasterKey> {
        self.keys().chain(self.next.iter()).find(|k| k.id() == id)
    }

    /// Seals `keys` into a cookie under the current key; see
    /// [`MasterKey::seal_cookie`].
    pub fn seal_cookie(
        &self,
        keys: &NtsKeys,
        rng: &mut impl CryptoRng,
        out: &mut [u8],
    ) -> Result<usize, CookieError> {
        self.current.seal_cookie(keys, rng, out)
    }

    /// Opens a cookie sealed by any key in the set. `UnknownKey` means the
    /// key was rotated out (or never ours): the client needs a new KE.
    pub fn open_cookie(&self, cookie: &[u8]) -> Result<NtsKeys, CookieError> {
        let id = cookie_key_id(cookie).ok_or(CookieError::Malformed("shorter than a key id"))?;
        self.find(id)
            .ok_or(CookieError::UnknownKey(id))?
            .open_cookie(cookie)
    }

    /// The storage encoding (see the module docs). It holds the keys, so it
    /// is wiped when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let count = self.len() + usize::from(self.next.is_some());
        // Exact capacity: a reallocation would leave a copy of the keys behind.
        let mut out = Zeroizing::new(Vec::with_capacity(
            HEADER_LEN + count * RECORD_LEN + CRC_LEN,
        ));
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        let flags = if self.next.is_some() {
            FLAG_NEXT_KEY
        } else {
            0
        };
        out.extend_from_slice(&flags.to_be_bytes());
        // At most MAX_KEYS + 1, which fits in u16 by the invariant on `stale`.
        let count = u16::try_from(count).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for key in self.keys().chain(self.next.iter()).take(usize::from(count)) {
            out.extend_from_slice(&key.id().to_be_bytes());
            out.extend_from_slice(&key.created_at().to_be_bytes());
            out.extend_from_slice(&MASTER_KEY_ALGORITHM.to_u16().to_be_bytes());
            out.extend_from_slice(key.key_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Loads a set written by [`KeySet::encode`]. Everything is checked here,
    /// so a loaded set cannot fail later. More stale keys than `config`
    /// allows are dropped, oldest first; call `rotate_if_due` next.
    pub fn decode(bytes: &[u8], config: KeySetConfig) -> Result<Self, KeySetError> {
        let mut r = Reader::new(bytes);
        let Some(magic) = r.take_array::<8>() else {
            return Err(if MAGIC.starts_with(bytes) {
                KeySetError::Truncated
            } else {
                KeySetError::BadMagic
            });
        };
        if magic != MAGIC {
            return Err(KeySetError::BadMagic);
        }
        let version = r.u16().ok_or(KeySetError::Truncated)?;
        if version != VERSION {
            return Err(KeySetError::UnsupportedVersion(version));
        }
        let flags = r.u16().ok_or(KeySetError::Truncated)?;
        if flags & !FLAG_NEXT_KEY != 0 {
            return Err(KeySetError::UnsupportedFlags(flags));
        }
        let has_next = flags & FLAG_NEXT_KEY != 0;
        let count = usize::from(r.u16().ok_or(KeySetError::Truncated)?);
        if count < 1 + usize::from(has_next) {
            return Err(KeySetError::Corrupt("no keys"));
        }
        if count > MAX_KEYS + usize::from(has_next) {
            return Err(KeySetError::Corrupt("too many keys"));
        }

        // Structure first, so a short file says "truncated"; then the
        // checksum; then what the fields mean.
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.u32().ok_or(KeySetError::Truncated)?;
            let created_at = r.u64().ok_or(KeySetError::Truncated)?;
            let algorithm = r.u16().ok_or(KeySetError::Truncated)?;
            let key = r.take(MASTER_KEY_LEN).ok_or(KeySetError::Truncated)?;
            records.push((id, created_at, algorithm, key));
        }
        let crc = r.u32().ok_or(KeySetError::Truncated)?;
        if !r.is_empty() {
            return Err(KeySetError::Corrupt("trailing bytes"));
        }
        let (covered, _) = bytes
            .split_last_chunk::<CRC_LEN>()
            .ok_or(KeySetError::Truncated)?;
        if crc32fast::hash(covered) != crc {
            return Err(KeySetError::Checksum);
        }

        let mut keys = Vec::with_capacity(count);
        for (i, &(id, created_at, algorithm, key)) in records.iter().enumerate() {
            if algorithm != MASTER_KEY_ALGORITHM.to_u16() {
                return Err(KeySetError::Corrupt("unsupported master key algorithm"));
            }
            if records.iter().take(i).any(|&(other, ..)| other == id) {
                return Err(KeySetError::Corrupt("duplicate key id"));
            }
            let key = MasterKey::from_bytes(id, created_at, key)
                .map_err(|_| KeySetError::Corrupt("master key length"))?;
            keys.push(key);
        }
        let next = if has_next { keys.pop() } else { None };
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or(KeySetError::Corrupt("no keys"))?;
        let mut stale: VecDeque<MasterKey> = keys.collect();
        stale.truncate(config.stale_limit());
        Ok(Self {
            config,
            current,
            stale,
            next,
        })
    }
}
