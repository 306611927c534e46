//! The server's cookies (RFC 8915 section 6).
//!
//! A cookie is opaque to the client; only the server that made it reads it
//! back. Layout:
//!
//! ```text
//! key id (u32 BE) | nonce (16) | AES-SIV-CMAC-256 ciphertext
//! ```
//!
//! sealed under the master key named by the key id, with the 4-byte key id as
//! associated data, over the plaintext
//!
//! ```text
//! algorithm id (u16 BE) | reserved (u16, zero) | C2S key | S2C key
//! ```
//!
//! The reserved field keeps every cookie length a multiple of 4, which NTP
//! extension fields need anyway, and leaves room for flags later. The key id
//! travels in the clear so the server finds the master key (or answers NTSN
//! for a key it has rotated out) without trial decryption.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::nts::aead::{AeadAlgorithm, AeadError, AeadKey, MAX_KEY_LEN, NtsKeys, TAG_LEN};
use crate::reader::{Reader, Writer};

/// Bytes of the clear key id at the front of every cookie.
pub const KEY_ID_LEN: usize = 4;
/// Bytes of the random SIV nonce after the key id.
pub const COOKIE_NONCE_LEN: usize = 16;
/// Bytes of the master key (AEAD_AES_SIV_CMAC_256).
pub const MASTER_KEY_LEN: usize = 32;
/// The algorithm master keys seal cookies with.
pub const MASTER_KEY_ALGORITHM: AeadAlgorithm = AeadAlgorithm::AesSivCmac256;

const HEADER_LEN: usize = KEY_ID_LEN + COOKIE_NONCE_LEN;
/// Algorithm id and the reserved field.
const PLAINTEXT_HEADER_LEN: usize = 4;
const MAX_PLAINTEXT_LEN: usize = PLAINTEXT_HEADER_LEN + 2 * MAX_KEY_LEN;
/// The longest cookie we make (AES-SIV-CMAC-512 keys): 168 bytes.
pub const MAX_COOKIE_LEN: usize = HEADER_LEN + TAG_LEN + MAX_PLAINTEXT_LEN;

/// The length of a cookie carrying keys of `alg`, or `None` for an algorithm
/// we do not implement. AES-SIV-CMAC-256 keys make a 104-byte cookie.
pub const fn cookie_len(alg: AeadAlgorithm) -> Option<usize> {
    match alg.key_len() {
        Some(key_len) => Some(HEADER_LEN + TAG_LEN + PLAINTEXT_HEADER_LEN + 2 * key_len),
        None => None,
    }
}

/// The master key id a cookie claims, or `None` if it is too short to have one.
pub fn cookie_key_id(cookie: &[u8]) -> Option<u32> {
    cookie
        .first_chunk::<KEY_ID_LEN>()
        .map(|b| u32::from_be_bytes(*b))
}

/// Why a cookie could not be made or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// Not shaped like any cookie we make, or (after authentication) a
    /// plaintext we would not have written.
    #[error("malformed cookie: {0}")]
    Malformed(&'static str),
    /// Sealed under a master key we do not have (rotated out, or another
    /// server's). The NTP server answers this with an NTSN kiss.
    #[error("cookie sealed under unknown master key {0:#010x}")]
    UnknownKey(u32),
    #[error("cookie failed authentication")]
    Authentication,
    #[error("AEAD algorithm {0} cannot be carried in a cookie")]
    UnsupportedAlgorithm(u16),
    #[error("C2S and S2C keys are for different algorithms")]
    MismatchedKeys,
    #[error("buffer too small for the cookie ({need} bytes needed)")]
    BufferTooSmall { need: usize },
    /// The AEAD refused to seal; not expected with the sizes used here.
    #[error("sealing the cookie failed: {0}")]
    Seal(AeadError),
}

/// One server master key: it seals cookies while current and opens them until
/// it is rotated out. The key zeroizes on drop and is absent from `Debug`.
#[derive(Clone)]
pub struct MasterKey {
    id: u32,
    created_at: u64,
    key: AeadKey,
}

impl MasterKey {
    /// A fresh random key. `created_at` is unix seconds, supplied by the caller.
    pub fn generate(id: u32, created_at: u64, rng: &mut impl CryptoRng) -> Self {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        rng.fill_bytes(bytes.as_mut_slice());
        Self {
            id,
            created_at,
            key: AeadKey::aes_siv_cmac_256(&bytes),
        }
    }

