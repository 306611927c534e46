//! The whole server decision (`sundial_proto::server::handle`), driven with
//! requests built by the client side and with hostile variations of them.

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sundial_proto::ntp::extension::{FieldType, Placement, write_field, write_placeholder};
use sundial_proto::ntp::packet::{KissCode, Mode, NtpHeader, ReferenceId};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::client::{VerifiedResponse, new_uid, verify_response, write_request};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::nts::protect::seal_authenticator;
use sundial_proto::nts::server::NtsDrop;
use sundial_proto::reader::Writer;
use sundial_proto::server::{
    Admission, DropReason, PlainPolicy, ResponseKind, ServerAction, ServerPolicy, ServerState,
    handle,
};

const NOW: u64 = 1_800_000_000;
const RECV: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0000_0000);
const XMIT: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0001_0000);

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

fn state() -> ServerState {
    ServerState::local(1, ReferenceId(*b"LOCL"), RECV)
}

fn keys(alg: AeadAlgorithm, rng: &mut ChaCha20Rng) -> NtsKeys {
    NtsKeys {
        c2s: AeadKey::generate(alg, rng).unwrap(),
        s2c: AeadKey::generate(alg, rng).unwrap(),
    }
}

fn cookie(keyset: &KeySet, keys: &NtsKeys, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let n = keyset.seal_cookie(keys, rng, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn run(
    policy: &ServerPolicy,
    keyset: Option<&KeySet>,
    admission: Admission,
    request: &[u8],
) -> (ServerAction, Vec<u8>) {
    let mut out = [0u8; 2048];
    let action = handle(
        &state(),
        policy,
        keyset,
        admission,
        request,
        RECV,
        || XMIT,
        &mut rng(),
        &mut out,
    );
    let len = match action {
        ServerAction::Respond { len, .. } => len,
        ServerAction::Drop(_) => 0,
    };
    (action, out[..len].to_vec())
}

fn plain_request(version: u8) -> Vec<u8> {
    let h = NtpHeader {
        version,
        transmit_timestamp: NtpTimestamp::from_bits(0xdead_beef_0000_0001),
        ..NtpHeader::default()
    };
    h.to_bytes().to_vec()
}

struct Nts {
    keyset: KeySet,
    keys: NtsKeys,
    uid: [u8; 32],
    request: Vec<u8>,
}

fn nts_request(alg: AeadAlgorithm, placeholders: usize) -> Nts {
    let mut rng = rng();
    let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng);
    let keys = keys(alg, &mut rng);
    let c = cookie(&keyset, &keys, &mut rng);
    let uid = new_uid(&mut rng);
    let mut buf = vec![0u8; 2048];
    let mut w = Writer::new(&mut buf);
    let h = NtpHeader::client_request(4, NtpTimestamp::from_bits(42));
    write_request(&mut w, &h, &uid, &c, placeholders, &keys, &mut rng).unwrap();
    let n = w.len();
    buf.truncate(n);
    Nts {
        keyset,
        keys,
        uid,
        request: buf,
    }
}

#[test]
fn plain_request_gets_a_timestamped_answer() {
    for version in [3, 4] {
        let req = plain_request(version);
        let (action, resp) = run(&ServerPolicy::default(), None, Admission::Allow, &req);
        assert_eq!(
            action,
            ServerAction::Respond {
                len: 48,
                kind: ResponseKind::Plain
            }
        );
        let (h, rest) = NtpHeader::parse(&resp).unwrap();
        assert!(rest.is_empty());
        assert_eq!(h.version, version);
        assert_eq!(h.mode, Mode::Server);
        assert_eq!(h.stratum, 1);
        assert_eq!(h.reference_id, ReferenceId(*b"LOCL"));
        assert_eq!(h.origin_timestamp.to_bits(), 0xdead_beef_0000_0001);
        assert_eq!(h.receive_timestamp, RECV);
        assert_eq!(h.transmit_timestamp, XMIT);
    }
}

#[test]
fn versions_and_modes_are_filtered() {
    let policy = ServerPolicy::default();
    for version in [1, 2] {
        let (action, _) = run(&policy, None, Admission::Allow, &plain_request(version));
        assert_eq!(action, ServerAction::Drop(DropReason::Version(version)));
    }
    let mut req = plain_request(4);
    req[0] = (req[0] & !7) | 4; // a server-mode packet
    assert_eq!(
        run(&policy, None, Admission::Allow, &req).0,
        ServerAction::Drop(DropReason::NotClient(Mode::Server))
    );
    assert!(matches!(
        run(&policy, None, Admission::Allow, &req[..47]).0,
        ServerAction::Drop(DropReason::Header(_))
    ));
}

#[test]
fn kisses_and_require_nts() {
    let req = plain_request(4);
    for (admission, code, kind) in [
        (Admission::Deny, KissCode::Deny, ResponseKind::Deny),
        (Admission::RateLimited, KissCode::Rate, ResponseKind::Rate),
    ] {
        let (action, resp) = run(&ServerPolicy::default(), None, admission, &req);
        assert_eq!(action, ServerAction::Respond { len: 48, kind });
        assert_eq!(NtpHeader::parse(&resp).unwrap().0.kiss_code(), Some(code));
    }
    let ignore = ServerPolicy {
        plain: PlainPolicy::Ignore,
        ..ServerPolicy::default()
    };
    assert_eq!(
        run(&ignore, None, Admission::Allow, &req).0,
        ServerAction::Drop(DropReason::NtsRequired)
    );
    let deny = ServerPolicy {
        plain: PlainPolicy::Deny,
        ..ServerPolicy::default()
    };
    let (_, resp) = run(&deny, None, Admission::Allow, &req);
    assert_eq!(
        NtpHeader::parse(&resp).unwrap().0.kiss_code(),
        Some(KissCode::Deny)
    );
}

#[test]
fn nts_roundtrip_refills_the_jar_for_every_algorithm() {
    for alg in AeadAlgorithm::SUPPORTED {
        let nts = nts_request(alg, 7);
        let (action, resp) = run(
            &ServerPolicy::default(),
            Some(&nts.keyset),
            Admission::Allow,
            &nts.request,
        );
        assert!(
            matches!(
                action,
                ServerAction::Respond {
                    kind: ResponseKind::Nts,
                    ..
                }
            ),
            "{alg:?}: {action:?}"
        );
        assert!(resp.len() <= nts.request.len(), "{alg:?} amplifies");
        match verify_response(&resp, &nts.uid, &nts.keys).unwrap() {
            VerifiedResponse::Time { header, cookies } => {
                assert_eq!(header.transmit_timestamp, XMIT);
                assert_eq!(header.origin_timestamp.to_bits(), 42);
                assert_eq!(cookies.len(), 8, "{alg:?}");
                for c in cookies {
                    let k = nts.keyset.open_cookie(&c).unwrap();
                    assert_eq!(k.c2s.as_bytes(), nts.keys.c2s.as_bytes());
                    assert_eq!(k.s2c.as_bytes(), nts.keys.s2c.as_bytes());
                }
            }
            VerifiedResponse::Nak => panic!("unexpected NAK"),
        }
    }
}

#[test]
fn unknown_cookie_key_gets_ntsn_echoing_the_uid() {
    let nts = nts_request(AeadAlgorithm::AesSivCmac256, 0);
    let other = KeySet::generate(
        KeySetConfig::default(),
        NOW,
        &mut ChaCha20Rng::seed_from_u64(99),
    );
    let (action, resp) = run(
        &ServerPolicy::default(),
        Some(&other),
        Admission::Allow,
        &nts.request,
    );
    assert!(matches!(
        action,
        ServerAction::Respond {
            kind: ResponseKind::NtsNak,
            ..
        }
    ));
    assert!(resp.len() <= nts.request.len());
    assert!(matches!(
        verify_response(&resp, &nts.uid, &nts.keys),
        Ok(VerifiedResponse::Nak)
    ));
}

#[test]
fn any_bit_flip_in_an_nts_request_is_dropped_or_nakked() {
    let nts = nts_request(AeadAlgorithm::AesSivCmac256, 2);
    for i in 48..nts.request.len() {
        let mut req = nts.request.clone();
        req[i] ^= 0x01;
        let (action, resp) = run(
            &ServerPolicy::default(),
            Some(&nts.keyset),
            Admission::Allow,
            &req,
        );
        match action {
            ServerAction::Drop(_) => {}
            ServerAction::Respond { kind, .. } => {
                // A flip inside the cookie cannot be opened: NTSN is right.
                // A flip inside a placeholder's zero body is not covered by
                // anything we check but the AEAD over it.
                assert_eq!(kind, ResponseKind::NtsNak, "byte {i}");
                assert!(resp.len() <= req.len());
            }
        }
    }
}

/// Builds an NTS request by hand so its fields can be wrong on purpose.
fn custom_request(
    nts: &Nts,
    fields: &[(FieldType, Vec<u8>)],
    nonce: &[u8],
    extra_padding: usize,
    after: Option<(FieldType, Vec<u8>)>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut w = Writer::new(&mut buf);
    NtpHeader::client_request(4, NtpTimestamp::from_bits(42))
        .serialize(&mut w)
        .unwrap();
    for (t, body) in fields {
        if *t == FieldType::CookiePlaceholder {
            write_placeholder(&mut w, body.len()).unwrap();
        } else {
            write_field(&mut w, *t, body, Placement::Outer).unwrap();
        }
    }
    seal_authenticator(&mut w, &nts.keys.c2s, nonce, extra_padding, |_| Ok(())).unwrap();
    if let Some((t, body)) = after {
        write_field(&mut w, t, &body, Placement::Outer).unwrap();
    }
    let n = w.len();
    buf.truncate(n);
    buf
}

#[test]
fn malformed_nts_requests_are_dropped_with_their_reason() {
    let nts = nts_request(AeadAlgorithm::AesSivCmac256, 0);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let c = cookie(&nts.keyset, &nts.keys, &mut rng);
    let uid = nts.uid.to_vec();
    let n16 = [5u8; 16];
    // The usual nonce, no padding, nothing after the authenticator.
    let with = |fields: &[(FieldType, Vec<u8>)]| custom_request(&nts, fields, &n16, 0, None);
    let (u, k) = (FieldType::UniqueIdentifier, FieldType::NtsCookie);
    let cases: Vec<(Vec<u8>, NtsDrop)> = vec![
        (with(&[(k, c.clone())]), NtsDrop::NoUniqueId),
        (
            with(&[(u, uid.clone()), (u, uid.clone()), (k, c.clone())]),
            NtsDrop::DuplicateUniqueId,
        ),
        (
            with(&[(u, vec![1; 16]), (k, c.clone())]),
            NtsDrop::ShortUniqueId,
        ),
        (with(&[(u, uid.clone())]), NtsDrop::NoCookie),
        (
            with(&[(u, uid.clone()), (k, c.clone()), (k, c.clone())]),
            NtsDrop::SeveralCookies,
        ),
        (
            with(&[
                (u, uid.clone()),
                (k, c.clone()),
                (FieldType::CookiePlaceholder, vec![0; c.len() - 4]),
            ]),
            NtsDrop::PlaceholderSize,
        ),
        (
            custom_request(
                &nts,
                &[(u, uid.clone()), (k, c.clone())],
                &[5u8; 8],
                0,
                None,
            ),
            NtsDrop::NonceTooShort,
        ),
        (
            custom_request(
                &nts,
                &[(u, uid.clone()), (k, c.clone())],
                &n16,
                0,
                Some((FieldType::Unknown(0x7000), vec![0; 12])),
            ),
            NtsDrop::FieldAfterAuthenticator,
        ),
    ];
    for (i, (req, reason)) in cases.into_iter().enumerate() {
        let (action, _) = run(
            &ServerPolicy::default(),
            Some(&nts.keyset),
            Admission::Allow,
            &req,
        );
        assert_eq!(
            action,
            ServerAction::Drop(DropReason::Nts(reason)),
            "case {i}"
        );
    }
    // A short nonce made up for with padding is fine (RFC 8915 5.6).
    let padded = custom_request(
        &nts,
        &[
            (FieldType::UniqueIdentifier, uid.clone()),
            (FieldType::NtsCookie, c.clone()),
        ],
        &[5u8; 8],
        8,
        None,
    );
    assert!(matches!(
        run(
            &ServerPolicy::default(),
            Some(&nts.keyset),
            Admission::Allow,
            &padded
        )
        .0,
        ServerAction::Respond {
            kind: ResponseKind::Nts,
            ..
        }
    ));
}

#[test]
fn nts_request_without_keyset_is_dropped() {
    let nts = nts_request(AeadAlgorithm::AesSivCmac256, 0);
    assert_eq!(
        run(
            &ServerPolicy::default(),
            None,
            Admission::Allow,
            &nts.request
        )
        .0,
        ServerAction::Drop(DropReason::NoKeyset)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_and_never_amplifies(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng());
        let (action, resp) = run(&ServerPolicy::default(), Some(&keyset), Admission::Allow, &bytes);
        if let ServerAction::Respond { len, .. } = action {
            prop_assert!(len <= bytes.len());
            prop_assert_eq!(len, resp.len());
        }
    }

    #[test]
    fn mutated_nts_requests_never_amplify(pos in 0usize..400, val: u8, cut in 0usize..400) {
        let nts = nts_request(AeadAlgorithm::Aes128GcmSiv, 3);
        let mut req = nts.request.clone();
        let p = pos % req.len();
        req[p] = val;
        req.truncate(req.len() - cut % 60);
        let (action, _) = run(&ServerPolicy::default(), Some(&nts.keyset), Admission::Allow, &req);
        if let ServerAction::Respond { len, .. } = action {
            prop_assert!(len <= req.len());
        }
    }
}

#[test]
fn legacy_mac_is_tolerated_but_broken_fields_are_not() {
    let policy = ServerPolicy::default();
    for mac_len in [4usize, 20, 24] {
        let mut req = plain_request(4);
        req.extend(std::iter::repeat_n(0xab, mac_len));
        assert!(
            matches!(
                run(&policy, None, Admission::Allow, &req).0,
                ServerAction::Respond { len: 48, .. }
            ),
            "{mac_len}"
        );
    }
    let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng());
    let mut req = plain_request(4);
    req.extend_from_slice(&[0x01, 0x04, 0x00, 0x13, 0, 0, 0, 0]); // length 19
    assert!(matches!(
        run(&policy, Some(&keyset), Admission::Allow, &req).0,
        ServerAction::Drop(DropReason::Nts(NtsDrop::Malformed(_)))
    ));
}

