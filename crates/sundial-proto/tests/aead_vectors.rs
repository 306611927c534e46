//! The AEAD layer against the RFC test vectors, byte for byte, and its
//! misuse and tampering behaviour.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use aes_siv::KeyInit;
use aes_siv::siv::Aes128Siv;
use hex_literal::hex;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sundial_proto::nts::aead::{AeadAlgorithm, AeadError, AeadKey, TAG_LEN};

// RFC 5297 Appendix A.1: deterministic AES-SIV-CMAC-256.
const A1_KEY: [u8; 32] = hex!(
    "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0"
    "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
);
const A1_AD: [u8; 24] = hex!("101112131415161718191a1b1c1d1e1f2021222324252627");
const A1_PLAINTEXT: [u8; 14] = hex!("112233445566778899aabbccddee");
const A1_OUTPUT: [u8; 30] = hex!(
    "85632d07c6e8f37f950acd320a2ecc93"
    "40c02b9690c4dc04daef7f6afe5c"
);

// RFC 5297 Appendix A.2: nonce-based, two AD components and a nonce.
const A2_KEY: [u8; 32] = hex!(
    "7f7e7d7c7b7a79787776757473727170"
    "404142434445464748494a4b4c4d4e4f"
);
const A2_AD1: [u8; 40] = hex!(
    "00112233445566778899aabbccddeeff"
    "deaddadadeaddadaffeeddccbbaa9988"
    "7766554433221100"
);
const A2_AD2: [u8; 10] = hex!("102030405060708090a0");
const A2_NONCE: [u8; 16] = hex!("09f911029d74e35bd84156c5635688c0");
const A2_PLAINTEXT: [u8; 47] = hex!(
    "7468697320697320736f6d6520706c61"
    "696e7465787420746f20656e63727970"
    "74207573696e67205349562d414553"
);
const A2_OUTPUT: [u8; 63] = hex!(
    "7bdb6e3b432667eb06f4d14bff2fbd0f"
    "cb900f2fddbe404326601965c889bf17"
    "dba77ceb094fa663b7a3f748ba8af829"
    "ea64ad544a272e9c485b62a3fd5c0d"
);

#[test]
fn rfc5297_a1_deterministic() {
    let mut siv = Aes128Siv::new(&A1_KEY.into());
    let out = siv.encrypt([&A1_AD[..]], &A1_PLAINTEXT).unwrap();
    assert_eq!(out, A1_OUTPUT);
    let back = siv.decrypt([&A1_AD[..]], &A1_OUTPUT).unwrap();
    assert_eq!(back, A1_PLAINTEXT);
}

#[test]
fn rfc5297_a2_nonce_based() {
    let mut siv = Aes128Siv::new(&A2_KEY.into());
    let headers: [&[u8]; 3] = [&A2_AD1, &A2_AD2, &A2_NONCE];
    let out = siv.encrypt(headers, &A2_PLAINTEXT).unwrap();
    assert_eq!(out, A2_OUTPUT);
    assert_eq!(siv.decrypt(headers, &A2_OUTPUT).unwrap(), A2_PLAINTEXT);
}

/// Our RFC 5116 wrapper must be exactly S2V over `[ad, nonce]` with the
/// synthetic IV in front: checked against the raw library on both RFC keys.
#[test]
fn siv_wrapper_is_ad_then_nonce() {
    for (key, ad, nonce, pt) in [
        (&A1_KEY, &A1_AD[..], &A2_NONCE[..], &A1_PLAINTEXT[..]),
        (&A2_KEY, &A2_AD1[..], &A2_NONCE[..], &A2_PLAINTEXT[..]),
        (&A2_KEY, &A2_AD2[..], &[7u8][..], &A2_PLAINTEXT[..]),
        (&A2_KEY, &[][..], &A2_NONCE[..], &[][..]),
    ] {
        let expected = Aes128Siv::new(key.into()).encrypt([ad, nonce], pt).unwrap();
        let ours = AeadKey::new(AeadAlgorithm::AesSivCmac256, key).unwrap();
        let sealed = ours.seal(nonce, ad, pt).unwrap();
        assert_eq!(sealed, expected);
        assert_eq!(ours.open(nonce, ad, &sealed).unwrap(), pt);
    }
}

