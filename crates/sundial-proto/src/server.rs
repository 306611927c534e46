//! The whole NTP server decision for one request, minus the socket.
//!
//! `handle` takes the request bytes, the kernel's receive timestamp, the
//! server's synchronization state, the caller's admission verdict (allow or
//! deny lists, rate limiting) and the keyset, and either writes the answer
//! into the caller's buffer or says why it dropped the request. The answer
//! is never larger than the request.

use rand_core::CryptoRng;

use crate::interleave::{PreviousTransmit, is_marked_receive, mark_receive, mark_transmit};
use crate::ntp::packet::{LeapIndicator, Mode, NtpHeader, ParseError, ReferenceId};
use crate::ntp::timestamp::{NtpShort, NtpTimestamp};
use crate::nts::keyset::KeySet;
use crate::nts::server::{NtsCheck, NtsDrop, check_request, write_nak, write_response};
use crate::reader::Writer;

/// What the server says about its own time, from the daemon's
/// synchronization state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerState {
    pub leap: LeapIndicator,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: ReferenceId,
    pub reference_timestamp: NtpTimestamp,
}

impl ServerState {
    /// A server with no synchronized source: stratum 16 and leap "alarm",
    /// which clients refuse to synchronize to.
    pub const UNSYNCHRONIZED: Self = Self {
        leap: LeapIndicator::Unsynchronized,
        stratum: 16,
        precision: -20,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        reference_id: ReferenceId([0; 4]),
        reference_timestamp: NtpTimestamp::ZERO,
    };

    /// A local clock announced at `stratum` (ntpd-rs's `local-stratum`):
    /// 16 means unsynchronized.
    pub fn local(stratum: u8, reference_id: ReferenceId, now: NtpTimestamp) -> Self {
        if stratum >= 16 || stratum == 0 {
            return Self::UNSYNCHRONIZED;
        }
        Self {
            leap: LeapIndicator::NoWarning,
            stratum,
            reference_id,
            reference_timestamp: now,
            ..Self::UNSYNCHRONIZED
        }
    }
}

/// What to do with requests that carry no NTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlainPolicy {
    /// Answer them (the default).
    #[default]
    Serve,
    /// Drop them silently.
    Ignore,
    /// Answer with a DENY kiss.
    Deny,
}

/// The server's fixed policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerPolicy {
    /// Bit `v` set: NTP version `v` (1 to 4) is answered.
    pub accepted_versions: u8,
    pub plain: PlainPolicy,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        Self {
            accepted_versions: (1 << 3) | (1 << 4),
            plain: PlainPolicy::Serve,
        }
    }
}

impl ServerPolicy {
    pub fn accepts_version(&self, version: u8) -> bool {
        version < 8 && self.accepted_versions & (1 << version) != 0
    }
}

/// The caller's verdict on the client's address, taken before parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Denied by a filter with action "deny": answer with a DENY kiss.
    Deny,
    /// Over its rate: answer with a RATE kiss.
    RateLimited,
}

/// The kind of answer written, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseKind {
    Plain,
    Nts,
    NtsNak,
    Deny,
    Rate,
}

/// Why a request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    #[error("unparsable header: {0}")]
    Header(#[from] ParseError),
    #[error("NTP version {0} not accepted")]
    Version(u8),
    #[error("mode {0:?} is not a client request")]
    NotClient(Mode),
    #[error("plain NTP not served here (require-nts)")]
    NtsRequired,
    #[error("NTS: {0}")]
    Nts(#[from] NtsDrop),
    #[error("NTS request but no keyset (NTS-KE not configured)")]
    NoKeyset,
    #[error("response would not fit")]
    TooLarge,
}

/// The counters a dropped request is counted under: a small fixed set (the
/// NTS field faults are grouped), so that a listener keeps an array of
/// counters and `DropClass as usize` indexes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropClass {
    /// The 48-byte header does not parse (too short).
    Header,
    Version,
    Mode,
    /// Plain NTP where `require-nts` ignores it.
    NtsRequired,
    /// NTS fields, but no NTS-KE server (no keys) here.
    NoKeys,
    /// Extension fields with wrong lengths or structure.
    Fields,
    /// Unique Identifier missing, repeated or short.
    UniqueId,
    /// No cookie, or more than one.
    CookieCount,
    /// Authenticator missing, or a field after it.
    AuthenticatorPlacement,
    /// A placeholder not the size of the cookie.
    Placeholder,
    /// Nonce (plus padding) shorter than RFC 8915 asks.
    Nonce,
    /// The authenticator does not verify under the cookie's keys.
    Authentication,
    /// An answer that would not fit the request's size.
    TooLarge,
}

