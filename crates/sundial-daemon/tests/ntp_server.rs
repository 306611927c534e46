//! The NTP listener on real loopback sockets, IPv4 and IPv6: plain and NTS
//! requests, kernel receive timestamps, allow/deny lists and require-nts.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sundial_daemon::config::ServerConfig;
use sundial_daemon::server::ntp;
use sundial_proto::ntp::packet::{KissCode, Mode, NtpHeader, ReferenceId};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::client::{VerifiedResponse, new_uid, verify_response, write_request};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::reader::Writer;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

async fn exchange(server: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    }
    .parse()
    .unwrap();
    let sock = UdpSocket::bind(bind).await.unwrap();
    sock.send_to(request, server).await.unwrap();
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Starts a listener; returns its address and the keyset it serves with.
async fn start(
    cfg: &ServerConfig,
    cancel: &CancellationToken,
) -> (SocketAddr, Arc<RwLock<KeySet>>) {
    let listener = ntp::bind(cfg, false).expect("bind");
    let addr = listener.local_addr().unwrap();
    let keys = Arc::new(RwLock::new(KeySet::generate(
        KeySetConfig::default(),
        common::now_secs(),
        &mut StdRng::seed_from_u64(1),
    )));
    tokio::spawn(listener.run(
        Some(Arc::clone(&keys)),
        common::local_state(),
        cancel.clone(),
    ));
    (addr, keys)
}

fn plain_request() -> Vec<u8> {
    NtpHeader::client_request(4, NtpTimestamp::from_bits(0x0102_0304_0506_0708))
        .to_bytes()
        .to_vec()
}

#[tokio::test]
async fn answers_plain_ntp_on_ipv4_and_ipv6_with_kernel_timestamps() {
    let cancel = CancellationToken::new();
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let (addr, _) = start(&common::ntp_server_config(listen, ""), &cancel).await;
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let resp = exchange(addr, &plain_request()).await.expect("an answer");
        let (h, _) = NtpHeader::parse(&resp).unwrap();
        assert_eq!(h.mode, Mode::Server);
        assert_eq!(h.stratum, 1);
        assert_eq!(h.reference_id, ReferenceId(*b"TEST"));
        assert_eq!(h.origin_timestamp.to_bits(), 0x0102_0304_0506_0708);
        // Receive and transmit timestamps are real time, in order.
        let recv = h.receive_timestamp.to_unix(before.as_secs() as i64);
        let sent = h.transmit_timestamp.to_unix(before.as_secs() as i64);
        assert!((recv.0 - before.as_secs() as i64).abs() <= 2, "{listen}");
        assert!(h.transmit_timestamp - h.receive_timestamp >= Default::default());
        assert!(sent >= recv);
    }
    cancel.cancel();
}

#[tokio::test]
async fn answers_nts_with_cookies_and_nak_for_unknown_keys() {
    let cancel = CancellationToken::new();
    let (addr, keys) = start(&common::ntp_server_config("127.0.0.1:0", ""), &cancel).await;
    let mut rng = StdRng::seed_from_u64(2);
    let alg = AeadAlgorithm::AesSivCmac256;
    let nts_keys = NtsKeys {
        c2s: AeadKey::generate(alg, &mut rng).unwrap(),
        s2c: AeadKey::generate(alg, &mut rng).unwrap(),
    };
    let mut cookie = [0u8; 256];
    let n = keys
        .read()
        .unwrap()
        .seal_cookie(&nts_keys, &mut rng, &mut cookie)
        .unwrap();
    let uid = new_uid(&mut rng);
    let mut buf = [0u8; 1024];
    let mut w = Writer::new(&mut buf);
    let header = NtpHeader::client_request(4, NtpTimestamp::from_bits(9));
    write_request(&mut w, &header, &uid, &cookie[..n], 7, &nts_keys, &mut rng).unwrap();
    let len = w.len();
    let resp = exchange(addr, &buf[..len]).await.expect("an NTS answer");
    assert!(resp.len() <= len);
    match verify_response(&resp, &uid, &nts_keys).unwrap() {
        VerifiedResponse::Time { cookies, .. } => assert_eq!(cookies.len(), 8),
        VerifiedResponse::Nak => panic!("unexpected NAK"),
    }
    // Tampered requests get nothing.
    let mut bad = buf[..len].to_vec();
    bad[len - 1] ^= 1;
    assert_eq!(exchange(addr, &bad).await, None);
    // After the server's keys are replaced, the same cookie gets NTSN.
    *keys.write().unwrap() =
        KeySet::generate(KeySetConfig::default(), common::now_secs(), &mut rng);
    let resp = exchange(addr, &buf[..len]).await.expect("an NTSN");
    assert!(matches!(
        verify_response(&resp, &uid, &nts_keys),
        Ok(VerifiedResponse::Nak)
    ));
    cancel.cancel();
}

