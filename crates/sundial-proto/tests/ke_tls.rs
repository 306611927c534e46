//! NTS-KE over a real TLS 1.3 session (rustls, aws-lc-rs), in memory: key
//! export per RFC 8915 5.1 from both ends, and a whole KE exchange.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress};
use sundial_proto::nts::ke_record::NextProtocol;
use sundial_proto::nts::ke_server::{
    COOKIE_COUNT, KeServer, KeServerProgress, Negotiated, build_response,
};
use sundial_proto::nts::key_export::{KeyContext, KeyExportError, derive_keys, derive_keys_with};

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

/// The servers of the AES-128-GCM-SIV matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerKind {
    /// `KeServer`, as the daemon runs it.
    Sundial,
    /// chrony 4.6.1+: echoes record 1024 with GCM-SIV, legacy keys for a
    /// client without it, follows the client's order strictly.
    Chrony461,
    /// chrony 4.4 to 4.6.0: ignores record 1024, always legacy GCM-SIV keys.
    Chrony44,
    /// An RFC 8915 server that does not know the record: compliant keys,
    /// never echoes.
    CompliantUnaware,
}

/// The clients of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// `KeClient`: sends record 1024, derives per `KeResponse::key_context`.
    Sundial,
    /// chrony 4.4 to 4.6.0: no record, legacy GCM-SIV keys.
    Chrony44,
    /// An RFC 8915 client that does not know the record: compliant keys.
    CompliantUnaware,
}

/// Which client keys match the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    /// The keys derived first.
    First,
    /// Only the fallback keys (after the server's NTS NAK).
    Fallback,
    /// None: the documented limitation.
    Never,
}

fn exporter_keys(
    conn: &impl std::ops::Deref<Target = rustls::ConnectionCommon<impl Sized>>,
    alg: AeadAlgorithm,
    context: KeyContext,
) -> NtsKeys {
    derive_keys_with(NTPV4, alg, context, |label, ctx, out| {
        conn.export_keying_material(out, label.as_bytes(), Some(ctx))
            .map(drop)
    })
    .unwrap()
}

fn same(a: &NtsKeys, b: &NtsKeys) -> bool {
    a.algorithm() == b.algorithm()
        && a.c2s.as_bytes() == b.c2s.as_bytes()
        && a.s2c.as_bytes() == b.s2c.as_bytes()
}

/// One exchange between `client` and `server` in a real TLS session:
/// the algorithm chosen, whether the answer carried record 1024, and which
/// of the client's keys equal the server's.
fn gcm_siv_case(
    client: ClientKind,
    server: ServerKind,
    offered: &[AeadAlgorithm],
) -> (AeadAlgorithm, bool, Match) {
    use AeadAlgorithm::{Aes128GcmSiv, AesSivCmac256};
    let pair = Pair::new();
    let mut ke_client = KeClient::new(offered);
    if client != ClientKind::Sundial {
        ke_client = ke_client.without_compliant_gcm_siv_record();
    }
    let request = ke_client.request();

    let sent_record = ke_client.sends_compliant_gcm_siv_record();
    let (negotiated, server_context) = match server {
        ServerKind::Sundial => {
            let mut ke_server = KeServer::new(&AeadAlgorithm::SUPPORTED);
            let Ok(KeServerProgress::Request(n)) = ke_server.receive(&request) else {
                panic!("sundial refused {request:?}");
            };
            let context = n.key_context();
            (n, context)
        }
        other => {
            // chrony offers 30 and 15 and follows the client's order.
            let algorithm = *offered
                .iter()
                .find(|a| [Aes128GcmSiv, AesSivCmac256].contains(a))
                .expect("chrony shares an algorithm");
            let knows_record = other == ServerKind::Chrony461;
            let negotiated = Negotiated {
                protocol: NextProtocol::NtpV4,
                algorithm,
                requested_server: None,
                requested_port: None,
                compliant_gcm_siv: knows_record && sent_record,
            };
            let context = match other {
                ServerKind::CompliantUnaware => KeyContext::Compliant,
                ServerKind::Chrony44 => KeyContext::LegacyGcmSiv,
                _ => negotiated.key_context(),
            };
            (negotiated, context)
        }
    };
    let server_keys = exporter_keys(&pair.server, negotiated.algorithm, server_context);
    let response = build_response(&negotiated, &[vec![7; 72]], None, None).unwrap();
    let echoed = negotiated.echoes_compliant_gcm_siv();

    let Ok(KeClientProgress::Done(answer)) = ke_client.receive(&response) else {
        panic!("client refused the answer");
    };
    assert_eq!(answer.algorithm, negotiated.algorithm);
    let (first, fallback) = match client {
        ClientKind::Sundial | ClientKind::Chrony44 => {
            (answer.key_context, answer.fallback_key_context)
        }
        ClientKind::CompliantUnaware => (KeyContext::Compliant, None),
    };
    // chrony 4.4 clients have no fallback.
    let fallback = fallback.filter(|_| client == ClientKind::Sundial);
    let matched = if same(
        &exporter_keys(&pair.client, answer.algorithm, first),
        &server_keys,
    ) {
        Match::First
    } else if fallback.is_some_and(|ctx| {
        same(
            &exporter_keys(&pair.client, answer.algorithm, ctx),
            &server_keys,
        )
    }) {
        Match::Fallback
    } else {
        Match::Never
    };
    (answer.algorithm, echoed, matched)
}

