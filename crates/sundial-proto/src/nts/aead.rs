//! The AEAD algorithms NTS negotiates (RFC 8915 section 5.1, IANA "AEAD
//! Algorithms"), over RustCrypto's aes-siv and aes-gcm-siv.
//!
//! NTS uses the RFC 5116 interface: one associated-data string and one nonce.
//! For AES-SIV (RFC 5297 section 6) that means the S2V components are exactly
//! `[ad, nonce]`, and the output is the synthetic IV followed by the
//! ciphertext; for AES-GCM-SIV (RFC 8452) it is the ciphertext followed by the
//! tag. Both are `TAG_LEN` bytes longer than the plaintext.

use aes_gcm_siv::Aes128GcmSiv;
use aes_gcm_siv::aead::inout::InOutBuf;
use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_siv::siv::{Aes128Siv, Aes256Siv, CmacSiv};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

/// AES-SIV-CMAC-384 is two AES-192 keys; aes-siv names only the 128/256 ones.
type Aes192Siv = CmacSiv<aes::Aes192>;

/// Bytes every AEAD here adds to the plaintext (SIV or GCM-SIV tag).
pub const TAG_LEN: usize = 16;

/// The longest key of any supported algorithm (AES-SIV-CMAC-512).
pub const MAX_KEY_LEN: usize = 64;

/// An AEAD algorithm identifier as carried in NTS-KE records. Unknown values
/// are kept, so a peer's offer round-trips even when we cannot use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AeadAlgorithm {
    /// AEAD_AES_SIV_CMAC_256 (id 15), RFC 5297: 32-byte key.
    AesSivCmac256,
    /// AEAD_AES_SIV_CMAC_384 (id 16): 48-byte key.
    AesSivCmac384,
    /// AEAD_AES_SIV_CMAC_512 (id 17): 64-byte key.
    AesSivCmac512,
    /// AEAD_AES_128_GCM_SIV (id 30), RFC 8452: 16-byte key, 12-byte nonce.
    Aes128GcmSiv,
    /// Any other IANA value.
    Unknown(u16),
}

impl AeadAlgorithm {
    /// The algorithms we implement, strongest-preferred order used by default.
    pub const SUPPORTED: [AeadAlgorithm; 4] = [
        AeadAlgorithm::AesSivCmac512,
        AeadAlgorithm::AesSivCmac384,
        AeadAlgorithm::AesSivCmac256,
        AeadAlgorithm::Aes128GcmSiv,
    ];

    pub const fn from_u16(id: u16) -> Self {
        match id {
            15 => Self::AesSivCmac256,
            16 => Self::AesSivCmac384,
            17 => Self::AesSivCmac512,
            30 => Self::Aes128GcmSiv,
            other => Self::Unknown(other),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::AesSivCmac256 => 15,
            Self::AesSivCmac384 => 16,
            Self::AesSivCmac512 => 17,
            Self::Aes128GcmSiv => 30,
            Self::Unknown(id) => id,
        }
    }

    /// Key length in bytes, or `None` for an algorithm we do not implement.
    pub const fn key_len(self) -> Option<usize> {
        match self {
            Self::AesSivCmac256 => Some(32),
            Self::AesSivCmac384 => Some(48),
            Self::AesSivCmac512 => Some(64),
            Self::Aes128GcmSiv => Some(16),
            Self::Unknown(_) => None,
        }
    }

    pub const fn is_supported(self) -> bool {
        self.key_len().is_some()
    }

    /// The IANA name, e.g. `AEAD_AES_SIV_CMAC_256`; `None` for an unknown id.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Self::AesSivCmac256 => Some("AEAD_AES_SIV_CMAC_256"),
            Self::AesSivCmac384 => Some("AEAD_AES_SIV_CMAC_384"),
            Self::AesSivCmac512 => Some("AEAD_AES_SIV_CMAC_512"),
            Self::Aes128GcmSiv => Some("AEAD_AES_128_GCM_SIV"),
            Self::Unknown(_) => None,
        }
    }

    /// The nonce length we generate when sealing, or `None` for an algorithm
    /// we do not implement. SIV accepts any non-empty nonce on open; 16 bytes
    /// is what RFC 8915 section 5.6 has servers use. GCM-SIV takes exactly 12.
    pub const fn nonce_len(self) -> Option<usize> {
        match self {
            Self::AesSivCmac256 | Self::AesSivCmac384 | Self::AesSivCmac512 => Some(16),
            Self::Aes128GcmSiv => Some(12),
            Self::Unknown(_) => None,
        }
    }
}

