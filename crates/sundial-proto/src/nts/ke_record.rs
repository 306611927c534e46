//! NTS-KE records (RFC 8915 section 4): the type-length-value unit that both
//! the key establishment request and response are made of.
//!
//! ```text
//!  0                   1                   2                   3
//! |C|         Record Type         |          Body Length          |
//! |                       Record Body (Body Length bytes)  ...
//! ```
//!
//! Decoding works on whatever bytes have arrived so far: a partial header or
//! body is [`Decoded::Incomplete`], never an error, so TLS reads of any size
//! work. The decoder checks each body's shape; whether a record is allowed
//! where it appears (who may send it, how often) is the business of the client
//! and server state machines. The critical bit is kept as received: RFC 8915
//! says which records a sender MUST mark critical, and we always do so when
//! sending, but we do not reject a peer that forgets, since the bit only
//! matters for record types the receiver does not know.
//!
//! Besides the RFC 8915 records, one record from the private-use range is
//! known: chrony's type 1024, "compliant AES-128-GCM-SIV exporter context"
//! ([`RecordBody::CompliantGcmSivExport`]); see `ke_client` for what it
//! means and why we speak it.

use crate::nts::aead::AeadAlgorithm;
use crate::reader::{BufferTooSmall, Reader, Writer};

/// Header size: the type word (critical bit + 15-bit type) and the body length.
pub const HEADER_LEN: usize = 4;
/// The largest body the 16-bit length field can describe.
pub const MAX_BODY_LEN: usize = u16::MAX as usize;

const CRITICAL_BIT: u16 = 0x8000;

/// IANA "NTS Key Establishment Record Types" assigned by RFC 8915.
pub mod record_type {
    pub const END_OF_MESSAGE: u16 = 0;
    pub const NEXT_PROTOCOL: u16 = 1;
    pub const ERROR: u16 = 2;
    pub const WARNING: u16 = 3;
    pub const AEAD_ALGORITHM: u16 = 4;
    pub const NEW_COOKIE: u16 = 5;
    pub const SERVER: u16 = 6;
    pub const PORT: u16 = 7;
    /// chrony 4.6.1+ (private-use range, not in the IANA registry): sent
    /// empty and non-critical, it says the sender derives AES-128-GCM-SIV
    /// keys with the RFC 8915 exporter context (AEAD id 30) rather than the
    /// one chrony 4.4 to 4.6.0 used (id 15).
    pub const COMPLIANT_128GCM_EXPORT: u16 = 1024;
    /// The largest value that fits next to the critical bit.
    pub const MAX: u16 = 0x7fff;
}

/// A protocol id from the "NTS Next Protocols" registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextProtocol {
    /// Protocol id 0: NTPv4 with NTS extension fields.
    NtpV4,
    Unknown(u16),
}

impl NextProtocol {
    pub const fn from_u16(id: u16) -> Self {
        match id {
            0 => Self::NtpV4,
            other => Self::Unknown(other),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::NtpV4 => 0,
            Self::Unknown(id) => id,
        }
    }
}

/// A code from the "NTS Error Codes" registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: the server received a critical record it did not understand.
    UnrecognizedCriticalRecord,
    /// 1: malformed records, or a request not in accordance with the protocol.
    BadRequest,
    /// 2: the server could not process the request for internal reasons.
    InternalServerError,
    Unknown(u16),
}

impl ErrorCode {
    pub const fn from_u16(code: u16) -> Self {
        match code {
            0 => Self::UnrecognizedCriticalRecord,
            1 => Self::BadRequest,
            2 => Self::InternalServerError,
            other => Self::Unknown(other),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::UnrecognizedCriticalRecord => 0,
            Self::BadRequest => 1,
            Self::InternalServerError => 2,
            Self::Unknown(code) => code,
        }
    }
}

/// A code from the "NTS Warning Codes" registry, which RFC 8915 leaves empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WarningCode {
    Unknown(u16),
}

impl WarningCode {
    pub const fn from_u16(code: u16) -> Self {
        Self::Unknown(code)
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::Unknown(code) => code,
        }
    }
}