/// A plain request with the fields a plain request may carry: a Unique
/// Identifier, unknown fields, a legacy MAC.
fn plain_with(fields: &[(FieldType, Vec<u8>)], mac: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut w = Writer::new(&mut buf);
    NtpHeader::client_request(4, NtpTimestamp::from_bits(42))
        .serialize(&mut w)
        .unwrap();
    for (t, body) in fields {
        write_field(&mut w, *t, body, Placement::Outer).unwrap();
    }
    let n = w.len();
    buf.truncate(n);
    buf.extend(std::iter::repeat_n(0xab, mac));
    buf
}

#[test]
fn a_plain_request_gets_its_unique_identifier_echoed_never_more() {
    let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng());
    let uid = vec![0x5a; 32];
    let mut uid_field = Vec::new();
    uid_field.extend_from_slice(&[0x01, 0x04, 0x00, 36]);
    uid_field.extend_from_slice(&uid);
    let unknown = (FieldType::Unknown(0x7000), vec![1; 60]);
    let cases = [
        plain_with(&[(FieldType::UniqueIdentifier, uid.clone())], 0),
        plain_with(
            &[unknown.clone(), (FieldType::UniqueIdentifier, uid.clone())],
            0,
        ),
    ];
    for (i, req) in cases.iter().enumerate() {
        for keys in [Some(&keyset), None] {
            let (action, resp) = run(&ServerPolicy::default(), keys, Admission::Allow, req);
            assert_eq!(
                action,
                ServerAction::Respond {
                    len: 48 + 36,
                    kind: ResponseKind::Plain
                },
                "case {i}, keyset {}",
                keys.is_some()
            );
            assert!(resp.len() <= req.len());
            let header = NtpHeader::parse(&resp).unwrap().0;
            assert_eq!(header.mode, Mode::Server);
            assert_eq!(header.stratum, 1);
            // Only the identifier comes back: no unknown field, no MAC.
            assert_eq!(&resp[48..], &uid_field[..], "case {i}");
        }
    }
    // A kiss to such a request echoes it too: the client can match it.
    let (action, resp) = run(
        &ServerPolicy::default(),
        Some(&keyset),
        Admission::RateLimited,
        &cases[0],
    );
    assert!(matches!(
        action,
        ServerAction::Respond {
            kind: ResponseKind::Rate,
            ..
        }
    ));
    assert_eq!(&resp[48..], &uid_field[..]);

    // The identifier is held to RFC 8915's rule as in NTS: one, 32 bytes
    // or more. Anything else is dropped, keyset or not.
    let two = plain_with(
        &[
            (FieldType::UniqueIdentifier, uid.clone()),
            (FieldType::UniqueIdentifier, uid.clone()),
        ],
        0,
    );
    let short = plain_with(&[(FieldType::UniqueIdentifier, vec![1; 16])], 0);
    // A legacy MAC trails only a bare header: behind an identifier, bytes
    // that are not a field are malformed.
    let mac = plain_with(&[(FieldType::UniqueIdentifier, uid.clone())], 20);
    for keys in [Some(&keyset), None] {
        assert!(matches!(
            run(&ServerPolicy::default(), keys, Admission::Allow, &mac).0,
            ServerAction::Drop(DropReason::Nts(NtsDrop::Malformed(_)))
        ));
    }
    for keys in [Some(&keyset), None] {
        assert_eq!(
            run(&ServerPolicy::default(), keys, Admission::Allow, &two).0,
            ServerAction::Drop(DropReason::Nts(NtsDrop::DuplicateUniqueId))
        );
        assert_eq!(
            run(&ServerPolicy::default(), keys, Admission::Allow, &short).0,
            ServerAction::Drop(DropReason::Nts(NtsDrop::ShortUniqueId))
        );
    }
    // require-nts: a Unique Identifier alone does not make a request NTS.
    let policy = ServerPolicy {
        plain: PlainPolicy::Ignore,
        ..ServerPolicy::default()
    };
    assert_eq!(
        run(&policy, Some(&keyset), Admission::Allow, &cases[0]).0,
        ServerAction::Drop(DropReason::NtsRequired)
    );
}

