//! RFC 9769 interleaved client/server mode, both halves sans-IO: a client
//! `Association` asking for it against `server::handle_request` with an
//! `InterleaveTable`, on fake clocks. The "kernel" of each side reports a
//! transmit time later than the one the code read (`tx_lag`), as a real
//! one does; a basic sample carries half that lag as offset error, an
//! interleaved one none.

use std::net::{IpAddr, Ipv4Addr};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sundial_proto::interleave::{InterleaveTable, is_marked_receive};
use sundial_proto::ntp::packet::{NtpHeader, ReferenceId};
use sundial_proto::ntp::timestamp::{NtpDuration, NtpTimestamp};
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::server::{
    Admission, AnswerMode, Handled, Request, Server, ServerAction, ServerPolicy, ServerState,
    handle, handle_request,
};
use sundial_proto::source::{
    Association, Discard, MAX_REQUEST_LEN, ResponseOutcome, Sample, Unusable,
};

const NOW: u32 = 3_950_000_000;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66));

fn secs(s: f64) -> NtpDuration {
    NtpDuration::from_seconds(s)
}

struct World {
    client: Association,
    table: InterleaveTable,
    keyset: KeySet,
    state: ServerState,
    rng: ChaCha20Rng,
    /// True time.
    now: NtpTimestamp,
    server_ahead: NtpDuration,
    out_delay: NtpDuration,
    back_delay: NtpDuration,
    /// Receive to the transmit timestamp the server reads.
    processing: NtpDuration,
    /// The transmit timestamp read to the packet's real departure, on
    /// both sides (batching, the send syscall, queueing).
    tx_lag: NtpDuration,
    /// Interleaving on the server.
    serve_interleaved: bool,
}