/// One record: its critical bit and its typed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub critical: bool,
    pub body: RecordBody,
}

/// The body of a record, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    /// Type 0, empty body: the last record of every message.
    EndOfMessage,
    /// Type 1: protocol ids (offered in a request, chosen in a response;
    /// empty in a response when the server supports none).
    NextProtocol(Vec<NextProtocol>),
    /// Type 2.
    Error(ErrorCode),
    /// Type 3.
    Warning(WarningCode),
    /// Type 4: algorithms (client preference order in a request, the one
    /// chosen in a response; empty in a response when none is in common).
    AeadAlgorithm(Vec<AeadAlgorithm>),
    /// Type 5: one opaque, non-empty cookie.
    NewCookie(Vec<u8>),
    /// Type 6: an ASCII host name or IP address literal.
    Server(String),
    /// Type 7.
    Port(u16),
    /// Type 1024 (chrony's), empty body: "I derive AES-128-GCM-SIV keys with
    /// the compliant exporter context".
    CompliantGcmSivExport,
    /// Any type this implementation does not know, kept with its raw body.
    Unknown { record_type: u16, body: Vec<u8> },
}

impl Record {
    pub fn new(critical: bool, body: RecordBody) -> Self {
        Self { critical, body }
    }

    /// A record with the critical bit set.
    pub fn critical(body: RecordBody) -> Self {
        Self::new(true, body)
    }

    /// The 15-bit record type, without the critical bit.
    pub fn record_type(&self) -> u16 {
        self.body.record_type()
    }

    /// Appends the encoded record to `out`; `out` is unchanged on error.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.encoded_len()?;
        let start = out.len();
        out.resize(start.saturating_add(len), 0);
        let result = out
            .get_mut(start..)
            .ok_or(EncodeError::BufferTooSmall(BufferTooSmall))
            .and_then(|tail| self.encode_to(&mut Writer::new(tail)));
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Writes the encoded record into a caller-owned buffer.
    pub fn encode_to(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let body_len = self.body.validate()?;
        let body_len = u16::try_from(body_len).map_err(|_| EncodeError::BodyTooLong(body_len))?;
        let type_word = if self.critical {
            self.record_type() | CRITICAL_BIT
        } else {
            self.record_type()
        };
        w.put_u16(type_word)?;
        w.put_u16(body_len)?;
        match &self.body {
            RecordBody::EndOfMessage | RecordBody::CompliantGcmSivExport => {}
            RecordBody::NextProtocol(ids) => {
                for id in ids {
                    w.put_u16(id.to_u16())?;
                }
            }
            RecordBody::Error(code) => w.put_u16(code.to_u16())?,
            RecordBody::Warning(code) => w.put_u16(code.to_u16())?,
            RecordBody::AeadAlgorithm(algs) => {
                for alg in algs {
                    w.put_u16(alg.to_u16())?;
                }
            }
            RecordBody::NewCookie(bytes) | RecordBody::Unknown { body: bytes, .. } => {
                w.put(bytes)?;
            }
            RecordBody::Server(name) => w.put(name.as_bytes())?,
            RecordBody::Port(port) => w.put_u16(*port)?,
        }
        Ok(())
    }

    /// Header plus body length, or the reason the record cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        let body_len = self.body.validate()?;
        if body_len > MAX_BODY_LEN {
            return Err(EncodeError::BodyTooLong(body_len));
        }
        Ok(HEADER_LEN.saturating_add(body_len))
    }
}

impl RecordBody {
    pub fn record_type(&self) -> u16 {
        match self {
            Self::EndOfMessage => record_type::END_OF_MESSAGE,
            Self::NextProtocol(_) => record_type::NEXT_PROTOCOL,
            Self::Error(_) => record_type::ERROR,
            Self::Warning(_) => record_type::WARNING,
            Self::AeadAlgorithm(_) => record_type::AEAD_ALGORITHM,
            Self::NewCookie(_) => record_type::NEW_COOKIE,
            Self::Server(_) => record_type::SERVER,
            Self::Port(_) => record_type::PORT,
            Self::CompliantGcmSivExport => record_type::COMPLIANT_128GCM_EXPORT,
            Self::Unknown { record_type, .. } => *record_type,
        }
    }

