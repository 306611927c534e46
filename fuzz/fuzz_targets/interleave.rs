//! RFC 9769's server table (`sundial_proto::interleave`) under a fuzzer-
//! chosen sequence of saves, kernel reports, lookups and whole requests
//! through `server::handle_request`, from a few client addresses over a
//! small key space (so that collisions, evictions and other clients'
//! entries are met often).
//! Invariants: the table never grows past its capacity; an entry is read
//! by its own client only, and at most once per save; a transmit
//! timestamp read is the one reported for that entry; an answer is never
//! longer than its request, and an interleaved one echoes the request's
//! receive field as its origin.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::{Input, RECV, XMIT, fixture, rng, state};
use sundial_proto::interleave::{InterleaveTable, Saved, mark_receive, mark_transmit};
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::server::{
    Admission, AnswerMode, Request, Server, ServerAction, ServerPolicy, handle_request,
};

const CLIENTS: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let capacity = usize::from(input.u8() % 64) + 1;
    let mut table = InterleaveTable::with_capacity(capacity);
    let fixed = table.capacity();
    // What the model knows: key -> (client, reported transmit), for the
    // entries saved once and not taken since.
    let mut model: HashMap<u64, (IpAddr, Option<NtpTimestamp>)> = HashMap::new();
    let fx = fixture();
    let policy = ServerPolicy::default();
    let server_state = state();
    let mut r = rng(3);
    while !input.is_empty() {
        let op = input.u8();
        let client = CLIENTS[usize::from(op >> 4) % CLIENTS.len()];
        let key = mark_receive(NtpTimestamp::from_bits(u64::from(input.u8()) << 24));
        match op % 4 {
            0 => match table.save(key, client) {
                Saved::Collision => {
                    model.remove(&key.to_bits());
                }
                Saved::New | Saved::Evicted => {
                    model.insert(key.to_bits(), (client, None));
                }
                Saved::Ignored => {}
            },
            1 => {
                let t = NtpTimestamp::from_bits(input.u64() | 4);
                if table.set_transmit(key, t) {
                    if let Some(entry) = model.get_mut(&key.to_bits()) {
                        entry.1 = Some(mark_transmit(t));
                    }
                }
            }
            2 => {
                let got = table.take(key, client);
                if let Some(t) = got {
                    let (owner, reported) = model
                        .remove(&key.to_bits())
                        .expect("read an entry never saved, or twice");
                    assert_eq!(owner, client, "read by another client");
                    assert_eq!(Some(t), reported, "not the reported transmit time");
                } else if model.get(&key.to_bits()).is_some_and(|e| e.0 == client) {
                    // Own entry not readable: evicted or not reported; it
                    // is gone either way once asked for.
                    model.remove(&key.to_bits());
                }
            }
            _ => {
                // A whole request naming `key`, through the server.
                let mut header = NtpHeader::client_request(0, XMIT);
                header.origin_timestamp = key;
                header.receive_timestamp = NtpTimestamp::from_bits(input.u64());
                let mut request = header.to_bytes().to_vec();
                request.extend_from_slice(input.short_bytes());
                let mut out = [0u8; 2048];
                let srv = Server {
                    state: &server_state,
                    policy: &policy,
                    keyset: Some(&fx.keyset),
                };
                let req = Request {
                    bytes: &request,
                    received: RECV,
                    admission: Admission::Allow,
                };
                let mut view = table.client(client);
                let handled =
                    handle_request(&srv, &req, Some(&mut view), || XMIT, &mut r, &mut out);
                if let ServerAction::Respond { len, .. } = handled.action {
                    assert!(len <= request.len(), "answer longer than its request");
                    if handled.exchange.mode == AnswerMode::Interleaved {
                        let answer = NtpHeader::parse(&out[..len]).expect("answer parses").0;
                        assert_eq!(answer.origin_timestamp, header.receive_timestamp);
                        let (owner, reported) = model
                            .remove(&key.to_bits())
                            .expect("interleaved from an entry never saved, or twice");
                        assert_eq!(owner, client);
                        assert_eq!(Some(answer.transmit_timestamp), reported);
                    }
                }
                if handled.exchange.mode == AnswerMode::Missed
                    && model.get(&key.to_bits()).is_some_and(|e| e.0 == client)
                {
                    model.remove(&key.to_bits());
                }
            }
        }
        assert_eq!(table.capacity(), fixed);
        assert!(table.len() <= fixed);
    }
});