fn nts_association(keyset: &KeySet, rng: &mut ChaCha20Rng) -> Association {
    let alg = AeadAlgorithm::AesSivCmac256;
    let keys = NtsKeys {
        c2s: AeadKey::generate(alg, rng).unwrap(),
        s2c: AeadKey::generate(alg, rng).unwrap(),
    };
    let cookies = (0..8)
        .map(|_| {
            let mut buf = [0u8; 512];
            let n = keyset.seal_cookie(&keys, rng, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect();
    Association::nts(keys, cookies, 4)
}

impl World {
    fn new(nts: bool, table_entries: usize) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(15);
        let keyset = KeySet::generate(KeySetConfig::default(), u64::from(NOW), &mut rng);
        let mut client = if nts {
            nts_association(&keyset, &mut rng)
        } else {
            Association::plain(4)
        };
        client.set_interleaved(true);
        let now = NtpTimestamp::from_parts(NOW, 0);
        Self {
            client,
            table: InterleaveTable::with_capacity(table_entries),
            keyset,
            state: ServerState::local(1, ReferenceId(*b"XLEA"), now),
            rng,
            now,
            server_ahead: NtpDuration::ZERO,
            out_delay: secs(0.010),
            back_delay: secs(0.010),
            processing: secs(0.000_050),
            tx_lag: secs(0.000_400),
            serve_interleaved: true,
        }
    }

    /// The client's next request; its kernel reports the real departure.
    fn request(&mut self) -> Vec<u8> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = self.client.poll(self.now, &mut self.rng, &mut buf).unwrap();
        self.now = self.now + self.tx_lag;
        assert!(self.client.set_transmit_timestamp(self.now));
        buf[..n].to_vec()
    }

    /// The server's answer to `request` from `ip`, its kernel transmit
    /// timestamp saved as the daemon does; true time moves on to the
    /// answer's arrival.
    fn serve_from(&mut self, request: &[u8], ip: IpAddr) -> (Handled, Vec<u8>) {
        self.now = self.now + self.out_delay;
        let received = self.now + self.server_ahead;
        let estimate = received + self.processing;
        let departure = estimate + self.tx_lag;
        let mut out = [0u8; 4096];
        let server = Server {
            state: &self.state,
            policy: &ServerPolicy::default(),
            keyset: Some(&self.keyset),
        };
        let req = Request {
            bytes: request,
            received,
            admission: Admission::Allow,
        };
        let handled = if self.serve_interleaved {
            let mut view = self.table.client(ip);
            handle_request(
                &server,
                &req,
                Some(&mut view),
                || estimate,
                &mut self.rng,
                &mut out,
            )
        } else {
            let action = handle(
                &self.state,
                &ServerPolicy::default(),
                Some(&self.keyset),
                Admission::Allow,
                request,
                received,
                || estimate,
                &mut self.rng,
                &mut out,
            );
            Handled {
                action,
                exchange: Default::default(),
            }
        };
        let ServerAction::Respond { len, .. } = handled.action else {
            panic!("dropped: {:?}", handled.action);
        };
        assert!(len <= request.len(), "answer longer than its request");
        if let Some(save) = handled.exchange.save {
            let _ = self.table.save(save.receive, ip);
            // The kernel's report, read back from the error queue.
            assert!(self.table.set_transmit(save.receive, departure));
        }
        self.now = self.now + self.processing + self.tx_lag + self.back_delay;
        (handled, out[..len].to_vec())
    }

    fn serve(&mut self, request: &[u8]) -> (Handled, Vec<u8>) {
        self.serve_from(request, CLIENT)
    }

    fn deliver(&mut self, response: &[u8]) -> ResponseOutcome {
        self.client.handle_response(response, self.now)
    }

    /// One exchange: the server's mode and the client's outcome.
    fn exchange(&mut self) -> (AnswerMode, ResponseOutcome) {
        let request = self.request();
        let (handled, response) = self.serve(&request);
        (handled.exchange.mode, self.deliver(&response))
    }

    /// The basic sample's offset error: half the server's transmit lag
    /// (its T3 early) minus half the client's (our T1 is the kernel's).
    fn basic_bias(&self) -> f64 {
        -self.tx_lag.as_seconds() / 2.0
    }
}

fn sample(outcome: &ResponseOutcome) -> Sample {
    match outcome {
        ResponseOutcome::Sample(s) => *s,
        other => panic!("expected a sample, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-8
}

/// Runs exchanges until the client is in steady interleaved mode.
fn warm_up(world: &mut World) {
    for _ in 0..3 {
        let _ = world.exchange();
    }
    let (mode, outcome) = world.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    assert!(sample(&outcome).interleaved);
}

#[test]
fn first_exchange_basic_second_interleaved_third_measured() {
    for nts in [false, true] {
        let mut w = World::new(nts, 1024);
        w.server_ahead = secs(0.25);
        let (mode, outcome) = w.exchange();
        assert_eq!(mode, AnswerMode::Basic, "nts={nts}");
        let s = sample(&outcome);
        assert!(!s.interleaved);
        assert!(close(s.offset, 0.25 + w.basic_bias()), "{}", s.offset);
        assert!(!w.client.is_interleaved());

        // The second answer is interleaved; it completes the first
        // exchange, which already gave its (basic) sample.
        let (mode, outcome) = w.exchange();
        assert_eq!(mode, AnswerMode::Interleaved, "nts={nts}");
        assert_eq!(
            outcome,
            ResponseOutcome::Unusable(Unusable::AlreadyMeasured)
        );
        assert!(w.client.is_interleaved());

        // From the third on, every answer completes the exchange before it
        // with the server's real transmit time: no bias left.
        for _ in 0..5 {
            let (mode, outcome) = w.exchange();
            assert_eq!(mode, AnswerMode::Interleaved);
            let s = sample(&outcome);
            assert!(s.interleaved);
            assert_eq!(s.authenticated, nts);
            assert!(close(s.offset, 0.25), "nts={nts}: {}", s.offset);
            assert!(close(s.delay, 0.020), "nts={nts}: {}", s.delay);
        }
        let stats = w.client.stats();
        assert_eq!(stats.interleaved_samples, 5);
        assert_eq!(stats.interleaved_answers, 6);
        if nts {
            // Fresh cookies with every answer, interleaved or not.
            assert_eq!(w.client.cookies(), 8);
        }
    }
}

#[test]
fn a_lost_answer_costs_one_basic_exchange() {
    let mut w = World::new(true, 1024);
    warm_up(&mut w);
    // The server answers (interleaved, spending the entry) but the answer
    // is lost.
    let request = w.request();
    let (handled, _lost) = w.serve(&request);
    assert_eq!(handled.exchange.mode, AnswerMode::Interleaved);
    // The next request names the same previous exchange: gone, so basic.
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Missed);
    let s = sample(&outcome);
    assert!(!s.interleaved);
    assert!(close(s.offset, w.basic_bias()), "{}", s.offset);
    // Then interleaved again: one answer to re-arm, then samples.
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    assert_eq!(
        outcome,
        ResponseOutcome::Unusable(Unusable::AlreadyMeasured)
    );
    let (_, outcome) = w.exchange();
    assert!(close(sample(&outcome).offset, 0.0));
}

#[test]
fn a_lost_request_leaves_the_entry_for_the_next_one() {
    let mut w = World::new(false, 1024);
    warm_up(&mut w);
    let _lost = w.request();
    w.now = w.now + secs(0.5);
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    let s = sample(&outcome);
    assert!(s.interleaved);
    assert!(close(s.offset, 0.0), "{}", s.offset);
    assert!(close(s.delay, 0.020), "{}", s.delay);
}

#[test]
fn many_lost_answers_start_interleaving_afresh() {
    let mut w = World::new(false, 1024);
    warm_up(&mut w);
    for _ in 0..6 {
        let request = w.request();
        let _lost = w.serve(&request);
    }
    // Past MAX_INTERLEAVED_MISSES the client names no old exchange.
    let request = w.request();
    let header = NtpHeader::parse(&request).unwrap().0;
    assert!(header.origin_timestamp.is_zero());
    assert!(!header.receive_timestamp.is_zero());
    let (handled, response) = w.serve(&request);
    assert_eq!(handled.exchange.mode, AnswerMode::Basic);
    assert!(!sample(&w.deliver(&response)).interleaved);
}

#[test]
fn a_restarted_client_starts_basic_then_interleaves() {
    let mut w = World::new(true, 1024);
    warm_up(&mut w);
    // Same address, state lost.
    w.client = nts_association(&w.keyset, &mut w.rng);
    w.client.set_interleaved(true);
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Basic);
    assert!(!sample(&outcome).interleaved);
    let (mode, _) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    let (_, outcome) = w.exchange();
    assert!(close(sample(&outcome).offset, 0.0));
}

#[test]
fn a_restarted_server_answers_basic_until_it_has_the_exchange() {
    let mut w = World::new(false, 1024);
    warm_up(&mut w);
    w.table = InterleaveTable::with_capacity(1024);
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Missed);
    assert!(!sample(&outcome).interleaved);
    let (mode, _) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
}