    /// Checks what the decoder would check, so that whatever we send decodes
    /// back to the same value, and returns the body length.
    fn validate(&self) -> Result<usize, EncodeError> {
        Ok(match self {
            Self::EndOfMessage | Self::CompliantGcmSivExport => 0,
            Self::NextProtocol(ids) => ids.len().saturating_mul(2),
            Self::Error(_) | Self::Warning(_) | Self::Port(_) => 2,
            Self::AeadAlgorithm(algs) => algs.len().saturating_mul(2),
            Self::NewCookie(cookie) => {
                if cookie.is_empty() {
                    return Err(EncodeError::EmptyCookie);
                }
                cookie.len()
            }
            Self::Server(name) => {
                if !is_valid_server_name(name.as_bytes()) {
                    return Err(EncodeError::InvalidServerName);
                }
                name.len()
            }
            Self::Unknown { record_type, body } => {
                // A known type in `Unknown` would decode as that type.
                if *record_type <= record_type::PORT
                    || *record_type == record_type::COMPLIANT_128GCM_EXPORT
                    || *record_type > record_type::MAX
                {
                    return Err(EncodeError::InvalidRecordType(*record_type));
                }
                body.len()
            }
        })
    }
}

/// Printable ASCII only: RFC 8915 4.1.7 allows a dotted IPv4 address, an
/// RFC 5952 IPv6 address or an (A-label) domain name, none of which contain
/// spaces, control characters or bytes above 0x7e.
fn is_valid_server_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The outcome of decoding from the front of a buffer.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// One whole record, which used the first `consumed` bytes.
    Complete { record: Record, consumed: usize },
    /// The buffer holds only part of a record: read more and try again.
    Incomplete,
}

/// A record whose body does not have the shape its type requires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record type {record_type}: body length {len} is not a whole number of u16 values")]
    OddLength { record_type: u16, len: usize },
    #[error("record type {record_type}: body length {got}, expected {expected}")]
    WrongLength {
        record_type: u16,
        expected: usize,
        got: usize,
    },
    #[error("record type {record_type} must not have an empty body")]
    EmptyBody { record_type: u16 },
    #[error("server name is not a printable ASCII host name or address")]
    InvalidServerName,
}

/// Why a record could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("record body of {0} bytes exceeds the 16-bit length field")]
    BodyTooLong(usize),
    #[error("server name is not a printable ASCII host name or address")]
    InvalidServerName,
    #[error("a cookie must not be empty")]
    EmptyCookie,
    #[error("record type {0} cannot be sent as an unknown record")]
    InvalidRecordType(u16),
    #[error(transparent)]
    BufferTooSmall(#[from] BufferTooSmall),
}

/// Decodes one record from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, RecordError> {
    let mut r = Reader::new(buf);
    let (Some(type_word), Some(len)) = (r.u16(), r.u16()) else {
        return Ok(Decoded::Incomplete);
    };
    let len = usize::from(len);
    let Some(body) = r.take(len) else {
        return Ok(Decoded::Incomplete);
    };
    let critical = type_word & CRITICAL_BIT != 0;
    let record_type = type_word & !CRITICAL_BIT;
    let body = decode_body(record_type, body)?;
    Ok(Decoded::Complete {
        record: Record { critical, body },
        consumed: HEADER_LEN.saturating_add(len),
    })
}