impl DropClass {
    pub const ALL: [Self; 13] = [
        Self::Header,
        Self::Version,
        Self::Mode,
        Self::NtsRequired,
        Self::NoKeys,
        Self::Fields,
        Self::UniqueId,
        Self::CookieCount,
        Self::AuthenticatorPlacement,
        Self::Placeholder,
        Self::Nonce,
        Self::Authentication,
        Self::TooLarge,
    ];

    /// A stable snake_case name, for status output and metric labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Version => "version",
            Self::Mode => "mode",
            Self::NtsRequired => "nts_required",
            Self::NoKeys => "no_keys",
            Self::Fields => "fields",
            Self::UniqueId => "unique_id",
            Self::CookieCount => "cookie_count",
            Self::AuthenticatorPlacement => "authenticator_placement",
            Self::Placeholder => "placeholder",
            Self::Nonce => "nonce",
            Self::Authentication => "authentication",
            Self::TooLarge => "too_large",
        }
    }
}

impl DropReason {
    /// The counter this reason is counted under.
    #[must_use]
    pub fn class(&self) -> DropClass {
        match self {
            Self::Header(_) => DropClass::Header,
            Self::Version(_) => DropClass::Version,
            Self::NotClient(_) => DropClass::Mode,
            Self::NtsRequired => DropClass::NtsRequired,
            Self::NoKeyset => DropClass::NoKeys,
            Self::TooLarge | Self::Nts(NtsDrop::TooLarge) => DropClass::TooLarge,
            Self::Nts(NtsDrop::Malformed(_)) => DropClass::Fields,
            Self::Nts(
                NtsDrop::NoUniqueId | NtsDrop::DuplicateUniqueId | NtsDrop::ShortUniqueId,
            ) => DropClass::UniqueId,
            Self::Nts(NtsDrop::NoCookie | NtsDrop::SeveralCookies) => DropClass::CookieCount,
            Self::Nts(NtsDrop::NoAuthenticator | NtsDrop::FieldAfterAuthenticator) => {
                DropClass::AuthenticatorPlacement
            }
            Self::Nts(NtsDrop::PlaceholderSize) => DropClass::Placeholder,
            Self::Nts(NtsDrop::NonceTooShort) => DropClass::Nonce,
            Self::Nts(NtsDrop::Authentication) => DropClass::Authentication,
        }
    }
}

/// The outcome for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum ServerAction {
    /// Send the first `len` bytes of the caller's buffer.
    Respond {
        len: usize,
        kind: ResponseKind,
    },
    Drop(DropReason),
}

/// How an answer's origin and transmit timestamps were formed (RFC 9769).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AnswerMode {
    /// Basic mode: the request did not ask for interleaving.
    #[default]
    Basic,
    /// Interleaved: origin is the request's receive timestamp, transmit
    /// the kernel's transmit time of the client's previous answer.
    Interleaved,
    /// The request was interleaved but its previous exchange is no longer
    /// in the table (evicted, already answered, never captured, or another
    /// client's): answered in basic mode.
    Missed,
}

/// An answer the caller should remember for an interleaved answer to come:
/// capture its transmit time and save it under `receive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaveExchange {
    /// The receive timestamp as sent in the answer (the table's key).
    pub receive: NtpTimestamp,
    /// The transmit time read for the answer: an estimate, early by the
    /// time the answer takes to leave.
    pub transmit_estimate: NtpTimestamp,
}

/// The interleaved-mode half of an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Exchange {
    pub mode: AnswerMode,
    /// Set when the request showed it wants interleaved answers.
    pub save: Option<SaveExchange>,
}

/// The outcome of [`handle_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Handled {
    pub action: ServerAction,
    pub exchange: Exchange,
}

