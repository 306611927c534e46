//! Fleet mode on loopback: one `sundial run` with the NTS-KE server owns the
//! key file, two NTP-only `sundial run`s read it. A client gets cookies from
//! the KE server and NTS answers from both NTP servers, before and after the
//! KE server rotates its keys.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ChildGuard, TempDir, ca, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::aead::NtsKeys;
use sundial_proto::nts::client::{VerifiedResponse, new_uid, verify_response, write_request};
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress, KeResponse};
use sundial_proto::nts::key_export::derive_keys;
use sundial_proto::reader::Writer;

/// Rotation every 3 s: the test sees a rotation within seconds.
const ROTATION_SECS: u64 = 3;

fn start(dir: &TempDir, name: &str, config: &str) -> ChildGuard {
    common::start_sundial(dir, name, config, false).0
}

/// One NTS-KE over blocking rustls; returns the keys and cookies.
fn key_exchange(addr: SocketAddr, ca_pem: &Path) -> (NtsKeys, KeResponse) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"ntske/1".to_vec()];
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut client = KeClient::new(&[AeadAlgorithm::AesSivCmac256]);
    tls.write_all(&client.request()).unwrap();
    let mut buf = [0u8; 4096];
    let response = loop {
        let n = tls.read(&mut buf).unwrap();
        assert_ne!(n, 0, "KE server closed early");
        if let KeClientProgress::Done(r) = client.receive(&buf[..n]).unwrap() {
            break r;
        }
    };
    let keys = derive_keys(0, response.algorithm, |label, context, out| {
        conn.export_keying_material(out, label.as_bytes(), Some(context))
            .map(|_| ())
    })
    .unwrap();
    (keys, response)
}

/// Sends one NTS request with `cookie`; the cookies of an authenticated
/// answer, or why there was none.
fn nts_query(server: SocketAddr, keys: &NtsKeys, cookie: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut rng = rand::rng();
    let uid = new_uid(&mut rng);
    let mut buf = [0u8; 1024];
    let mut w = Writer::new(&mut buf);
    let header = NtpHeader::client_request(0, NtpTimestamp::from_bits(rand::random()));
    write_request(&mut w, &header, &uid, cookie, 0, keys, &mut rng).unwrap();
    let len = w.len();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock.send_to(&buf[..len], server).unwrap();
    let mut resp = [0u8; 2048];
    let n = sock
        .recv(&mut resp)
        .map_err(|e| format!("no answer: {e}"))?;
    match verify_response(&resp[..n], &uid, keys) {
        Ok(VerifiedResponse::Time { cookies, .. }) => Ok(cookies),
        Ok(VerifiedResponse::Nak) => Err("NTS NAK".to_owned()),
        Err(e) => Err(format!("bad answer: {e}")),
    }
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
