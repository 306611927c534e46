//! One client association with one NTP server, plain or NTS, sans-IO.
//!
//! The daemon owns the schedule and the socket; this module owns what a
//! request contains and which response is believed. [`Association::poll`]
//! writes the next request (time and randomness are arguments) and
//! [`Association::handle_response`] judges what came back and, for a good
//! answer, computes offset and delay from the four timestamps (RFC 5905
//! section 8).
//!
//! The transmit timestamp of every request is random, not our clock: it
//! tells the network nothing about our time (the data minimisation of RFC
//! 9109 section 3, as chrony does), and an answer must echo it as its origin
//! timestamp, which makes it the nonce that ties an answer to the one
//! request outstanding. Our real send time stays here, in [`Outstanding`].
//!
//! In interleaved mode (RFC 9769 section 2, off unless asked for) a
//! request also echoes the server's receive timestamp of the last answer
//! as its origin and carries a second random value in its receive field.
//! A server that interleaves answers with that value as origin and, as
//! transmit timestamp, the kernel's real send time of its previous answer;
//! the sample is then the previous exchange, completed with that better
//! T3. A server that does not interleave answers in basic mode, which is
//! taken as usual.

use rand_core::CryptoRng;

use crate::ntp::packet::{HEADER_LEN, KissCode, LeapIndicator, Mode, NtpHeader};
use crate::ntp::timestamp::{NtpDuration, NtpTimestamp};
use crate::nts::aead::NtsKeys;
use crate::nts::client::{
    ResponseError, UID_LEN, VerifiedResponse, new_uid, verify_response, write_request,
};
use crate::nts::cookie_jar::{CookieJar, JAR_CAPACITY, MAX_COOKIE_LEN};
use crate::reader::Writer;

/// After this many polls in a row without a believed answer the daemon
/// should treat the server as unreachable (an NTS source then runs a new
/// key exchange): the eight bits of RFC 5905's reachability register.
pub const UNANSWERED_LIMIT: u32 = 8;

/// The NTS half of an association.
#[derive(Debug)]
struct NtsState {
    keys: NtsKeys,
    jar: CookieJar,
}

/// After this many requests in a row without a believed answer, the next
/// one starts interleaving afresh (RFC 9769: a client limits the requests
/// in interleaved mode between answers, so that very old timestamps are
/// never completed).
pub const MAX_INTERLEAVED_MISSES: u32 = 4;

/// What we remember about the one request in flight.
#[derive(Debug)]
struct Outstanding {
    /// The random transmit timestamp the answer must echo.
    nonce: NtpTimestamp,
    /// Interleaved mode: the random receive field, which an interleaved
    /// answer echoes instead (only when the request also named a previous
    /// exchange, so that there is one to complete).
    interleave_nonce: Option<NtpTimestamp>,
    /// Our clock when the request was written: t1, replaced by the kernel's
    /// transmit timestamp when the daemon gets it.
    sent_local: NtpTimestamp,
    /// The Unique Identifier and the keys the request was sealed with (a
    /// re-key while it is in flight must not make its answer unverifiable).
    nts: Option<([u8; UID_LEN], NtsKeys)>,
}

/// The last believed exchange, which an interleaved answer completes.
#[derive(Debug, Clone, Copy)]
struct Previous {
    /// Our transmit time of its request (t1).
    sent_local: NtpTimestamp,
    /// The server's receive timestamp, as sent (t2; echoed as origin).
    server_receive: NtpTimestamp,
    /// Our receive time of its answer (t4).
    recv_local: NtpTimestamp,
    /// It already gave a sample in basic mode: completing it again would
    /// count one exchange twice (chrony skips that sample too).
    measured: bool,
}

/// One association with one server.
#[derive(Debug)]
pub struct Association {
    nts: Option<NtsState>,
    outstanding: Option<Outstanding>,
    /// Ask for interleaved answers.
    interleaved: bool,
    previous: Option<Previous>,
    /// The last believed answer was interleaved.
    last_interleaved: bool,
    /// Poll exponent written into requests (informational for the server).
    poll_exponent: i8,
    /// Consecutive polls that got no believed answer.
    unanswered: u32,
    /// RFC 5905's reachability register: bit 0 is the latest poll.
    reach: u8,
    stats: AssociationStats,
}