/// Handles one request. `transmit_time` is called as late as possible,
/// just before the response is sealed, to read the clock for the transmit
/// timestamp. Basic mode only; see [`handle_request`].
#[allow(clippy::too_many_arguments)]
pub fn handle(
    state: &ServerState,
    policy: &ServerPolicy,
    keyset: Option<&KeySet>,
    admission: Admission,
    request: &[u8],
    receive_timestamp: NtpTimestamp,
    transmit_time: impl FnOnce() -> NtpTimestamp,
    rng: &mut impl CryptoRng,
    out: &mut [u8],
) -> ServerAction {
    let server = Server {
        state,
        policy,
        keyset,
    };
    let request = Request {
        bytes: request,
        received: receive_timestamp,
        admission,
    };
    handle_request(&server, &request, None, transmit_time, rng, out).action
}

/// What the server is: its view of its time, its policy, its NTS keys.
#[derive(Clone, Copy, Debug)]
pub struct Server<'a> {
    pub state: &'a ServerState,
    pub policy: &'a ServerPolicy,
    pub keyset: Option<&'a KeySet>,
}

/// One request as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub bytes: &'a [u8],
    /// The kernel's receive timestamp.
    pub received: NtpTimestamp,
    /// The caller's verdict on the client's address.
    pub admission: Admission,
}

/// Handles one request, in interleaved mode where the request asks for it
/// and `previous` (the table, seen from this request's client) still holds
/// the client's previous exchange; `None`: basic mode only, and the
/// answer's timestamps are not marked.
pub fn handle_request(
    server: &Server<'_>,
    request: &Request<'_>,
    previous: Option<&mut dyn PreviousTransmit>,
    transmit_time: impl FnOnce() -> NtpTimestamp,
    rng: &mut impl CryptoRng,
    out: &mut [u8],
) -> Handled {
    let mut exchange = Exchange::default();
    let action = match decide(
        server,
        request,
        previous,
        &mut exchange,
        transmit_time,
        rng,
        out,
    ) {
        Ok((len, kind)) => ServerAction::Respond { len, kind },
        Err(reason) => {
            exchange = Exchange::default();
            ServerAction::Drop(reason)
        }
    };
    Handled { action, exchange }
}

/// Does this request ask for interleaved answers (RFC 9769 section 2)?
/// Its receive field differs from its transmit field, and its origin is
/// one of our receive timestamps, or zero with a receive field set (a
/// client's first interleaved request: it has no receive timestamp of ours
/// to echo yet, and says so with a nonzero receive field, which servers
/// that do not interleave ignore).
fn wants_interleave(req: &NtpHeader) -> bool {
    req.version == 4
        && req.receive_timestamp != req.transmit_timestamp
        && (is_marked_receive(req.origin_timestamp)
            || (req.origin_timestamp.is_zero() && !req.receive_timestamp.is_zero()))
}

/// Fills in the receive, origin and transmit fields of an answer that
/// carries time; with the table, in interleaved mode when it can.
fn stamp(
    header: &mut NtpHeader,
    req: &NtpHeader,
    previous: Option<&mut dyn PreviousTransmit>,
    exchange: &mut Exchange,
    transmit_time: impl FnOnce() -> NtpTimestamp,
) {
    let Some(previous) = previous else {
        header.transmit_timestamp = transmit_time();
        return;
    };
    let mut receive = mark_receive(header.receive_timestamp);
    if receive == req.origin_timestamp {
        // Never send a receive timestamp the client just echoed.
        receive = NtpTimestamp::from_bits(receive.to_bits().wrapping_add(2));
    }
    header.receive_timestamp = receive;
    let wants = wants_interleave(req);
    let saved = if wants && is_marked_receive(req.origin_timestamp) {
        let saved = previous.take(req.origin_timestamp);
        exchange.mode = if saved.is_some() {
            AnswerMode::Interleaved
        } else {
            AnswerMode::Missed
        };
        saved
    } else {
        None
    };
    let estimate = mark_transmit(transmit_time());
    match saved {
        Some(transmit) => {
            header.origin_timestamp = req.receive_timestamp;
            header.transmit_timestamp = transmit;
        }
        None => header.transmit_timestamp = estimate,
    }
    if wants {
        exchange.save = Some(SaveExchange {
            receive,
            transmit_estimate: estimate,
        });
    }
}