#[test]
fn nts_fields_without_a_valid_cookie_get_a_drop_or_an_ntsn_never_a_plain_answer() {
    // A cookie, placeholder or authenticator makes a request NTS: it is
    // never answered in plain, which a client expecting NTS would take as
    // a downgrade. Without an authenticator it is malformed (dropped);
    // with a cookie no key here opens, it gets NTSN echoing its UID.
    let nts = nts_request(AeadAlgorithm::AesSivCmac256, 0);
    let uid = nts.uid.to_vec();
    let cookie_no_auth = plain_with(
        &[
            (FieldType::UniqueIdentifier, uid.clone()),
            (FieldType::NtsCookie, vec![3; 100]),
        ],
        0,
    );
    assert_eq!(
        run(
            &ServerPolicy::default(),
            Some(&nts.keyset),
            Admission::Allow,
            &cookie_no_auth
        )
        .0,
        ServerAction::Drop(DropReason::Nts(NtsDrop::NoAuthenticator))
    );
    let placeholder_only = plain_with(
        &[
            (FieldType::UniqueIdentifier, uid.clone()),
            (FieldType::CookiePlaceholder, vec![0; 100]),
        ],
        0,
    );
    assert_eq!(
        run(
            &ServerPolicy::default(),
            Some(&nts.keyset),
            Admission::Allow,
            &placeholder_only
        )
        .0,
        ServerAction::Drop(DropReason::Nts(NtsDrop::NoCookie))
    );
    // The same requests where no NTS-KE server runs: not ours to judge.
    for req in [&cookie_no_auth, &placeholder_only, &nts.request] {
        assert_eq!(
            run(&ServerPolicy::default(), None, Admission::Allow, req).0,
            ServerAction::Drop(DropReason::NoKeyset)
        );
    }
}