impl std::fmt::Display for AeadAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "AEAD id {}", self.to_u16()),
        }
    }
}

/// Errors of the AEAD layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AeadError {
    #[error("AEAD algorithm {0} is not supported")]
    Unsupported(u16),
    #[error("key length {got} does not fit the algorithm (needs {need})")]
    KeyLength { got: usize, need: usize },
    /// An empty nonce for SIV, or one that is not 12 bytes for GCM-SIV.
    #[error("nonce length does not fit the algorithm")]
    Nonce,
    /// The ciphertext, associated data, nonce or key do not match. Deliberately
    /// says nothing more, so an attacker learns nothing from it.
    #[error("AEAD authentication failed")]
    Authentication,
    #[error("buffer too small for plaintext plus tag")]
    BufferTooSmall,
    /// The plaintext or associated data exceed the algorithm's limits.
    #[error("input too long for the AEAD")]
    TooLong,
}

/// The key schedule we keep per key. GCM-SIV's cipher is `Clone` and works
/// through `&self`, so it is built once here. aes-siv 0.8's `Siv` needs
/// `&mut self` (its CMAC state mutates) and is not `Clone`, so caching it would
/// need a lock shared by every server core on the master key; it also
/// re-expands its CTR key on every call regardless. Building it per call from
/// the stored bytes costs one AES key expansion and no allocation, which is
/// cheaper than lock contention on the hot path.
#[derive(Clone)]
enum Cipher {
    Siv256(Zeroizing<[u8; 32]>),
    Siv384(Zeroizing<[u8; 48]>),
    Siv512(Zeroizing<[u8; 64]>),
    GcmSiv {
        key: Zeroizing<[u8; 16]>,
        // Its AES round keys zeroize on drop (the `aes/zeroize` feature).
        // Boxed: with runtime CPU detection it is ~700 bytes, ten times any
        // other variant, and keys get moved around by value.
        cipher: Box<Aes128GcmSiv>,
    },
}

/// One direction's key (C2S or S2C) for one algorithm. The bytes zeroize on
/// drop and never appear in `Debug`.
#[derive(Clone)]
pub struct AeadKey {
    algorithm: AeadAlgorithm,
    cipher: Cipher,
}

fn key_array<const N: usize>(key: &[u8]) -> Result<Zeroizing<[u8; N]>, AeadError> {
    let src: &[u8; N] = key.try_into().map_err(|_| AeadError::KeyLength {
        got: key.len(),
        need: N,
    })?;
    let mut out = Zeroizing::new([0u8; N]);
    out.copy_from_slice(src);
    Ok(out)
}

impl AeadKey {
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, AeadError> {
        let cipher = match algorithm {
            AeadAlgorithm::AesSivCmac256 => Cipher::Siv256(key_array(key)?),
            AeadAlgorithm::AesSivCmac384 => Cipher::Siv384(key_array(key)?),
            AeadAlgorithm::AesSivCmac512 => Cipher::Siv512(key_array(key)?),
            AeadAlgorithm::Aes128GcmSiv => {
                let key = key_array::<16>(key)?;
                let cipher = Box::new(Aes128GcmSiv::new((&*key).into()));
                Cipher::GcmSiv { key, cipher }
            }
            AeadAlgorithm::Unknown(id) => return Err(AeadError::Unsupported(id)),
        };
        Ok(Self { algorithm, cipher })
    }