#[test]
fn a_replayed_request_gets_a_basic_answer_that_the_client_refuses() {
    let mut w = World::new(true, 1024);
    warm_up(&mut w);
    let request = w.request();
    let (handled, response) = w.serve(&request);
    assert_eq!(handled.exchange.mode, AnswerMode::Interleaved);
    assert!(sample(&w.deliver(&response)).interleaved);
    // The same bytes again, from the same address: the entry is spent.
    let (replayed, response) = w.serve(&request);
    assert_eq!(replayed.exchange.mode, AnswerMode::Missed);
    assert_eq!(
        w.deliver(&response),
        ResponseOutcome::Discarded(Discard::NoRequest)
    );
    // The client carries on interleaved: the replay saved a new entry of
    // its own, which the client never names.
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    assert!(sample(&outcome).interleaved);
}

#[test]
fn another_address_can_neither_read_nor_spend_a_clients_entry() {
    let mut w = World::new(false, 1024);
    warm_up(&mut w);
    let request = w.request();
    // An attacker who saw (or guessed) the request sends it first, from
    // its own address: a basic answer, no transmit time of ours.
    let (probe, response) = w.serve_from(&request, OTHER);
    assert_eq!(probe.exchange.mode, AnswerMode::Missed);
    let header = NtpHeader::parse(&response).unwrap().0;
    let asked = NtpHeader::parse(&request).unwrap().0;
    assert_eq!(header.origin_timestamp, asked.transmit_timestamp);
    // The client's own request still gets its interleaved answer.
    let (handled, response) = w.serve(&request);
    assert_eq!(handled.exchange.mode, AnswerMode::Interleaved);
    assert!(sample(&w.deliver(&response)).interleaved);
}

