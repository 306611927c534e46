//! The server side of one NTS-KE exchange (RFC 8915 section 4), sans-IO.
//!
//! The caller feeds every TLS read to [`KeServer::receive`] until it yields a
//! request outcome, then answers with one of:
//! - [`build_response`] for [`KeServerProgress::Request`], after deriving the
//!   keys ([`crate::nts::key_export::derive_keys`]) and sealing cookies
//!   (usually [`COOKIE_COUNT`]);
//! - [`refusal_response`] for [`KeServerProgress::Refused`];
//! - [`error_response`] with [`KeServerError::error_code`] on an error.
//!
//! Algorithm choice: the server picks the first algorithm in the CLIENT's
//! list that it supports. RFC 8915 4.1.5 lets the server choose any offered
//! algorithm; following the client's order respects the preference it
//! expressed, and matches chrony. The server's own list is an allow-list.
//!
//! One exception, for AES-128-GCM-SIV (see `ke_client` for chrony's record
//! 1024). A client that sends record 1024 gets it back with GCM-SIV and
//! compliant keys. A client that offers GCM-SIV without the record is
//! either chrony 4.4 to 4.6.0 (legacy keys) or an RFC 8915 client unaware
//! of the record (compliant keys), and nothing in its request tells which.
//! So when it also offers another algorithm we support, we pass GCM-SIV
//! over and choose that one, which every client derives the same way; only
//! a client offering GCM-SIV alone gets it, with chrony's legacy keys, as a
//! chrony 4.6.1+ server does, so chrony 4.4 to 4.6.0 clients keep working.
//! The price, documented: an RFC-compliant client offering only GCM-SIV
//! without the record cannot use this server.

use crate::nts::aead::AeadAlgorithm;
use crate::nts::ke_record::{
    EncodeError, ErrorCode, HEADER_LEN, MessageTooLarge, NextProtocol, Record, RecordBody,
    RecordError, RecordReader, record_type,
};
use crate::nts::key_export::KeyContext;

/// Cookies per response by default: RFC 8915 4.1.6 says servers SHOULD send
/// eight.
pub const COOKIE_COUNT: usize = 8;

/// The request size cap, unless the server is built with another one. A
/// well-formed request is a few dozen bytes; 1024 leaves room for Server and
/// Port records and unknown non-critical records while bounding the memory
/// one connection can hold.
pub const DEFAULT_MAX_REQUEST_LEN: usize = 1024;

/// The smallest cap [`KeServer::with_max_request_len`] accepts.
pub const MIN_MAX_REQUEST_LEN: usize = 1024;

/// One NTS-KE exchange from the server's side.
#[derive(Debug)]
pub struct KeServer {
    /// The algorithms this server will use.
    supported: Vec<AeadAlgorithm>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Request records are arriving.
    AwaitingRequest {
        records: RecordReader,
        seen: RequestSoFar,
    },
    /// End of Message arrived and an outcome was returned.
    Done,
    /// The request was refused with an error; every further call repeats it.
    Failed(KeServerError),
}

#[derive(Debug, Default)]
struct RequestSoFar {
    protocols: Option<Vec<NextProtocol>>,
    algorithms: Option<Vec<AeadAlgorithm>>,
    server: Option<String>,
    port: Option<u16>,
    compliant_gcm_siv: bool,
}

/// What the client and server agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Always [`NextProtocol::NtpV4`] today.
    pub protocol: NextProtocol,
    /// One the client offered and the server supports.
    pub algorithm: AeadAlgorithm,
    /// The NTP server the client asked for (RFC 8915 4.1.7); honoring it is
    /// optional.
    pub requested_server: Option<String>,
    /// The NTP port the client asked for (RFC 8915 4.1.8); optional too.
    pub requested_port: Option<u16>,
    /// The client sent chrony's record 1024: it derives AES-128-GCM-SIV
    /// keys with the compliant exporter context.
    pub compliant_gcm_siv: bool,
}

impl Negotiated {
    /// The exporter context both sides use: legacy only for GCM-SIV with a
    /// client that did not send record 1024 (chrony 4.4 to 4.6.0).
    pub fn key_context(&self) -> KeyContext {
        if self.algorithm == AeadAlgorithm::Aes128GcmSiv && !self.compliant_gcm_siv {
            KeyContext::LegacyGcmSiv
        } else {
            KeyContext::Compliant
        }
    }

    /// Whether the response carries record 1024: GCM-SIV was chosen and
    /// the client asked for compliant keys (chrony answers only then).
    pub fn echoes_compliant_gcm_siv(&self) -> bool {
        self.algorithm == AeadAlgorithm::Aes128GcmSiv && self.compliant_gcm_siv
    }
}

