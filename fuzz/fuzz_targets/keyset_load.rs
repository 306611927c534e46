//! `KeySet::decode` on arbitrary key files. Two modes: raw bytes, and bytes
//! behind the magic with a correct CRC appended (so the fuzzer gets past the
//! checksum to the field checks). A loaded set encodes back to the same
//! bytes when its configuration keeps every key, rotates without panicking,
//! and seals cookies that it opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::{Input, fixture, rng};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig, MAX_KEYS, MAX_STALE_KEYS};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let config = KeySetConfig {
        rotation_interval_secs: u64::from(input.u16()),
        stale_key_count: usize::from(input.u16()) % (MAX_STALE_KEYS + 8),
    };
    let now = input.u64();
    let bytes: Vec<u8> = if mode & 1 == 0 {
        input.rest().to_vec()
    } else {
        let mut b = b"SUNDIALK".to_vec();
        b.extend_from_slice(input.rest());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    };

    let Ok(mut set) = KeySet::decode(&bytes, config) else {
        return;
    };
    assert!(set.len() >= 1 && set.len() <= MAX_KEYS);
    assert!(set.len() <= config.stale_key_count.min(MAX_STALE_KEYS) + 1);
    let ids: Vec<u32> = set.key_ids().collect();
    assert_eq!(ids[0], set.current_id());
    if config.stale_key_count >= MAX_STALE_KEYS {
        assert_eq!(&set.encode()[..], &bytes[..]);
    }
    let reloaded = KeySet::decode(&set.encode(), config).expect("own encoding loads");
    assert_eq!(reloaded.key_ids().collect::<Vec<_>>(), ids);

    // Every key opens what it sealed, before and after rotation.
    let fx = fixture();
    let keys = &fx.alg(mode >> 1).keys;
    let mut buf = [0u8; 256];
    let mut rng = rng(3);
    let n = set.seal_cookie(keys, &mut rng, &mut buf).expect("fits");
    let cookie = buf[..n].to_vec();
    assert!(set.open_cookie(&cookie).is_ok());
    let due_at = set
        .current()
        .created_at()
        .checked_add(config.rotation_interval_secs.max(1));
    let rotated = set.rotate_if_due(now, &mut rng);
    if let Some(due_at) = due_at {
        assert_eq!(rotated, now >= due_at);
    }
    assert!(set.len() <= config.stale_key_count.min(MAX_STALE_KEYS) + 1);
    let ids_after: Vec<u32> = set.key_ids().collect();
    let mut dedup = ids_after.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        ids_after.len(),
        "duplicate key ids after rotation"
    );
    if set.key_ids().any(|id| id == ids[0]) {
        assert!(set.open_cookie(&cookie).is_ok());
    }
    let n = set.seal_cookie(keys, &mut rng, &mut buf).expect("fits");
    assert!(set.open_cookie(&buf[..n]).is_ok());
});
