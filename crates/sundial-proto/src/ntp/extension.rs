//! NTPv4 extension fields (RFC 7822) and the NTS field types (RFC 8915
//! section 5).
//!
//! A field is `type (u16) | length (u16) | body`, where the length counts the
//! whole field and is a multiple of 4. Fields in the clear must be at least
//! 16 bytes long (RFC 7822 section 3); fields inside the NTS encrypted area
//! are only held to the 4-byte alignment (RFC 8915 section 5.6 puts no
//! minimum on them and chrony sends them unpadded).

use crate::reader::{BufferTooSmall, Reader, Writer};

/// Size of a field's type and length words.
pub const FIELD_HEADER_LEN: usize = 4;
/// Minimum length of a field outside the encrypted area (RFC 7822).
pub const MIN_OUTER_FIELD_LEN: usize = 16;
/// Minimum length of an NTS Unique Identifier body (RFC 8915 section 5.3).
pub const MIN_UNIQUE_ID_LEN: usize = 32;

/// The extension field types sundial knows; others are kept as `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    UniqueIdentifier,
    NtsCookie,
    CookiePlaceholder,
    NtsAuthenticator,
    Unknown(u16),
}

impl FieldType {
    pub const fn from_u16(v: u16) -> Self {
        match v {
            0x0104 => Self::UniqueIdentifier,
            0x0204 => Self::NtsCookie,
            0x0304 => Self::CookiePlaceholder,
            0x0404 => Self::NtsAuthenticator,
            other => Self::Unknown(other),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::UniqueIdentifier => 0x0104,
            Self::NtsCookie => 0x0204,
            Self::CookiePlaceholder => 0x0304,
            Self::NtsAuthenticator => 0x0404,
            Self::Unknown(v) => v,
        }
    }
}

/// Where a field stands, which decides its length rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the clear, after the NTP header: length >= 16, multiple of 4.
    Outer,
    /// Inside the NTS encrypted area: length >= 4, multiple of 4.
    Encrypted,
}

impl Placement {
    const fn min_len(self) -> usize {
        match self {
            Self::Outer => MIN_OUTER_FIELD_LEN,
            Self::Encrypted => FIELD_HEADER_LEN,
        }
    }
}

/// Why an extension area could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    #[error("extension field header truncated ({0} bytes left)")]
    TruncatedHeader(usize),
    #[error("extension field length {0} is invalid")]
    BadLength(u16),
    #[error("extension field length {len} runs past the packet ({available} bytes left)")]
    Overrun { len: u16, available: usize },
    #[error("NTS authenticator field is malformed")]
    BadAuthenticator,
}

/// One extension field, borrowed from the packet. `offset` is where the
/// field starts within the area it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionField<'a> {
    pub field_type: FieldType,
    /// The body, padding included.
    pub body: &'a [u8],
    pub offset: usize,
}

impl ExtensionField<'_> {
    /// The whole field's length on the wire.
    pub fn wire_len(&self) -> usize {
        FIELD_HEADER_LEN + self.body.len()
    }
}

/// Iterates over the fields of an extension area. After the first error it
/// yields nothing more: a malformed area is malformed as a whole.
#[derive(Clone, Debug)]
pub struct ExtensionFields<'a> {
    reader: Reader<'a>,
    total: usize,
    placement: Placement,
    /// Bytes left when the first malformed field started, if any.
    failed_at: Option<usize>,
}

impl<'a> ExtensionFields<'a> {
    pub fn new(area: &'a [u8], placement: Placement) -> Self {
        Self {
            reader: Reader::new(area),
            total: area.len(),
            placement,
            failed_at: None,
        }
    }

    /// Bytes not parsed yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.reader.peek_rest()
    }

    /// How many bytes were left where parsing failed (or are left now): a
    /// caller can tell a trailing legacy MAC from a broken field by it.
    pub fn unparsed_len(&self) -> usize {
        self.failed_at.unwrap_or(self.reader.remaining())
    }

    fn next_field(&mut self) -> Result<ExtensionField<'a>, ExtensionError> {
        let offset = self.total - self.reader.remaining();
        let available = self.reader.remaining();
        let (Some(field_type), Some(len)) = (self.reader.u16(), self.reader.u16()) else {
            return Err(ExtensionError::TruncatedHeader(available));
        };
        let len_usize = usize::from(len);
        if len_usize % 4 != 0 || len_usize < self.placement.min_len() {
            return Err(ExtensionError::BadLength(len));
        }
        let body = self
            .reader
            .take(len_usize - FIELD_HEADER_LEN)
            .ok_or(ExtensionError::Overrun { len, available })?;
        Ok(ExtensionField {
            field_type: FieldType::from_u16(field_type),
            body,
            offset,
        })
    }
}

