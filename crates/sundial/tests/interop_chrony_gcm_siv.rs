//! AES-128-GCM-SIV and chrony's record 1024 against Debian's chronyd, both
//! ways, on loopback (chronyd -x: the clock is never touched).
//!
//! What is expected depends on the chronyd installed:
//! - up to 4.3 chrony has AES-SIV-CMAC-256 (15) only: our record 1024 is an
//!   unknown non-critical record it ignores, it chooses 15, and everything
//!   works as before;
//! - 4.4 to 4.6.0 choose GCM-SIV (30) when offered first, never send 1024,
//!   and use the legacy exporter context: we derive legacy keys (with the
//!   compliant ones in reserve);
//! - 4.6.1+ echo 1024: compliant keys.
//!
//! As the server, sundial serves chrony 4.3 with 15; a chrony 4.4 to 4.6.0
//! client (offering [30, 15] without 1024) would get 15 too, and a 4.6.1+
//! client (with 1024) GCM-SIV with compliant keys (see the proto and daemon
//! tests, which cover every combination).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::key_export::KeyContext;
use sundial_proto::source::{Association, ResponseOutcome};

use common::{TempDir, ca, chrony, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};

/// The installed chronyd's version as (major, minor, patch).
fn chrony_version(programs: &chrony::Programs) -> (u32, u32, u32) {
    let out = std::process::Command::new(&programs.chronyd)
        .arg("--version")
        .output()
        .expect("chronyd --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {text}"));
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn now_ntp() -> NtpTimestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    NtpTimestamp::from_unix(i64::try_from(now.as_secs()).unwrap(), now.subsec_nanos())
}

#[test]
fn sundial_offering_gcm_siv_with_record_1024_keys_and_polls_chronyd() {
    let programs = chrony::programs();
    let version = chrony_version(&programs);
    let dir = TempDir::new("chrony-gcm-siv");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let _chronyd =
        chrony::start_server(&programs, &dir, ntp_port, ke_port, &certs.chain, &certs.key);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().unwrap();
    assert!(wait_for_tcp(ke, Duration::from_secs(10)), "no NTS-KE port");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // GCM-SIV first, as chrony 4.4+ clients offer it; record 1024 goes too.
    let outcome = runtime
        .block_on(sundial_daemon::source::key_exchange(
            "localhost",
            ke_port,
            Some(&certs.ca),
            Duration::from_secs(10),
            &[AeadAlgorithm::Aes128GcmSiv, AeadAlgorithm::AesSivCmac256],
        ))
        .unwrap_or_else(|e| panic!("KE with chronyd {version:?}: {e}"));
    let (algorithm, context, fallback) = if version < (4, 4, 0) {
        (AeadAlgorithm::AesSivCmac256, KeyContext::Compliant, false)
    } else if version < (4, 6, 1) {
        (AeadAlgorithm::Aes128GcmSiv, KeyContext::LegacyGcmSiv, true)
    } else {
        (AeadAlgorithm::Aes128GcmSiv, KeyContext::Compliant, false)
    };
    assert_eq!(outcome.algorithm, algorithm, "chronyd {version:?}");
    assert_eq!(outcome.key_context, context, "chronyd {version:?}");
    assert_eq!(
        outcome.fallback_keys.is_some(),
        fallback,
        "chronyd {version:?}"
    );

    // The keys work: chronyd answers an NTS request with authenticated time.
    let mut assoc = Association::nts(outcome.keys, outcome.cookies, 0);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], ntp_port)))
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut rng = rand::rng();
    let authenticated = poll_until(Duration::from_secs(10), Duration::ZERO, || {
        let mut buf = vec![0u8; 1024];
        let n = assoc.poll(now_ntp(), &mut rng, &mut buf).ok()?;
        socket.send(&buf[..n]).ok()?;
        let mut answer = vec![0u8; 2048];
        let n = socket.recv(&mut answer).ok()?;
        match assoc.handle_response(&answer[..n], now_ntp()) {
            ResponseOutcome::Sample(sample) => Some(sample.authenticated),
            _ => None,
        }
    });
    assert_eq!(
        authenticated,
        Some(true),
        "no authenticated answer from chronyd {version:?}"
    );
}

#[test]
fn chronyd_client_gets_nts_time_from_sundial_whatever_aead_it_offers() {
    let programs = chrony::programs();
    let version = chrony_version(&programs);
    let dir = TempDir::new("chrony-gcm-siv-client");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let ke_addr = SocketAddr::from(([127, 0, 0, 1], ke_port));
    let config = format!(
        "[[server]]\nlisten = \"127.0.0.1:{ntp_port}\"\n\n\
             [[nts-ke-server]]\nlisten = \"{ke_addr}\"\n\
             certificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n\n\
             [synchronization]\nlocal-stratum = 1\n",
        certs.chain.display(),
        certs.key.display(),
    );
    // --observe although a server with no source never steers the clock.
    let _sundial = common::start_sundial(&dir, "server", &config, true);
    assert!(
        wait_for_tcp(ke_addr, Duration::from_secs(20)),
        "no NTS-KE port"
    );
    let line = format!("server 127.0.0.1 nts ntsport {ke_port} iburst minpoll 0 maxpoll 2");
    let chronyd = chrony::start_client(&programs, &dir, &line, &certs.ca);
    let auth = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let ntp = chronyd.ntpdata()?;
        (ntp.authenticated && ntp.total_valid_rx > 0).then(|| chronyd.authdata())?
    });
    let Some(auth) = auth else {
        eprintln!("{}", chronyd.report());
        panic!("chronyd {version:?} got no NTS time from sundial");
    };
    // chrony up to 4.3 offers only 15; 4.4 to 4.6.0 offer [30, 15] without
    // record 1024 and sundial steers them to 15; 4.6.1+ send 1024 and get 30.
    let expected = if version >= (4, 6, 1) { 30 } else { 15 };
    assert_eq!(auth.aead, expected, "chronyd {version:?}: {auth:?}");
    assert_eq!(auth.nak, 0, "{auth:?}");
}
