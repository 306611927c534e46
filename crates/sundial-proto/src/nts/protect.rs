//! Sealing and opening the NTS Authenticator and Encrypted Extension Fields
//! field (RFC 8915 section 5.6), shared by the client and the server side.
//!
//! The associated data is the packet from the start of the NTP header to the
//! end of the last field before the authenticator; the plaintext is a
//! sequence of extension fields (the encrypted area).

use super::aead::{AeadError, AeadKey, TAG_LEN};
use super::cookie::CookieError;
use crate::ntp::extension::{FIELD_HEADER_LEN, FieldType, pad4};
use crate::reader::{BufferTooSmall, Writer};

/// Why an authenticator could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error(transparent)]
    BufferTooSmall(#[from] BufferTooSmall),
    #[error(transparent)]
    Aead(#[from] AeadError),
    #[error(transparent)]
    Cookie(#[from] CookieError),
}

/// The wire length of an authenticator field with this nonce and plaintext
/// length and no additional padding.
pub const fn authenticator_len(nonce_len: usize, plaintext_len: usize) -> usize {
    FIELD_HEADER_LEN + 4 + pad4(nonce_len) + pad4(plaintext_len + TAG_LEN)
}

/// Appends the authenticator field to `w`, whose contents so far are the
/// associated data. `plaintext` is written by the closure straight into the
/// place where it is then encrypted in place, so no copy is made.
/// `extra_padding` zero bytes follow the ciphertext (RFC 8915's Additional
/// Padding, which a client needs when its nonce is shorter than 16 bytes).
pub fn seal_authenticator(
    w: &mut Writer<'_>,
    key: &AeadKey,
    nonce: &[u8],
    extra_padding: usize,
    write_plaintext: impl FnOnce(&mut Writer<'_>) -> Result<(), SealError>,
) -> Result<(), SealError> {
    let ad_len = w.len();
    let nonce_len = u16::try_from(nonce.len()).map_err(|_| BufferTooSmall)?;
    w.put_u16(FieldType::NtsAuthenticator.to_u16())?;
    let len_at = w.reserve(2)?;
    w.put_u16(nonce_len)?;
    let ct_len_at = w.reserve(2)?;
    w.put(nonce)?;
    w.put_zeros(pad4(nonce.len()) - nonce.len())?;

    let pt_start = w.len();
    write_plaintext(w)?;
    let pt_len = w.len() - pt_start;
    let ct_len = pt_len + TAG_LEN;
    // Make room for the tag, then encrypt in place behind the associated data.
    w.put_zeros(TAG_LEN)?;
    {
        let buf = w.buffer_mut();
        let (ad_and_field, rest) = buf.split_at_mut_checked(pt_start).ok_or(BufferTooSmall)?;
        let ad = ad_and_field.get(..ad_len).ok_or(BufferTooSmall)?;
        let region = rest.get_mut(..ct_len).ok_or(BufferTooSmall)?;
        let written = key.seal_in_place(nonce, ad, region, pt_len)?;
        debug_assert_eq!(written, ct_len);
    }
    w.put_zeros(pad4(ct_len) - ct_len + pad4(extra_padding))?;

    let field_len = u16::try_from(w.len() - ad_len).map_err(|_| BufferTooSmall)?;
    let ct_len16 = u16::try_from(ct_len).map_err(|_| BufferTooSmall)?;
    w.patch(len_at, &field_len.to_be_bytes())?;
    w.patch(ct_len_at, &ct_len16.to_be_bytes())?;
    Ok(())
}

/// Largest encrypted area the stack scratch buffer holds when opening.
pub const MAX_CIPHERTEXT: usize = 2048;

/// Opens an authenticator's ciphertext into `scratch` and returns the
/// plaintext (the encrypted extension fields).
pub fn open_authenticator<'s>(
    key: &AeadKey,
    ad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
    scratch: &'s mut [u8],
) -> Result<&'s [u8], AeadError> {
    let region = scratch
        .get_mut(..ciphertext.len())
        .ok_or(AeadError::Authentication)?;
    region.copy_from_slice(ciphertext);
    let n = key.open_in_place(nonce, ad, region)?;
    scratch.get(..n).ok_or(AeadError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::extension::{Authenticator, ExtensionFields, Placement, write_field};
    use crate::nts::aead::AeadAlgorithm;

    #[test]
    fn seal_then_open_every_algorithm() {
        for alg in AeadAlgorithm::SUPPORTED {
            let key = AeadKey::new(alg, &vec![0x42; alg.key_len().unwrap()]).unwrap();
            let nonce = vec![7u8; alg.nonce_len().unwrap()];
            let mut buf = [0u8; 512];
            let mut w = Writer::new(&mut buf);
            w.put(&[0xaa; 48]).unwrap();
            seal_authenticator(&mut w, &key, &nonce, 0, |w| {
                Ok(write_field(
                    w,
                    FieldType::NtsCookie,
                    &[5; 10],
                    Placement::Encrypted,
                )?)
            })
            .unwrap();
            let total = w.len();
            assert_eq!(total, 48 + authenticator_len(nonce.len(), 16));
            let packet = &buf[..total];
            let field = ExtensionFields::new(&packet[48..], Placement::Outer)
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(field.field_type, FieldType::NtsAuthenticator);
            let auth = Authenticator::parse(field.body).unwrap();
            let mut scratch = [0u8; MAX_CIPHERTEXT];
            let pt = open_authenticator(
                &key,
                &packet[..48],
                auth.nonce,
                auth.ciphertext,
                &mut scratch,
            )
            .unwrap();
            let inner: Vec<_> = ExtensionFields::new(pt, Placement::Encrypted)
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(inner.len(), 1);
            assert_eq!(&inner[0].body[..10], &[5; 10]);
            // Any change to the associated data breaks authentication.
            let mut ad = packet[..48].to_vec();
            ad[47] ^= 1;
            assert!(
                open_authenticator(&key, &ad, auth.nonce, auth.ciphertext, &mut scratch).is_err()
            );
        }
    }
}
