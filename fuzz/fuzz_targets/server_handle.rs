//! The whole server decision, `sundial_proto::server::handle`, with a seeded
//! keyset. Three modes, picked by the first byte:
//! - raw: arbitrary bytes as the request, with a fuzzer-chosen keyset
//!   (ours, someone else's, none), admission verdict, plain-NTP policy and
//!   output buffer size;
//! - mutate: a valid NTS request (any AEAD, 0 to 7 placeholders) built like
//!   the client does, then edited by fuzzer-chosen byte operations;
//! - build: an NTS request assembled from fuzzer-chosen fields (unique ids,
//!   cookies good and bad, placeholders, unknown fields, nonce, padding,
//!   encrypted fields, fields after the authenticator) and correctly
//!   authenticated with the cookie's C2S key, so the checks behind the
//!   authentication are reached too.
//! Invariants: a response is never longer than its request; it is a server
//! header answering the request's transmit timestamp; an NTS answer
//! verifies under the S2C key of the request's cookie with the echoed
//! identifier and carries cookies that open to the same keys; an NTSN
//! answer is recognised as one by the client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::{Fixture, Input, MAX_PLACEHOLDERS, RECV, XMIT, fixture, rng, state};
use sundial_proto::ntp::extension::{
    ExtensionFields, FieldType, Placement, write_field, write_placeholder,
};
use sundial_proto::ntp::packet::{KissCode, Mode, NtpHeader};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::client::{VerifiedResponse, verify_response};
use sundial_proto::nts::keyset::KeySet;
use sundial_proto::nts::protect::seal_authenticator;
use sundial_proto::reader::Writer;
use sundial_proto::server::{
    Admission, PlainPolicy, ResponseKind, ServerAction, ServerPolicy, handle,
};

const MAX_REQUEST: usize = 4096;

struct Setup<'f> {
    keyset: Option<&'f KeySet>,
    policy: ServerPolicy,
    admission: Admission,
    out_len: usize,
}

impl<'f> Setup<'f> {
    fn standard(fx: &'f Fixture) -> Self {
        Self {
            keyset: Some(&fx.keyset),
            policy: ServerPolicy::default(),
            admission: Admission::Allow,
            out_len: 2048,
        }
    }

    fn admission(choice: u8) -> Admission {
        match choice % 3 {
            0 => Admission::Allow,
            1 => Admission::Deny,
            _ => Admission::RateLimited,
        }
    }
}

fn raw<'a>(fx: &'a Fixture, input: &mut Input<'a>) -> (Setup<'a>, Vec<u8>) {
    let flags = input.u8();
    let keyset = match flags % 3 {
        0 => Some(&fx.keyset),
        1 => Some(&fx.other_keyset),
        _ => None,
    };
    let plain = match (flags >> 2) % 3 {
        0 => PlainPolicy::Serve,
        1 => PlainPolicy::Ignore,
        _ => PlainPolicy::Deny,
    };
    let policy = ServerPolicy {
        accepted_versions: if flags & 0x10 != 0 {
            input.u8()
        } else {
            ServerPolicy::default().accepted_versions
        },
        plain,
    };
    let admission = Setup::admission(flags >> 5);
    let out_len = if flags & 0x80 != 0 {
        usize::from(input.u16()) % 2049
    } else {
        2048
    };
    let request = input.rest().to_vec();
    (
        Setup {
            keyset,
            policy,
            admission,
            out_len,
        },
        request,
    )
}

fn mutate<'a>(fx: &'a Fixture, input: &mut Input<'a>) -> (Setup<'a>, Vec<u8>) {
    let af = fx.alg(input.u8());
    let placeholders = usize::from(input.u8()) % (MAX_PLACEHOLDERS + 1);
    let mut setup = Setup::standard(fx);
    setup.admission = Setup::admission(input.u8());
    let mut req = af.requests[placeholders].clone();
    let count = usize::from(input.u8() % 16);
    for _ in 0..count {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let pos = usize::from(input.u16()) % (req.len() + 1);
        let val = input.u8();
        match op % 8 {
            0 => {
                if let Some(b) = req.get_mut(pos) {
                    *b = val;
                }
            }
            1 => {
                if let Some(b) = req.get_mut(pos) {
                    *b ^= 1 << (val % 8);
                }
            }
            2 => req.truncate(pos),
            3 => req.insert(pos, val),
            4 => {
                if pos < req.len() {
                    req.remove(pos);
                }
            }
            5 => {
                // Repeat a stretch (a field, say) in place.
                let end = (pos + usize::from(val) * 4).min(req.len());
                let copy = req[pos..end].to_vec();
                req.splice(pos..pos, copy);
            }
            6 => {
                // Overwrite a 16-bit word, as a field type or length.
                if pos + 2 <= req.len() {
                    let word = u16::from(val) << (op >> 4);
                    req[pos..pos + 2].copy_from_slice(&word.to_be_bytes());
                }
            }
            _ => {
                // Append zeros: padding, or a field that outgrows the packet.
                req.extend(std::iter::repeat_n(0, usize::from(val)));
            }
        }
        req.truncate(MAX_REQUEST);
    }
    (setup, req)
}