struct GcmSivVector {
    key: [u8; 16],
    nonce: [u8; 12],
    aad: &'static [u8],
    plaintext: &'static [u8],
    result: &'static [u8],
}

/// RFC 8452 Appendix C.1 (AEAD_AES_128_GCM_SIV), a selection covering empty
/// input, AAD and plaintext lengths that are not multiples of 16, and keys
/// other than the all-but-one-zero key.
const GCM_SIV_VECTORS: &[GcmSivVector] = &[
    GcmSivVector {
        key: hex!("01000000000000000000000000000000"),
        nonce: hex!("030000000000000000000000"),
        aad: &[],
        plaintext: &[],
        result: &hex!("dc20e2d83f25705bb49e439eca56de25"),
    },
    GcmSivVector {
        key: hex!("01000000000000000000000000000000"),
        nonce: hex!("030000000000000000000000"),
        aad: &[],
        plaintext: &hex!("0100000000000000"),
        result: &hex!("b5d839330ac7b786578782fff6013b81" "5b287c22493a364c"),
    },
    GcmSivVector {
        key: hex!("01000000000000000000000000000000"),
        nonce: hex!("030000000000000000000000"),
        aad: &hex!("01"),
        plaintext: &hex!("0200000000000000"),
        result: &hex!("1e6daba35669f4273b0a1a2560969cdf" "790d99759abd1508"),
    },
    GcmSivVector {
        key: hex!("01000000000000000000000000000000"),
        nonce: hex!("030000000000000000000000"),
        aad: &hex!("010000000000000000000000"),
        plaintext: &hex!("02000000"),
        result: &hex!("a8fe3e8707eb1f84fb28f8cb73de8e99" "e2f48a14"),
    },
    GcmSivVector {
        key: hex!("01000000000000000000000000000000"),
        nonce: hex!("030000000000000000000000"),
        aad: &hex!("01000000000000000000000000000000" "0200"),
        plaintext: &hex!("03000000000000000000000000000000" "04000000"),
        result: &hex!(
            "6bb0fecf5ded9b77f902c7d5da236a43"
            "91dd029724afc9805e976f451e6d87f6"
            "fe106514"
        ),
    },
    GcmSivVector {
        key: hex!("01000000000000000000000000000000"),
        nonce: hex!("030000000000000000000000"),
        aad: &hex!("01000000000000000000000000000000" "02000000"),
        plaintext: &hex!("03000000000000000000000000000000" "0400"),
        result: &hex!(
            "44d0aaf6fb2f1f34add5e8064e83e12a"
            "2adabff9b2ef00fb47920cc72a0c0f13"
            "b9fd"
        ),
    },
    GcmSivVector {
        key: hex!("e66021d5eb8e4f4066d4adb9c33560e4"),
        nonce: hex!("f46e44bb3da0015c94f70887"),
        aad: &[],
        plaintext: &[],
        result: &hex!("a4194b79071b01a87d65f706e3949578"),
    },
    GcmSivVector {
        key: hex!("36864200e0eaf5284d884a0e77d31646"),
        nonce: hex!("bae8e37fc83441b16034566b"),
        aad: &hex!("46bb91c3c5"),
        plaintext: &hex!("7a806c"),
        result: &hex!("af60eb711bd85bc1e4d3e0a462e074ee" "a428a8"),
    },
    GcmSivVector {
        key: hex!("d5cc1fd161320b6920ce07787f86743b"),
        nonce: hex!("275d1ab32f6d1f0434d8848c"),
        aad: &hex!("046787f3ea22c127aaf195d1894728"),
        plaintext: &hex!("1177441f195495860f"),
        result: &hex!("4f37281f7ad12949d01d02fd0cd174c8" "4fc5dae2f60f52fd2b"),
    },
    GcmSivVector {
        key: hex!("f901cfe8a69615a93fdf7a98cad48179"),
        nonce: hex!("6245709fb18853f68d833640"),
        aad: &hex!(
            "7576f7028ec6eb5ea7e298342a94d4b2"
            "02b370ef9768ec6561c4fe6b7e7296fa"
            "859c21"
        ),
        plaintext: &hex!("e42a3c02c25b64869e146d7b233987bd" "dfc240871d"),
        result: &hex!(
            "391cc328d484a4f46406181bcd62efd9"
            "b3ee197d052d15506c84a9edd65e13e9"
            "d24a2a6e70"
        ),
    },
];

