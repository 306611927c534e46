//! A corpus of hostile NTP requests with the outcome the server owes each
//! (issue 6, item 2). Shared by the sans-IO test (`hostile_server.rs`,
//! through `handle`) and the daemon's UDP test (`hardening_ntp.rs`, through
//! a running listener), so both hold the server to the same table.
//!
//! No RNG crate: the random cases come from a seeded xorshift, and the NTS
//! cases are sealed with fixed nonces, so the module compiles in any crate
//! that depends on sundial-proto.
#![allow(dead_code)]

use sundial_proto::ntp::extension::{FieldType, Placement, write_field};
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::NtsKeys;
use sundial_proto::nts::protect::seal_authenticator;
use sundial_proto::reader::Writer;

/// What the server must do with a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No answer at all.
    Drop,
    /// A plain (unauthenticated) answer: the bytes are a valid client
    /// request without NTS.
    Plain,
    /// An NTS answer.
    Nts,
    /// An NTSN kiss (well-formed request, cookie we cannot open).
    Nak,
    /// Random bytes: no answer, or a plain one if they happen to be a
    /// valid plain request (or an NTSN if they happen to be a well-formed
    /// NTS request, which no key of ours sealed). Never an NTS answer.
    NotNts,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// A deterministic xorshift64*, enough for fuzz-like bytes.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One outer field: type and body (padded by `write_field`).
type Field = (u16, Vec<u8>);

const UID: u16 = 0x0104;
const COOKIE: u16 = 0x0204;
const PLACEHOLDER: u16 = 0x0304;

/// How a request ends.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// Sealed under C2S with a nonce of this length and this much
    /// additional padding.
    Sealed {
        nonce_len: usize,
        padding: usize,
    },
}

/// Transmit timestamps are unique per case, so a UDP test can tell whose
/// answer came back (the server echoes it as the origin timestamp).
pub fn header(tag: u64) -> NtpHeader {
    NtpHeader::client_request(6, NtpTimestamp::from_bits(0x5eed_0000_0000_0000 | tag))
}

fn build(tag: u64, fields: &[Field], keys: &NtsKeys, auth: Auth) -> Vec<u8> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut w = Writer::new(&mut buf);
    header(tag).serialize(&mut w).unwrap();
    for (t, body) in fields {
        write_field(&mut w, FieldType::from_u16(*t), body, Placement::Outer).unwrap();
    }
    if let Auth::Sealed { nonce_len, padding } = auth {
        let nonce = vec![0x42u8; nonce_len];
        let mark = w.len();
        if seal_authenticator(&mut w, &keys.c2s, &nonce, padding, |_| Ok(())).is_err() {
            // The cipher refuses this nonce (empty, or not 12 bytes for
            // GCM-SIV): an attacker is not bound by that, so write the
            // field by hand with a tag-sized ciphertext of zeros.
            w.set_len(mark).unwrap();
            let mut body = Vec::new();
            body.extend_from_slice(&(nonce_len as u16).to_be_bytes());
            body.extend_from_slice(&16u16.to_be_bytes());
            body.extend_from_slice(&nonce);
            body.resize(4 + nonce_len.div_ceil(4) * 4 + 16 + padding, 0);
            write_field(&mut w, FieldType::NtsAuthenticator, &body, Placement::Outer).unwrap();
        }
    }
    let n = w.len();
    buf.truncate(n);
    buf
}

/// The usual nonce for the algorithm (16 for SIV, 12 for GCM-SIV).
fn nonce_len(keys: &NtsKeys) -> usize {
    keys.algorithm().nonce_len().unwrap_or(16)
}