fn build<'a>(fx: &'a Fixture, input: &mut Input<'a>) -> Option<(Setup<'a>, Vec<u8>)> {
    let af = fx.alg(input.u8());
    let mut setup = Setup::standard(fx);
    let flags = input.u8();
    setup.admission = Setup::admission(flags);
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut w = Writer::new(&mut buf);
    let mut header = NtpHeader::client_request(input.u8() as i8, NtpTimestamp::from_bits(42));
    if flags & 0x80 != 0 {
        // Version and mode from the fuzzer.
        let first = input.u8();
        header.version = (first >> 3) & 7;
        let mut bytes = header.to_bytes();
        bytes[0] = first;
        w.put(&bytes).ok()?;
    } else {
        header.serialize(&mut w).ok()?;
    }
    let n_fields = input.u8() % 10;
    for _ in 0..n_fields {
        let outer = |w: &mut Writer<'_>, t, body: &[u8]| write_field(w, t, body, Placement::Outer);
        match input.u8() % 9 {
            0 => outer(&mut w, FieldType::UniqueIdentifier, &af.uid),
            1 => outer(&mut w, FieldType::UniqueIdentifier, input.short_bytes()),
            2 | 3 => outer(&mut w, FieldType::NtsCookie, &af.cookie),
            4 => outer(&mut w, FieldType::NtsCookie, input.short_bytes()),
            5 => outer(&mut w, FieldType::NtsCookie, &fx.alg(input.u8()).cookie),
            6 => write_placeholder(&mut w, af.cookie.len()),
            7 => write_placeholder(&mut w, usize::from(input.u8())),
            _ => {
                let t = FieldType::from_u16(input.u16());
                outer(&mut w, t, input.short_bytes())
            }
        }
        .ok()?;
    }
    let nonce_len = usize::from(input.u8() % 33);
    let nonce = input.bytes(nonce_len).to_vec();
    let padding = usize::from(input.u8() % 33);
    let n_encrypted = input.u8() % 9;
    let mut encrypted: Vec<(u8, Vec<u8>)> = Vec::new();
    for _ in 0..n_encrypted {
        encrypted.push((input.u8(), input.short_bytes().to_vec()));
    }
    let cookie_len = af.cookie.len();
    seal_authenticator(&mut w, &af.keys.c2s, &nonce, padding, |w| {
        for (kind, bytes) in &encrypted {
            match kind % 4 {
                0 | 1 => write_placeholder(w, cookie_len)?,
                2 => write_field(w, FieldType::CookiePlaceholder, bytes, Placement::Encrypted)?,
                _ => w.put(bytes)?,
            }
        }
        Ok(())
    })
    .ok()?;
    if flags & 0x40 != 0 {
        let t = FieldType::from_u16(input.u16());
        write_field(&mut w, t, input.short_bytes(), Placement::Outer).ok()?;
    }
    let n = w.len();
    buf.truncate(n);
    Some((setup, buf))
}

/// The Unique Identifier and cookie as the server reads them.
fn uid_and_cookie(request: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let mut uid = None;
    let mut cookie = None;
    for f in ExtensionFields::new(request.get(48..).unwrap_or_default(), Placement::Outer)
        .map_while(Result::ok)
    {
        match f.field_type {
            FieldType::UniqueIdentifier => uid = uid.or(Some(f.body)),
            FieldType::NtsCookie => cookie = cookie.or(Some(f.body)),
            _ => {}
        }
    }
    (uid, cookie)
}