/// Counters for what a remote peer made us discard; the daemon reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssociationStats {
    pub requests: u64,
    pub samples: u64,
    /// Samples from interleaved answers (a subset of `samples`).
    pub interleaved_samples: u64,
    /// Answers in interleaved mode (with or without a sample).
    pub interleaved_answers: u64,
    /// Answers to no outstanding request, or with the wrong origin.
    pub unexpected: u64,
    /// NTS answers that failed verification (wrong UID, bad tag, plain).
    pub unauthenticated: u64,
    pub malformed: u64,
    /// Cookies refused by the jar (empty, oversized, beyond capacity).
    pub cookies_rejected: u64,
}

/// Why no request was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// The cookie jar is empty: run a new NTS key exchange first.
    #[error("no NTS cookie left: key exchange needed")]
    NeedKeyExchange,
    #[error("request does not fit the buffer")]
    BufferTooSmall,
}

/// Why a datagram was not taken as time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Discard {
    #[error("no request outstanding")]
    NoRequest,
    #[error("origin timestamp does not match the request")]
    WrongOrigin,
    #[error("unparsable NTP header")]
    Malformed,
    #[error("not a server-mode NTPv3/v4 packet")]
    NotServer,
    #[error("NTS verification failed: {0}")]
    Nts(ResponseError),
    #[error("kiss code {0:?} ignored")]
    OtherKiss([u8; 4]),
}

/// Why an answer that was believed carries no usable time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    #[error("server is unsynchronized (leap 3 or stratum 16+)")]
    Unsynchronized,
    #[error("server left its receive or transmit timestamp zero")]
    ZeroTimestamp,
    /// An interleaved answer completing an exchange that already gave a
    /// basic sample: kept as state for the next one, not measured twice.
    #[error("interleaved answer to an exchange already measured")]
    AlreadyMeasured,
    /// An interleaved answer whose transmit time is not after its previous
    /// receive time, or far from it: not the previous answer's.
    #[error("interleaved transmit timestamp does not fit the previous exchange")]
    InconsistentInterleaved,
}

/// What one datagram meant.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseOutcome {
    /// Time: feed it to the synchronizer.
    Sample(Sample),
    /// Not an answer we believe; the request stays outstanding (a forgery
    /// must not cancel the genuine answer still on its way).
    Discarded(Discard),
    /// A genuine answer that carries no usable time.
    Unusable(Unusable),
    /// RATE kiss: poll less often.
    RateLimited,
    /// DENY or RSTR kiss: stop polling this server.
    Demobilize,
    /// NTSN echoing our UID: the server no longer opens our cookies; the
    /// jar has been emptied.
    NeedKeyExchange,
}

/// One completed exchange, the fields of `sundial_sync::Measurement` minus
/// the monotonic time, which the daemon stamps (this crate does not depend
/// on the synchronizer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// theta, seconds: how far the server's clock is ahead of ours.
    pub offset: f64,
    /// delta, seconds, never negative.
    pub delay: f64,
    pub stratum: u8,
    pub leap: LeapIndicator,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub reference_id: [u8; 4],
    pub precision: i8,
    /// The answer was NTS-authenticated.
    pub authenticated: bool,
    /// Interleaved mode: T3 is the server's real send time of its
    /// previous answer, and the sample measures that previous exchange.
    pub interleaved: bool,
}

impl Association {
    /// An unauthenticated association.
    pub fn plain(poll_exponent: i8) -> Self {
        Self::with(None, poll_exponent)
    }

    /// An NTS association with the keys and cookies of a key exchange.
    /// Cookies the jar refuses are dropped (and counted).
    pub fn nts(keys: NtsKeys, cookies: Vec<Vec<u8>>, poll_exponent: i8) -> Self {
        let mut assoc = Self::with(None, poll_exponent);
        assoc.rekey(keys, cookies);
        assoc
    }

