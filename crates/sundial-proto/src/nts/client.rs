//! The client side of NTS-protected NTP (RFC 8915 section 5.7): build a
//! request, verify a response.
//!
//! A request carries a fresh Unique Identifier, one cookie (used once),
//! placeholders to refill the jar, and an authenticator sealed with C2S over
//! everything before it. A response must echo the Unique Identifier and
//! authenticate under S2C; its new cookies come from the encrypted area
//! only. An NTSN kiss is recognised only when it echoes our identifier; an
//! unauthenticated answer to an NTS request is never accepted as time.

use rand_core::CryptoRng;

use super::aead::NtsKeys;
use super::protect::{MAX_CIPHERTEXT, SealError, open_authenticator, seal_authenticator};
use crate::ntp::extension::{
    Authenticator, ExtensionError, ExtensionFields, FieldType, MIN_UNIQUE_ID_LEN, Placement,
    write_field, write_placeholder,
};
use crate::ntp::packet::{HEADER_LEN, KissCode, NtpHeader, ParseError};
use crate::reader::Writer;

/// The length of the Unique Identifier sundial sends.
pub const UID_LEN: usize = MIN_UNIQUE_ID_LEN;

/// A fresh random Unique Identifier for one request.
pub fn new_uid(rng: &mut impl CryptoRng) -> [u8; UID_LEN] {
    let mut uid = [0u8; UID_LEN];
    rng.fill_bytes(&mut uid);
    uid
}

/// Writes an NTS request into `w`: the header, the Unique Identifier, the
/// cookie, `placeholders` placeholders the size of the cookie, and the
/// authenticator (empty plaintext) sealed with the C2S key.
pub fn write_request(
    w: &mut Writer<'_>,
    header: &NtpHeader,
    uid: &[u8],
    cookie: &[u8],
    placeholders: usize,
    keys: &NtsKeys,
    rng: &mut impl CryptoRng,
) -> Result<(), SealError> {
    header.serialize(w)?;
    write_field(w, FieldType::UniqueIdentifier, uid, Placement::Outer)?;
    write_field(w, FieldType::NtsCookie, cookie, Placement::Outer)?;
    for _ in 0..placeholders {
        write_placeholder(w, cookie.len())?;
    }
    let alg = keys.algorithm();
    let mut nonce = [0u8; 16];
    // Our nonce is always 16 bytes for SIV (no padding needed) and exactly
    // 12 for GCM-SIV, whose N_REQ is 12: padding is never required.
    let nonce = nonce
        .get_mut(..alg.nonce_len().unwrap_or(16))
        .unwrap_or_default();
    rng.fill_bytes(nonce);
    seal_authenticator(w, &keys.c2s, nonce, 0, |_| Ok(()))
}