/// Every hostile case. `cookie` opens under the server's keyset to `keys`;
/// `foreign_cookie` was sealed by a keyset the server never had.
pub fn corpus(keys: &NtsKeys, cookie: &[u8], foreign_cookie: &[u8]) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut tag = 0u64;
    let add = |cases: &mut Vec<Case>, name: String, bytes: Vec<u8>, expect: Expect| {
        cases.push(Case {
            name,
            bytes,
            expect,
        });
    };
    let mut next_tag = || {
        tag += 1;
        tag
    };
    let uid = vec![0x17u8; 32];
    let sealed = Auth::Sealed {
        nonce_len: nonce_len(keys),
        padding: 0,
    };
    let good_fields =
        |cookie: &[u8]| -> Vec<Field> { vec![(UID, uid.clone()), (COOKIE, cookie.to_vec())] };

    // --- well-formed NTS, for reference and for truncation ---------------
    let t = next_tag();
    let valid = build(t, &good_fields(cookie), keys, sealed);
    add(
        &mut cases,
        "valid NTS request".into(),
        valid.clone(),
        Expect::Nts,
    );
    let mut fields = good_fields(cookie);
    fields.extend((0..7).map(|_| (PLACEHOLDER, vec![0u8; cookie.len()])));
    let t = next_tag();
    add(
        &mut cases,
        "valid, 7 placeholders".into(),
        build(t, &fields, keys, sealed),
        Expect::Nts,
    );
    // RFC 8915 5.5: the placeholder body is to be ignored by the server.
    let mut fields = good_fields(cookie);
    fields.extend((0..3).map(|_| (PLACEHOLDER, vec![0xffu8; cookie.len()])));
    let t = next_tag();
    add(
        &mut cases,
        "non-zero placeholders".into(),
        build(t, &fields, keys, sealed),
        Expect::Nts,
    );
    let t = next_tag();
    add(
        &mut cases,
        "cookie from an unknown key".into(),
        build(t, &good_fields(foreign_cookie), keys, sealed),
        Expect::Nak,
    );

    // --- truncated: every prefix of the valid request ---------------------
    for len in 0..valid.len() {
        // Exactly the header is a valid plain request, and so is a header
        // trailed by 4, 20 or 24 bytes before any whole NTS field: RFC 7822
        // 7.5 reads those as a legacy MAC, which a server may ignore. Cut
        // right after its Unique Identifier (48 + 36 bytes), the request
        // is plain too: no cookie, no authenticator, and the answer echoes
        // the identifier.
        let expect = if [48, 52, 68, 72, 84].contains(&len) {
            Expect::Plain
        } else {
            Expect::Drop
        };
        add(
            &mut cases,
            format!("truncated to {len}"),
            valid[..len].to_vec(),
            expect,
        );
    }

    // --- NTS field-level faults ------------------------------------------
    let mut bad_tag = valid.clone();
    let last = bad_tag.len() - 1;
    bad_tag[last] ^= 0x01;
    add(
        &mut cases,
        "bad authenticator tag".into(),
        bad_tag,
        Expect::Drop,
    );
    let mut bad_ad = valid.clone();
    bad_ad[60] ^= 0x80; // inside the UID: associated data
    add(
        &mut cases,
        "tampered associated data".into(),
        bad_ad,
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "short nonce without padding".into(),
        build(
            t,
            &good_fields(cookie),
            keys,
            Auth::Sealed {
                nonce_len: 4,
                padding: 0,
            },
        ),
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "empty nonce".into(),
        build(
            t,
            &good_fields(cookie),
            keys,
            Auth::Sealed {
                nonce_len: 0,
                padding: 0,
            },
        ),
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "no unique identifier".into(),
        build(t, &[(COOKIE, cookie.to_vec())], keys, sealed),
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "short unique identifier".into(),
        build(
            t,
            &[(UID, vec![1; 16]), (COOKIE, cookie.to_vec())],
            keys,
            sealed,
        ),
        Expect::Drop,
    );
    let mut fields = good_fields(cookie);
    fields.push((UID, vec![0x18; 32]));
    let t = next_tag();
    add(
        &mut cases,
        "duplicate unique identifier".into(),
        build(t, &fields, keys, sealed),
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "no cookie".into(),
        build(t, &[(UID, uid.clone())], keys, sealed),
        Expect::Drop,
    );
    let mut fields = good_fields(cookie);
    fields.push((COOKIE, cookie.to_vec()));
    let t = next_tag();
    add(
        &mut cases,
        "two cookies".into(),
        build(t, &fields, keys, sealed),
        Expect::Drop,
    );
    let mut fields = good_fields(cookie);
    for _ in 0..6 {
        fields.push((COOKIE, foreign_cookie.to_vec()));
    }
    let t = next_tag();
    add(
        &mut cases,
        "seven cookies".into(),
        build(t, &fields, keys, sealed),
        Expect::Drop,
    );
    let mut fields = good_fields(cookie);
    fields.push((PLACEHOLDER, vec![0; cookie.len() - 4]));
    let t = next_tag();
    add(
        &mut cases,
        "short placeholder".into(),
        build(t, &fields, keys, sealed),
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "no authenticator".into(),
        build(t, &good_fields(cookie), keys, Auth::None),
        Expect::Drop,
    );
    let mut after = valid.clone();
    after.extend_from_slice(&[0x77, 0x77, 0x00, 0x10]);
    after.extend_from_slice(&[0; 12]);
    add(
        &mut cases,
        "field after the authenticator".into(),
        after,
        Expect::Drop,
    );
    // An authenticator whose nonce length runs past its body.
    let t = next_tag();
    let mut fields = good_fields(cookie);
    fields.push((0x0404, vec![0xff, 0xff, 0, 16, 1, 2, 3, 4]));
    add(
        &mut cases,
        "authenticator lengths overrun".into(),
        build(t, &fields, keys, Auth::None),
        Expect::Drop,
    );
    // A foreign cookie but a broken request: malformed beats NTSN.
    let t = next_tag();
    add(
        &mut cases,
        "unknown cookie, no UID".into(),
        build(t, &[(COOKIE, foreign_cookie.to_vec())], keys, sealed),
        Expect::Drop,
    );
    let t = next_tag();
    add(
        &mut cases,
        "empty cookie".into(),
        build(t, &[(UID, uid.clone()), (COOKIE, Vec::new())], keys, sealed),
        Expect::Nak,
    );

    // --- extension fields with wrong lengths -------------------------------
    let plain = header(next_tag()).to_bytes().to_vec();
    for (name, field) in [
        // (Not 4, 20 or 24 bytes in all: those would pass as a legacy MAC.)
        ("field length 0", vec![0x01, 0x04, 0x00, 0x00, 0, 0, 0, 0]),
        ("field length 3", vec![0x01, 0x04, 0x00, 0x03, 0, 0, 0, 0]),
        (
            "field length 12 (< 16)",
            [vec![0x01, 0x04, 0x00, 0x0c], vec![0; 8]].concat(),
        ),
        (
            "field length 18 (not /4)",
            [vec![0x01, 0x04, 0x00, 0x12], vec![0; 24]].concat(),
        ),
        (
            "field length overruns",
            [vec![0x02, 0x04, 0xff, 0xfc], vec![0; 60]].concat(),
        ),
        ("half a field header", vec![0x02, 0x04]),
        (
            "unknown field, length 0",
            vec![0x7f, 0x00, 0x00, 0x00, 0, 0, 0, 0],
        ),
    ] {
        let mut bytes = plain.clone();
        bytes.extend_from_slice(&field);
        add(&mut cases, name.to_owned(), bytes, Expect::Drop);
    }
    // A valid NTS request followed by a broken field inside its AD: the
    // fields are parsed before anything is opened.
    let mut broken = valid.clone();
    broken.truncate(48 + 36);
    broken.extend_from_slice(&[0x02, 0x04, 0x00, 0x06]);
    add(
        &mut cases,
        "NTS field length 6".into(),
        broken,
        Expect::Drop,
    );

    // --- thousands of fields (each request under 64 KiB, a UDP datagram) ---
    let mut fields: Vec<Field> = (0..3000)
        .map(|i| (0x7000 + (i % 100), vec![0; 12]))
        .collect();
    fields.extend(good_fields(cookie));
    let t = next_tag();
    add(
        &mut cases,
        "3000 unknown fields, then valid NTS".into(),
        build(t, &fields, keys, sealed),
        Expect::Nts,
    );
    let fields: Vec<Field> = (0..3000).map(|_| (0x7001, vec![0; 12])).collect();
    let t = next_tag();
    add(
        &mut cases,
        "3000 unknown fields, plain".into(),
        build(t, &fields, keys, Auth::None),
        Expect::Plain,
    );
    let mut fields = good_fields(cookie);
    fields.extend((0..500).map(|_| (PLACEHOLDER, vec![0u8; cookie.len()])));
    let t = next_tag();
    add(
        &mut cases,
        "500 placeholders".into(),
        build(t, &fields, keys, sealed),
        Expect::Nts,
    );
    let mut fields = good_fields(cookie);
    fields.extend((0..1500).map(|_| (UID, vec![9u8; 32])));
    let t = next_tag();
    add(
        &mut cases,
        "1500 unique identifiers".into(),
        build(t, &fields, keys, sealed),
        Expect::Drop,
    );
    let fields: Vec<Field> = (0..500)
        .map(|_| (COOKIE, foreign_cookie.to_vec()))
        .collect();
    let t = next_tag();
    add(
        &mut cases,
        "500 cookies".into(),
        build(t, &fields, keys, sealed),
        Expect::Drop,
    );

    // --- random bytes ---------------------------------------------------------
    let mut rng = XorShift::new(0x5eed);
    for i in 0..1500 {
        let len = (rng.next_u64() % 200) as usize;
        add(
            &mut cases,
            format!("random #{i} ({len} bytes)"),
            rng.bytes(len),
            Expect::NotNts,
        );
    }
    // Random tails behind a header that parses as an NTPv4 client request.
    for i in 0..500 {
        let len = (rng.next_u64() % 400) as usize;
        let mut bytes = header(10_000 + i).to_bytes().to_vec();
        bytes.extend(rng.bytes(len));
        add(
            &mut cases,
            format!("random tail #{i} ({len} bytes)"),
            bytes,
            Expect::NotNts,
        );
    }
    // Random tails that start like NTS fields (type 0x01xx-0x04xx).
    for i in 0..500 {
        let mut bytes = header(20_000 + i).to_bytes().to_vec();
        for _ in 0..(1 + rng.next_u64() % 6) {
            let t = [0x0104u16, 0x0204, 0x0304, 0x0404][(rng.next_u64() % 4) as usize];
            let len = (rng.next_u64() % 120) as usize;
            bytes.extend_from_slice(&t.to_be_bytes());
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
            bytes.extend(rng.bytes(len.saturating_sub(4)));
        }
        add(
            &mut cases,
            format!("random NTS-like #{i}"),
            bytes,
            Expect::NotNts,
        );
    }
    cases
}
