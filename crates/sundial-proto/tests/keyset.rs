//! The server's rotating master keys: cookies across rotations, and the key
//! file's encoding, including hostile and damaged files.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::cookie::{CookieError, MAX_COOKIE_LEN, cookie_len};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig, KeySetError, MAX_STALE_KEYS};

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn nts_keys(alg: AeadAlgorithm, rng: &mut ChaCha20Rng) -> NtsKeys {
    NtsKeys {
        c2s: AeadKey::generate(alg, rng).unwrap(),
        s2c: AeadKey::generate(alg, rng).unwrap(),
    }
}

fn seal(set: &KeySet, keys: &NtsKeys, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut buf = [0u8; MAX_COOKIE_LEN];
    let n = set.seal_cookie(keys, rng, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn same_keys(a: &NtsKeys, b: &NtsKeys) -> bool {
    a.algorithm() == b.algorithm()
        && a.c2s.as_bytes() == b.c2s.as_bytes()
        && a.s2c.as_bytes() == b.s2c.as_bytes()
}

#[test]
fn defaults_match_ntpd_rs() {
    let c = KeySetConfig::default();
    assert_eq!((c.rotation_interval_secs, c.stale_key_count), (86_400, 7));
}

#[test]
fn seal_open_every_algorithm() {
    let mut rng = rng(1);
    let set = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    for alg in AeadAlgorithm::SUPPORTED {
        let keys = nts_keys(alg, &mut rng);
        let cookie = seal(&set, &keys, &mut rng);
        assert_eq!(Some(cookie.len()), cookie_len(alg));
        assert!(
            same_keys(&set.open_cookie(&cookie).unwrap(), &keys),
            "{alg:?}"
        );
    }
}

#[test]
fn rotation_schedule() {
    let mut rng = rng(2);
    let mut set = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    assert_eq!(set.next_rotation(), T0 + DAY);
    assert!(!set.rotate_if_due(T0 + DAY - 1, &mut rng));
    // A clock that went backwards rotates nothing.
    assert!(!set.rotate_if_due(T0 - 5, &mut rng));
    let first = set.current_id();
    assert!(set.rotate_if_due(T0 + DAY + 10, &mut rng));
    assert_ne!(set.current_id(), first);
    // Stamped on the schedule, not at the late `now`.
    assert_eq!(set.current().created_at(), T0 + DAY);
    assert_eq!(set.next_rotation(), T0 + 2 * DAY);
    assert_eq!(
        set.key_ids().collect::<Vec<_>>(),
        vec![set.current_id(), first]
    );
    // Three intervals at once: three rotations.
    assert!(set.rotate_if_due(T0 + 4 * DAY, &mut rng));
    assert_eq!(set.len(), 5);
    assert_eq!(set.current().created_at(), T0 + 4 * DAY);
    assert_eq!(set.key_ids().last(), Some(first));
}

#[test]
fn cookies_survive_stale_key_count_rotations_and_no_more() {
    let mut rng = rng(3);
    let config = KeySetConfig {
        rotation_interval_secs: 100,
        stale_key_count: 3,
    };
    let mut set = KeySet::generate(config, T0, &mut rng);
    let keys = nts_keys(AeadAlgorithm::AesSivCmac256, &mut rng);
    let cookie = seal(&set, &keys, &mut rng);
    let sealing_id = set.current_id();
    for n in 1..=3u64 {
        assert!(set.rotate_if_due(T0 + n * 100, &mut rng));
        assert!(
            same_keys(&set.open_cookie(&cookie).unwrap(), &keys),
            "after {n}"
        );
        assert!(set.len() <= 4);
    }
    assert!(set.rotate_if_due(T0 + 400, &mut rng));
    assert_eq!(set.len(), 4);
    assert_eq!(
        set.open_cookie(&cookie).err(),
        Some(CookieError::UnknownKey(sealing_id))
    );
}

#[test]
fn long_downtime_ages_keys_out_by_time() {
    let mut rng = rng(4);
    let mut set = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    let keys = nts_keys(AeadAlgorithm::AesSivCmac512, &mut rng);
    let cookie = seal(&set, &keys, &mut rng);
    // Ten years in one call: bounded work, at most 1 + 7 keys, old ones gone.
    assert!(set.rotate_if_due(T0 + 3650 * DAY + 5, &mut rng));
    assert_eq!(set.len(), 8);
    assert_eq!(set.current().created_at(), T0 + 3650 * DAY);
    assert!(matches!(
        set.open_cookie(&cookie),
        Err(CookieError::UnknownKey(_))
    ));
    let mut ids: Vec<u32> = set.key_ids().collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "ids unique");
}

#[test]
fn zero_interval_and_huge_stale_count_are_bounded() {
    let mut rng = rng(5);
    let config = KeySetConfig {
        rotation_interval_secs: 0,
        stale_key_count: usize::MAX,
    };
    let mut set = KeySet::generate(config, 0, &mut rng);
    assert!(set.rotate_if_due(u64::MAX, &mut rng));
    assert_eq!(set.len(), MAX_STALE_KEYS + 1);
    let mut ids: Vec<u32> = set.key_ids().collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MAX_STALE_KEYS + 1);
    // And the maximal set still encodes and decodes.
    let back = KeySet::decode(&set.encode(), config).unwrap();
    assert_eq!(back.len(), set.len());
}