/// Every client with or without record 1024 against every server with or
/// without it, over real TLS exporters: the keys agree where they must.
#[test]
fn gcm_siv_keys_agree_across_record_1024_support() {
    use AeadAlgorithm::{Aes128GcmSiv as Gcm, AesSivCmac256 as Siv};
    use ClientKind as C;
    use Match::{Fallback, First, Never};
    use ServerKind as S;
    let both = [Gcm, Siv];
    let gcm_only = [Gcm];
    #[rustfmt::skip]
    type Case<'a> = (C, S, &'a [AeadAlgorithm], AeadAlgorithm, bool, Match);
    let cases: &[Case<'_>] = &[
        // Sundial client (sends 1024).
        (C::Sundial, S::Sundial, &both, Gcm, true, First),
        (C::Sundial, S::Sundial, &gcm_only, Gcm, true, First),
        (C::Sundial, S::Chrony461, &both, Gcm, true, First),
        (C::Sundial, S::Chrony44, &both, Gcm, false, First),
        (C::Sundial, S::Chrony44, &gcm_only, Gcm, false, First),
        (C::Sundial, S::CompliantUnaware, &both, Gcm, false, Fallback),
        (
            C::Sundial,
            S::CompliantUnaware,
            &gcm_only,
            Gcm,
            false,
            Fallback,
        ),
        // chrony 4.4 to 4.6.0 client (no record, legacy keys).
        (C::Chrony44, S::Sundial, &both, Siv, false, First),
        (C::Chrony44, S::Sundial, &gcm_only, Gcm, false, First),
        (C::Chrony44, S::Chrony461, &both, Gcm, false, First),
        (C::Chrony44, S::Chrony44, &both, Gcm, false, First),
        // An RFC 8915 client unaware of the record: sundial steers it off
        // GCM-SIV when it can; offering GCM-SIV alone it cannot work with
        // a chrony-compatible server (documented).
        (C::CompliantUnaware, S::Sundial, &both, Siv, false, First),
        (
            C::CompliantUnaware,
            S::Sundial,
            &gcm_only,
            Gcm,
            false,
            Never,
        ),
        (C::CompliantUnaware, S::Chrony461, &both, Gcm, false, Never),
        (
            C::CompliantUnaware,
            S::CompliantUnaware,
            &both,
            Gcm,
            false,
            First,
        ),
    ];
    for &(client, server, offered, algorithm, echoed, matched) in cases {
        assert_eq!(
            gcm_siv_case(client, server, offered),
            (algorithm, echoed, matched),
            "{client:?} client offering {offered:?} x {server:?} server"
        );
    }
}

/// Legacy and compliant keys really differ, so the matrix above would see
/// a mismatch.
#[test]
fn legacy_and_compliant_gcm_siv_keys_differ() {
    let pair = Pair::new();
    let gcm = AeadAlgorithm::Aes128GcmSiv;
    let legacy = exporter_keys(&pair.client, gcm, KeyContext::LegacyGcmSiv);
    let compliant = exporter_keys(&pair.client, gcm, KeyContext::Compliant);
    assert!(!same(&legacy, &compliant));
    // Nor is it a prefix of the AES-SIV-CMAC-256 key with the same
    // context: the TLS 1.3 exporter mixes the length in.
    let siv = client_keys(&pair, AeadAlgorithm::AesSivCmac256);
    assert_ne!(legacy.c2s.as_bytes(), &siv.c2s.as_bytes()[..16]);
}