    fn with(nts: Option<NtsState>, poll_exponent: i8) -> Self {
        Self {
            nts,
            outstanding: None,
            interleaved: false,
            previous: None,
            last_interleaved: false,
            poll_exponent,
            unanswered: 0,
            reach: 0,
            stats: AssociationStats::default(),
        }
    }

    /// Installs the result of a new key exchange: new keys, a jar holding
    /// only the new cookies. A request in flight keeps its old keys.
    pub fn rekey(&mut self, keys: NtsKeys, cookies: Vec<Vec<u8>>) {
        let mut jar = CookieJar::new();
        for cookie in cookies {
            if jar.push(&cookie).is_err() {
                self.stats.cookies_rejected += 1;
            }
        }
        self.nts = Some(NtsState { keys, jar });
        self.unanswered = 0;
    }

    /// Asks (or stops asking) for interleaved answers (RFC 9769).
    pub fn set_interleaved(&mut self, on: bool) {
        self.interleaved = on;
        if !on {
            self.previous = None;
        }
    }

    /// Interleaved mode was asked for.
    pub fn interleave_requested(&self) -> bool {
        self.interleaved
    }

    /// The last believed answer was in interleaved mode.
    pub fn is_interleaved(&self) -> bool {
        self.last_interleaved
    }

    /// Replaces t1 of the request in flight with the kernel's transmit
    /// timestamp of it. Refused (false) when no request is in flight or
    /// the two disagree by more than a second (a stale report).
    pub fn set_transmit_timestamp(&mut self, kernel: NtpTimestamp) -> bool {
        match &mut self.outstanding {
            Some(o) if (kernel - o.sent_local).abs() < NtpDuration::from_seconds(1.0) => {
                o.sent_local = kernel;
                true
            }
            _ => false,
        }
    }

    pub fn is_nts(&self) -> bool {
        self.nts.is_some()
    }

    /// Cookies left (0 for a plain association).
    pub fn cookies(&self) -> usize {
        self.nts.as_ref().map_or(0, |n| n.jar.len())
    }