    /// A key loaded from storage; `key` must be `MASTER_KEY_LEN` bytes.
    pub fn from_bytes(id: u32, created_at: u64, key: &[u8]) -> Result<Self, AeadError> {
        Ok(Self {
            id,
            created_at,
            key: AeadKey::new(MASTER_KEY_ALGORITHM, key)?,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// When this key was made, unix seconds.
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// For the keyset's storage encoding only.
    pub(crate) fn key_bytes(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// Seals `keys` into a cookie written at the front of `out`, returning its
    /// length (`cookie_len(keys.algorithm())`). Allocates nothing.
    pub fn seal_cookie(
        &self,
        keys: &NtsKeys,
        rng: &mut impl CryptoRng,
        out: &mut [u8],
    ) -> Result<usize, CookieError> {
        let alg = keys.c2s.algorithm();
        if keys.s2c.algorithm() != alg {
            return Err(CookieError::MismatchedKeys);
        }
        let len = cookie_len(alg).ok_or(CookieError::UnsupportedAlgorithm(alg.to_u16()))?;
        let too_small = CookieError::BufferTooSmall { need: len };
        let out = out.get_mut(..len).ok_or(too_small)?;
        let (header, body) = out.split_at_mut_checked(HEADER_LEN).ok_or(too_small)?;
        let (id_bytes, nonce) = header.split_at_mut_checked(KEY_ID_LEN).ok_or(too_small)?;
        id_bytes.copy_from_slice(&self.id.to_be_bytes());
        rng.fill_bytes(nonce);

        let mut w = Writer::new(body);
        w.put_u16(alg.to_u16()).map_err(|_| too_small)?;
        w.put_u16(0).map_err(|_| too_small)?;
        w.put(keys.c2s.as_bytes()).map_err(|_| too_small)?;
        w.put(keys.s2c.as_bytes()).map_err(|_| too_small)?;
        let plaintext_len = w.len();

        let sealed = self
            .key
            .seal_in_place(nonce, id_bytes, body, plaintext_len)
            .map_err(CookieError::Seal)?;
        Ok(HEADER_LEN + sealed)
    }

    /// Opens a cookie sealed by this key and returns the keys it carries.
    pub fn open_cookie(&self, cookie: &[u8]) -> Result<NtsKeys, CookieError> {
        let mut r = Reader::new(cookie);
        let id_bytes = r
            .take_array::<KEY_ID_LEN>()
            .ok_or(CookieError::Malformed("shorter than a key id"))?;
        let id = u32::from_be_bytes(id_bytes);
        if id != self.id {
            return Err(CookieError::UnknownKey(id));
        }
        // Only lengths we produce are worth decrypting.
        if !AeadAlgorithm::SUPPORTED
            .iter()
            .any(|&alg| cookie_len(alg) == Some(cookie.len()))
        {
            return Err(CookieError::Malformed("length fits no algorithm"));
        }
        let nonce = r
            .take(COOKIE_NONCE_LEN)
            .ok_or(CookieError::Malformed("too short"))?;
        let ciphertext = r.rest();

        // Decrypt on the stack: no allocation, and the keys are wiped after.
        let mut scratch = Zeroizing::new([0u8; MAX_PLAINTEXT_LEN + TAG_LEN]);
        let work = scratch
            .get_mut(..ciphertext.len())
            .ok_or(CookieError::Malformed("too long"))?;
        work.copy_from_slice(ciphertext);
        let n = self
            .key
            .open_in_place(nonce, &id_bytes, work)
            .map_err(|_| CookieError::Authentication)?;
        let plaintext = work.get(..n).ok_or(CookieError::Authentication)?;

        let mut r = Reader::new(plaintext);
        let alg = AeadAlgorithm::from_u16(r.u16().ok_or(CookieError::Malformed("no algorithm"))?);
        if r.u16() != Some(0) {
            return Err(CookieError::Malformed("reserved field not zero"));
        }
        let key_len = alg
            .key_len()
            .ok_or(CookieError::UnsupportedAlgorithm(alg.to_u16()))?;
        let c2s = r
            .take(key_len)
            .ok_or(CookieError::Malformed("short keys"))?;
        let s2c = r
            .take(key_len)
            .ok_or(CookieError::Malformed("short keys"))?;
        if !r.is_empty() {
            return Err(CookieError::Malformed("trailing bytes"));
        }
        let key = |bytes| {
            AeadKey::new(alg, bytes).map_err(|_| CookieError::UnsupportedAlgorithm(alg.to_u16()))
        };
        Ok(NtsKeys {
            c2s: key(c2s)?,
            s2c: key(s2c)?,
        })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &format_args!("{:#010x}", self.id))
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    fn keys(alg: AeadAlgorithm, rng: &mut ChaCha20Rng) -> NtsKeys {
        NtsKeys {
            c2s: AeadKey::generate(alg, rng).unwrap(),
            s2c: AeadKey::generate(alg, rng).unwrap(),
        }
    }

    #[test]
    fn lengths_are_multiples_of_four() {
        assert_eq!(cookie_len(AeadAlgorithm::AesSivCmac256), Some(104));
        assert_eq!(
            cookie_len(AeadAlgorithm::AesSivCmac512),
            Some(MAX_COOKIE_LEN)
        );
        assert_eq!(cookie_len(AeadAlgorithm::Unknown(3)), None);
        for alg in AeadAlgorithm::SUPPORTED {
            assert_eq!(cookie_len(alg).unwrap() % 4, 0, "{alg:?}");
        }
    }

    #[test]
    fn roundtrip_every_algorithm() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let master = MasterKey::generate(0xdead_beef, 1_700_000_000, &mut rng);
        for alg in AeadAlgorithm::SUPPORTED {
            let k = keys(alg, &mut rng);
            let mut buf = [0u8; 256];
            let n = master.seal_cookie(&k, &mut rng, &mut buf).unwrap();
            assert_eq!(Some(n), cookie_len(alg));
            assert_eq!(cookie_key_id(&buf[..n]), Some(0xdead_beef));
            let back = master.open_cookie(&buf[..n]).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.c2s.as_bytes(), k.c2s.as_bytes());
            assert_eq!(back.s2c.as_bytes(), k.s2c.as_bytes());
        }
    }

    #[test]
    fn errors_are_typed() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let master = MasterKey::generate(7, 0, &mut rng);
        let k = keys(AeadAlgorithm::AesSivCmac256, &mut rng);
        let mut small = [0u8; 103];
        assert_eq!(
            master.seal_cookie(&k, &mut rng, &mut small),
            Err(CookieError::BufferTooSmall { need: 104 })
        );
        let mixed = NtsKeys {
            c2s: k.c2s.clone(),
            s2c: AeadKey::generate(AeadAlgorithm::Aes128GcmSiv, &mut rng).unwrap(),
        };
        let mut buf = [0u8; 200];
        assert_eq!(
            master.seal_cookie(&mixed, &mut rng, &mut buf),
            Err(CookieError::MismatchedKeys)
        );

        let n = master.seal_cookie(&k, &mut rng, &mut buf).unwrap();
        let cookie = &buf[..n];
        let other = MasterKey::generate(8, 0, &mut rng);
        assert_eq!(
            other.open_cookie(cookie).err(),
            Some(CookieError::UnknownKey(7))
        );
        // Same id, different key: authentication, not "unknown".
        let impostor = MasterKey::generate(7, 0, &mut rng);
        assert_eq!(
            impostor.open_cookie(cookie).err(),
            Some(CookieError::Authentication)
        );
        for len in 0..n {
            assert!(
                master.open_cookie(&cookie[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..n {
            let mut bad = cookie.to_vec();
            bad[i] ^= 0x40;
            let err = master.open_cookie(&bad).unwrap_err();
            if i < KEY_ID_LEN {
                assert!(matches!(err, CookieError::UnknownKey(_)));
            } else {
                assert_eq!(err, CookieError::Authentication, "byte {i}");
            }
        }
    }

    /// A plaintext we never write, sealed properly under the master key,
    /// is still refused: a nonzero reserved field or an unknown algorithm.
    #[test]
    fn authenticated_but_odd_plaintext_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let master = MasterKey::generate(9, 0, &mut rng);
        let forge = |alg: u16, reserved: u16| {
            let nonce = [5u8; COOKIE_NONCE_LEN];
            let mut pt = Vec::new();
            pt.extend_from_slice(&alg.to_be_bytes());
            pt.extend_from_slice(&reserved.to_be_bytes());
            pt.extend_from_slice(&[1u8; 64]);
            let sealed = master.key.seal(&nonce, &9u32.to_be_bytes(), &pt).unwrap();
            let mut c = 9u32.to_be_bytes().to_vec();
            c.extend_from_slice(&nonce);
            c.extend_from_slice(&sealed);
            c
        };
        assert!(master.open_cookie(&forge(15, 0)).is_ok());
        assert_eq!(
            master.open_cookie(&forge(15, 1)).err(),
            Some(CookieError::Malformed("reserved field not zero"))
        );
        assert_eq!(
            master.open_cookie(&forge(99, 0)).err(),
            Some(CookieError::UnsupportedAlgorithm(99))
        );
        // A known algorithm whose keys do not fill the plaintext (GCM-SIV
        // keys are 16 bytes, the forged plaintext carries 64).
        assert_eq!(
            master.open_cookie(&forge(30, 0)).err(),
            Some(CookieError::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let master = MasterKey::from_bytes(1, 2, &[0x5a; 32]).unwrap();
        let shown = format!("{master:?}");
        assert!(!shown.contains("5a") && !shown.contains("90"), "{shown}");
        assert!(MasterKey::from_bytes(1, 2, &[0; 31]).is_err());
    }
}