#[test]
fn set_config_drops_oldest_keys() {
    let mut rng = rng(6);
    let mut set = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    set.rotate_if_due(T0 + 5 * DAY, &mut rng);
    let ids: Vec<u32> = set.key_ids().collect();
    set.set_config(KeySetConfig {
        rotation_interval_secs: 3600,
        stale_key_count: 2,
    });
    assert_eq!(set.key_ids().collect::<Vec<_>>(), ids[..3].to_vec());
    assert_eq!(set.next_rotation(), T0 + 5 * DAY + 3600);
}

#[test]
fn garbage_cookies_are_typed_errors() {
    let mut rng = rng(7);
    let set = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    assert!(matches!(
        set.open_cookie(&[]),
        Err(CookieError::Malformed(_))
    ));
    assert!(matches!(
        set.open_cookie(&[1, 2]),
        Err(CookieError::Malformed(_))
    ));
    let mut c = set.current_id().to_be_bytes().to_vec();
    c.resize(104, 0);
    assert_eq!(set.open_cookie(&c).err(), Some(CookieError::Authentication));
    c.truncate(50);
    assert!(matches!(
        set.open_cookie(&c),
        Err(CookieError::Malformed(_))
    ));
}

fn sample_set(rng: &mut ChaCha20Rng) -> KeySet {
    let mut set = KeySet::generate(KeySetConfig::default(), T0, rng);
    set.rotate_if_due(T0 + 3 * DAY, rng);
    set
}

#[test]
fn encode_decode_roundtrip_opens_old_cookies() {
    let mut rng = rng(8);
    let mut set = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    let keys = nts_keys(AeadAlgorithm::Aes128GcmSiv, &mut rng);
    let old_cookie = seal(&set, &keys, &mut rng);
    set.rotate_if_due(T0 + 2 * DAY, &mut rng);
    let new_cookie = seal(&set, &keys, &mut rng);

    let bytes = set.encode();
    assert_eq!(&bytes[..8], b"SUNDIALK");
    // current + 2 stale + the pre-published next key
    assert_eq!(bytes.len(), 14 + 4 * 46 + 4);
    let back = KeySet::decode(&bytes, KeySetConfig::default()).unwrap();
    assert_eq!(
        back.key_ids().collect::<Vec<_>>(),
        set.key_ids().collect::<Vec<_>>()
    );
    assert_eq!(back.current().created_at(), set.current().created_at());
    assert_eq!(back.next_rotation(), set.next_rotation());
    assert!(same_keys(&back.open_cookie(&old_cookie).unwrap(), &keys));
    assert!(same_keys(&back.open_cookie(&new_cookie).unwrap(), &keys));
    // Encoding is deterministic for a given set.
    assert_eq!(*back.encode(), *bytes);

    // Loading with a smaller stale count keeps the newest keys.
    let small = KeySet::decode(
        &bytes,
        KeySetConfig {
            stale_key_count: 1,
            ..KeySetConfig::default()
        },
    )
    .unwrap();
    assert_eq!(small.len(), 2);
    assert!(matches!(
        small.open_cookie(&old_cookie),
        Err(CookieError::UnknownKey(_))
    ));
}

/// Rewrites the checksum, so a test reaches the checks behind it.
fn refresh_crc(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn decode_rejects_each_problem_precisely() {
    let mut rng = rng(9);
    let set = sample_set(&mut rng);
    let good = set.encode().to_vec();
    let cfg = KeySetConfig::default();

    assert_eq!(KeySet::decode(b"", cfg).err(), Some(KeySetError::Truncated));
    assert_eq!(
        KeySet::decode(b"SUND", cfg).err(),
        Some(KeySetError::Truncated)
    );
    assert_eq!(
        KeySet::decode(b"NOPE", cfg).err(),
        Some(KeySetError::BadMagic)
    );
    assert_eq!(
        KeySet::decode(b"{\"keys\": []} and more", cfg).err(),
        Some(KeySetError::BadMagic)
    );

    let mut v = good.clone();
    v[9] = 2; // version 2: from the future
    refresh_crc(&mut v);
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::UnsupportedVersion(2))
    );

    let mut v = good.clone();
    v[11] = 3; // flags: the next-key flag plus one from the future
    refresh_crc(&mut v);
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::UnsupportedFlags(3))
    );

    let mut v = good.clone();
    v[12..14].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::Corrupt("no keys"))
    );
    v[12..14].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::Corrupt("too many keys"))
    );

    let mut v = good.clone();
    let last = v.len() - 1;
    v[last] ^= 1;
    assert_eq!(KeySet::decode(&v, cfg).err(), Some(KeySetError::Checksum));

    let mut v = good.clone();
    v.push(0);
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::Corrupt("trailing bytes"))
    );

    // Second key gets the first key's id.
    let mut v = good.clone();
    let first_id: [u8; 4] = v[14..18].try_into().unwrap();
    v[14 + 46..18 + 46].copy_from_slice(&first_id);
    refresh_crc(&mut v);
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::Corrupt("duplicate key id"))
    );

    // A master key algorithm other than AES-SIV-CMAC-256.
    let mut v = good.clone();
    v[26..28].copy_from_slice(&17u16.to_be_bytes());
    refresh_crc(&mut v);
    assert_eq!(
        KeySet::decode(&v, cfg).err(),
        Some(KeySetError::Corrupt("unsupported master key algorithm"))
    );
}

