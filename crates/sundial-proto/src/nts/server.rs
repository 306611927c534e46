//! The server side of NTS-protected NTP (RFC 8915 section 5.7): check a
//! request, then write the protected response or an NTSN kiss.
//!
//! Decisions, in the order they are taken:
//! - a request with no NTS field is plain NTP, for the caller to answer;
//!   so is one whose only NTS field is a Unique Identifier (RFC 8915 defines
//!   an NTS request by its cookie and authenticator), whose identifier the
//!   plain answer echoes, as ntpd-rs does; the identifier is held to the
//!   same rule as in NTS (one, at least 32 bytes) or the request dropped;
//! - a malformed NTS request (missing, duplicate or short Unique Identifier,
//!   no or several cookies, no authenticator, fields after it, placeholders
//!   not the size of the cookie) is dropped without an answer;
//! - a well-formed request whose cookie cannot be opened (unknown key,
//!   corrupted) gets an NTSN kiss echoing its Unique Identifier, so the
//!   client knows to run a new key exchange;
//! - a request that does not authenticate under the cookie's C2S key, or
//!   whose nonce plus padding is shorter than N_REQ, is dropped;
//! - otherwise the answer carries one fresh cookie per cookie and
//!   placeholder, encrypted under S2C, and is never larger than the request.

use rand_core::CryptoRng;

use super::aead::{AeadAlgorithm, NtsKeys};
use super::cookie;
use super::keyset::KeySet;
use super::protect::{
    MAX_CIPHERTEXT, SealError, authenticator_len, open_authenticator, seal_authenticator,
};
use crate::ntp::extension::{
    Authenticator, ExtensionError, ExtensionFields, FIELD_HEADER_LEN, FieldType, MIN_UNIQUE_ID_LEN,
    Placement, pad4, write_field,
};
use crate::ntp::packet::{HEADER_LEN, NtpHeader};
use crate::reader::Writer;

/// Why an NTS request was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NtsDrop {
    #[error("malformed extension fields: {0}")]
    Malformed(#[from] ExtensionError),
    #[error("no Unique Identifier")]
    NoUniqueId,
    #[error("more than one Unique Identifier")]
    DuplicateUniqueId,
    #[error("Unique Identifier shorter than 32 bytes")]
    ShortUniqueId,
    #[error("no NTS cookie")]
    NoCookie,
    #[error("more than one NTS cookie")]
    SeveralCookies,
    #[error("no NTS authenticator")]
    NoAuthenticator,
    #[error("extension field after the NTS authenticator")]
    FieldAfterAuthenticator,
    #[error("cookie placeholder not the size of the cookie")]
    PlaceholderSize,
    #[error("nonce plus padding shorter than RFC 8915 requires")]
    NonceTooShort,
    #[error("request does not authenticate")]
    Authentication,
    #[error("encrypted area larger than {MAX_CIPHERTEXT} bytes")]
    TooLarge,
}

/// A request that authenticated: what the response needs.
#[derive(Debug)]
pub struct NtsRequest<'a> {
    pub uid: &'a [u8],
    pub keys: NtsKeys,
    /// One for the cookie, plus one per placeholder.
    pub cookies_wanted: usize,
}

/// The outcome of checking a request's extension fields.
#[derive(Debug)]
pub enum NtsCheck<'a> {
    /// No cookie, placeholder or authenticator: plain NTP. `uid` is the
    /// request's one Unique Identifier, which the answer echoes.
    Plain {
        uid: Option<&'a [u8]>,
    },
    /// An NTS request, but the server has no keys (no NTS-KE server).
    NoKeyset,
    Valid(NtsRequest<'a>),
    /// Well-formed, but the cookie cannot be opened: answer with NTSN.
    Nak {
        uid: &'a [u8],
    },
    Drop(NtsDrop),
}

/// The longest nonce an algorithm takes (N_MAX of RFC 5116), for RFC 8915's
/// N_REQ = min(16, N_MAX).
fn max_nonce_len(alg: AeadAlgorithm) -> usize {
    match alg {
        AeadAlgorithm::Aes128GcmSiv => 12,
        _ => usize::MAX,
    }
}