impl<'a> Iterator for ExtensionFields<'a> {
    type Item = Result<ExtensionField<'a>, ExtensionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed_at.is_some() || self.reader.is_empty() {
            return None;
        }
        let available = self.reader.remaining();
        let item = self.next_field();
        if item.is_err() {
            self.failed_at = Some(available);
        }
        Some(item)
    }
}

/// Rounds up to the next multiple of 4.
pub const fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Writes one field, zero-padding the body to a multiple of 4 and, outside
/// the encrypted area, to the 16-byte minimum.
pub fn write_field(
    w: &mut Writer<'_>,
    field_type: FieldType,
    body: &[u8],
    placement: Placement,
) -> Result<(), BufferTooSmall> {
    let len = pad4(FIELD_HEADER_LEN + body.len()).max(placement.min_len());
    let len16 = u16::try_from(len).map_err(|_| BufferTooSmall)?;
    w.put_u16(field_type.to_u16())?;
    w.put_u16(len16)?;
    w.put(body)?;
    w.put_zeros(len - FIELD_HEADER_LEN - body.len())
}

/// Writes a Cookie Placeholder whose body is `cookie_len` zero bytes, so the
/// server may answer with a cookie of the same size without amplification.
pub fn write_placeholder(w: &mut Writer<'_>, cookie_len: usize) -> Result<(), BufferTooSmall> {
    let len = pad4(FIELD_HEADER_LEN + cookie_len).max(MIN_OUTER_FIELD_LEN);
    let len16 = u16::try_from(len).map_err(|_| BufferTooSmall)?;
    w.put_u16(FieldType::CookiePlaceholder.to_u16())?;
    w.put_u16(len16)?;
    w.put_zeros(len - FIELD_HEADER_LEN)
}

/// The parsed body of an NTS Authenticator and Encrypted Extension Fields
/// field (RFC 8915 section 5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticator<'a> {
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
    /// Bytes of additional padding after the padded ciphertext.
    pub additional_padding: usize,
}

impl<'a> Authenticator<'a> {
    /// Parses the body: nonce length, ciphertext length, the nonce and the
    /// ciphertext each padded to 4 bytes, then any additional padding.
    pub fn parse(body: &'a [u8]) -> Result<Self, ExtensionError> {
        let mut r = Reader::new(body);
        let bad = ExtensionError::BadAuthenticator;
        let nonce_len = usize::from(r.u16().ok_or(bad)?);
        let ct_len = usize::from(r.u16().ok_or(bad)?);
        let nonce = r.take(pad4(nonce_len)).ok_or(bad)?;
        let ciphertext = r.take(pad4(ct_len)).ok_or(bad)?;
        Ok(Self {
            nonce: nonce.get(..nonce_len).ok_or(bad)?,
            ciphertext: ciphertext.get(..ct_len).ok_or(bad)?,
            additional_padding: r.remaining(),
        })
    }

