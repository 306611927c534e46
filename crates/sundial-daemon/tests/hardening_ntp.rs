//! The NTP listener under garbage and floods over real UDP on loopback
//! (issue 6, items 2 and 3): the hostile corpus of sundial-proto, one
//! datagram at a time, each followed by a plain probe whose answer marks
//! the end of whatever the case got back; then rate limiting as a client
//! sees it.

#[path = "../../sundial-proto/tests/hostile_corpus/mod.rs"]
mod hostile_corpus;

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hostile_corpus::{Expect, corpus};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sundial_daemon::config::ServerConfig;
use sundial_daemon::server::ntp::{self, NtpStats};
use sundial_proto::ntp::packet::{KissCode, NtpHeader};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::server::DropClass;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// The listener's receive buffer: longer datagrams arrive truncated.
const MAX_PACKET: usize = 2048;

async fn start(
    cfg: &ServerConfig,
    keys: Arc<RwLock<KeySet>>,
    cancel: &CancellationToken,
) -> (SocketAddr, Arc<NtpStats>) {
    let listener = ntp::bind(cfg, false).expect("bind");
    let addr = listener.local_addr().unwrap();
    let stats = listener.stats();
    tokio::spawn(listener.run(Some(keys), common::local_state(), cancel.clone()));
    (addr, stats)
}

fn probe(tag: u64) -> Vec<u8> {
    NtpHeader::client_request(6, NtpTimestamp::from_bits(0x0bad_cafe_0000_0000 | tag))
        .to_bytes()
        .to_vec()
}

/// What an answer is, from its bytes.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Plain,
    Nts,
    Nak,
    Other(String),
}

fn classify(answer: &[u8]) -> Got {
    let Ok((h, rest)) = NtpHeader::parse(answer) else {
        return Got::Other("unparsable".into());
    };
    // A plain answer may echo the request's Unique Identifier: that one
    // field and nothing else, where an NTS answer has its authenticator.
    let only_uid = rest.len() >= 4
        && rest[..2] == [0x01, 0x04]
        && usize::from(u16::from_be_bytes([rest[2], rest[3]])) == rest.len();
    match (h.kiss_code(), rest.is_empty() || only_uid) {
        (Some(KissCode::Ntsn), _) if !rest.is_empty() => Got::Nak,
        (None, true) => Got::Plain,
        (None, false) => Got::Nts,
        (kiss, _) => Got::Other(format!("{kiss:?}")),
    }
}

/// The one drop class whose counter moved since `seen`, if exactly one did.
fn newly_dropped(stats: &NtpStats, seen: &mut [u64; ntp::DROP_CLASSES]) -> Option<DropClass> {
    let mut moved = Vec::new();
    for (i, counter) in stats.dropped.iter().enumerate() {
        let now = counter.load(Ordering::Relaxed);
        if now != seen[i] {
            moved.extend(DropClass::ALL.get(i).copied());
            seen[i] = now;
        }
    }
    match moved[..] {
        [one] => Some(one),
        _ => None,
    }
}

