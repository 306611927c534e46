//! NTS-KE over a real TLS 1.3 session (rustls, aws-lc-rs), in memory: key
//! export per RFC 8915 5.1 from both ends, and a whole KE exchange.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress};
use sundial_proto::nts::ke_record::NextProtocol;
use sundial_proto::nts::ke_server::{COOKIE_COUNT, KeServer, KeServerProgress, build_response};
use sundial_proto::nts::key_export::{KeyExportError, derive_keys};

/// RFC 8915 4: the ALPN id of NTS-KE.
const ALPN: &[u8] = b"ntske/1";
const NTPV4: u16 = 0;

fn configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["ke.test".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN.to_vec()];

    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    server.alpn_protocols = vec![ALPN.to_vec()];
    (Arc::new(client), Arc::new(server))
}

struct Pair {
    client: ClientConnection,
    server: ServerConnection,
}

impl Pair {
    fn new() -> Self {
        let (client_config, server_config) = configs();
        let name = ServerName::try_from("ke.test").unwrap();
        let mut pair = Self {
            client: ClientConnection::new(client_config, name).unwrap(),
            server: ServerConnection::new(server_config).unwrap(),
        };
        pair.pump();
        assert!(!pair.client.is_handshaking() && !pair.server.is_handshaking());
        assert_eq!(pair.client.alpn_protocol(), Some(ALPN));
        pair
    }

    /// Moves TLS records both ways until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            let mut to_server = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut to_server).unwrap();
            }
            let mut rest = &to_server[..];
            while !rest.is_empty() {
                moved = true;
                self.server.read_tls(&mut rest).unwrap();
                self.server.process_new_packets().unwrap();
            }
            let mut to_client = Vec::new();
            while self.server.wants_write() {
                self.server.write_tls(&mut to_client).unwrap();
            }
            let mut rest = &to_client[..];
            while !rest.is_empty() {
                moved = true;
                self.client.read_tls(&mut rest).unwrap();
                self.client.process_new_packets().unwrap();
            }
            if !moved {
                break;
            }
        }
    }
}