#[tokio::test]
async fn deny_lists_and_require_nts() {
    let cancel = CancellationToken::new();
    let (addr, _) = start(
        &common::ntp_server_config(
            "127.0.0.1:0",
            "denylist = { filter = [\"127.0.0.0/8\"], action = \"deny\" }",
        ),
        &cancel,
    )
    .await;
    let resp = exchange(addr, &plain_request()).await.expect("a kiss");
    assert_eq!(
        NtpHeader::parse(&resp).unwrap().0.kiss_code(),
        Some(KissCode::Deny)
    );

    let (addr, _) = start(
        &common::ntp_server_config(
            "127.0.0.1:0",
            "denylist = { filter = [\"127.0.0.0/8\"], action = \"ignore\" }",
        ),
        &cancel,
    )
    .await;
    assert_eq!(exchange(addr, &plain_request()).await, None);

    let (addr, _) = start(
        &common::ntp_server_config(
            "127.0.0.1:0",
            "allowlist = { filter = [\"192.0.2.0/24\"], action = \"ignore\" }",
        ),
        &cancel,
    )
    .await;
    assert_eq!(exchange(addr, &plain_request()).await, None);

    let (addr, _) = start(
        &common::ntp_server_config("127.0.0.1:0", "require-nts = true"),
        &cancel,
    )
    .await;
    assert_eq!(exchange(addr, &plain_request()).await, None);
    cancel.cancel();
}

#[tokio::test]
async fn a_port_in_use_names_the_address() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = ntp::bind(&common::ntp_server_config(&addr.to_string(), ""), false).unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

fn interleave_request(origin: u64, receive: u64, transmit: u64) -> Vec<u8> {
    NtpHeader {
        origin_timestamp: NtpTimestamp::from_bits(origin),
        receive_timestamp: NtpTimestamp::from_bits(receive),
        ..NtpHeader::client_request(4, NtpTimestamp::from_bits(transmit))
    }
    .to_bytes()
    .to_vec()
}

/// RFC 9769 over real sockets, each exchange from a new source port: the
/// second answer is interleaved and carries the kernel's transmit time of
/// the first, a little after the transmit timestamp the first one had.
#[tokio::test]
async fn interleaved_answers_carry_the_kernel_transmit_time() {
    let cancel = CancellationToken::new();
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let listener = ntp::bind(&common::ntp_server_config(listen, ""), false).expect("bind");
        let addr = listener.local_addr().unwrap();
        let stats = listener.stats();
        tokio::spawn(listener.run(None, common::local_state(), cancel.clone()));

        let first = exchange(addr, &interleave_request(0, 0xaaaa, 0xbbbb))
            .await
            .expect("an answer");
        let first = NtpHeader::parse(&first).unwrap().0;
        assert_eq!(first.origin_timestamp.to_bits(), 0xbbbb, "basic first");
        assert_eq!(first.receive_timestamp.to_bits() & 1, 1);
        assert_eq!(first.transmit_timestamp.to_bits() & 1, 0);

        // The serving thread reads the kernel's report right after its
        // sendmmsg; a client polls seconds later, this one at once: wait
        // for the report before asking for it.
        let captured = |n: u64| stats.tx_captured.load(std::sync::atomic::Ordering::Relaxed) >= n;
        for _ in 0..200 {
            if captured(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rx1 = first.receive_timestamp.to_bits();
        let second = exchange(addr, &interleave_request(rx1, 0xcccc, 0xdddd))
            .await
            .expect("an answer");
        let second = NtpHeader::parse(&second).unwrap().0;
        assert_eq!(
            second.origin_timestamp.to_bits(),
            0xcccc,
            "interleaved second"
        );
        let kernel_lag = (second.transmit_timestamp - first.transmit_timestamp).as_seconds();
        assert!(
            (0.0..0.1).contains(&kernel_lag),
            "kernel transmit time {kernel_lag} s after the estimate"
        );
        // The same request again: its exchange is spent, a basic answer.
        let replay = exchange(addr, &interleave_request(rx1, 0xcccc, 0xdddd))
            .await
            .expect("an answer");
        let replay = NtpHeader::parse(&replay).unwrap().0;
        assert_eq!(replay.origin_timestamp.to_bits(), 0xdddd);

        use std::sync::atomic::Ordering::Relaxed;
        // A basic client's answer is not stamped.
        let _ = exchange(addr, &plain_request()).await.expect("an answer");
        for _ in 0..200 {
            if captured(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(stats.interleaved.load(Relaxed), 1);
        assert_eq!(stats.interleave_missed.load(Relaxed), 1);
        assert_eq!(stats.tx_captured.load(Relaxed), 3);
        assert_eq!(stats.tx_missed.load(Relaxed), 0);
    }
    cancel.cancel();
}
