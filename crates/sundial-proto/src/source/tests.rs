//! The association against the real sans-IO server (`crate::server::handle`
//! with a `KeySet`), stepped by hand: no sockets, fake clocks.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::ntp::packet::ReferenceId;
use crate::ntp::timestamp::NtpDuration;
use crate::nts::aead::{AeadAlgorithm, AeadKey};
use crate::nts::keyset::{KeySet, KeySetConfig};
use crate::server::{Admission, ServerAction, ServerPolicy, ServerState, handle};

/// 2025-ish in NTP seconds; tests also run across the 2036 era boundary.
const NOW: u32 = 3_950_000_000;

/// Both sides and the fake clocks between them.
struct Pair {
    client: Association,
    keyset: KeySet,
    state: ServerState,
    admission: Admission,
    rng: ChaCha20Rng,
    /// True time.
    now: NtpTimestamp,
    /// How far each clock is ahead of true time.
    client_ahead: NtpDuration,
    server_ahead: NtpDuration,
    /// Network delays and the server's processing time.
    out_delay: NtpDuration,
    back_delay: NtpDuration,
    processing: NtpDuration,
}

fn secs(s: f64) -> NtpDuration {
    NtpDuration::from_seconds(s)
}

fn nts_keys(alg: AeadAlgorithm, rng: &mut ChaCha20Rng) -> NtsKeys {
    NtsKeys {
        c2s: AeadKey::generate(alg, rng).unwrap(),
        s2c: AeadKey::generate(alg, rng).unwrap(),
    }
}

fn cookies(keyset: &KeySet, keys: &NtsKeys, n: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut buf = [0u8; 512];
            let len = keyset.seal_cookie(keys, rng, &mut buf).unwrap();
            buf[..len].to_vec()
        })
        .collect()
}

impl Pair {
    fn new(nts: Option<AeadAlgorithm>) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let keyset = KeySet::generate(KeySetConfig::default(), u64::from(NOW), &mut rng);
        let client = match nts {
            None => Association::plain(4),
            Some(alg) => {
                let keys = nts_keys(alg, &mut rng);
                let jar = cookies(&keyset, &keys, 8, &mut rng);
                Association::nts(keys, jar, 4)
            }
        };
        let now = NtpTimestamp::from_parts(NOW, 0);
        Self {
            client,
            keyset,
            state: ServerState::local(1, ReferenceId(*b"TEST"), now),
            admission: Admission::Allow,
            rng,
            now,
            client_ahead: NtpDuration::ZERO,
            server_ahead: NtpDuration::ZERO,
            out_delay: secs(0.010),
            back_delay: secs(0.010),
            processing: secs(0.001),
        }
    }

    fn client_clock(&self) -> NtpTimestamp {
        self.now + self.client_ahead
    }

    /// The client's request, sent at the current true time.
    fn request(&mut self) -> Vec<u8> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = self
            .client
            .poll(self.client_clock(), &mut self.rng, &mut buf)
            .unwrap();
        buf[..n].to_vec()
    }

    /// The server's answer to `request`, advancing true time through the
    /// network and the server. `None`: the server dropped it.
    fn serve(&mut self, request: &[u8]) -> Option<Vec<u8>> {
        self.now = self.now + self.out_delay;
        let receive = self.now + self.server_ahead;
        let transmit = receive + self.processing;
        let mut out = [0u8; 4096];
        let action = handle(
            &self.state,
            &ServerPolicy::default(),
            Some(&self.keyset),
            self.admission,
            request,
            receive,
            || transmit,
            &mut self.rng,
            &mut out,
        );
        self.now = self.now + self.processing + self.back_delay;
        match action {
            ServerAction::Respond { len, .. } => Some(out[..len].to_vec()),
            ServerAction::Drop(_) => None,
        }
    }

    fn deliver(&mut self, response: &[u8]) -> ResponseOutcome {
        let t4 = self.client_clock();
        self.client.handle_response(response, t4)
    }

    /// One whole exchange.
    fn exchange(&mut self) -> ResponseOutcome {
        let request = self.request();
        let response = self.serve(&request).expect("server answered");
        self.deliver(&response)
    }
}