/// A well-formed request that cannot be served: answered with records that
/// say so ([`refusal_response`]), not with an Error record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client offered no protocol we speak (RFC 8915 4.1.2: the
    /// response's Next Protocol record is empty).
    NoCommonProtocol,
    /// NTPv4 is agreed but no AEAD algorithm is (RFC 8915 4.1.5: the
    /// response's AEAD record is empty, and no cookies follow).
    NoCommonAead,
}

/// How far the exchange has come.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeServerProgress {
    /// The request is not complete: read more.
    NeedMore,
    /// A complete, acceptable request.
    Request(Negotiated),
    /// A complete request we cannot serve.
    Refused(Refusal),
}

/// Why a request was rejected; [`KeServerError::error_code`] is the code to
/// send back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeServerError {
    #[error("NTS-KE request exceeds {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("malformed NTS-KE record: {0}")]
    Malformed(#[from] RecordError),
    #[error("unrecognized critical record type {0}")]
    UnrecognizedCriticalRecord(u16),
    #[error("more than one record of type {0}")]
    DuplicateRecord(u16),
    /// Error, Warning and New Cookie records are the server's to send.
    #[error("record type {0} must not be sent by a client")]
    ForbiddenRecord(u16),
    #[error("request has no Next Protocol record")]
    MissingNextProtocol,
    #[error("request offers NTPv4 but has no AEAD Algorithm record")]
    MissingAead,
    #[error("request's AEAD Algorithm record is empty")]
    EmptyAeadList,
    #[error("data after End of Message")]
    RecordAfterEndOfMessage,
    #[error("connection ended before End of Message")]
    MissingEndOfMessage,
    /// The caller fed bytes to an exchange that already produced its
    /// outcome: a bug in the caller rather than in the request.
    #[error("NTS-KE exchange already finished")]
    AlreadyFinished,
}

impl KeServerError {
    /// The NTS-KE error code to send for this error (RFC 8915 4.1.3).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnrecognizedCriticalRecord(_) => ErrorCode::UnrecognizedCriticalRecord,
            Self::AlreadyFinished => ErrorCode::InternalServerError,
            Self::RequestTooLarge { .. }
            | Self::Malformed(_)
            | Self::DuplicateRecord(_)
            | Self::ForbiddenRecord(_)
            | Self::MissingNextProtocol
            | Self::MissingAead
            | Self::EmptyAeadList
            | Self::RecordAfterEndOfMessage
            | Self::MissingEndOfMessage => ErrorCode::BadRequest,
        }
    }
}

impl From<MessageTooLarge> for KeServerError {
    fn from(e: MessageTooLarge) -> Self {
        Self::RequestTooLarge { limit: e.limit }
    }
}

impl KeServer {
    /// A server that will use the algorithms in `supported` (unsupported
    /// ones are ignored), with the default request size cap.
    pub fn new(supported: &[AeadAlgorithm]) -> Self {
        Self::with_max_request_len(supported, DEFAULT_MAX_REQUEST_LEN)
    }

    /// As [`KeServer::new`] with another request size cap, raised to at
    /// least [`MIN_MAX_REQUEST_LEN`] so every reasonable request fits.
    pub fn with_max_request_len(supported: &[AeadAlgorithm], max_request_len: usize) -> Self {
        Self {
            supported: supported
                .iter()
                .copied()
                .filter(|alg| alg.is_supported())
                .collect(),
            state: State::AwaitingRequest {
                records: RecordReader::new(max_request_len.max(MIN_MAX_REQUEST_LEN)),
                seen: RequestSoFar::default(),
            },
        }
    }

