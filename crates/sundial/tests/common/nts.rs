//! A small blocking NTS client for the binary's tests: one key exchange
//! over rustls trusting the test CA, and one NTS-protected NTP query,
//! through the protocol core's own client side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::client::{VerifiedResponse, new_uid, verify_response, write_request};
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress, KeResponse};
use sundial_proto::nts::key_export::derive_keys;
use sundial_proto::reader::Writer;

/// One NTS-KE with the server at `addr` (certificate for `localhost`
/// from the CA in `ca_pem`); the keys and the response.
pub fn key_exchange(addr: SocketAddr, ca_pem: &Path) -> (NtsKeys, KeResponse) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("read the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("trust the CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"ntske/1".to_vec()];
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let mut tcp = TcpStream::connect(addr).expect("connect to the KE server");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut client = KeClient::new(&[AeadAlgorithm::AesSivCmac256]);
    tls.write_all(&client.request())
        .expect("send the KE request");
    let mut buf = [0u8; 4096];
    let response = loop {
        let n = tls.read(&mut buf).expect("read the KE response");
        assert_ne!(n, 0, "KE server closed early");
        if let KeClientProgress::Done(r) = client.receive(&buf[..n]).expect("a valid response") {
            break r;
        }
    };
    let keys = derive_keys(0, response.algorithm, |label, context, out| {
        conn.export_keying_material(out, label.as_bytes(), Some(context))
            .map(|_| ())
    })
    .expect("key export");
    (keys, response)
}

/// One NTS query with `cookie`: the fresh cookies of an authenticated
/// answer, or why there was none.
pub fn nts_query(
    server: SocketAddr,
    keys: &NtsKeys,
    cookie: &[u8],
) -> Result<Vec<Vec<u8>>, String> {
    let mut rng = rand::rng();
    let uid = new_uid(&mut rng);
    let mut buf = [0u8; 1024];
    let mut w = Writer::new(&mut buf);
    let header = NtpHeader::client_request(0, NtpTimestamp::from_bits(rand::random()));
    write_request(&mut w, &header, &uid, cookie, 0, keys, &mut rng).expect("build the request");
    let len = w.len();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("a read timeout");
    sock.send_to(&buf[..len], server).expect("send the request");
    let mut resp = [0u8; 2048];
    let n = sock
        .recv(&mut resp)
        .map_err(|e| format!("no answer: {e}"))?;
    match verify_response(&resp[..n], &uid, keys) {
        Ok(VerifiedResponse::Time { cookies, .. }) => Ok(cookies),
        Ok(VerifiedResponse::Nak) => Err("NTSN: cookie no longer opens".to_owned()),
        Err(e) => Err(format!("bad answer: {e}")),
    }
}