/// A plain answer (time or kiss) is the bare header, or the header and the
/// request's Unique Identifier echoed, nothing else (RFC 8915 §5.7: a
/// plain request may carry one, and ntpd-rs and sundial echo it).
fn assert_plain(response: &[u8], request: &[u8]) {
    let echoed: Vec<_> =
        ExtensionFields::new(response.get(48..).unwrap_or_default(), Placement::Outer).collect();
    match echoed.as_slice() {
        [] => assert_eq!(response.len(), 48),
        [Ok(field)] => {
            assert_eq!(field.field_type, FieldType::UniqueIdentifier);
            assert_eq!(Some(field.body), uid_and_cookie(request).0);
        }
        other => panic!("a plain answer carries {other:?}"),
    }
}

fn check(fx: &Fixture, setup: &Setup<'_>, request: &[u8], intact: Option<usize>) {
    let mut out = vec![0u8; setup.out_len];
    let action = handle(
        &state(),
        &setup.policy,
        setup.keyset,
        setup.admission,
        request,
        RECV,
        || XMIT,
        &mut rng(5),
        &mut out,
    );
    let (len, kind) = match action {
        ServerAction::Respond { len, kind } => (len, kind),
        ServerAction::Drop(_) => {
            assert!(
                intact.is_none() || setup.out_len < request.len(),
                "{action:?}"
            );
            return;
        }
    };
    assert!(
        len <= request.len(),
        "amplification: {len} > {}",
        request.len()
    );
    assert!(len <= out.len());
    let response = &out[..len];
    let (resp, _) = NtpHeader::parse(response).expect("a response parses");
    let (req, _) = NtpHeader::parse(request).expect("an answered request parses");
    assert_eq!(resp.mode, Mode::Server);
    assert_eq!(resp.version, req.version);
    assert_eq!(resp.origin_timestamp, req.transmit_timestamp);
    assert_eq!(resp.receive_timestamp, RECV);
    assert_eq!(resp.transmit_timestamp, XMIT);
    match kind {
        ResponseKind::Plain => assert_plain(response, request),
        ResponseKind::Deny => assert_eq!(resp.kiss_code(), Some(KissCode::Deny)),
        ResponseKind::Rate => assert_eq!(resp.kiss_code(), Some(KissCode::Rate)),
        ResponseKind::NtsNak => assert_eq!(resp.kiss_code(), Some(KissCode::Ntsn)),
        ResponseKind::Nts => assert_eq!(resp.kiss_code(), None),
    }
    let (Some(uid), Some(cookie)) = uid_and_cookie(request) else {
        assert!(!matches!(kind, ResponseKind::Nts | ResponseKind::NtsNak));
        assert_plain(response, request);
        return;
    };
    let keyset = setup.keyset.expect("NTS answered without a keyset");
    match (kind, keyset.open_cookie(cookie)) {
        (ResponseKind::NtsNak, keys) => {
            assert!(keys.is_err());
            let any = &fx.alg(0).keys;
            assert!(matches!(
                verify_response(response, uid, any),
                Ok(VerifiedResponse::Nak)
            ));
        }
        (_, Ok(keys)) if len > 48 => match verify_response(response, uid, &keys) {
            Ok(VerifiedResponse::Time { header, cookies }) => {
                assert_eq!(header, resp);
                if let Some(wanted) = intact {
                    assert_eq!(cookies.len(), wanted, "short of cookies");
                }
                for c in cookies {
                    let k = keyset.open_cookie(&c).expect("a fresh cookie opens");
                    assert_eq!(k.c2s.as_bytes(), keys.c2s.as_bytes());
                    assert_eq!(k.s2c.as_bytes(), keys.s2c.as_bytes());
                }
            }
            other => panic!("the client rejects an NTS answer: {other:?}"),
        },
        (kind, _) => {
            // Plain or a kiss to a request whose NTS fields were ignored.
            assert!(len == 48 && kind != ResponseKind::Nts, "{kind:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => {
            let (setup, request) = raw(fx, &mut input);
            check(fx, &setup, &request, None);
        }
        1 => {
            let before = data.len();
            let (setup, request) = mutate(fx, &mut input);
            // Unmutated (no operation bytes): every cookie asked for comes.
            let intact = (before <= 5).then(|| {
                usize::from(data.get(2).copied().unwrap_or(0)) % (MAX_PLACEHOLDERS + 1) + 1
            });
            check(fx, &setup, &request, intact);
        }
        _ => {
            if let Some((setup, request)) = build(fx, &mut input) {
                check(fx, &setup, &request, None);
            }
        }
    }
});