fn decide(
    server: &Server<'_>,
    request: &Request<'_>,
    previous: Option<&mut dyn PreviousTransmit>,
    exchange: &mut Exchange,
    transmit_time: impl FnOnce() -> NtpTimestamp,
    rng: &mut impl CryptoRng,
    out: &mut [u8],
) -> Result<(usize, ResponseKind), DropReason> {
    let Server {
        state,
        policy,
        keyset,
    } = *server;
    let Request {
        bytes: request,
        received: receive_timestamp,
        admission,
    } = *request;
    let (req, _) = NtpHeader::parse(request)?;
    if !policy.accepts_version(req.version) {
        return Err(DropReason::Version(req.version));
    }
    if req.mode != Mode::Client {
        return Err(DropReason::NotClient(req.mode));
    }
    // Extension fields exist from NTPv4 on; older versions are plain.
    let nts = if req.version < 4 {
        NtsCheck::Plain { uid: None }
    } else {
        check_request(request, keyset)
    };
    let max_len = out.len().min(request.len());
    let mut w = Writer::new(out.get_mut(..max_len).unwrap_or_default());
    let mut header = response_header(state, &req, receive_timestamp);
    let kiss = match admission {
        Admission::Allow => None,
        Admission::Deny => Some((ReferenceId::DENY, ResponseKind::Deny)),
        Admission::RateLimited => Some((ReferenceId::RATE, ResponseKind::Rate)),
    };
    if let Some((code, _)) = kiss {
        make_kiss(&mut header, code);
    }
    // Kisses are never interleaved, nor remembered.
    let previous = if kiss.is_none() { previous } else { None };
    let too_large = |_| DropReason::TooLarge;
    let kind = match nts {
        NtsCheck::Drop(reason) => return Err(reason.into()),
        NtsCheck::NoKeyset => return Err(DropReason::NoKeyset),
        NtsCheck::Plain { uid } => {
            let kind = match (kiss, policy.plain) {
                (Some((_, kind)), _) => kind,
                (None, PlainPolicy::Serve) => ResponseKind::Plain,
                (None, PlainPolicy::Ignore) => return Err(DropReason::NtsRequired),
                (None, PlainPolicy::Deny) => {
                    make_kiss(&mut header, ReferenceId::DENY);
                    ResponseKind::Deny
                }
            };
            let previous = if kind == ResponseKind::Plain {
                previous
            } else {
                None
            };
            stamp(&mut header, &req, previous, exchange, transmit_time);
            // The echoed identifier came in the request, so it fits.
            match uid {
                Some(uid) => write_nak(&mut w, &header, uid).map_err(too_large)?,
                None => header.serialize(&mut w).map_err(|_| DropReason::TooLarge)?,
            }
            kind
        }
        NtsCheck::Nak { uid } => {
            make_kiss(&mut header, ReferenceId::NTSN);
            header.transmit_timestamp = transmit_time();
            write_nak(&mut w, &header, uid).map_err(too_large)?;
            ResponseKind::NtsNak
        }
        NtsCheck::Valid(nts_request) => {
            // A kiss to an NTS client is authenticated like any answer, and
            // still carries fresh cookies so the client is not starved.
            let Some(keyset) = keyset else {
                return Err(DropReason::NoKeyset);
            };
            stamp(&mut header, &req, previous, exchange, transmit_time);
            write_response(&mut w, &header, &nts_request, keyset, max_len, rng)
                .map_err(too_large)?;
            kiss.map_or(ResponseKind::Nts, |(_, kind)| kind)
        }
    };
    Ok((w.len(), kind))
}

fn response_header(state: &ServerState, req: &NtpHeader, receive: NtpTimestamp) -> NtpHeader {
    NtpHeader {
        leap: state.leap,
        version: req.version,
        mode: Mode::Server,
        stratum: state.stratum,
        poll: req.poll.clamp(0, 17),
        precision: state.precision,
        root_delay: state.root_delay,
        root_dispersion: state.root_dispersion,
        reference_id: state.reference_id,
        reference_timestamp: state.reference_timestamp,
        origin_timestamp: req.transmit_timestamp,
        receive_timestamp: receive,
        transmit_timestamp: NtpTimestamp::ZERO,
    }
}

fn make_kiss(header: &mut NtpHeader, code: ReferenceId) {
    header.leap = LeapIndicator::Unsynchronized;
    header.stratum = 0;
    header.reference_id = code;
}

#[cfg(test)]
mod tests {
    use super::DropClass;

    #[test]
    fn drop_classes_index_their_own_slot_and_have_distinct_names() {
        for (i, class) in DropClass::ALL.iter().enumerate() {
            assert_eq!(*class as usize, i);
        }
        let mut names: Vec<_> = DropClass::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropClass::ALL.len());
    }
}