fn decode_body(record_type: u16, body: &[u8]) -> Result<RecordBody, RecordError> {
    Ok(match record_type {
        record_type::END_OF_MESSAGE => {
            fixed::<0>(record_type, body)?;
            RecordBody::EndOfMessage
        }
        record_type::NEXT_PROTOCOL => RecordBody::NextProtocol(
            u16_list(record_type, body)?
                .map(NextProtocol::from_u16)
                .collect(),
        ),
        record_type::ERROR => RecordBody::Error(ErrorCode::from_u16(u16::from_be_bytes(fixed(
            record_type,
            body,
        )?))),
        record_type::WARNING => RecordBody::Warning(WarningCode::from_u16(u16::from_be_bytes(
            fixed(record_type, body)?,
        ))),
        record_type::AEAD_ALGORITHM => RecordBody::AeadAlgorithm(
            u16_list(record_type, body)?
                .map(AeadAlgorithm::from_u16)
                .collect(),
        ),
        record_type::NEW_COOKIE => {
            if body.is_empty() {
                return Err(RecordError::EmptyBody { record_type });
            }
            RecordBody::NewCookie(body.to_vec())
        }
        record_type::SERVER => {
            if body.is_empty() {
                return Err(RecordError::EmptyBody { record_type });
            }
            if !is_valid_server_name(body) {
                return Err(RecordError::InvalidServerName);
            }
            // Printable ASCII is valid UTF-8, so this never fails in practice.
            let name = std::str::from_utf8(body).map_err(|_| RecordError::InvalidServerName)?;
            RecordBody::Server(name.to_owned())
        }
        record_type::PORT => RecordBody::Port(u16::from_be_bytes(fixed(record_type, body)?)),
        // chrony refuses a non-empty body too (a bad request).
        record_type::COMPLIANT_128GCM_EXPORT => {
            fixed::<0>(record_type, body)?;
            RecordBody::CompliantGcmSivExport
        }
        _ => RecordBody::Unknown {
            record_type,
            body: body.to_vec(),
        },
    })
}

fn fixed<const N: usize>(record_type: u16, body: &[u8]) -> Result<[u8; N], RecordError> {
    <[u8; N]>::try_from(body).map_err(|_| RecordError::WrongLength {
        record_type,
        expected: N,
        got: body.len(),
    })
}

fn u16_list(record_type: u16, body: &[u8]) -> Result<impl Iterator<Item = u16> + '_, RecordError> {
    if body.len() % 2 != 0 {
        return Err(RecordError::OddLength {
            record_type,
            len: body.len(),
        });
    }
    // `chunks_exact(2)` yields only 2-byte slices, so the fallback is unused.
    Ok(body
        .chunks_exact(2)
        .map(|pair| <[u8; 2]>::try_from(pair).map_or(0, u16::from_be_bytes)))
}

/// A message grew past the size the reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NTS-KE message exceeds {limit} bytes")]
pub struct MessageTooLarge {
    pub limit: usize,
}

/// Accumulates one NTS-KE message as it arrives in TLS reads of any size and
/// hands out whole records, so the state machines never see a partial one.
/// The limit bounds the memory a peer can make us hold.
#[derive(Clone, Debug)]
pub struct RecordReader {
    buf: Vec<u8>,
    /// How much of `buf` has been decoded already.
    start: usize,
    /// Bytes pushed over the reader's whole life, checked against `limit`.
    received: usize,
    limit: usize,
}

impl RecordReader {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            received: 0,
            limit,
        }
    }

    /// Appends newly read bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), MessageTooLarge> {
        let too_large = MessageTooLarge { limit: self.limit };
        let total = self.received.checked_add(bytes.len()).ok_or(too_large)?;
        if total > self.limit {
            return Err(too_large);
        }
        // Drop what was decoded, so a message of many small records costs
        // linear time rather than a shift per record.
        self.buf.drain(..self.start.min(self.buf.len()));
        self.start = 0;
        self.buf.extend_from_slice(bytes);
        self.received = total;
        Ok(())
    }

    /// The next whole record, or `None` until more bytes arrive.
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        match decode(rest)? {
            Decoded::Complete { record, consumed } => {
                self.start = self.start.saturating_add(consumed);
                Ok(Some(record))
            }
            Decoded::Incomplete => Ok(None),
        }
    }

    /// Whether bytes are buffered that are not part of a returned record.
    pub fn has_unread(&self) -> bool {
        self.start < self.buf.len()
    }
}
