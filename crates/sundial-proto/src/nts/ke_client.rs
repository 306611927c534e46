//! The client side of one NTS-KE exchange (RFC 8915 section 4), sans-IO.
//!
//! The caller sends [`KeClient::request`] over TLS, feeds every read to
//! [`KeClient::receive`] until it says [`KeClientProgress::Done`], and then
//! derives keys with [`crate::nts::key_export::derive_keys_with`] using the
//! negotiated protocol and algorithm and [`KeResponse::key_context`].
//!
//! AES-128-GCM-SIV and chrony. chrony 4.4 to 4.6.0 derive GCM-SIV keys with
//! the wrong AEAD id in the exporter context (15 instead of 30). chrony
//! 4.6.1+ fixed it compatibly: a client that offers GCM-SIV also sends the
//! empty, non-critical record 1024; a server that derives compliant keys
//! answers with the same record when it chose GCM-SIV, and then both use
//! the RFC 8915 context. Without that answer a chrony client assumes an
//! older chrony server and uses the legacy context, keeping the compliant
//! keys in reserve: if the only answer to its requests is an NTS NAK (the
//! server opened the cookie but not our authenticator: it is compliant but
//! does not know the record), it switches to them for the cookies it has
//! left. We do the same ([`KeResponse::fallback_key_context`]).

use crate::nts::aead::AeadAlgorithm;
use crate::nts::ke_record::{
    ErrorCode, MessageTooLarge, NextProtocol, Record, RecordBody, RecordError, RecordReader,
    WarningCode,
};
use crate::nts::key_export::KeyContext;

/// The largest response we accept. A response carries a few records and
/// typically eight cookies of about a hundred bytes; 64 KiB is generous while
/// still bounding what a hostile server can make us buffer.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// One NTS-KE exchange from the client's side.
#[derive(Debug)]
pub struct KeClient {
    /// The algorithms we offer, in our preference order.
    offered: Vec<AeadAlgorithm>,
    /// Whether the request carries record 1024 when it offers GCM-SIV.
    compliant_record: bool,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Request sent (or about to be); response records are arriving.
    AwaitingResponse {
        records: RecordReader,
        seen: ResponseSoFar,
    },
    /// End of Message arrived and the response was valid.
    Done,
    /// The exchange failed; every further call repeats why.
    Failed(KeClientError),
}

/// What the server has told us so far, before End of Message.
#[derive(Debug, Default)]
struct ResponseSoFar {
    protocols: Option<Vec<NextProtocol>>,
    algorithms: Option<Vec<AeadAlgorithm>>,
    cookies: Vec<Vec<u8>>,
    server: Option<String>,
    port: Option<u16>,
    warnings: Vec<WarningCode>,
    /// The server sent record 1024.
    compliant_gcm_siv: bool,
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeResponse {
    /// Always [`NextProtocol::NtpV4`]: the only protocol we offer.
    pub protocol: NextProtocol,
    /// One of the algorithms we offered.
    pub algorithm: AeadAlgorithm,
    /// At least one cookie, in the order received.
    pub cookies: Vec<Vec<u8>>,
    /// The NTP server to use; `None` means the KE server's own address.
    pub server: Option<String>,
    /// The NTP port to use; `None` means 123.
    pub port: Option<u16>,
    /// Warnings the server sent that we understood and chose to go on
    /// after. RFC 8915 defines no warning codes, so this is empty today:
    /// any warning is an unrecognized one, and that stops the exchange.
    pub warnings: Vec<WarningCode>,
    /// The exporter context to derive the keys with: compliant unless
    /// GCM-SIV was chosen and the server did not answer record 1024.
    pub key_context: KeyContext,
    /// The context to switch to (same cookies) when the server answers
    /// requests made with the first keys only with NTS NAKs: set exactly
    /// when `key_context` is the legacy one.
    pub fallback_key_context: Option<KeyContext>,
}

/// How far the exchange has come.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeClientProgress {
    /// The response is not complete: read more.
    NeedMore,
    /// End of Message arrived and the response is valid.
    Done(KeResponse),
}