fn sample(outcome: ResponseOutcome) -> Sample {
    match outcome {
        ResponseOutcome::Sample(s) => s,
        other => panic!("expected a sample, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn offsets_and_delays_follow_the_fake_clocks() {
    let algs = [
        None,
        Some(AeadAlgorithm::AesSivCmac256),
        Some(AeadAlgorithm::AesSivCmac384),
        Some(AeadAlgorithm::AesSivCmac512),
        Some(AeadAlgorithm::Aes128GcmSiv),
    ];
    for alg in algs {
        let mut pair = Pair::new(alg);
        // Server 1.5 s ahead of us, symmetric path: offset 1.5, delay 20 ms.
        pair.server_ahead = secs(1.5);
        let s = sample(pair.exchange());
        assert!(close(s.offset, 1.5), "{alg:?}: {}", s.offset);
        assert!(close(s.delay, 0.020), "{alg:?}: {}", s.delay);
        assert_eq!(s.authenticated, alg.is_some());
        assert_eq!(s.stratum, 1);
        assert_eq!(s.reference_id, *b"TEST");
        assert_eq!(s.leap, LeapIndicator::NoWarning);

        // We are 0.25 s ahead; asymmetric path (30 ms out, 10 ms back)
        // shows up as half the difference, as RFC 5905 predicts.
        pair.server_ahead = NtpDuration::ZERO;
        pair.client_ahead = secs(0.25);
        pair.out_delay = secs(0.030);
        let s = sample(pair.exchange());
        assert!(close(s.offset, -0.25 + 0.010), "{alg:?}: {}", s.offset);
        assert!(close(s.delay, 0.040), "{alg:?}: {}", s.delay);
    }
}

#[test]
fn offsets_are_right_across_the_2036_era_boundary() {
    let mut pair = Pair::new(Some(AeadAlgorithm::AesSivCmac256));
    // True time 2 ms before the wrap; the server is 5 s ahead (in era 1).
    pair.now = NtpTimestamp::from_parts(u32::MAX, 0) + secs(0.998);
    pair.server_ahead = secs(5.0);
    let s = sample(pair.exchange());
    assert!(close(s.offset, 5.0), "{}", s.offset);
    assert!(close(s.delay, 0.020), "{}", s.delay);
}

#[test]
fn the_transmit_timestamp_is_random_not_our_clock() {
    let mut pair = Pair::new(None);
    let a = NtpHeader::parse(&pair.request()).unwrap().0;
    let b = NtpHeader::parse(&pair.request()).unwrap().0;
    assert_eq!(a.mode, Mode::Client);
    assert_eq!(a.version, 4);
    assert_ne!(a.transmit_timestamp, b.transmit_timestamp);
    assert!((a.transmit_timestamp - pair.client_clock()).abs() > secs(1.0));
    assert!(a.origin_timestamp.is_zero() && a.receive_timestamp.is_zero());
}

#[test]
fn replays_and_duplicates_are_refused() {
    for alg in [None, Some(AeadAlgorithm::Aes128GcmSiv)] {
        let mut pair = Pair::new(alg);
        let request = pair.request();
        let response = pair.serve(&request).unwrap();
        sample(pair.deliver(&response));
        // The second copy finds no request outstanding.
        assert_eq!(
            pair.deliver(&response),
            ResponseOutcome::Discarded(Discard::NoRequest)
        );
        // Nor does an old answer replayed after the next request.
        let _next = pair.request();
        assert_eq!(
            pair.deliver(&response),
            ResponseOutcome::Discarded(Discard::WrongOrigin)
        );
        assert_eq!(pair.client.stats().unexpected, 2);
    }
}

#[test]
fn an_answer_to_a_request_never_sent_is_refused() {
    for alg in [None, Some(AeadAlgorithm::AesSivCmac256)] {
        let mut pair = Pair::new(alg);
        // A response built for a request made by another client.
        let mut other = Pair::new(alg);
        // Another client draws other random numbers (same seed: same nonce).
        other.rng = ChaCha20Rng::seed_from_u64(8);
        let request = other.request();
        let response = pair.serve(&request).unwrap();
        assert_eq!(
            pair.deliver(&response),
            ResponseOutcome::Discarded(Discard::NoRequest)
        );
        // Even with a request of ours outstanding, the origin differs.
        let _ours = pair.request();
        assert_eq!(
            pair.deliver(&response),
            ResponseOutcome::Discarded(Discard::WrongOrigin)
        );
    }
}

/// A response to `request` whose origin timestamp is right but whose NTS
/// part is whatever `build` writes after the header.
fn forged(request: &[u8], header_edit: impl FnOnce(&mut NtpHeader), tail: &[u8]) -> Vec<u8> {
    let req = NtpHeader::parse(request).unwrap().0;
    let mut header = NtpHeader {
        mode: Mode::Server,
        stratum: 1,
        origin_timestamp: req.transmit_timestamp,
        receive_timestamp: NtpTimestamp::from_parts(NOW, 0),
        transmit_timestamp: NtpTimestamp::from_parts(NOW, 1),
        ..NtpHeader::default()
    };
    header_edit(&mut header);
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(tail);
    out
}

fn uid_field(uid: &[u8]) -> Vec<u8> {
    let mut f = vec![0x01, 0x04, 0, (4 + uid.len()) as u8];
    f.extend_from_slice(uid);
    f
}

fn request_uid(request: &[u8]) -> Vec<u8> {
    // The UID is the first extension field: header, 4-byte field header.
    request[52..52 + UID_LEN].to_vec()
}

#[test]
fn nts_answers_must_authenticate_under_our_uid_and_keys() {
    let mut pair = Pair::new(Some(AeadAlgorithm::AesSivCmac256));
    let request = pair.request();
    let uid = request_uid(&request);
    let genuine = pair.serve(&request).unwrap();

    // Plain time in answer to an NTS request is never a measurement.
    let plain = forged(&request, |_| {}, &[]);
    assert!(matches!(
        pair.deliver(&plain),
        ResponseOutcome::Discarded(Discard::Nts(ResponseError::NoUniqueId))
    ));
    let plain_with_uid = forged(&request, |_| {}, &uid_field(&uid));
    assert!(matches!(
        pair.deliver(&plain_with_uid),
        ResponseOutcome::Discarded(Discard::Nts(ResponseError::Unauthenticated))
    ));

    // The genuine answer with another UID (same length) fails.
    let mut wrong_uid = genuine.clone();
    wrong_uid[52] ^= 1;
    assert!(matches!(
        pair.deliver(&wrong_uid),
        ResponseOutcome::Discarded(Discard::Nts(ResponseError::UidMismatch))
    ));

    // Any flipped bit in the authenticated area fails.
    let mut tampered = genuine.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    assert!(matches!(
        pair.deliver(&tampered),
        ResponseOutcome::Discarded(Discard::Nts(_))
    ));
    let mut tampered_header = genuine.clone();
    tampered_header[1] = 2; // stratum 2: covered by the authenticator
    assert!(matches!(
        pair.deliver(&tampered_header),
        ResponseOutcome::Discarded(Discard::Nts(ResponseError::Authentication))
    ));

    // None of that cancelled the request: the genuine answer still counts.
    let s = sample(pair.deliver(&genuine));
    assert!(s.authenticated);
    assert_eq!(pair.client.stats().unauthenticated, 5);
}

#[test]
fn ntsn_counts_only_with_our_uid() {
    let mut pair = Pair::new(Some(AeadAlgorithm::AesSivCmac256));
    let request = pair.request();
    let uid = request_uid(&request);
    let kiss = |h: &mut NtpHeader| {
        h.stratum = 0;
        h.leap = LeapIndicator::Unsynchronized;
        h.reference_id = ReferenceId::NTSN;
    };
    let mut other_uid = uid.clone();
    other_uid[0] ^= 1;
    let not_ours = forged(&request, kiss, &uid_field(&other_uid));
    assert!(matches!(
        pair.deliver(&not_ours),
        ResponseOutcome::Discarded(Discard::Nts(ResponseError::UidMismatch))
    ));
    let no_uid = forged(&request, kiss, &[]);
    assert!(matches!(
        pair.deliver(&no_uid),
        ResponseOutcome::Discarded(_)
    ));
    assert_eq!(pair.client.cookies(), 7, "jar untouched");

    // The real server says NTSN once its keys are gone.
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    pair.keyset = KeySet::generate(KeySetConfig::default(), u64::from(NOW), &mut rng);
    let nak = pair.serve(&request).unwrap();
    assert_eq!(pair.deliver(&nak), ResponseOutcome::NeedKeyExchange);
    assert_eq!(pair.client.cookies(), 0);
    let mut buf = [0u8; MAX_REQUEST_LEN];
    assert_eq!(
        pair.client
            .poll(pair.client_clock(), &mut pair.rng, &mut buf),
        Err(PollError::NeedKeyExchange)
    );
}

#[test]
fn cookies_refill_to_eight_and_never_beyond() {
    let mut pair = Pair::new(Some(AeadAlgorithm::AesSivCmac512));
    assert_eq!(pair.client.cookies(), 8);
    // Lose three answers: the jar runs down to 5.
    for _ in 0..3 {
        let _ = pair.request();
    }
    assert_eq!(pair.client.cookies(), 5);
    // The next request asks for 3 placeholders; 4 cookies come back.
    sample(pair.exchange());
    assert_eq!(pair.client.cookies(), 8);
    for _ in 0..5 {
        sample(pair.exchange());
        assert_eq!(pair.client.cookies(), 8);
    }
    assert_eq!(pair.client.stats().cookies_rejected, 0);

    // A key exchange that hands out more than 8: only 8 are kept.
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let keys = nts_keys(AeadAlgorithm::AesSivCmac256, &mut rng);
    let many = cookies(&pair.keyset, &keys, 12, &mut rng);
    pair.client.rekey(keys, many);
    assert_eq!(pair.client.cookies(), 8);
    assert_eq!(pair.client.stats().cookies_rejected, 4);
}

#[test]
fn surplus_empty_and_oversized_cookies_in_a_response_are_refused() {
    use crate::ntp::extension::{FieldType, Placement, write_field};
    use crate::nts::protect::seal_authenticator;

    let mut pair = Pair::new(Some(AeadAlgorithm::AesSivCmac256));
    let request = pair.request(); // 7 cookies left
    let uid = request_uid(&request);
    let req = NtpHeader::parse(&request).unwrap().0;
    let header = NtpHeader {
        mode: Mode::Server,
        stratum: 1,
        origin_timestamp: req.transmit_timestamp,
        receive_timestamp: NtpTimestamp::from_parts(NOW, 0),
        transmit_timestamp: NtpTimestamp::from_parts(NOW, 1),
        ..NtpHeader::default()
    };
    // A hostile server (with the right keys) sends 5 cookies, one empty
    // and one too long: only one more fits, and the bad ones never do.
    let Some(NtsState { keys, .. }) = &pair.client.nts else {
        panic!()
    };
    let keys = keys.clone();
    let mut buf = vec![0u8; 8192];
    let mut w = Writer::new(&mut buf);
    header.serialize(&mut w).unwrap();
    write_field(&mut w, FieldType::UniqueIdentifier, &uid, Placement::Outer).unwrap();
    seal_authenticator(&mut w, &keys.s2c, &[5; 16], 0, |w| {
        write_field(w, FieldType::NtsCookie, &[], Placement::Encrypted)?;
        write_field(w, FieldType::NtsCookie, &[1; 600], Placement::Encrypted)?;
        for i in 0..3u8 {
            write_field(w, FieldType::NtsCookie, &[i; 100], Placement::Encrypted)?;
        }
        Ok(())
    })
    .unwrap();
    let n = w.len();
    let response = buf[..n].to_vec();
    sample(pair.deliver(&response));
    assert_eq!(pair.client.cookies(), 8);
    assert_eq!(pair.client.stats().cookies_rejected, 4);
}

#[test]
fn kisses_and_unsynchronized_servers() {
    let mut pair = Pair::new(None);
    pair.admission = Admission::RateLimited;
    assert_eq!(pair.exchange(), ResponseOutcome::RateLimited);
    pair.admission = Admission::Deny;
    assert_eq!(pair.exchange(), ResponseOutcome::Demobilize);
    pair.admission = Admission::Allow;

    // Authenticated kisses work the same over NTS.
    let mut nts = Pair::new(Some(AeadAlgorithm::AesSivCmac256));
    nts.admission = Admission::RateLimited;
    assert_eq!(nts.exchange(), ResponseOutcome::RateLimited);
    nts.admission = Admission::Deny;
    assert_eq!(nts.exchange(), ResponseOutcome::Demobilize);

    // An unauthenticated DENY to an NTS request is not believed.
    let request = nts.request();
    let deny = forged(
        &request,
        |h| {
            h.stratum = 0;
            h.reference_id = ReferenceId::DENY;
        },
        &[],
    );
    assert!(matches!(
        nts.deliver(&deny),
        ResponseOutcome::Discarded(Discard::Nts(_))
    ));

    // Another kiss code is ignored.
    let request = pair.request();
    let other = forged(
        &request,
        |h| {
            h.stratum = 0;
            h.reference_id = ReferenceId(*b"ACST");
        },
        &[],
    );
    assert_eq!(
        pair.deliver(&other),
        ResponseOutcome::Discarded(Discard::OtherKiss(*b"ACST"))
    );

    // An unsynchronized server answers, but with no usable time.
    pair.state = ServerState::UNSYNCHRONIZED;
    assert_eq!(
        pair.exchange(),
        ResponseOutcome::Unusable(Unusable::Unsynchronized)
    );
    let request = pair.request();
    let stratum16 = forged(&request, |h| h.stratum = 16, &[]);
    assert_eq!(
        pair.deliver(&stratum16),
        ResponseOutcome::Unusable(Unusable::Unsynchronized)
    );

    // Each on its own, from a server otherwise synchronized: leap 3 with
    // a good stratum, and stratum 0 with no kiss code we know.
    pair.state = ServerState::local(2, ReferenceId(*b"TEST"), NtpTimestamp::ZERO);
    let request = pair.request();
    let leap3 = forged(
        &request,
        |h| {
            h.leap = LeapIndicator::Unsynchronized;
            h.stratum = 2;
        },
        &[],
    );
    assert_eq!(
        pair.deliver(&leap3),
        ResponseOutcome::Unusable(Unusable::Unsynchronized)
    );
    let request = pair.request();
    let stratum0 = forged(
        &request,
        |h| {
            h.stratum = 0;
            h.reference_id = ReferenceId(*b"\0\0\0\0");
        },
        &[],
    );
    assert!(matches!(
        pair.deliver(&stratum0),
        ResponseOutcome::Discarded(Discard::OtherKiss(_))
    ));
}

#[test]
fn version_and_mode_are_checked() {
    let mut pair = Pair::new(None);
    let request = pair.request();
    let v3 = forged(&request, |h| h.version = 3, &[]);
    sample(pair.deliver(&v3));
    let request = pair.request();
    for bad in [
        forged(&request, |h| h.version = 2, &[]),
        forged(&request, |h| h.mode = Mode::SymmetricActive, &[]),
    ] {
        assert_eq!(
            pair.deliver(&bad),
            ResponseOutcome::Discarded(Discard::NotServer)
        );
    }
    assert_eq!(
        pair.deliver(&request[..40]),
        ResponseOutcome::Discarded(Discard::Malformed)
    );
}

#[test]
fn unanswered_polls_are_counted_and_reset_by_an_answer() {
    let mut pair = Pair::new(None);
    for i in 0..UNANSWERED_LIMIT {
        assert_eq!(pair.client.unanswered(), i.saturating_sub(1));
        let _ = pair.request();
    }
    assert_eq!(pair.client.unanswered(), UNANSWERED_LIMIT - 1);
    let _ = pair.request();
    assert_eq!(pair.client.unanswered(), UNANSWERED_LIMIT);
    assert_eq!(pair.client.reach(), 0);
    sample(pair.exchange());
    assert_eq!(pair.client.unanswered(), 0);
    assert_eq!(pair.client.reach(), 1);
}

#[test]
fn the_buffer_bound_holds_for_the_largest_request() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let keys = nts_keys(AeadAlgorithm::AesSivCmac512, &mut rng);
    let jar = vec![vec![0xaa; crate::nts::cookie_jar::MAX_COOKIE_LEN]; 8];
    let mut assoc = Association::nts(keys, jar, 4);
    let mut buf = [0u8; MAX_REQUEST_LEN];
    // The first request carries one cookie; later ones placeholders too.
    for _ in 0..8 {
        assoc
            .poll(NtpTimestamp::from_parts(NOW, 0), &mut rng, &mut buf)
            .unwrap();
    }
    let mut small = [0u8; 100];
    let mut assoc = Association::plain(4);
    assert_eq!(
        assoc.poll(NtpTimestamp::ZERO, &mut rng, &mut small[..47]),
        Err(PollError::BufferTooSmall)
    );
}