#[test]
fn rfc8452_c1_aes_128_gcm_siv() {
    for (i, v) in GCM_SIV_VECTORS.iter().enumerate() {
        let key = AeadKey::new(AeadAlgorithm::Aes128GcmSiv, &v.key).unwrap();
        assert_eq!(v.result.len(), v.plaintext.len() + TAG_LEN, "vector {i}");
        assert_eq!(
            key.seal(&v.nonce, v.aad, v.plaintext).unwrap(),
            v.result,
            "seal, vector {i}"
        );
        assert_eq!(
            key.open(&v.nonce, v.aad, v.result).unwrap(),
            v.plaintext,
            "open, vector {i}"
        );

        // The in-place form, with spare room past the ciphertext untouched.
        let mut buf = [0xaau8; 128];
        buf[..v.plaintext.len()].copy_from_slice(v.plaintext);
        let n = key
            .seal_in_place(&v.nonce, v.aad, &mut buf, v.plaintext.len())
            .unwrap();
        assert_eq!(&buf[..n], v.result, "seal_in_place, vector {i}");
        assert!(buf[n..].iter().all(|&b| b == 0xaa));
        let m = key.open_in_place(&v.nonce, v.aad, &mut buf[..n]).unwrap();
        assert_eq!(&buf[..m], v.plaintext, "open_in_place, vector {i}");
    }
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5eed)
}

#[test]
fn roundtrip_all_algorithms_in_place() {
    let mut rng = rng();
    for alg in AeadAlgorithm::SUPPORTED {
        let key = AeadKey::generate(alg, &mut rng).unwrap();
        assert_eq!(key.as_bytes().len(), alg.key_len().unwrap());
        let mut nonce = vec![0u8; alg.nonce_len().unwrap()];
        rng.fill_bytes(&mut nonce);
        for len in [0usize, 1, 15, 16, 17, 68, 200] {
            let mut plaintext = vec![0u8; len];
            rng.fill_bytes(&mut plaintext);
            let mut buf = vec![0u8; len + TAG_LEN];
            buf[..len].copy_from_slice(&plaintext);
            let n = key.seal_in_place(&nonce, b"ad", &mut buf, len).unwrap();
            assert_eq!(n, len + TAG_LEN);
            assert_eq!(buf, key.seal(&nonce, b"ad", &plaintext).unwrap());
            let m = key.open_in_place(&nonce, b"ad", &mut buf).unwrap();
            assert_eq!(&buf[..m], &plaintext[..], "{alg:?} len {len}");
        }
    }
}

#[test]
fn tampering_any_byte_fails() {
    let mut rng = rng();
    for alg in AeadAlgorithm::SUPPORTED {
        let key = AeadKey::generate(alg, &mut rng).unwrap();
        let nonce = vec![3u8; alg.nonce_len().unwrap()];
        let ad = b"associated data";
        let plaintext = b"twenty-one bytes long";
        let sealed = key.seal(&nonce, ad, plaintext).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                key.open(&nonce, ad, &bad),
                Err(AeadError::Authentication),
                "{alg:?} ciphertext byte {i}"
            );
            // The in-place form leaves no plaintext behind on failure.
            let mut buf = bad.clone();
            assert!(key.open_in_place(&nonce, ad, &mut buf).is_err());
            assert_eq!(buf, bad);
        }
        for i in 0..ad.len() {
            let mut bad = *ad;
            bad[i] ^= 0x80;
            assert_eq!(
                key.open(&nonce, &bad, &sealed),
                Err(AeadError::Authentication)
            );
        }
        for i in 0..nonce.len() {
            let mut bad = nonce.clone();
            bad[i] ^= 0x10;
            assert_eq!(key.open(&bad, ad, &sealed), Err(AeadError::Authentication));
        }
        // Dropping or adding AD, and a different key, fail too.
        assert!(key.open(&nonce, b"", &sealed).is_err());
        let other = AeadKey::generate(alg, &mut rng).unwrap();
        assert_eq!(
            other.open(&nonce, ad, &sealed),
            Err(AeadError::Authentication)
        );
        // Truncated ciphertexts, down to nothing, fail without panicking.
        for len in 0..sealed.len() {
            assert_eq!(
                key.open(&nonce, ad, &sealed[..len]),
                Err(AeadError::Authentication),
                "{alg:?} truncated to {len}"
            );
        }
    }
}

