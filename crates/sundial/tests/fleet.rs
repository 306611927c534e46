//! Fleet mode on loopback: one `sundial run` with the NTS-KE server owns the
//! key file, two NTP-only `sundial run`s read it. A client gets cookies from
//! the KE server and NTS answers from both NTP servers, before and after the
//! KE server rotates its keys.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::nts::{key_exchange, nts_query};
use common::{ChildGuard, TempDir, ca, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};

/// Rotation every 3 s: the test sees a rotation within seconds.
const ROTATION_SECS: u64 = 3;

fn start(dir: &TempDir, name: &str, config: &str) -> ChildGuard {
    common::start_sundial(dir, name, config, false).0
}

#[test]
fn one_ke_front_two_ntp_servers_share_keys_across_a_rotation() {
    let dir = TempDir::new("fleet");
    let certs = ca::generate(dir.path());
    let keyfile = dir.join("shared/ntskeys");
    let ke_port = free_tcp_port();
    let ntp = [free_udp_port(), free_udp_port(), free_udp_port()];
    let keyset = format!(
        "[keyset]\nkey-storage-path = \"{}\"\nkey-rotation-interval = {ROTATION_SECS}\n",
        keyfile.display()
    );
    let server = |port: u16| format!("[[server]]\nlisten = \"127.0.0.1:{port}\"\n");
    let sync = "[synchronization]\nlocal-stratum = 1\n";
    // The KE front also serves NTP itself on ntp[0], and announces it.
    let _front = start(
        &dir,
        "front",
        &format!(
            "{}[[nts-ke-server]]\nlisten = \"127.0.0.1:{ke_port}\"\ncertificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n\n{keyset}{sync}",
            server(ntp[0]),
            certs.chain.display(),
            certs.key.display()
        ),
    );
    let ke_addr: SocketAddr = format!("127.0.0.1:{ke_port}").parse().unwrap();
    assert!(
        wait_for_tcp(ke_addr, Duration::from_secs(10)),
        "KE front did not start"
    );
    let _a = start(
        &dir,
        "ntp-a",
        &format!("{}\n{keyset}{sync}", server(ntp[1])),
    );
    let _b = start(
        &dir,
        "ntp-b",
        &format!("{}\n{keyset}{sync}", server(ntp[2])),
    );
    let servers: Vec<SocketAddr> = ntp[1..]
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();

    let (keys, response) = key_exchange(ke_addr, &certs.ca);
    assert_eq!(response.cookies.len(), 8);
    assert_eq!(response.port, Some(ntp[0]));
    let mut cookies = response.cookies.into_iter();
    for &s in &servers {
        let got = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
            nts_query(s, &keys, &cookies.next().unwrap()).ok()
        });
        assert!(
            got.is_some(),
            "NTP server {s} did not answer NTS with the KE's cookies"
        );
    }

    // Past a rotation (and the readers' one-second poll), cookies from a new
    // key exchange are sealed with the rotated key; both readers open them.
    std::thread::sleep(Duration::from_secs(ROTATION_SECS + 2));
    let started = Instant::now();
    let (keys2, response2) = key_exchange(ke_addr, &certs.ca);
    let mut fresh = response2.cookies.into_iter();
    for &s in &servers {
        let answer = nts_query(s, &keys2, &fresh.next().unwrap());
        assert!(answer.is_ok(), "after rotation, {s}: {answer:?}");
        // A cookie the server handed out in its answer works too.
        let next = answer.unwrap().remove(0);
        assert!(nts_query(s, &keys2, &next).is_ok());
    }
    // The cookies from before the rotation still open (stale keys).
    for &s in &servers {
        assert!(nts_query(s, &keys, &cookies.next().unwrap()).is_ok());
    }
    eprintln!("post-rotation checks took {:?}", started.elapsed());
}