/// Why the exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeClientError {
    #[error("NTS-KE response exceeds {limit} bytes")]
    ResponseTooLarge { limit: usize },
    #[error("malformed NTS-KE record: {0}")]
    Malformed(#[from] RecordError),
    #[error("NTS-KE server reported error {0:?}")]
    ServerError(ErrorCode),
    /// RFC 8915 4.1.4: a client MUST treat an unrecognized warning as an
    /// error.
    #[error("NTS-KE server sent unrecognized warning {}", .0.to_u16())]
    UnrecognizedWarning(WarningCode),
    #[error("NTS-KE server sent unrecognized critical record type {0}")]
    UnrecognizedCriticalRecord(u16),
    #[error("NTS-KE server sent more than one record of type {0}")]
    DuplicateRecord(u16),
    #[error("NTS-KE response has no Next Protocol record")]
    MissingNextProtocol,
    /// An empty Next Protocol record: the server supports none we offered.
    #[error("NTS-KE server supports no protocol we offered")]
    ProtocolRefused,
    #[error("NTS-KE server chose protocols {0:?}; we offered only NTPv4")]
    UnexpectedProtocols(Vec<NextProtocol>),
    #[error("NTS-KE response has no AEAD Algorithm record")]
    MissingAead,
    /// An empty AEAD record: the server supports none we offered.
    #[error("NTS-KE server supports no AEAD algorithm we offered")]
    NoCommonAead,
    #[error("NTS-KE server chose AEAD algorithm {}, which we did not offer", .0.to_u16())]
    AeadNotOffered(AeadAlgorithm),
    #[error("NTS-KE server named several AEAD algorithms: {0:?}")]
    MultipleAead(Vec<AeadAlgorithm>),
    #[error("NTS-KE response carries no cookie")]
    NoCookies,
    #[error("NTS-KE server sent data after End of Message")]
    RecordAfterEndOfMessage,
    #[error("NTS-KE connection ended before End of Message")]
    MissingEndOfMessage,
    #[error("NTS-KE exchange already finished")]
    AlreadyFinished,
}

impl From<MessageTooLarge> for KeClientError {
    fn from(e: MessageTooLarge) -> Self {
        Self::ResponseTooLarge { limit: e.limit }
    }
}

impl KeClient {
    /// A client offering `aead_preference`, most preferred first. Algorithms
    /// we cannot use and repeats are dropped; if nothing is left we offer
    /// [`AeadAlgorithm::SUPPORTED`], because RFC 8915 4.1.5 requires a
    /// request to name at least one algorithm.
    pub fn new(aead_preference: &[AeadAlgorithm]) -> Self {
        let mut offered: Vec<AeadAlgorithm> = Vec::new();
        for &alg in aead_preference {
            if alg.is_supported() && !offered.contains(&alg) {
                offered.push(alg);
            }
        }
        if offered.is_empty() {
            offered = AeadAlgorithm::SUPPORTED.to_vec();
        }
        Self {
            offered,
            compliant_record: true,
            state: State::AwaitingResponse {
                records: RecordReader::new(MAX_RESPONSE_LEN),
                seen: ResponseSoFar::default(),
            },
        }
    }

    /// A client that never sends record 1024, as chrony 4.4 to 4.6.0 and
    /// clients unaware of it do: for tests, and to check servers with.
    pub fn without_compliant_gcm_siv_record(mut self) -> Self {
        self.compliant_record = false;
        self
    }

    /// The algorithms offered, in preference order.
    pub fn offered(&self) -> &[AeadAlgorithm] {
        &self.offered
    }

    /// Whether the request carries record 1024.
    pub fn sends_compliant_gcm_siv_record(&self) -> bool {
        self.compliant_record && self.offered.contains(&AeadAlgorithm::Aes128GcmSiv)
    }

    /// The request: Next Protocol [NTPv4], AEAD in preference order (both
    /// critical as RFC 8915 4.1 requires), record 1024 (not critical) when
    /// GCM-SIV is offered, End of Message (critical).
    pub fn request(&self) -> Vec<u8> {
        let mut records = vec![
            Record::critical(RecordBody::NextProtocol(vec![NextProtocol::NtpV4])),
            Record::critical(RecordBody::AeadAlgorithm(self.offered.clone())),
        ];
        if self.sends_compliant_gcm_siv_record() {
            records.push(Record::new(false, RecordBody::CompliantGcmSivExport));
        }
        records.push(Record::critical(RecordBody::EndOfMessage));
        let mut out = Vec::new();
        for record in &records {
            // Cannot fail: `offered` holds at most the few supported
            // algorithms, far below the 16-bit body length.
            let encoded = record.encode(&mut out);
            debug_assert!(encoded.is_ok());
        }
        out
    }

