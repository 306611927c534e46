//! Opening cookies: `KeySet::open_cookie` and `MasterKey::open_cookie` on
//! arbitrary bytes under a fixed, seeded keyset. Three modes: raw bytes;
//! raw bytes behind the current key id (past the key lookup); and cookies
//! correctly sealed under the master key around a fuzzer-chosen plaintext,
//! which reach the plaintext parser behind the authentication. The keyset
//! and the key must agree, and whatever opens must seal and open again to
//! the same keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::{Input, fixture, rng};
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::cookie::{CookieError, MAX_COOKIE_LEN, cookie_key_id, cookie_len};

fn same(a: &Result<NtsKeys, CookieError>, b: &Result<NtsKeys, CookieError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            a.algorithm() == b.algorithm()
                && a.c2s.as_bytes() == b.c2s.as_bytes()
                && a.s2c.as_bytes() == b.s2c.as_bytes()
        }
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let id = fx.keyset.current_id().to_be_bytes();
    let mut input = Input::new(data);
    let mode = input.u8() % 3;
    let cookie: Vec<u8> = match mode {
        0 => input.rest().to_vec(),
        1 => [&id[..], input.rest()].concat(),
        _ => {
            let nonce = input.bytes(16).to_vec();
            let plaintext = input.rest();
            let master = AeadKey::aes_siv_cmac_256(&fx.master_key);
            let Ok(ct) = master.seal(&nonce, &id, plaintext) else {
                return;
            };
            [&id[..], &nonce, &ct].concat()
        }
    };

    let from_set = fx.keyset.open_cookie(&cookie);
    let from_key = fx.keyset.current().open_cookie(&cookie);
    if cookie_key_id(&cookie) == Some(fx.keyset.current_id()) {
        assert!(same(&from_set, &from_key), "{from_set:?} vs {from_key:?}");
    } else {
        assert!(from_set.is_err() && from_key.is_err());
    }
    assert!(fx.other_keyset.open_cookie(&cookie).is_err() || mode == 0);

    if let Ok(keys) = from_set {
        let alg = keys.algorithm();
        assert!(alg.is_supported());
        assert_eq!(keys.s2c.algorithm(), alg);
        assert_eq!(Some(cookie.len()), cookie_len(alg));
        assert!(cookie.len() <= MAX_COOKIE_LEN);
        let mut buf = [0u8; MAX_COOKIE_LEN];
        let n = fx
            .keyset
            .seal_cookie(&keys, &mut rng(1), &mut buf)
            .expect("an opened cookie's keys seal");
        assert_eq!(n, cookie.len());
        let again = fx.keyset.open_cookie(&buf[..n]);
        assert!(same(&Ok(keys), &again));
    } else if mode == 2 {
        // A well-formed plaintext always opens.
        let plaintext = &data[17.min(data.len())..];
        if plaintext.len() >= 4 && plaintext[2..4] == [0, 0] {
            let alg = AeadAlgorithm::from_u16(u16::from_be_bytes([plaintext[0], plaintext[1]]));
            if alg.key_len().is_some_and(|k| plaintext.len() == 4 + 2 * k) {
                panic!("a well-formed cookie did not open: {from_set:?}");
            }
        }
    }
});