    /// Does the nonce plus padding meet RFC 8915's minimum? With `n_max` the
    /// algorithm's longest nonce, N_REQ = min(16, n_max), and the padding
    /// must be at least N_REQ - nonce length, rounded up to 4.
    pub fn meets_nonce_minimum(&self, n_max: usize) -> bool {
        let n_req = n_max.min(16);
        self.additional_padding >= pad4(n_req.saturating_sub(self.nonce.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn area(fields: &[(FieldType, &[u8])], placement: Placement) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = Writer::new(&mut buf);
        for (t, body) in fields {
            write_field(&mut w, *t, body, placement).unwrap();
        }
        let n = w.len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn roundtrip_and_padding() {
        let uid = [7u8; 32];
        let bytes = area(
            &[
                (FieldType::UniqueIdentifier, &uid),
                (FieldType::NtsCookie, &[1, 2, 3, 4, 5]),
                (FieldType::Unknown(0x2005), &[]),
            ],
            Placement::Outer,
        );
        // 36 + pad4(9)=12 -> min 16 + min 16
        assert_eq!(bytes.len(), 36 + 16 + 16);
        let fields: Vec<_> = ExtensionFields::new(&bytes, Placement::Outer)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].field_type, FieldType::UniqueIdentifier);
        assert_eq!(fields[0].body, &uid);
        assert_eq!(fields[1].field_type, FieldType::NtsCookie);
        assert_eq!(fields[1].body, &[1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(fields[1].offset, 36);
        assert_eq!(fields[2].field_type, FieldType::Unknown(0x2005));
        assert_eq!(fields[2].body.len(), 12);
    }

    #[test]
    fn encrypted_area_allows_short_fields() {
        let bytes = area(&[(FieldType::NtsCookie, &[9; 4])], Placement::Encrypted);
        assert_eq!(bytes.len(), 8);
        assert_eq!(
            ExtensionFields::new(&bytes, Placement::Outer).next(),
            Some(Err(ExtensionError::BadLength(8)))
        );
        assert!(ExtensionFields::new(&bytes, Placement::Encrypted).all(|f| f.is_ok()));
    }

    #[test]
    fn bad_lengths_stop_iteration() {
        // length not a multiple of 4
        let mut b = area(&[(FieldType::NtsCookie, &[0; 12])], Placement::Outer);
        b[3] = 18;
        let mut it = ExtensionFields::new(&b, Placement::Outer);
        assert_eq!(it.next(), Some(Err(ExtensionError::BadLength(18))));
        assert_eq!(it.next(), None);
        // length past the end
        b[3] = 20;
        assert!(matches!(
            ExtensionFields::new(&b, Placement::Outer).next(),
            Some(Err(ExtensionError::Overrun { len: 20, .. }))
        ));
        // zero length would loop forever if accepted
        b[3] = 0;
        assert_eq!(
            ExtensionFields::new(&b, Placement::Encrypted).next(),
            Some(Err(ExtensionError::BadLength(0)))
        );
        // a trailing partial header
        let t = [0u8, 1, 0];
        assert_eq!(
            ExtensionFields::new(&t, Placement::Outer).next(),
            Some(Err(ExtensionError::TruncatedHeader(3)))
        );
    }

    #[test]
    fn placeholder_is_zero_and_cookie_sized() {
        let mut buf = [0xffu8; 200];
        let mut w = Writer::new(&mut buf);
        write_placeholder(&mut w, 104).unwrap();
        assert_eq!(w.len(), 108);
        let f = ExtensionFields::new(w.written(), Placement::Outer)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(f.field_type, FieldType::CookiePlaceholder);
        assert!(f.body.iter().all(|&b| b == 0));
        assert_eq!(f.body.len(), 104);
    }

    #[test]
    fn authenticator_parse_and_nonce_rule() {
        // nonce 12 (GCM-SIV), ciphertext 16, 4 bytes extra padding
        let mut body = vec![0, 12, 0, 16];
        body.extend_from_slice(&[1; 12]);
        body.extend_from_slice(&[2; 16]);
        body.extend_from_slice(&[0; 4]);
        let a = Authenticator::parse(&body).unwrap();
        assert_eq!(a.nonce, &[1; 12]);
        assert_eq!(a.ciphertext, &[2; 16]);
        assert_eq!(a.additional_padding, 4);
        assert!(a.meets_nonce_minimum(12));
        assert!(a.meets_nonce_minimum(usize::MAX));
        // a 12-byte nonce without padding is too short for AES-SIV
        let a = Authenticator::parse(&body[..32]).unwrap();
        assert!(a.meets_nonce_minimum(12));
        assert!(!a.meets_nonce_minimum(usize::MAX));
        // odd lengths are padded
        let mut odd = vec![0, 3, 0, 5, 9, 9, 9, 0, 8, 8, 8, 8, 8, 0, 0, 0];
        let a = Authenticator::parse(&odd).unwrap();
        assert_eq!((a.nonce, a.ciphertext), (&[9u8; 3][..], &[8u8; 5][..]));
        odd.truncate(15);
        assert_eq!(
            Authenticator::parse(&odd),
            Err(ExtensionError::BadAuthenticator)
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for placement in [Placement::Outer, Placement::Encrypted] {
                let mut covered = 0;
                for f in ExtensionFields::new(&bytes, placement) {
                    match f {
                        Ok(f) => { prop_assert_eq!(f.offset, covered); covered += f.wire_len(); }
                        Err(_) => break,
                    }
                }
                prop_assert!(covered <= bytes.len());
            }
            let _ = Authenticator::parse(&bytes);
        }

        #[test]
        fn write_then_parse_roundtrips(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6)) {
            let fields: Vec<(FieldType, &[u8])> = bodies.iter().map(|b| (FieldType::Unknown(0x7777), &b[..])).collect();
            let bytes = area(&fields, Placement::Outer);
            let parsed: Vec<_> = ExtensionFields::new(&bytes, Placement::Outer).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), bodies.len());
            for (p, b) in parsed.iter().zip(&bodies) {
                prop_assert_eq!(&p.body[..b.len()], &b[..]);
                prop_assert!(p.body[b.len()..].iter().all(|&x| x == 0));
            }
        }
    }
}