#[test]
fn every_truncation_and_byte_flip_is_an_error() {
    let mut rng = rng(10);
    let good = sample_set(&mut rng).encode().to_vec();
    let cfg = KeySetConfig::default();
    for len in 0..good.len() {
        assert!(
            KeySet::decode(&good[..len], cfg).is_err(),
            "truncated to {len}"
        );
    }
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut v = good.clone();
            v[i] ^= flip;
            assert!(KeySet::decode(&v, cfg).is_err(), "byte {i} ^ {flip:#x}");
        }
    }
}

proptest! {
    #[test]
    fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = KeySet::decode(&bytes, KeySetConfig::default());
    }

    #[test]
    fn decode_arbitrary_after_valid_header_never_panics(
        count in any::<u16>(),
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = b"SUNDIALK\x00\x01\x00\x00".to_vec();
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&tail);
        let _ = KeySet::decode(&bytes, KeySetConfig::default());
        // With a correct checksum too, to reach the semantic checks.
        if bytes.len() >= 4 {
            refresh_crc(&mut bytes);
            if let Ok(set) = KeySet::decode(&bytes, KeySetConfig::default()) {
                // Whatever loads is fully usable.
                let mut rng = rng(11);
                let keys = nts_keys(AeadAlgorithm::AesSivCmac256, &mut rng);
                let cookie = seal(&set, &keys, &mut rng);
                prop_assert!(set.open_cookie(&cookie).is_ok());
            }
        }
    }

    #[test]
    fn corrupting_a_valid_encoding_is_an_error(
        seed in any::<u64>(),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut rng = rng(seed);
        let good = sample_set(&mut rng).encode().to_vec();
        let mut v = good.clone();
        v[pos.index(good.len())] ^= flip;
        prop_assert!(KeySet::decode(&v, KeySetConfig::default()).is_err());
        prop_assert!(KeySet::decode(&good[..cut.index(good.len())], KeySetConfig::default()).is_err());
    }
}

#[test]
fn the_next_key_is_published_before_it_seals() {
    let mut rng = rng(21);
    let writer = KeySet::generate(KeySetConfig::default(), T0, &mut rng);
    let next = writer.next_id().unwrap();
    assert_ne!(next, writer.current_id());
    assert!(!writer.key_ids().any(|id| id == next));
    // A copy taken now (a fleet NTP server's) ...
    let copy = KeySet::decode(&writer.encode(), KeySetConfig::default()).unwrap();
    assert_eq!(copy.next_id(), Some(next));
    // ... opens what the writer seals after its rotation, though it has not
    // seen the rotated file yet.
    let mut rotated = writer.clone();
    assert!(rotated.rotate_if_due(T0 + DAY, &mut rng));
    assert_eq!(rotated.current_id(), next);
    assert_eq!(rotated.current().created_at(), T0 + DAY);
    let keys = nts_keys(AeadAlgorithm::AesSivCmac256, &mut rng);
    let cookie = seal(&rotated, &keys, &mut rng);
    assert!(copy.open_cookie(&cookie).is_ok());
    // and a new next key is published at once.
    assert!(rotated.next_id().is_some_and(|n| n != next));
    // A file without the flag (older writer) still loads.
    let mut bytes = writer.encode().to_vec();
    bytes[11] = 0;
    let count = u16::from_be_bytes([bytes[12], bytes[13]]) - 1;
    bytes[12..14].copy_from_slice(&count.to_be_bytes());
    // Drop the next key's record, keep room for the checksum.
    let cut = bytes.len() - 4 - 46;
    bytes.drain(cut..cut + 46);
    refresh_crc(&mut bytes);
    let old = KeySet::decode(&bytes, KeySetConfig::default()).unwrap();
    assert_eq!(old.next_id(), None);
    assert_eq!(old.current_id(), writer.current_id());
}
