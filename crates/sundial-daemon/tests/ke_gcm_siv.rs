//! AEAD_AES_128_GCM_SIV through the daemon's NTS-KE server and client on
//! loopback, with and without chrony's record 1024: which algorithm is
//! chosen, which exporter context the keys come from, and that the 72-byte
//! cookies open to exactly the keys the client derived.

mod common;

use common::{KeServer, Pki, STEP, localhost, ntske_client, pki, start};
use sundial_daemon::server::nts_ke::Announce;
use sundial_daemon::source::key_exchange;
use sundial_proto::nts::aead::{AeadAlgorithm, NtsKeys};
use sundial_proto::nts::cookie::cookie_len;
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress, KeResponse};
use sundial_proto::nts::ke_record::{Decoded, RecordBody, decode};
use sundial_proto::nts::key_export::{KeyContext, derive_keys_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const GCM: AeadAlgorithm = AeadAlgorithm::Aes128GcmSiv;
const SIV: AeadAlgorithm = AeadAlgorithm::AesSivCmac256;

fn same(a: &NtsKeys, b: &NtsKeys) -> bool {
    a.algorithm() == b.algorithm()
        && a.c2s.as_bytes() == b.c2s.as_bytes()
        && a.s2c.as_bytes() == b.s2c.as_bytes()
}

/// Every cookie is `cookie_len` bytes and opens to `keys`.
fn assert_cookies_open(running: &KeServer, cookies: &[Vec<u8>], keys: &NtsKeys) {
    assert!(!cookies.is_empty());
    let keyset = running.keys.read().unwrap();
    for cookie in cookies {
        assert_eq!(Some(cookie.len()), cookie_len(keys.algorithm()));
        let opened = keyset.open_cookie(cookie).unwrap();
        assert!(same(&opened, keys), "cookie holds other keys");
    }
}

/// One exchange with the proto `KeClient` (optionally without record
/// 1024, as chrony 4.4 to 4.6.0): the response, whether its raw records
/// carried 1024, and the keys for both exporter contexts.
async fn raw_exchange(
    running: &KeServer,
    pki: &Pki,
    client: KeClient,
) -> (KeResponse, bool, NtsKeys, NtsKeys) {
    let tcp = TcpStream::connect(running.addr).await.unwrap();
    let mut tls = tokio::time::timeout(
        STEP,
        TlsConnector::from(ntske_client(&pki.ca)).connect(localhost(), tcp),
    )
    .await
    .unwrap()
    .unwrap();
    let mut client = client;
    tls.write_all(&client.request()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(STEP, tls.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let KeClientProgress::Done(response) = client.receive(&bytes).unwrap() else {
        panic!("incomplete response");
    };
    let mut echoed = false;
    let mut rest = &bytes[..];
    while let Ok(Decoded::Complete { record, consumed }) = decode(rest) {
        echoed |= record.body == RecordBody::CompliantGcmSivExport;
        rest = &rest[consumed..];
    }
    let conn = tls.get_ref().1;
    let derive = |ctx| {
        derive_keys_with(0, response.algorithm, ctx, |label, context, out| {
            conn.export_keying_material(out, label.as_bytes(), Some(context))
                .map(drop)
        })
        .unwrap()
    };
    let compliant = derive(KeyContext::Compliant);
    let legacy = derive(KeyContext::LegacyGcmSiv);
    (response, echoed, compliant, legacy)
}

#[tokio::test]
async fn daemon_client_and_server_agree_on_compliant_gcm_siv_with_72_byte_cookies() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let outcome = key_exchange(
        "localhost",
        running.addr.port(),
        Some(&pki.ca_path),
        STEP,
        &[GCM, SIV],
    )
    .await
    .unwrap();
    assert_eq!(outcome.algorithm, GCM);
    assert_eq!(outcome.key_context, KeyContext::Compliant);
    assert!(outcome.fallback_keys.is_none(), "the server echoed 1024");
    assert_eq!(outcome.cookies.len(), 8);
    assert!(outcome.cookies.iter().all(|c| c.len() == 72));
    assert_eq!(cookie_len(GCM), Some(72));
    assert!(
        cookie_len(SIV).unwrap() > 72,
        "GCM-SIV cookies are the small ones"
    );
    assert_cookies_open(&running, &outcome.cookies, &outcome.keys);
    running.cancel.cancel();
}

#[tokio::test]
async fn record_1024_is_echoed_and_keys_are_compliant() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let (response, echoed, compliant, legacy) =
        raw_exchange(&running, &pki, KeClient::new(&[GCM])).await;
    assert_eq!(response.algorithm, GCM);
    assert!(echoed);
    assert_eq!(response.key_context, KeyContext::Compliant);
    assert_cookies_open(&running, &response.cookies, &compliant);
    assert!(!same(&compliant, &legacy));
    running.cancel.cancel();
}

#[tokio::test]
async fn chrony_4_4_style_client_offering_gcm_siv_alone_gets_legacy_keys() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    let old = KeClient::new(&[GCM]).without_compliant_gcm_siv_record();
    let (response, echoed, _, legacy) = raw_exchange(&running, &pki, old).await;
    assert_eq!(response.algorithm, GCM);
    assert!(!echoed);
    // What chrony 4.4 to 4.6.0 derive, and what the cookies hold.
    assert_eq!(response.key_context, KeyContext::LegacyGcmSiv);
    assert_cookies_open(&running, &response.cookies, &legacy);
    running.cancel.cancel();
}

#[tokio::test]
async fn a_client_without_record_1024_offering_more_is_steered_off_gcm_siv() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    // chrony 4.4 to 4.6.0 offer [30, 15] by default.
    let old = KeClient::new(&[GCM, SIV]).without_compliant_gcm_siv_record();
    let (response, echoed, compliant, _) = raw_exchange(&running, &pki, old).await;
    assert_eq!(response.algorithm, SIV);
    assert!(!echoed);
    assert_cookies_open(&running, &response.cookies, &compliant);
    running.cancel.cancel();
}
