//! The NTP server decision under hostile input (issue 6, item 2): the
//! whole corpus of `hostile_corpus` through `handle`, for every AEAD
//! algorithm, with the outcome each case is owed, no response ever larger
//! than its request, and the drop reasons told apart.

mod hostile_corpus;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hostile_corpus::{Expect, corpus};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sundial_proto::ntp::packet::{NtpHeader, ReferenceId};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::server::{
    Admission, DropReason, ResponseKind, ServerAction, ServerPolicy, ServerState, handle,
};

const NOW: u64 = 1_800_000_000;
const RECV: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0000_0000);

fn keys(alg: AeadAlgorithm, rng: &mut ChaCha20Rng) -> NtsKeys {
    NtsKeys {
        c2s: AeadKey::generate(alg, rng).unwrap(),
        s2c: AeadKey::generate(alg, rng).unwrap(),
    }
}

fn seal(keyset: &KeySet, keys: &NtsKeys, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let n = keyset.seal_cookie(keys, rng, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// A short name for a drop reason, for the tally.
fn reason_name(reason: &DropReason) -> String {
    match reason {
        DropReason::Nts(nts) => {
            let inner = format!("{nts:?}");
            format!("Nts({})", inner.split('(').next().unwrap_or_default())
        }
        other => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[test]
fn no_hostile_request_panics_gets_an_undue_answer_or_amplifies() {
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut cases_run = 0usize;
    let mut slowest = Duration::ZERO;
    for alg in AeadAlgorithm::SUPPORTED {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(alg.to_u16()));
        let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng);
        let stranger = KeySet::generate(KeySetConfig::default(), NOW, &mut rng);
        let keys = keys(alg, &mut rng);
        let cookie = seal(&keyset, &keys, &mut rng);
        let foreign = seal(&stranger, &keys, &mut rng);
        let state = ServerState::local(1, ReferenceId(*b"LOCL"), RECV);
        for case in corpus(&keys, &cookie, &foreign) {
            // The listener's buffer is 2048 bytes; a 64 KiB one here makes
            // sure the length cap is the request, not the buffer.
            let mut out = vec![0u8; 64 * 1024];
            let began = Instant::now();
            let action = handle(
                &state,
                &ServerPolicy::default(),
                Some(&keyset),
                Admission::Allow,
                &case.bytes,
                RECV,
                || RECV,
                &mut rng,
                &mut out,
            );
            slowest = slowest.max(began.elapsed());
            cases_run += 1;
            let outcome = match action {
                ServerAction::Respond { len, kind } => {
                    assert!(
                        len <= case.bytes.len(),
                        "{alg:?} {}: {len}-byte answer to a {}-byte request",
                        case.name,
                        case.bytes.len()
                    );
                    let (h, _) = NtpHeader::parse(&out[..len]).unwrap();
                    assert_eq!(
                        h.origin_timestamp,
                        NtpHeader::parse(&case.bytes).unwrap().0.transmit_timestamp
                    );
                    if kind == ResponseKind::NtsNak {
                        assert_eq!(h.reference_id, ReferenceId::NTSN);
                        assert_eq!(h.stratum, 0);
                    }
                    *tally.entry(format!("answered {kind:?}")).or_default() += 1;
                    Some(kind)
                }
                ServerAction::Drop(reason) => {
                    *tally
                        .entry(format!("dropped {}", reason_name(&reason)))
                        .or_default() += 1;
                    None
                }
            };
            let ok = match case.expect {
                Expect::Drop => outcome.is_none(),
                Expect::Plain => outcome == Some(ResponseKind::Plain),
                Expect::Nts => outcome == Some(ResponseKind::Nts),
                Expect::Nak => outcome == Some(ResponseKind::NtsNak),
                Expect::NotNts => outcome != Some(ResponseKind::Nts),
            };
            assert!(
                ok,
                "{alg:?} {}: expected {:?}, got {action:?}",
                case.name, case.expect
            );
        }
    }
    eprintln!("{cases_run} cases, slowest {slowest:?}");
    for (what, n) in &tally {
        eprintln!("{n:>6}  {what}");
    }
    // The reasons are told apart: each fault class shows up under its own
    // name, not one catch-all.
    for reason in [
        "dropped Header",
        "dropped Nts(Authentication)",
        "dropped Nts(NonceTooShort)",
        "dropped Nts(NoUniqueId)",
        "dropped Nts(DuplicateUniqueId)",
        "dropped Nts(ShortUniqueId)",
        "dropped Nts(NoCookie)",
        "dropped Nts(SeveralCookies)",
        "dropped Nts(PlaceholderSize)",
        "dropped Nts(NoAuthenticator)",
        "dropped Nts(FieldAfterAuthenticator)",
        "answered NtsNak",
        "answered Nts",
    ] {
        assert!(
            tally.keys().any(|k| k.starts_with(reason)),
            "no case ended as {reason}: {tally:?}"
        );
    }
    // No stall: even 3000 fields are one linear pass (generous for debug
    // builds on a loaded machine).
    assert!(
        slowest < Duration::from_millis(200),
        "slowest case {slowest:?}"
    );
}

#[test]
fn many_placeholders_get_as_many_cookies_as_fit_in_the_request() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng);
    let keys = keys(AeadAlgorithm::AesSivCmac256, &mut rng);
    let cookie = seal(&keyset, &keys, &mut rng);
    let case = corpus(&keys, &cookie, &cookie)
        .into_iter()
        .find(|c| c.name == "500 placeholders")
        .unwrap();
    // A 2048-byte output buffer, as the listener has: the answer is cut to
    // what fits, never an error, never more than the request.
    let mut out = [0u8; 2048];
    let action = handle(
        &ServerState::UNSYNCHRONIZED,
        &ServerPolicy::default(),
        Some(&keyset),
        Admission::Allow,
        &case.bytes,
        RECV,
        || RECV,
        &mut rng,
        &mut out,
    );
    match action {
        ServerAction::Respond {
            len,
            kind: ResponseKind::Nts,
        } => assert!(len <= 2048),
        other => panic!("{other:?}"),
    }
}