/// Why a response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    #[error(transparent)]
    Header(#[from] ParseError),
    #[error("malformed extension fields: {0}")]
    Malformed(#[from] ExtensionError),
    #[error("no Unique Identifier")]
    NoUniqueId,
    #[error("Unique Identifier does not match the request")]
    UidMismatch,
    #[error("response is not NTS-authenticated")]
    Unauthenticated,
    #[error("response does not authenticate under the S2C key")]
    Authentication,
    #[error("extension field after the NTS authenticator")]
    FieldAfterAuthenticator,
    #[error("more than one {0}")]
    Duplicate(&'static str),
}

/// A verified response.
#[derive(Debug)]
pub enum VerifiedResponse {
    /// Authenticated time, with the cookies it brought (possibly none;
    /// empty or oversized ones are already left out by the caller's jar).
    Time {
        header: NtpHeader,
        cookies: Vec<Vec<u8>>,
    },
    /// An NTSN kiss echoing our identifier: our cookies are no longer
    /// accepted, run a new key exchange. (Unauthenticated by design.)
    Nak,
}

/// Verifies a response to the request that carried `uid`.
pub fn verify_response(
    packet: &[u8],
    uid: &[u8],
    keys: &NtsKeys,
) -> Result<VerifiedResponse, ResponseError> {
    let (header, area) = NtpHeader::parse(packet)?;
    let mut echoed: Option<&[u8]> = None;
    let mut auth: Option<(usize, &[u8])> = None;
    for field in ExtensionFields::new(area, Placement::Outer) {
        let field = field?;
        if auth.is_some() {
            return Err(ResponseError::FieldAfterAuthenticator);
        }
        match field.field_type {
            FieldType::UniqueIdentifier if echoed.is_some() => {
                return Err(ResponseError::Duplicate("Unique Identifier"));
            }
            FieldType::UniqueIdentifier => echoed = Some(field.body),
            FieldType::NtsAuthenticator => auth = Some((field.offset, field.body)),
            // Cookies outside the encrypted area are not ours to trust.
            _ => {}
        }
    }
    let echoed = echoed.ok_or(ResponseError::NoUniqueId)?;
    // The UID is compared padded: ours is 32 bytes, a multiple of 4.
    if echoed != uid {
        return Err(ResponseError::UidMismatch);
    }
    if header.kiss_code() == Some(KissCode::Ntsn) {
        return Ok(VerifiedResponse::Nak);
    }
    let (offset, body) = auth.ok_or(ResponseError::Unauthenticated)?;
    let auth = Authenticator::parse(body)?;
    let ad = packet
        .get(..HEADER_LEN + offset)
        .ok_or(ResponseError::Authentication)?;
    let mut scratch = vec![0u8; auth.ciphertext.len().min(MAX_CIPHERTEXT * 4)];
    let plaintext = open_authenticator(&keys.s2c, ad, auth.nonce, auth.ciphertext, &mut scratch)
        .map_err(|_| ResponseError::Authentication)?;
    let mut cookies = Vec::new();
    for field in ExtensionFields::new(plaintext, Placement::Encrypted) {
        let field = field?;
        if field.field_type == FieldType::NtsCookie {
            cookies.push(field.body.to_vec());
        }
    }
    Ok(VerifiedResponse::Time { header, cookies })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nts::aead::{AeadAlgorithm, AeadKey};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn keys(alg: AeadAlgorithm) -> NtsKeys {
        let n = alg.key_len().unwrap();
        NtsKeys {
            c2s: AeadKey::new(alg, &vec![1; n]).unwrap(),
            s2c: AeadKey::new(alg, &vec![2; n]).unwrap(),
        }
    }

    /// Plays a server by hand: echo the UID and seal `cookies` with S2C.
    fn fake_response(header: &NtpHeader, uid: &[u8], keys: &NtsKeys, cookies: &[&[u8]]) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let mut w = Writer::new(&mut buf);
        header.serialize(&mut w).unwrap();
        write_field(&mut w, FieldType::UniqueIdentifier, uid, Placement::Outer).unwrap();
        seal_authenticator(
            &mut w,
            &keys.s2c,
            &[9; 16][..keys.algorithm().nonce_len().unwrap()],
            0,
            |w| {
                for c in cookies {
                    write_field(w, FieldType::NtsCookie, c, Placement::Encrypted)?;
                }
                Ok(())
            },
        )
        .unwrap();
        let n = w.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn request_layout_and_authentication() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for alg in AeadAlgorithm::SUPPORTED {
            let k = keys(alg);
            let uid = new_uid(&mut rng);
            let mut buf = [0u8; 1024];
            let mut w = Writer::new(&mut buf);
            let header = NtpHeader::default();
            write_request(&mut w, &header, &uid, &[0xc0; 100], 3, &k, &mut rng).unwrap();
            let n = w.len();
            let packet = &buf[..n];
            let fields: Vec<_> = ExtensionFields::new(&packet[48..], Placement::Outer)
                .collect::<Result<_, _>>()
                .unwrap();
            let types: Vec<_> = fields.iter().map(|f| f.field_type).collect();
            assert_eq!(
                types,
                [
                    FieldType::UniqueIdentifier,
                    FieldType::NtsCookie,
                    FieldType::CookiePlaceholder,
                    FieldType::CookiePlaceholder,
                    FieldType::CookiePlaceholder,
                    FieldType::NtsAuthenticator
                ]
            );
            assert!(fields[2].body.iter().all(|&b| b == 0));
            assert_eq!(fields[2].body.len(), 100);
            let auth = Authenticator::parse(fields[5].body).unwrap();
            assert!(
                auth.meets_nonce_minimum(if alg == AeadAlgorithm::Aes128GcmSiv {
                    12
                } else {
                    usize::MAX
                })
            );
            let mut scratch = [0u8; 64];
            let ad = &packet[..48 + fields[5].offset];
            assert_eq!(
                open_authenticator(&k.c2s, ad, auth.nonce, auth.ciphertext, &mut scratch).unwrap(),
                &[] as &[u8]
            );
        }
    }

    #[test]
    fn verifies_a_good_response_and_takes_its_cookies() {
        let k = keys(AeadAlgorithm::AesSivCmac256);
        let uid = [3u8; 32];
        let header = NtpHeader {
            stratum: 2,
            ..NtpHeader::default()
        };
        let resp = fake_response(&header, &uid, &k, &[&[1; 100], &[2; 100]]);
        match verify_response(&resp, &uid, &k).unwrap() {
            VerifiedResponse::Time { header: h, cookies } => {
                assert_eq!(h, header);
                assert_eq!(cookies, vec![vec![1; 100], vec![2; 100]]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_tampering_wrong_uid_wrong_key_and_plain() {
        let k = keys(AeadAlgorithm::Aes128GcmSiv);
        let uid = [3u8; 32];
        let resp = fake_response(&NtpHeader::default(), &uid, &k, &[&[1; 40]]);
        // every single-bit flip anywhere is rejected
        for i in 0..resp.len() {
            let mut t = resp.clone();
            t[i] ^= 0x10;
            assert!(verify_response(&t, &uid, &k).is_err(), "byte {i}");
        }
        assert_eq!(
            verify_response(&resp, &[4; 32], &k).unwrap_err(),
            ResponseError::UidMismatch
        );
        let other = keys(AeadAlgorithm::Aes128GcmSiv);
        let other = NtsKeys {
            c2s: other.c2s,
            s2c: AeadKey::new(AeadAlgorithm::Aes128GcmSiv, &[7; 16]).unwrap(),
        };
        assert_eq!(
            verify_response(&resp, &uid, &other).unwrap_err(),
            ResponseError::Authentication
        );
        // a plain response (UID echoed but no authenticator) is not time
        let mut plain = vec![0u8; 256];
        let mut w = Writer::new(&mut plain);
        NtpHeader::default().serialize(&mut w).unwrap();
        write_field(&mut w, FieldType::UniqueIdentifier, &uid, Placement::Outer).unwrap();
        let n = w.len();
        assert_eq!(
            verify_response(&plain[..n], &uid, &k).unwrap_err(),
            ResponseError::Unauthenticated
        );
        assert_eq!(
            verify_response(&plain[..48], &uid, &k).unwrap_err(),
            ResponseError::NoUniqueId
        );
    }

    #[test]
    fn ntsn_only_with_our_uid() {
        let k = keys(AeadAlgorithm::AesSivCmac256);
        let uid = [3u8; 32];
        let mut header = NtpHeader {
            mode: crate::ntp::packet::Mode::Server,
            stratum: 0,
            reference_id: crate::ntp::packet::ReferenceId::NTSN,
            ..NtpHeader::default()
        };
        let mut buf = vec![0u8; 256];
        let mut w = Writer::new(&mut buf);
        header.serialize(&mut w).unwrap();
        write_field(&mut w, FieldType::UniqueIdentifier, &uid, Placement::Outer).unwrap();
        let n = w.len();
        assert!(matches!(
            verify_response(&buf[..n], &uid, &k),
            Ok(VerifiedResponse::Nak)
        ));
        assert_eq!(
            verify_response(&buf[..n], &[0; 32], &k).unwrap_err(),
            ResponseError::UidMismatch
        );
        header.stratum = 0;
        assert_eq!(
            verify_response(&header.to_bytes(), &uid, &k).unwrap_err(),
            ResponseError::NoUniqueId
        );
    }
}