#[test]
fn a_full_table_evicts_the_oldest_and_keeps_its_size() {
    let mut w = World::new(false, 64);
    let capacity = w.table.capacity();
    warm_up(&mut w);
    // Between two polls, a crowd of other clients' interleaved exchanges.
    for i in 0..10_000u64 {
        let key = NtpTimestamp::from_bits(((u64::from(NOW) + 1) << 32) | (i << 8) | 1);
        let _ = w.table.save(key, OTHER);
        w.table.set_transmit(key, key);
    }
    assert_eq!(w.table.capacity(), capacity);
    assert!(w.table.len() <= capacity);
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Missed);
    assert!(!sample(&outcome).interleaved);
    // Once the crowd is gone, interleaving resumes.
    let (mode, _) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    let (mode, outcome) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
    assert!(close(sample(&outcome).offset, 0.0));
}

#[test]
fn a_server_that_does_not_interleave_gives_basic_samples() {
    let mut w = World::new(true, 1024);
    w.serve_interleaved = false;
    for _ in 0..5 {
        let (_, outcome) = w.exchange();
        let s = sample(&outcome);
        assert!(!s.interleaved);
        assert!(close(s.offset, w.basic_bias()), "{}", s.offset);
    }
    assert!(!w.client.is_interleaved());
}

#[test]
fn basic_clients_cost_no_table_entry_and_get_unmarked_fields_echoed() {
    let mut w = World::new(false, 1024);
    w.client.set_interleaved(false);
    for _ in 0..3 {
        let request = w.request();
        let asked = NtpHeader::parse(&request).unwrap().0;
        assert!(asked.origin_timestamp.is_zero() && asked.receive_timestamp.is_zero());
        let (handled, response) = w.serve(&request);
        assert_eq!(handled.exchange.mode, AnswerMode::Basic);
        assert_eq!(handled.exchange.save, None);
        let header = NtpHeader::parse(&response).unwrap().0;
        assert!(is_marked_receive(header.receive_timestamp));
        assert!(!is_marked_receive(header.transmit_timestamp));
        assert!(!sample(&w.deliver(&response)).interleaved);
    }
    assert!(w.table.is_empty());
}

#[test]
fn kisses_are_never_interleaved() {
    let mut w = World::new(false, 1024);
    warm_up(&mut w);
    let request = w.request();
    let mut out = [0u8; 512];
    let server = Server {
        state: &w.state,
        policy: &ServerPolicy::default(),
        keyset: Some(&w.keyset),
    };
    let req = Request {
        bytes: &request,
        received: w.now,
        admission: Admission::RateLimited,
    };
    let mut view = w.table.client(CLIENT);
    let handled = handle_request(
        &server,
        &req,
        Some(&mut view),
        || w.now,
        &mut w.rng,
        &mut out,
    );
    assert_eq!(handled.exchange.mode, AnswerMode::Basic);
    assert_eq!(handled.exchange.save, None);
    // The entry survived for the next, admitted, request.
    let (mode, _) = w.exchange();
    assert_eq!(mode, AnswerMode::Interleaved);
}