    /// Consecutive polls without a believed answer; at
    /// [`UNANSWERED_LIMIT`] the server counts as unreachable.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    pub fn reach(&self) -> u8 {
        self.reach
    }

    pub fn stats(&self) -> AssociationStats {
        self.stats
    }

    pub fn set_poll_exponent(&mut self, poll_exponent: i8) {
        self.poll_exponent = poll_exponent;
    }

    /// Writes the next request into `buf` and returns its length.
    /// `now_local` is our clock as the request leaves (t1): call this just
    /// before sending. A request still unanswered is forgotten, so an
    /// answer to it arriving late is refused.
    pub fn poll(
        &mut self,
        now_local: NtpTimestamp,
        rng: &mut impl CryptoRng,
        buf: &mut [u8],
    ) -> Result<usize, PollError> {
        if let Some(nts) = &self.nts
            && nts.jar.is_empty()
        {
            return Err(PollError::NeedKeyExchange);
        }
        if self.outstanding.take().is_some() {
            self.unanswered = self.unanswered.saturating_add(1);
        }
        self.reach <<= 1;
        let nonce = random_nonzero_timestamp(rng);
        let mut header = NtpHeader::client_request(self.poll_exponent, nonce);
        let mut interleave_nonce = None;
        if self.interleaved {
            let mut cookie = random_nonzero_timestamp(rng);
            while cookie == nonce {
                cookie = random_nonzero_timestamp(rng);
            }
            // The receive field says "interleave" even on a first request;
            // the origin names the exchange to complete, once there is one.
            header.receive_timestamp = cookie;
            if self.unanswered > MAX_INTERLEAVED_MISSES {
                self.previous = None;
            }
            if let Some(previous) = &self.previous {
                header.origin_timestamp = previous.server_receive;
                interleave_nonce = Some(cookie);
            }
        }
        let mut w = Writer::new(buf);
        let nts = match &mut self.nts {
            None => {
                header
                    .serialize(&mut w)
                    .map_err(|_| PollError::BufferTooSmall)?;
                None
            }
            Some(nts) => {
                let cookie = nts.jar.take().ok_or(PollError::NeedKeyExchange)?;
                let placeholders = nts.jar.placeholders_wanted();
                let uid = new_uid(rng);
                write_request(&mut w, &header, &uid, &cookie, placeholders, &nts.keys, rng)
                    .map_err(|_| PollError::BufferTooSmall)?;
                Some((uid, nts.keys.clone()))
            }
        };
        self.outstanding = Some(Outstanding {
            nonce,
            interleave_nonce,
            sent_local: now_local,
            nts,
        });
        self.stats.requests += 1;
        Ok(w.len())
    }

    /// Judges one datagram from the server; `recv_local` is our clock when
    /// it arrived (t4), ideally the kernel's receive timestamp.
    pub fn handle_response(&mut self, packet: &[u8], recv_local: NtpTimestamp) -> ResponseOutcome {
        match self.judge(packet, recv_local) {
            Ok(outcome) => outcome,
            Err(discard) => {
                let counter = match discard {
                    Discard::NoRequest | Discard::WrongOrigin => &mut self.stats.unexpected,
                    Discard::Nts(_) => &mut self.stats.unauthenticated,
                    Discard::Malformed | Discard::NotServer | Discard::OtherKiss(_) => {
                        &mut self.stats.malformed
                    }
                };
                *counter += 1;
                ResponseOutcome::Discarded(discard)
            }
        }
    }

    fn judge(
        &mut self,
        packet: &[u8],
        recv_local: NtpTimestamp,
    ) -> Result<ResponseOutcome, Discard> {
        let (header, _) = NtpHeader::parse(packet).map_err(|_| Discard::Malformed)?;
        let outstanding = self.outstanding.as_ref().ok_or(Discard::NoRequest)?;
        // RFC 9769: the origin is our transmit field in a basic answer, our
        // receive field in an interleaved one.
        let interleaved = if header.origin_timestamp == outstanding.nonce {
            false
        } else if Some(header.origin_timestamp) == outstanding.interleave_nonce {
            true
        } else {
            return Err(Discard::WrongOrigin);
        };
        if header.mode != Mode::Server || !(3..=4).contains(&header.version) {
            return Err(Discard::NotServer);
        }
        let authenticated = match &outstanding.nts {
            None => false,
            Some((uid, keys)) => {
                // NTS needs extension fields, which NTPv3 does not have.
                if header.version != 4 {
                    return Err(Discard::NotServer);
                }
                match verify_response(packet, uid, keys) {
                    Ok(VerifiedResponse::Nak) => {
                        // The UID matched, so this answers our request: the
                        // server cannot open our cookies, nor any sibling.
                        self.outstanding = None;
                        if let Some(nts) = &mut self.nts {
                            nts.jar.clear();
                        }
                        return Ok(ResponseOutcome::NeedKeyExchange);
                    }
                    Ok(VerifiedResponse::Time { cookies, .. }) => {
                        self.store_cookies(cookies);
                        true
                    }
                    Err(e) => return Err(Discard::Nts(e)),
                }
            }
        };
        // Believed: the request is answered; a copy or replay finds none.
        let Some(outstanding) = self.outstanding.take() else {
            return Err(Discard::NoRequest);
        };
        self.unanswered = 0;
        self.reach |= 1;
        self.last_interleaved = interleaved;
        if interleaved {
            self.stats.interleaved_answers += 1;
        }
        match header.kiss_code() {
            Some(KissCode::Rate) => return Ok(ResponseOutcome::RateLimited),
            Some(KissCode::Deny | KissCode::Rstr) => return Ok(ResponseOutcome::Demobilize),
            // Unauthenticated NTSN never reaches here for NTS (verify
            // needs our UID); to a plain request it means nothing.
            Some(KissCode::Ntsn) => return Err(Discard::OtherKiss(*b"NTSN")),
            Some(KissCode::Other(code)) => return Err(Discard::OtherKiss(code)),
            None => {}
        }
        if header.leap == LeapIndicator::Unsynchronized || header.stratum >= 16 {
            return Ok(ResponseOutcome::Unusable(Unusable::Unsynchronized));
        }
        if header.receive_timestamp.is_zero() || header.transmit_timestamp.is_zero() {
            return Ok(ResponseOutcome::Unusable(Unusable::ZeroTimestamp));
        }
        // This exchange, for the interleaved answer that may complete it.
        let completed = self.previous.replace(Previous {
            sent_local: outstanding.sent_local,
            server_receive: header.receive_timestamp,
            recv_local,
            measured: !interleaved,
        });
        let (t1, t2, t3, t4) = if interleaved {
            // RFC 9769's first set: the previous exchange, whose delay is
            // what a delay filter judges, with the server's real T3.
            let Some(previous) = completed else {
                return Ok(ResponseOutcome::Unusable(Unusable::AlreadyMeasured));
            };
            let t3 = header.transmit_timestamp;
            let processing = t3 - previous.server_receive;
            if processing < NtpDuration::ZERO || processing > NtpDuration::from_seconds(1.0) {
                return Ok(ResponseOutcome::Unusable(Unusable::InconsistentInterleaved));
            }
            if previous.measured {
                return Ok(ResponseOutcome::Unusable(Unusable::AlreadyMeasured));
            }
            (
                previous.sent_local,
                previous.server_receive,
                t3,
                previous.recv_local,
            )
        } else {
            (
                outstanding.sent_local,
                header.receive_timestamp,
                header.transmit_timestamp,
                recv_local,
            )
        };
        // RFC 5905 8: theta = ((t2 - t1) + (t3 - t4)) / 2 and
        // delta = (t4 - t1) - (t3 - t2); each difference is taken between
        // nearby timestamps, so the era wrap cancels out.
        let offset = ((t2 - t1).as_seconds() + (t3 - t4).as_seconds()) / 2.0;
        let delay = ((t4 - t1).as_seconds() - (t3 - t2).as_seconds()).max(0.0);
        self.stats.samples += 1;
        if interleaved {
            self.stats.interleaved_samples += 1;
        }
        Ok(ResponseOutcome::Sample(Sample {
            offset,
            delay,
            stratum: header.stratum,
            leap: header.leap,
            root_delay: header.root_delay.as_seconds(),
            root_dispersion: header.root_dispersion.as_seconds(),
            reference_id: header.reference_id.0,
            precision: header.precision,
            authenticated,
            interleaved,
        }))
    }

    fn store_cookies(&mut self, cookies: Vec<Vec<u8>>) {
        let Some(nts) = &mut self.nts else {
            return;
        };
        for cookie in cookies {
            // Empty, oversized and surplus cookies are refused: a server
            // must not be able to fill our memory.
            if nts.jar.push(&cookie).is_err() {
                self.stats.cookies_rejected += 1;
            }
        }
    }
}

/// A random transmit timestamp; zero is avoided because RFC 5905 reads a
/// zero origin as "no request".
fn random_nonzero_timestamp(rng: &mut impl CryptoRng) -> NtpTimestamp {
    loop {
        let bits = rng.next_u64();
        if bits != 0 {
            return NtpTimestamp::from_bits(bits);
        }
    }
}

/// The largest request `poll` can write (an NTS request with the longest
/// cookies and a full set of placeholders): a buffer this long never gets
/// [`PollError::BufferTooSmall`].
pub const MAX_REQUEST_LEN: usize = HEADER_LEN
    + (4 + UID_LEN)
    + JAR_CAPACITY * (4 + MAX_COOKIE_LEN)
    // Authenticator: field header, nonce and ciphertext lengths, a 16-byte
    // nonce, the 16-byte tag.
    + (4 + 4 + 16 + 16);

#[cfg(test)]
mod tests;
