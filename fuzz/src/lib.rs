//! Shared pieces of the fuzz targets: a cursor that turns the fuzzer's bytes
//! into choices, and a fixed, seeded server (keyset, per-algorithm keys,
//! cookies and valid NTS requests) built once per process.
//!
//! Everything random is drawn from `ChaCha20Rng` with fixed seeds, so a
//! crashing input reproduces exactly.

use std::sync::OnceLock;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sundial_proto::ntp::packet::{NtpHeader, ReferenceId};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::client::{UID_LEN, new_uid, write_request};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::reader::Writer;
use sundial_proto::server::ServerState;

/// Unix seconds the fixture's keyset was created at.
pub const NOW: u64 = 1_800_000_000;
/// The receive and transmit timestamps the server is handed.
pub const RECV: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0000_0000);
pub const XMIT: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0001_0000);
/// Most placeholders a fixture request carries (a client refilling an
/// empty jar of eight asks for one cookie plus seven placeholders).
pub const MAX_PLACEHOLDERS: usize = 7;

/// A deterministic generator.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Reads choices from the fuzzer's bytes; once they run out every read
/// yields zero or an empty slice, so a target never has to bail out early.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_be_bytes(b)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes (fewer if the input runs out).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A slice whose length is the next byte (so at most 255).
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Splits `data` into up to four chunks at points the first bytes choose,
/// to feed a streaming decoder as TLS reads of arbitrary sizes would.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut input = Input::new(data);
    let n = usize::from(input.u8() % 4) + 1;
    let mut sizes = Vec::with_capacity(n);
    for _ in 0..n - 1 {
        sizes.push(usize::from(input.u16()));
    }
    let mut rest = input.rest();
    let mut out = Vec::with_capacity(n);
    for size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// Keys, a valid cookie and valid requests for one algorithm.
#[derive(Debug)]
pub struct AlgFixture {
    pub algorithm: AeadAlgorithm,
    pub keys: NtsKeys,
    pub cookie: Vec<u8>,
    pub uid: [u8; UID_LEN],
    /// `requests[p]` is a valid NTS request with `p` placeholders.
    pub requests: Vec<Vec<u8>>,
}

/// The seeded server every target shares.
#[derive(Debug)]
pub struct Fixture {
    pub keyset: KeySet,
    /// A keyset with other keys: cookies of `keyset` are unknown to it.
    pub other_keyset: KeySet,
    /// The current master key's raw bytes, to forge cookies with chosen
    /// plaintexts.
    pub master_key: [u8; 32],
    pub algs: Vec<AlgFixture>,
}

impl Fixture {
    pub fn alg(&self, choice: u8) -> &AlgFixture {
        let i = usize::from(choice) % self.algs.len();
        &self.algs[i]
    }
}

pub fn state() -> ServerState {
    ServerState::local(1, ReferenceId(*b"LOCL"), RECV)
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let mut rng = rng(7);
    let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng);
    let other_keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut self::rng(99));
    // Storage layout: 14-byte header, then id (4), created_at (8),
    // algorithm (2) and the 32-byte key of the current key.
    let encoded = keyset.encode();
    let master_key: [u8; 32] = encoded[28..60].try_into().expect("key file layout");
    let algs = AeadAlgorithm::SUPPORTED
        .iter()
        .map(|&algorithm| {
            let keys = NtsKeys {
                c2s: AeadKey::generate(algorithm, &mut rng).expect("supported"),
                s2c: AeadKey::generate(algorithm, &mut rng).expect("supported"),
            };
            let mut buf = [0u8; 512];
            let n = keyset
                .seal_cookie(&keys, &mut rng, &mut buf)
                .expect("cookie fits");
            let cookie = buf[..n].to_vec();
            let uid = new_uid(&mut rng);
            let requests = (0..=MAX_PLACEHOLDERS)
                .map(|p| {
                    let mut buf = vec![0u8; 2048];
                    let mut w = Writer::new(&mut buf);
                    let h = NtpHeader::client_request(4, NtpTimestamp::from_bits(42));
                    write_request(&mut w, &h, &uid, &cookie, p, &keys, &mut rng)
                        .expect("request fits");
                    let n = w.len();
                    buf.truncate(n);
                    buf
                })
                .collect();
            AlgFixture {
                algorithm,
                keys,
                cookie,
                uid,
                requests,
            }
        })
        .collect();
    Fixture {
        keyset,
        other_keyset,
        master_key,
        algs,
    }
}
