//! The AEAD algorithms NTS negotiates (RFC 8915 section 5.1, IANA "AEAD
//! Algorithms"), over RustCrypto's aes-siv and aes-gcm-siv.

use zeroize::Zeroizing;

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
}

/// Errors of the AEAD layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AeadError {
    #[error("AEAD algorithm {0} is not supported")]
    Unsupported(u16),
    #[error("key length {got} does not fit the algorithm (needs {need})")]
    KeyLength { got: usize, need: usize },
}

/// One direction's key (C2S or S2C) for one algorithm. The bytes zeroize on
/// drop and never appear in `Debug`.
#[derive(Clone)]
pub struct AeadKey {
    algorithm: AeadAlgorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl AeadKey {
    pub fn new(algorithm: AeadAlgorithm, key: &[u8]) -> Result<Self, AeadError> {
        let need = algorithm
            .key_len()
            .ok_or(AeadError::Unsupported(algorithm.to_u16()))?;
        if key.len() != need {
            return Err(AeadError::KeyLength {
                got: key.len(),
                need,
            });
        }
        Ok(Self {
            algorithm,
            bytes: Zeroizing::new(key.to_vec()),
        })
    }

    pub fn algorithm(&self) -> AeadAlgorithm {
        self.algorithm
    }

    /// The raw key, for sealing into a cookie.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
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