    /// Feeds the bytes of one TLS read.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<KeClientProgress, KeClientError> {
        let result = match &mut self.state {
            State::AwaitingResponse { records, seen } => {
                Self::step(&self.offered, records, seen, bytes)
            }
            State::Done if bytes.is_empty() => Err(KeClientError::AlreadyFinished),
            State::Done => Err(KeClientError::RecordAfterEndOfMessage),
            State::Failed(e) => return Err(e.clone()),
        };
        match &result {
            Ok(KeClientProgress::NeedMore) => {}
            Ok(KeClientProgress::Done(_)) => self.state = State::Done,
            Err(e) => self.state = State::Failed(e.clone()),
        }
        result
    }

    /// The server closed the stream: fine after End of Message, an error
    /// before it.
    pub fn finish(&mut self) -> Result<(), KeClientError> {
        match &self.state {
            State::Done => Ok(()),
            State::Failed(e) => Err(e.clone()),
            State::AwaitingResponse { .. } => {
                let e = KeClientError::MissingEndOfMessage;
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn step(
        offered: &[AeadAlgorithm],
        records: &mut RecordReader,
        seen: &mut ResponseSoFar,
        bytes: &[u8],
    ) -> Result<KeClientProgress, KeClientError> {
        records.push(bytes)?;
        while let Some(record) = records.next_record()? {
            if record.body == RecordBody::EndOfMessage {
                if records.has_unread() {
                    return Err(KeClientError::RecordAfterEndOfMessage);
                }
                return seen.finish(offered).map(KeClientProgress::Done);
            }
            seen.accept(record)?;
        }
        Ok(KeClientProgress::NeedMore)
    }
}

impl ResponseSoFar {
    fn accept(&mut self, record: Record) -> Result<(), KeClientError> {
        let duplicate = KeClientError::DuplicateRecord(record.record_type());
        match record.body {
            RecordBody::EndOfMessage => {}
            RecordBody::NextProtocol(ids) => set_once(&mut self.protocols, ids, duplicate)?,
            RecordBody::Error(code) => return Err(KeClientError::ServerError(code)),
            // Every code is unrecognized while the registry is empty; a
            // recognized one would be pushed to `warnings` here.
            RecordBody::Warning(code @ WarningCode::Unknown(_)) => {
                return Err(KeClientError::UnrecognizedWarning(code));
            }
            RecordBody::AeadAlgorithm(algs) => set_once(&mut self.algorithms, algs, duplicate)?,
            RecordBody::NewCookie(cookie) => self.cookies.push(cookie),
            RecordBody::Server(name) => set_once(&mut self.server, name, duplicate)?,
            RecordBody::Port(port) => set_once(&mut self.port, port, duplicate)?,
            RecordBody::CompliantGcmSivExport => {
                if self.compliant_gcm_siv {
                    return Err(duplicate);
                }
                self.compliant_gcm_siv = true;
            }
            RecordBody::Unknown { record_type, .. } if record.critical => {
                return Err(KeClientError::UnrecognizedCriticalRecord(record_type));
            }
            // RFC 8915 4: an unrecognized non-critical record is ignored.
            RecordBody::Unknown { .. } => {}
        }
        Ok(())
    }

    /// Checks the complete response against RFC 8915 4.1.
    fn finish(&mut self, offered: &[AeadAlgorithm]) -> Result<KeResponse, KeClientError> {
        let protocol = match self.protocols.as_deref() {
            None => return Err(KeClientError::MissingNextProtocol),
            Some([]) => return Err(KeClientError::ProtocolRefused),
            Some([NextProtocol::NtpV4]) => NextProtocol::NtpV4,
            Some(other) => return Err(KeClientError::UnexpectedProtocols(other.to_vec())),
        };
        let algorithm = match self.algorithms.as_deref() {
            None => return Err(KeClientError::MissingAead),
            Some([]) => return Err(KeClientError::NoCommonAead),
            Some([alg]) if offered.contains(alg) => *alg,
            Some([alg]) => return Err(KeClientError::AeadNotOffered(*alg)),
            Some(other) => return Err(KeClientError::MultipleAead(other.to_vec())),
        };
        if self.cookies.is_empty() {
            return Err(KeClientError::NoCookies);
        }
        // chrony's client logic: record 1024 in the answer means compliant
        // keys; GCM-SIV without it means an older chrony server (legacy
        // keys), or a compliant server unaware of the record (the fallback).
        let (key_context, fallback_key_context) =
            if algorithm == AeadAlgorithm::Aes128GcmSiv && !self.compliant_gcm_siv {
                (KeyContext::LegacyGcmSiv, Some(KeyContext::Compliant))
            } else {
                (KeyContext::Compliant, None)
            };
        Ok(KeResponse {
            key_context,
            fallback_key_context,
            protocol,
            algorithm,
            cookies: std::mem::take(&mut self.cookies),
            server: self.server.take(),
            port: self.port,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}

/// Stores a record's value, refusing a second record of the same type.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    duplicate: KeClientError,
) -> Result<(), KeClientError> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}