    /// An AEAD_AES_SIV_CMAC_256 key; infallible because the length is typed.
    pub fn aes_siv_cmac_256(key: &[u8; 32]) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(key);
        Self {
            algorithm: AeadAlgorithm::AesSivCmac256,
            cipher: Cipher::Siv256(bytes),
        }
    }

    /// A fresh random key for `algorithm`.
    pub fn generate(
        algorithm: AeadAlgorithm,
        // `CryptoRng` implies `RngCore` in rand_core 0.9.
        rng: &mut impl CryptoRng,
    ) -> Result<Self, AeadError> {
        let len = algorithm
            .key_len()
            .ok_or(AeadError::Unsupported(algorithm.to_u16()))?;
        let mut bytes = Zeroizing::new([0u8; MAX_KEY_LEN]);
        let key = bytes.get_mut(..len).ok_or(AeadError::KeyLength {
            got: MAX_KEY_LEN,
            need: len,
        })?;
        rng.fill_bytes(key);
        Self::new(algorithm, key)
    }

    pub fn algorithm(&self) -> AeadAlgorithm {
        self.algorithm
    }

    /// The raw key, for sealing into a cookie.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.cipher {
            Cipher::Siv256(k) => k.as_slice(),
            Cipher::Siv384(k) => k.as_slice(),
            Cipher::Siv512(k) => k.as_slice(),
            Cipher::GcmSiv { key, .. } => key.as_slice(),
        }
    }

    /// Encrypts `buf[..plaintext_len]` in place; the ciphertext (RFC 5116
    /// layout, `plaintext_len + TAG_LEN` bytes) ends up in the front of `buf`,
    /// and its length is returned. Bytes of `buf` past that are untouched.
    /// On error the contents of `buf` are unspecified.
    pub fn seal_in_place(
        &self,
        nonce: &[u8],
        ad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, AeadError> {
        let total = plaintext_len
            .checked_add(TAG_LEN)
            .ok_or(AeadError::BufferTooSmall)?;
        let out = buf.get_mut(..total).ok_or(AeadError::BufferTooSmall)?;
        match &self.cipher {
            Cipher::Siv256(k) => {
                let mut siv = Aes128Siv::new((&**k).into());
                siv_seal(nonce, ad, out, |h, b| siv.encrypt_inout_detached(h, b))?;
            }
            Cipher::Siv384(k) => {
                let mut siv = Aes192Siv::new((&**k).into());
                siv_seal(nonce, ad, out, |h, b| siv.encrypt_inout_detached(h, b))?;
            }
            Cipher::Siv512(k) => {
                let mut siv = Aes256Siv::new((&**k).into());
                siv_seal(nonce, ad, out, |h, b| siv.encrypt_inout_detached(h, b))?;
            }
            Cipher::GcmSiv { cipher, .. } => {
                let nonce = gcm_nonce(nonce)?;
                let (body, tag_out) = out
                    .split_at_mut_checked(plaintext_len)
                    .ok_or(AeadError::BufferTooSmall)?;
                let tag = cipher
                    .encrypt_inout_detached(nonce, ad, body.into())
                    .map_err(|_| AeadError::TooLong)?;
                tag_out.copy_from_slice(&tag);
            }
        }
        Ok(total)
    }

    /// Decrypts and authenticates `buf`, which holds exactly one ciphertext.
    /// On success the plaintext is `buf[..n]` and `n` is returned; on failure
    /// `buf` holds the ciphertext again and nothing of the plaintext leaks.
    pub fn open_in_place(
        &self,
        nonce: &[u8],
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, AeadError> {
        match &self.cipher {
            Cipher::Siv256(k) => {
                let mut siv = Aes128Siv::new((&**k).into());
                siv_open(nonce, ad, buf, |h, b, t| {
                    siv.decrypt_inout_detached(h, b, t)
                })
            }
            Cipher::Siv384(k) => {
                let mut siv = Aes192Siv::new((&**k).into());
                siv_open(nonce, ad, buf, |h, b, t| {
                    siv.decrypt_inout_detached(h, b, t)
                })
            }
            Cipher::Siv512(k) => {
                let mut siv = Aes256Siv::new((&**k).into());
                siv_open(nonce, ad, buf, |h, b, t| {
                    siv.decrypt_inout_detached(h, b, t)
                })
            }
            Cipher::GcmSiv { cipher, .. } => {
                let nonce = gcm_nonce(nonce)?;
                let body_len = buf
                    .len()
                    .checked_sub(TAG_LEN)
                    .ok_or(AeadError::Authentication)?;
                let (body, tag) = buf
                    .split_at_mut_checked(body_len)
                    .ok_or(AeadError::Authentication)?;
                let tag =
                    aes_gcm_siv::Tag::try_from(&*tag).map_err(|_| AeadError::Authentication)?;
                cipher
                    .decrypt_inout_detached(nonce, ad, body.into(), &tag)
                    .map_err(|_| AeadError::Authentication)?;
                Ok(body_len)
            }
        }
    }

    /// Allocating convenience over [`AeadKey::seal_in_place`].
    pub fn seal(&self, nonce: &[u8], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
        let mut buf = vec![0u8; plaintext.len().saturating_add(TAG_LEN)];
        let head = buf
            .get_mut(..plaintext.len())
            .ok_or(AeadError::BufferTooSmall)?;
        head.copy_from_slice(plaintext);
        let n = self.seal_in_place(nonce, ad, &mut buf, plaintext.len())?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Allocating convenience over [`AeadKey::open_in_place`].
    pub fn open(&self, nonce: &[u8], ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, AeadError> {
        let mut buf = ciphertext.to_vec();
        let n = self.open_in_place(nonce, ad, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

fn gcm_nonce(nonce: &[u8]) -> Result<&aes_gcm_siv::Nonce, AeadError> {
    nonce.try_into().map_err(|_| AeadError::Nonce)
}

/// RFC 5297 section 6: an empty nonce would make SIV deterministic, which is
/// not what an NTS peer asked for; refuse it rather than silently degrade.
fn check_siv_nonce(nonce: &[u8]) -> Result<(), AeadError> {
    if nonce.is_empty() {
        Err(AeadError::Nonce)
    } else {
        Ok(())
    }
}

/// `out` is plaintext followed by `TAG_LEN` spare bytes; leaves V ‖ C there.
fn siv_seal(
    nonce: &[u8],
    ad: &[u8],
    out: &mut [u8],
    encrypt: impl FnOnce([&[u8]; 2], InOutBuf<'_, '_, u8>) -> Result<aes_siv::Tag, aes_siv::Error>,
) -> Result<(), AeadError> {
    check_siv_nonce(nonce)?;
    let plaintext_len = out
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(AeadError::BufferTooSmall)?;
    // The synthetic IV goes first, so move the plaintext out of its way.
    out.copy_within(..plaintext_len, TAG_LEN);
    let (iv, body) = out
        .split_at_mut_checked(TAG_LEN)
        .ok_or(AeadError::BufferTooSmall)?;
    let tag = encrypt([ad, nonce], body.into()).map_err(|_| AeadError::TooLong)?;
    iv.copy_from_slice(&tag);
    Ok(())
}

/// `buf` is V ‖ C; leaves the plaintext at its front and returns its length.
fn siv_open(
    nonce: &[u8],
    ad: &[u8],
    buf: &mut [u8],
    decrypt: impl FnOnce([&[u8]; 2], InOutBuf<'_, '_, u8>, &aes_siv::Tag) -> Result<(), aes_siv::Error>,
) -> Result<usize, AeadError> {
    check_siv_nonce(nonce)?;
    let (iv, body) = buf
        .split_at_mut_checked(TAG_LEN)
        .ok_or(AeadError::Authentication)?;
    let tag = aes_siv::Tag::try_from(&*iv).map_err(|_| AeadError::Authentication)?;
    let plaintext_len = body.len();
    decrypt([ad, nonce], body.into(), &tag).map_err(|_| AeadError::Authentication)?;
    buf.copy_within(TAG_LEN.., 0);
    Ok(plaintext_len)
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeadKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The pair of keys one NTS association uses.
#[derive(Clone, Debug)]
pub struct NtsKeys {
    /// Client to server: the client seals requests, the server opens them.
    pub c2s: AeadKey,
    /// Server to client.
    pub s2c: AeadKey,
}

impl NtsKeys {
    pub fn algorithm(&self) -> AeadAlgorithm {
        self.c2s.algorithm()
    }
}