#[tokio::test]
async fn the_hostile_corpus_over_udp_gets_only_owed_answers_never_larger() {
    let mut rng = StdRng::seed_from_u64(6);
    let keyset = KeySet::generate(KeySetConfig::default(), common::now_secs(), &mut rng);
    let stranger = KeySet::generate(KeySetConfig::default(), common::now_secs(), &mut rng);
    let alg = AeadAlgorithm::AesSivCmac256;
    let keys = NtsKeys {
        c2s: AeadKey::generate(alg, &mut rng).unwrap(),
        s2c: AeadKey::generate(alg, &mut rng).unwrap(),
    };
    let seal = |set: &KeySet, rng: &mut StdRng| {
        let mut buf = [0u8; 512];
        let n = set.seal_cookie(&keys, rng, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    let cookie = seal(&keyset, &mut rng);
    let foreign = seal(&stranger, &mut rng);
    let cases = corpus(&keys, &cookie, &foreign);

    let cancel = CancellationToken::new();
    let (server, stats) = start(
        &common::ntp_server_config("127.0.0.1:0", ""),
        Arc::new(RwLock::new(keyset)),
        &cancel,
    )
    .await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65536];
    // Which counter a few telling cases must land in.
    let reasons = [
        ("truncated to 20", DropClass::Header),
        ("bad authenticator tag", DropClass::Authentication),
        ("tampered associated data", DropClass::Authentication),
        ("short nonce without padding", DropClass::Nonce),
        ("no unique identifier", DropClass::UniqueId),
        ("duplicate unique identifier", DropClass::UniqueId),
        ("two cookies", DropClass::CookieCount),
        ("short placeholder", DropClass::Placeholder),
        ("no authenticator", DropClass::AuthenticatorPlacement),
        (
            "field after the authenticator",
            DropClass::AuthenticatorPlacement,
        ),
        ("field length 3", DropClass::Fields),
    ];
    let mut dropped_as = std::collections::HashMap::new();
    let mut seen = [0u64; ntp::DROP_CLASSES];
    let began = Instant::now();
    let mut sent = 0u64;
    let (mut nts_owed, mut nts_got) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        sock.send_to(&case.bytes, server).await.unwrap();
        let marker = probe(i as u64);
        sock.send_to(&marker, server).await.unwrap();
        sent += 2;
        // Everything before the probe's answer is the case's (one socket
        // each way on loopback keeps the order).
        let mut answers = Vec::new();
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                other => panic!("{}: the server stalled: {other:?}", case.name),
            };
            if buf[..n.min(48)].len() == 48
                && NtpHeader::parse(&buf[..n]).unwrap().0.origin_timestamp
                    == NtpHeader::parse(&marker).unwrap().0.transmit_timestamp
            {
                break;
            }
            answers.push(buf[..n].to_vec());
        }
        assert!(
            answers.len() <= 1,
            "{}: {} answers",
            case.name,
            answers.len()
        );
        let got = answers.first().map(|a| classify(a));
        if let Some(answer) = answers.first() {
            assert!(
                answer.len() <= case.bytes.len(),
                "{}: {}-byte answer to {} bytes",
                case.name,
                answer.len(),
                case.bytes.len()
            );
        }
        // Longer datagrams reach the server cut to its buffer: what they
        // owe is no NTS answer, nothing more precise.
        let expect = if case.bytes.len() > MAX_PACKET {
            Expect::NotNts
        } else {
            case.expect
        };
        let ok = match expect {
            Expect::Drop => got.is_none(),
            Expect::Plain => got == Some(Got::Plain),
            Expect::Nts => got == Some(Got::Nts),
            Expect::Nak => got == Some(Got::Nak),
            Expect::NotNts => matches!(got, None | Some(Got::Plain | Got::Nak)),
        };
        assert!(ok, "{}: expected {expect:?}, got {got:?}", case.name);
        if let Some(class) = newly_dropped(&stats, &mut seen) {
            dropped_as.insert(case.name.as_str(), class);
        }
        nts_owed += usize::from(expect == Expect::Nts);
        nts_got += usize::from(got == Some(Got::Nts));
    }
    let took = began.elapsed();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "{} cases in {took:?}: received={} plain={} nts={} nak={} malformed={} nts_dropped={} ignored={}",
        cases.len(),
        count(&stats.received),
        count(&stats.plain),
        count(&stats.nts),
        count(&stats.nts_nak),
        count(&stats.malformed),
        count(&stats.nts_dropped),
        count(&stats.ignored),
    );
    assert_eq!(count(&stats.received), sent);
    assert_eq!(nts_got, nts_owed);
    assert_eq!(count(&stats.nts), nts_owed as u64);
    // The listener's counters tell header faults from NTS faults, and
    // each drop's reason (see docs/security.md).
    assert!(count(&stats.malformed) > 0 && count(&stats.nts_dropped) > 0);
    for (case, class) in &reasons {
        assert_eq!(
            dropped_as.get(*case),
            Some(class),
            "{case}: counted under the wrong reason"
        );
    }
    cancel.cancel();
}

#[tokio::test]
async fn a_fast_client_gets_rate_kisses_and_is_served_again_after_the_cutoff() {
    let keyset = KeySet::generate(
        KeySetConfig::default(),
        common::now_secs(),
        &mut rand::rng(),
    );
    let cancel = CancellationToken::new();
    let cfg = common::ntp_server_config(
        "127.0.0.1:0",
        "rate-limiting-cache-size = 1024\nrate-limiting-cutoff-ms = 300",
    );
    let (server, stats) = start(&cfg, Arc::new(RwLock::new(keyset)), &cancel).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 2048];
    let mut kinds = Vec::new();
    for i in 0..20u64 {
        sock.send_to(&probe(i), server).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        kinds.push(NtpHeader::parse(&buf[..n]).unwrap().0.kiss_code());
    }
    assert_eq!(kinds[0], None, "the first request is served");
    assert!(
        kinds[1..].iter().all(|k| *k == Some(KissCode::Rate)),
        "{kinds:?}"
    );
    assert_eq!(stats.rate.load(Ordering::Relaxed), 19);
    tokio::time::sleep(Duration::from_millis(350)).await;
    sock.send_to(&probe(99), server).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(NtpHeader::parse(&buf[..n]).unwrap().0.kiss_code(), None);
    cancel.cancel();
}

/// `rate-limiting-burst` and `rate-limiting-action` reach the listener: a
/// burst is served, then requests are dropped silently with "ignore".
#[tokio::test]
async fn burst_and_ignore_action_apply_to_the_listener() {
    let keyset = KeySet::generate(
        KeySetConfig::default(),
        common::now_secs(),
        &mut rand::rng(),
    );
    let cancel = CancellationToken::new();
    let cfg = common::ntp_server_config(
        "127.0.0.1:0",
        "rate-limiting-cache-size = 1024\nrate-limiting-cutoff-ms = 10000\n\
         rate-limiting-burst = 3\nrate-limiting-action = \"ignore\"",
    );
    let (server, stats) = start(&cfg, Arc::new(RwLock::new(keyset)), &cancel).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    for i in 0..10u64 {
        sock.send_to(&probe(i), server).await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await
        {
            assert_eq!(NtpHeader::parse(&buf[..n]).unwrap().0.kiss_code(), None);
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "a burst of 3, then silence");
    assert_eq!(stats.rate.load(Ordering::Relaxed), 0, "no kiss was sent");
    cancel.cancel();
}