/// Checks an NTS request. `packet` is the whole request, header included;
/// `keyset` is `None` where no NTS-KE server issues cookies.
pub fn check_request<'a>(packet: &'a [u8], keyset: Option<&KeySet>) -> NtsCheck<'a> {
    match check(packet, keyset) {
        Ok(check) => check,
        Err(drop) => NtsCheck::Drop(drop),
    }
}

fn check<'a>(packet: &'a [u8], keyset: Option<&KeySet>) -> Result<NtsCheck<'a>, NtsDrop> {
    let area = packet.get(HEADER_LEN..).unwrap_or_default();
    let mut uid: Option<&[u8]> = None;
    let mut cookie: Option<&[u8]> = None;
    let mut placeholders: usize = 0;
    let mut placeholder_sizes_ok = true;
    let mut placeholder_len: Option<usize> = None;
    let mut auth: Option<(usize, &[u8])> = None;
    let mut any_nts = false;

    let mut fields = ExtensionFields::new(area, Placement::Outer);
    while let Some(field) = fields.next() {
        let field = match field {
            Ok(f) => f,
            // A trailing legacy MAC (RFC 7822 section 7.5: key id plus a
            // 16- or 20-byte digest, or a 4-byte crypto-NAK) on a plain
            // request is not ours to check; anything else is malformed
            // where NTS is served. A plain-only server never judged the
            // bytes after the header, and still does not. Behind a Unique
            // Identifier, bytes that are not a field are malformed.
            Err(_)
                if !any_nts
                    && uid.is_none()
                    && (keyset.is_none() || LEGACY_MAC_LENS.contains(&fields.unparsed_len())) =>
            {
                return Ok(NtsCheck::Plain { uid: None });
            }
            Err(e) => return Err(e.into()),
        };
        if auth.is_some() {
            return Err(NtsDrop::FieldAfterAuthenticator);
        }
        match field.field_type {
            FieldType::UniqueIdentifier => {
                if uid.is_some() {
                    return Err(NtsDrop::DuplicateUniqueId);
                }
                if field.body.len() < MIN_UNIQUE_ID_LEN {
                    return Err(NtsDrop::ShortUniqueId);
                }
                uid = Some(field.body);
            }
            FieldType::NtsCookie => {
                any_nts = true;
                if cookie.is_some() {
                    return Err(NtsDrop::SeveralCookies);
                }
                cookie = Some(field.body);
            }
            FieldType::CookiePlaceholder => {
                any_nts = true;
                placeholders += 1;
                placeholder_sizes_ok &=
                    *placeholder_len.get_or_insert(field.body.len()) == field.body.len();
            }
            FieldType::NtsAuthenticator => {
                any_nts = true;
                auth = Some((field.offset, field.body));
            }
            FieldType::Unknown(_) => {}
        }
    }
    if !any_nts {
        return Ok(NtsCheck::Plain { uid });
    }
    let Some(keyset) = keyset else {
        return Ok(NtsCheck::NoKeyset);
    };
    let uid = uid.ok_or(NtsDrop::NoUniqueId)?;
    let cookie = cookie.ok_or(NtsDrop::NoCookie)?;
    let (auth_offset, auth_body) = auth.ok_or(NtsDrop::NoAuthenticator)?;
    // A placeholder must ask for exactly a cookie's worth of room: a larger
    // one is harmless but nonstandard, a smaller one would let the response
    // outgrow the request.
    if !placeholder_sizes_ok || placeholder_len.is_some_and(|len| len != cookie.len()) {
        return Err(NtsDrop::PlaceholderSize);
    }
    let auth = Authenticator::parse(auth_body)?;

    let Ok(keys) = keyset.open_cookie(cookie) else {
        return Ok(NtsCheck::Nak { uid });
    };
    if !auth.meets_nonce_minimum(max_nonce_len(keys.algorithm())) {
        return Err(NtsDrop::NonceTooShort);
    }
    let ad = packet
        .get(..HEADER_LEN + auth_offset)
        .ok_or(NtsDrop::Authentication)?;
    let mut scratch = [0u8; MAX_CIPHERTEXT];
    if auth.ciphertext.len() > scratch.len() {
        return Err(NtsDrop::TooLarge);
    }
    let plaintext = open_authenticator(&keys.c2s, ad, auth.nonce, auth.ciphertext, &mut scratch)
        .map_err(|_| NtsDrop::Authentication)?;
    // Placeholders may also travel encrypted; they count the same way.
    for field in ExtensionFields::new(plaintext, Placement::Encrypted) {
        let field = field?;
        if field.field_type == FieldType::CookiePlaceholder {
            if field.body.len() != cookie.len() {
                return Err(NtsDrop::PlaceholderSize);
            }
            placeholders += 1;
        }
    }
    Ok(NtsCheck::Valid(NtsRequest {
        uid,
        keys,
        cookies_wanted: 1 + placeholders,
    }))
}