/// Reads the plaintext available now in pieces of `piece` bytes, handing each
/// to `sink` the way a daemon hands each TLS read to the state machine.
/// Returns whether the peer closed the stream.
fn read_pieces(reader: &mut impl Read, piece: usize, mut sink: impl FnMut(&[u8])) -> bool {
    let mut buf = vec![0u8; piece];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn client_keys(pair: &Pair, alg: AeadAlgorithm) -> NtsKeys {
    derive_keys(NTPV4, alg, |label, context, out| {
        pair.client
            .export_keying_material(out, label.as_bytes(), Some(context))
            .map(drop)
    })
    .unwrap()
}

fn server_keys(pair: &Pair, alg: AeadAlgorithm) -> NtsKeys {
    derive_keys(NTPV4, alg, |label, context, out| {
        pair.server
            .export_keying_material(out, label.as_bytes(), Some(context))
            .map(drop)
    })
    .unwrap()
}

fn assert_same(a: &NtsKeys, b: &NtsKeys) {
    assert_eq!(a.c2s.as_bytes(), b.c2s.as_bytes());
    assert_eq!(a.s2c.as_bytes(), b.s2c.as_bytes());
    assert_eq!(a.algorithm(), b.algorithm());
}

#[test]
fn both_ends_export_the_same_keys() {
    let pair = Pair::new();
    for alg in AeadAlgorithm::SUPPORTED {
        let c = client_keys(&pair, alg);
        let s = server_keys(&pair, alg);
        assert_same(&c, &s);
        assert_eq!(Some(c.c2s.as_bytes().len()), alg.key_len());
        assert_ne!(c.c2s.as_bytes(), c.s2c.as_bytes(), "{alg:?}");
    }
    // The AEAD id is part of the context: the 32-byte prefix of a 64-byte
    // key for another algorithm is not the 32-byte key.
    let k256 = client_keys(&pair, AeadAlgorithm::AesSivCmac256);
    let k512 = client_keys(&pair, AeadAlgorithm::AesSivCmac512);
    assert_ne!(k256.c2s.as_bytes(), &k512.c2s.as_bytes()[..32]);
    // So is the protocol id.
    let other_protocol = derive_keys(1, AeadAlgorithm::AesSivCmac256, |label, context, out| {
        pair.client
            .export_keying_material(out, label.as_bytes(), Some(context))
            .map(drop)
    })
    .unwrap();
    assert_ne!(k256.c2s.as_bytes(), other_protocol.c2s.as_bytes());
    // And a different session gives different keys.
    let other = Pair::new();
    assert_ne!(
        k256.c2s.as_bytes(),
        client_keys(&other, AeadAlgorithm::AesSivCmac256)
            .c2s
            .as_bytes()
    );
}

#[test]
fn exporter_failure_before_the_handshake_is_reported() {
    let (client_config, _) = configs();
    let conn =
        ClientConnection::new(client_config, ServerName::try_from("ke.test").unwrap()).unwrap();
    let result = derive_keys(
        NTPV4,
        AeadAlgorithm::AesSivCmac256,
        |label, context, out| {
            conn.export_keying_material(out, label.as_bytes(), Some(context))
                .map(drop)
        },
    );
    assert!(matches!(result, Err(KeyExportError::Exporter(_))));
}

#[test]
fn whole_exchange_over_tls() {
    let mut pair = Pair::new();
    let mut ke_client = KeClient::new(&[AeadAlgorithm::Aes128GcmSiv, AeadAlgorithm::AesSivCmac256]);
    let mut ke_server = KeServer::new(&[AeadAlgorithm::AesSivCmac256, AeadAlgorithm::Aes128GcmSiv]);

    // Client -> server: the request, read by the server 3 bytes at a time.
    pair.client
        .writer()
        .write_all(&ke_client.request())
        .unwrap();
    pair.pump();
    let mut outcome = None;
    read_pieces(&mut pair.server.reader(), 3, |bytes| {
        match ke_server.receive(bytes).unwrap() {
            KeServerProgress::NeedMore => {}
            done => outcome = Some(done),
        }
    });
    let Some(KeServerProgress::Request(negotiated)) = outcome else {
        panic!("no request outcome: {outcome:?}");
    };
    // The server followed the client's preference.
    assert_eq!(negotiated.algorithm, AeadAlgorithm::Aes128GcmSiv);
    assert_eq!(negotiated.protocol, NextProtocol::NtpV4);

    // The daemon derives keys here and seals them into cookies.
    let keys_at_server = server_keys(&pair, negotiated.algorithm);
    let cookies: Vec<Vec<u8>> = (0..COOKIE_COUNT)
        .map(|i| [keys_at_server.c2s.as_bytes(), &[i as u8]].concat())
        .collect();
    let response = build_response(&negotiated, &cookies, Some("ntp.ke.test"), Some(123)).unwrap();
    pair.server.writer().write_all(&response).unwrap();
    pair.server.send_close_notify();
    pair.pump();

    // Server -> client, read 5 bytes at a time, then the close.
    let mut result = None;
    let closed = read_pieces(&mut pair.client.reader(), 5, |bytes| {
        match ke_client.receive(bytes).unwrap() {
            KeClientProgress::NeedMore => {}
            KeClientProgress::Done(r) => result = Some(r),
        }
    });
    assert!(closed);
    ke_client.finish().unwrap();
    ke_server.finish().unwrap();
    let response = result.expect("client got no response");
    assert_eq!(response.algorithm, AeadAlgorithm::Aes128GcmSiv);
    assert_eq!(response.cookies, cookies);
    assert_eq!(response.server.as_deref(), Some("ntp.ke.test"));
    assert_eq!(response.port, Some(123));

    let keys_at_client = derive_keys(
        response.protocol.to_u16(),
        response.algorithm,
        |label, context, out| {
            pair.client
                .export_keying_material(out, label.as_bytes(), Some(context))
                .map(drop)
        },
    )
    .unwrap();
    assert_same(&keys_at_client, &keys_at_server);
}