    /// Feeds the bytes of one TLS read.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<KeServerProgress, KeServerError> {
        let result = match &mut self.state {
            State::AwaitingRequest { records, seen } => {
                Self::step(&self.supported, records, seen, bytes)
            }
            State::Done if bytes.is_empty() => Err(KeServerError::AlreadyFinished),
            State::Done => Err(KeServerError::RecordAfterEndOfMessage),
            State::Failed(e) => return Err(e.clone()),
        };
        match &result {
            Ok(KeServerProgress::NeedMore) => {}
            Ok(_) => self.state = State::Done,
            Err(e) => self.state = State::Failed(e.clone()),
        }
        result
    }

    /// The client closed its side: fine after End of Message, a bad request
    /// before it.
    pub fn finish(&mut self) -> Result<(), KeServerError> {
        match &self.state {
            State::Done => Ok(()),
            State::Failed(e) => Err(e.clone()),
            State::AwaitingRequest { .. } => {
                let e = KeServerError::MissingEndOfMessage;
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn step(
        supported: &[AeadAlgorithm],
        records: &mut RecordReader,
        seen: &mut RequestSoFar,
        bytes: &[u8],
    ) -> Result<KeServerProgress, KeServerError> {
        records.push(bytes)?;
        while let Some(record) = records.next_record()? {
            if record.body == RecordBody::EndOfMessage {
                if records.has_unread() {
                    return Err(KeServerError::RecordAfterEndOfMessage);
                }
                return seen.negotiate(supported);
            }
            seen.accept(record)?;
        }
        Ok(KeServerProgress::NeedMore)
    }
}

impl RequestSoFar {
    fn accept(&mut self, record: Record) -> Result<(), KeServerError> {
        let duplicate = KeServerError::DuplicateRecord(record.record_type());
        match record.body {
            RecordBody::EndOfMessage => {}
            RecordBody::NextProtocol(ids) => set_once(&mut self.protocols, ids, duplicate)?,
            RecordBody::AeadAlgorithm(algs) => set_once(&mut self.algorithms, algs, duplicate)?,
            RecordBody::Server(name) => set_once(&mut self.server, name, duplicate)?,
            RecordBody::Port(port) => set_once(&mut self.port, port, duplicate)?,
            RecordBody::CompliantGcmSivExport => {
                if self.compliant_gcm_siv {
                    return Err(duplicate);
                }
                self.compliant_gcm_siv = true;
            }
            RecordBody::Error(_) | RecordBody::Warning(_) | RecordBody::NewCookie(_) => {
                return Err(KeServerError::ForbiddenRecord(record.record_type()));
            }
            RecordBody::Unknown { record_type, .. } if record.critical => {
                return Err(KeServerError::UnrecognizedCriticalRecord(record_type));
            }
            // RFC 8915 4: an unrecognized non-critical record is ignored.
            RecordBody::Unknown { .. } => {}
        }
        Ok(())
    }

    fn negotiate(
        &mut self,
        supported: &[AeadAlgorithm],
    ) -> Result<KeServerProgress, KeServerError> {
        let protocols = self
            .protocols
            .as_ref()
            .ok_or(KeServerError::MissingNextProtocol)?;
        if !protocols.contains(&NextProtocol::NtpV4) {
            return Ok(KeServerProgress::Refused(Refusal::NoCommonProtocol));
        }
        // RFC 8915 4.1.5: with NTPv4 offered the AEAD record MUST be present
        // and, in a request, name at least one algorithm.
        let offered = self.algorithms.as_ref().ok_or(KeServerError::MissingAead)?;
        if offered.is_empty() {
            return Err(KeServerError::EmptyAeadList);
        }
        let usable = |alg: &&AeadAlgorithm| supported.contains(alg);
        // Without record 1024, GCM-SIV keys are ambiguous (see the module
        // doc): prefer any other algorithm the client offered.
        let unambiguous =
            |alg: &&AeadAlgorithm| self.compliant_gcm_siv || **alg != AeadAlgorithm::Aes128GcmSiv;
        let choice = offered
            .iter()
            .filter(usable)
            .find(unambiguous)
            .or_else(|| offered.iter().find(usable));
        let Some(&algorithm) = choice else {
            return Ok(KeServerProgress::Refused(Refusal::NoCommonAead));
        };
        Ok(KeServerProgress::Request(Negotiated {
            protocol: NextProtocol::NtpV4,
            algorithm,
            requested_server: self.server.take(),
            requested_port: self.port,
            compliant_gcm_siv: self.compliant_gcm_siv,
        }))
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    duplicate: KeServerError,
) -> Result<(), KeServerError> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}

/// The response to an accepted request: Next Protocol and AEAD (critical),
/// record 1024 (not critical) when [`Negotiated::echoes_compliant_gcm_siv`],
/// the cookies as New Cookie records (not critical), the optional Server and
/// Port records (critical: a client that ignored them would use the wrong
/// NTP server), End of Message. Fails on an empty or oversized cookie or a
/// server name that is not printable ASCII.
pub fn build_response(
    negotiated: &Negotiated,
    cookies: &[Vec<u8>],
    server: Option<&str>,
    port: Option<u16>,
) -> Result<Vec<u8>, EncodeError> {
    // The cookies are already sealed: "sealing" copies the next one in.
    let longest = cookies.iter().map(Vec::len).max().unwrap_or(0);
    let mut next = cookies.iter();
    let copy = |out: &mut [u8]| -> Result<usize, ()> {
        let cookie = next.next().ok_or(())?;
        out.get_mut(..cookie.len())
            .ok_or(())?
            .copy_from_slice(cookie);
        Ok(cookie.len())
    };
    build_response_sealing(negotiated, longest, cookies.len(), server, port, copy).map_err(|e| {
        match e {
            SealingError::Encode(e) => e,
            // Each record is as long as the longest cookie and the
            // iterator yields exactly `cookies.len()` of them.
            SealingError::Seal(()) | SealingError::Overrun(_) => EncodeError::BodyTooLong(longest),
        }
    })
}

/// Why [`build_response_sealing`] could not produce a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealingError<E> {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The caller's `seal` failed.
    #[error("sealing a cookie failed: {0}")]
    Seal(E),
    /// `seal` claimed more bytes than the space it was given.
    #[error("a sealed cookie overran its {0}-byte record")]
    Overrun(usize),
}

/// The response [`build_response`] makes, with `count` cookies sealed
/// straight into their New Cookie records: `seal` gets the body of one
/// record, `cookie_len` bytes, writes a cookie at its front and returns
/// the cookie's length. The response is one allocation, sized up front;
/// no cookie is copied after it is sealed.
pub fn build_response_sealing<E>(
    negotiated: &Negotiated,
    cookie_len: usize,
    count: usize,
    server: Option<&str>,
    port: Option<u16>,
    mut seal: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<Vec<u8>, SealingError<E>> {
    let body_len = u16::try_from(cookie_len).map_err(|_| EncodeError::BodyTooLong(cookie_len))?;
    if cookie_len == 0 && count > 0 {
        return Err(EncodeError::EmptyCookie.into());
    }
    let mut head = vec![
        Record::critical(RecordBody::NextProtocol(vec![negotiated.protocol])),
        Record::critical(RecordBody::AeadAlgorithm(vec![negotiated.algorithm])),
    ];
    if negotiated.echoes_compliant_gcm_siv() {
        head.push(Record::new(false, RecordBody::CompliantGcmSivExport));
    }
    let mut tail = Vec::with_capacity(3);
    if let Some(server) = server {
        tail.push(Record::critical(RecordBody::Server(server.to_owned())));
    }
    if let Some(port) = port {
        tail.push(Record::critical(RecordBody::Port(port)));
    }
    tail.push(Record::critical(RecordBody::EndOfMessage));
    let fixed: usize = head
        .iter()
        .chain(&tail)
        .map(Record::encoded_len)
        .sum::<Result<usize, _>>()?;
    let mut out = Vec::with_capacity(fixed + count * (HEADER_LEN + cookie_len));
    for record in &head {
        record.encode(&mut out)?;
    }
    for _ in 0..count {
        // A New Cookie record, not critical: the header, then the body
        // sealed in place.
        out.extend_from_slice(&record_type::NEW_COOKIE.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&body_len.to_be_bytes());
        let body_at = out.len();
        out.resize(body_at + cookie_len, 0);
        let body = out
            .get_mut(body_at..)
            .ok_or(SealingError::Overrun(cookie_len))?;
        let n = seal(body).map_err(SealingError::Seal)?;
        if n == 0 {
            return Err(EncodeError::EmptyCookie.into());
        }
        if n > cookie_len {
            return Err(SealingError::Overrun(cookie_len));
        }
        if n < cookie_len {
            // Shorter than announced: shrink the record to fit.
            out.truncate(body_at + n);
            let short = u16::try_from(n).map_err(|_| EncodeError::BodyTooLong(n))?;
            if let Some(field) = out.get_mut(len_at..body_at) {
                field.copy_from_slice(&short.to_be_bytes());
            }
        }
    }
    for record in &tail {
        record.encode(&mut out)?;
    }
    Ok(out)
}

/// The response to a well-formed request we cannot serve.
pub fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let records = match refusal {
        Refusal::NoCommonProtocol => vec![
            Record::critical(RecordBody::NextProtocol(vec![])),
            Record::critical(RecordBody::EndOfMessage),
        ],
        Refusal::NoCommonAead => vec![
            Record::critical(RecordBody::NextProtocol(vec![NextProtocol::NtpV4])),
            Record::critical(RecordBody::AeadAlgorithm(vec![])),
            Record::critical(RecordBody::EndOfMessage),
        ],
    };
    encode_fixed(&records)
}

/// The response to a rejected request: Error (critical), End of Message.
pub fn error_response(code: ErrorCode) -> Vec<u8> {
    encode_fixed(&[
        Record::critical(RecordBody::Error(code)),
        Record::critical(RecordBody::EndOfMessage),
    ])
}

/// Encodes records whose bodies are a few bytes of fixed shape.
fn encode_fixed(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        // Cannot fail: fixed-size bodies, no cookie or server name.
        let encoded = record.encode(&mut out);
        debug_assert!(encoded.is_ok());
    }
    out
}