/// Lengths of the legacy (symmetric-key) MAC that may trail a plain request.
const LEGACY_MAC_LENS: [usize; 3] = [4, 20, 24];

/// Writes the protected response: `header`, the echoed Unique Identifier,
/// and an authenticator holding as many fresh cookies as were asked for and
/// fit in `max_len` bytes (the request's length: no amplification).
pub fn write_response(
    w: &mut Writer<'_>,
    header: &NtpHeader,
    request: &NtsRequest<'_>,
    keyset: &KeySet,
    max_len: usize,
    rng: &mut impl CryptoRng,
) -> Result<usize, SealError> {
    let alg = request.keys.algorithm();
    let nonce_len = alg.nonce_len().unwrap_or(16);
    let cookie_len = cookie::cookie_len(alg).unwrap_or(0);
    let cookie_field = pad4(FIELD_HEADER_LEN + cookie_len);
    let fixed = HEADER_LEN + pad4(FIELD_HEADER_LEN + request.uid.len());
    let fits = |n: usize| fixed + authenticator_len(nonce_len, n * cookie_field) <= max_len;
    let mut cookies = request.cookies_wanted;
    while cookies > 0 && !fits(cookies) {
        cookies -= 1;
    }

    header.serialize(w)?;
    write_field(
        w,
        FieldType::UniqueIdentifier,
        request.uid,
        Placement::Outer,
    )?;
    let mut nonce = [0u8; 16];
    let nonce = nonce.get_mut(..nonce_len).unwrap_or_default();
    rng.fill_bytes(nonce);
    seal_authenticator(w, &request.keys.s2c, nonce, 0, |w| {
        for _ in 0..cookies {
            write_cookie_field(w, keyset, &request.keys, rng)?;
        }
        Ok(())
    })?;
    Ok(cookies)
}

/// Writes one NTS Cookie field, sealing the cookie straight into the buffer.
fn write_cookie_field(
    w: &mut Writer<'_>,
    keyset: &KeySet,
    keys: &NtsKeys,
    rng: &mut impl CryptoRng,
) -> Result<(), SealError> {
    w.put_u16(FieldType::NtsCookie.to_u16())?;
    let len_at = w.reserve(2)?;
    let start = w.len();
    let room = w.buffer_mut().get_mut(start..).unwrap_or_default();
    let n = keyset.seal_cookie(keys, rng, room)?;
    w.set_len(start + n)?;
    w.put_zeros(pad4(n) - n)?;
    let field_len =
        u16::try_from(FIELD_HEADER_LEN + pad4(n)).map_err(|_| crate::reader::BufferTooSmall)?;
    w.patch(len_at, &field_len.to_be_bytes())?;
    Ok(())
}

/// Writes an NTSN kiss: `header` (the caller sets stratum 0 and the NTSN
/// reference id) and the echoed Unique Identifier, nothing else (RFC 8915
/// section 5.7). A plain answer echoing a plain request's identifier is
/// the same two parts.
pub fn write_nak(w: &mut Writer<'_>, header: &NtpHeader, uid: &[u8]) -> Result<(), SealError> {
    header.serialize(w)?;
    write_field(w, FieldType::UniqueIdentifier, uid, Placement::Outer)?;
    Ok(())
}
