//! sundial as an NTS client of Debian's chronyd: `sundial run --observe`
//! with one `mode = "nts"` source key-exchanges with chronyd over TLS 1.3,
//! gets NTS-authenticated samples and synchronizes (observe-only: the clock
//! is never touched; chronyd runs with -x). A wrong CA gets no time at all.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sundial_daemon::status::SourceState;
use sundial_proto::ntp::packet::{LeapIndicator, NtpHeader};
use sundial_proto::ntp::timestamp::NtpTimestamp;

use common::{
    ChildGuard, TempDir, ca, chrony, free_tcp_port, free_udp_port, poll_until, wait_for_tcp,
};

fn start_sundial(dir: &TempDir, name: &str, config: &str) -> (ChildGuard, std::path::PathBuf) {
    common::start_sundial(dir, name, config, true)
}

fn log_has(log: &std::path::Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(needle))
}

fn client_config(ke_port: u16, ca: &std::path::Path) -> String {
    format!(
        "[[source]]\nmode = \"nts\"\naddress = \"localhost:{ke_port}\"\ncertificate-authority = \"{}\"\n\n\
         [source-defaults]\npoll-interval-limits = {{ min = 0, max = 2 }}\ninitial-poll-interval = 0\n\n\
         [synchronization]\nminimum-agreeing-sources = 1\n",
        ca.display()
    )
}

#[test]
fn sundial_synchronizes_to_chronyd_over_nts_without_touching_the_clock() {
    let programs = chrony::programs();
    let dir = TempDir::new("chrony-server");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let _chronyd =
        chrony::start_server(&programs, &dir, ntp_port, ke_port, &certs.chain, &certs.key);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().unwrap();
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "chronyd's NTS-KE port did not open"
    );

    // The client also serves NTP, to show it announces what it follows,
    // and answers `sundial status` on a socket.
    let serve_port = free_udp_port();
    let socket = dir.join("sundial.sock");
    let config = format!(
        "{}\n[[server]]\nlisten = \"127.0.0.1:{serve_port}\"\n\n[observability]\nobservation-path = \"{}\"\n",
        client_config(ke_port, &certs.ca),
        socket.display()
    );
    let start = Instant::now();
    let (_sundial, log) = start_sundial(&dir, "client", &config);
    let synced = poll_until(Duration::from_secs(30), Duration::from_millis(20), || {
        log_has(&log, "synchronized stratum=2").then(|| start.elapsed())
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let took = synced.unwrap_or_else(|| panic!("sundial did not synchronize to chronyd:\n{text}"));
    eprintln!("sundial start to synchronized (NTS, chronyd server): {took:?}");
    // The key exchange followed chronyd's Port Negotiation to its NTP port.
    assert!(
        text.contains(&format!("ntp_server=127.0.0.1:{ntp_port}")),
        "KE did not lead to chronyd's NTP port:\n{text}"
    );
    assert!(text.contains("observe-only"), "{text}");
    assert!(!text.contains("stepping the clock"), "{text}");

    // `sundial status` shows the source over NTS: selected, 8 cookies after
    // the placeholders refilled the jar, the AEAD, an offset within 1 ms.
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let status = common::status(&socket)?;
        let source = status.sources.first()?;
        (source.state == SourceState::Selected
            && source.mode == "nts"
            && source.nts_cookies == Some(8)
            && source.nts_aead.is_some())
        .then_some(status)
    })
    .unwrap_or_else(|| panic!("status never showed the NTS source selected with 8 cookies"));
    let source = &status.sources[0];
    assert!(
        source.offset_seconds.abs() < 1e-3,
        "offset {}",
        source.offset_seconds
    );
    assert!(source.last_key_exchange.is_some());

    // Its NTP server now says stratum 2, reference id = chronyd's address,
    // leap "no warning": what it synchronized to, not local-stratum.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let request = NtpHeader::client_request(0, NtpTimestamp::from_bits(0x1234)).to_bytes();
    socket.send_to(&request, ("127.0.0.1", serve_port)).unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("sundial's NTP server answers");
    let (answer, _) = NtpHeader::parse(&buf[..n]).unwrap();
    assert_eq!(answer.stratum, 2);
    assert_eq!(answer.reference_id.0, [127, 0, 0, 1]);
    assert_eq!(answer.leap, LeapIndicator::NoWarning);
    assert_eq!(answer.origin_timestamp.to_bits(), 0x1234);
}

#[test]
fn a_server_certificate_from_another_ca_gives_no_time() {
    let programs = chrony::programs();
    let dir = TempDir::new("chrony-server-badca");
    let certs = ca::generate(dir.path());
    let other = TempDir::new("other-ca");
    let other_ca = ca::generate(other.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let _chronyd =
        chrony::start_server(&programs, &dir, ntp_port, ke_port, &certs.chain, &certs.key);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().unwrap();
    assert!(wait_for_tcp(ke, Duration::from_secs(10)));

    let (_sundial, log) = start_sundial(&dir, "client", &client_config(ke_port, &other_ca.ca));
    let refused = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("WARN") && t.to_lowercase().contains("certificate"))
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(refused.is_some(), "no certificate warning:\n{text}");
    assert!(!text.contains("synchronized stratum"), "{text}");
}