#[test]
fn wrong_key_length_and_unknown_algorithm() {
    for alg in AeadAlgorithm::SUPPORTED {
        let need = alg.key_len().unwrap();
        for got in [0, 1, need - 1, need + 1, 128] {
            assert_eq!(
                AeadKey::new(alg, &vec![0u8; got]).err(),
                Some(AeadError::KeyLength { got, need })
            );
        }
        assert!(AeadKey::new(alg, &vec![0u8; need]).is_ok());
    }
    assert_eq!(
        AeadKey::new(AeadAlgorithm::Unknown(99), &[0u8; 32]).err(),
        Some(AeadError::Unsupported(99))
    );
    assert_eq!(AeadAlgorithm::Unknown(99).nonce_len(), None);
    assert_eq!(
        AeadKey::generate(AeadAlgorithm::from_u16(1), &mut rng()).err(),
        Some(AeadError::Unsupported(1))
    );
}

#[test]
fn nonce_rules() {
    let mut rng = rng();
    let siv = AeadKey::generate(AeadAlgorithm::AesSivCmac256, &mut rng).unwrap();
    assert_eq!(siv.seal(&[], b"", b"x"), Err(AeadError::Nonce));
    assert_eq!(siv.open(&[], b"", &[0u8; 17]), Err(AeadError::Nonce));
    // Any non-empty nonce length works for SIV.
    for len in [1usize, 12, 16, 32, 100] {
        let nonce = vec![9u8; len];
        let sealed = siv.seal(&nonce, b"", b"x").unwrap();
        assert_eq!(siv.open(&nonce, b"", &sealed).unwrap(), b"x");
    }
    let gcm = AeadKey::generate(AeadAlgorithm::Aes128GcmSiv, &mut rng).unwrap();
    for len in [0usize, 11, 13, 16] {
        let nonce = vec![9u8; len];
        assert_eq!(gcm.seal(&nonce, b"", b"x"), Err(AeadError::Nonce));
        assert_eq!(gcm.open(&nonce, b"", &[0u8; 17]), Err(AeadError::Nonce));
    }
}

#[test]
fn buffer_too_small_is_an_error() {
    let mut rng = rng();
    for alg in AeadAlgorithm::SUPPORTED {
        let key = AeadKey::generate(alg, &mut rng).unwrap();
        let nonce = vec![1u8; alg.nonce_len().unwrap()];
        let mut buf = [0u8; 20];
        assert_eq!(
            key.seal_in_place(&nonce, b"", &mut buf, 5),
            Err(AeadError::BufferTooSmall)
        );
        assert_eq!(
            key.seal_in_place(&nonce, b"", &mut buf, usize::MAX),
            Err(AeadError::BufferTooSmall)
        );
        assert_eq!(key.seal_in_place(&nonce, b"", &mut buf, 4), Ok(20));
    }
}

#[test]
fn debug_prints_no_key_bytes() {
    let key = AeadKey::new(AeadAlgorithm::AesSivCmac256, &[0xabu8; 32]).unwrap();
    let shown = format!("{key:?}");
    assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    assert!(shown.contains("AesSivCmac256"));
}
