//! `certificate-time-check-after`: a client whose clock is ten years ahead
//! (simulated: rustls is handed a skewed time, the machine's clock is never
//! touched) fails NTS-KE without the option, succeeds with it while the
//! daemon has had fewer than N synchronized clock updates, and fails again
//! after. Names and chains are still checked while times are not.
mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{KeServer, Leaf, Pki, STEP, localhost, now_secs, pki_with, start};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use sundial_daemon::server::nts_ke::Announce;
use sundial_daemon::source::cert_time::DeferredTimeVerifier;
use sundial_daemon::source::{
    CertTimeCheck, KeError, SynchronizedUpdates, TrustAnchors, client_config_at, key_exchange_using,
};
use sundial_proto::nts::aead::AeadAlgorithm;

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);

fn this_year() -> i32 {
    // Close enough for certificate dates a year or more away.
    1970 + i32::try_from(now_secs() / 31_556_952).unwrap()
}

/// A CA and a `localhost` leaf valid from last year to next year.
fn pki() -> Pki {
    pki_with(Leaf {
        names: vec!["localhost".to_owned()],
        not_before: Some((this_year() - 1, 1, 1)),
        not_after: Some((this_year() + 1, 12, 31)),
        ..Leaf::default()
    })
}

/// The real time shifted by a fixed amount: the client's clock.
#[derive(Debug)]
struct Ahead(Duration);

impl TimeProvider for Ahead {
    fn current_time(&self) -> Option<UnixTime> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(UnixTime::since_unix_epoch(now + self.0))
    }
}

fn ten_years_ahead() -> Arc<dyn TimeProvider> {
    Arc::new(Ahead(TEN_YEARS))
}

fn at(offset_ahead: Duration) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now_secs()) + offset_ahead)
}

fn webpki(pki: &Pki) -> Arc<dyn ServerCertVerifier> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap()
}

#[test]
fn verifier_defers_time_checks_until_n_synchronized_updates() {
    let pki = pki();
    let updates = SynchronizedUpdates::new();
    let deferred =
        DeferredTimeVerifier::new(webpki(&pki), CertTimeCheck::after(2, updates.clone()));
    let always = DeferredTimeVerifier::new(webpki(&pki), CertTimeCheck::always());
    let verify = |v: &DeferredTimeVerifier, name: &ServerName<'_>, now: UnixTime| {
        v.verify_server_cert(&pki.leaf, &[], name, &[], now)
    };
    // A correct clock: both accept.
    assert!(verify(&always, &localhost(), at(Duration::ZERO)).is_ok());
    assert!(verify(&deferred, &localhost(), at(Duration::ZERO)).is_ok());
    // Ten years ahead: expired, unless deferred.
    let future = at(TEN_YEARS);
    let e = verify(&always, &localhost(), future).unwrap_err();
    assert!(format!("{e:?}").contains("Expired"), "{e:?}");
    assert!(verify(&deferred, &localhost(), future).is_ok());
    // Booted in 1970: not valid yet, unless deferred.
    let epoch = UnixTime::since_unix_epoch(Duration::from_secs(1));
    assert!(verify(&always, &localhost(), epoch).is_err());
    assert!(verify(&deferred, &localhost(), epoch).is_ok());
    // The name is still checked while times are not.
    let other = ServerName::try_from("ntp.example.org").unwrap();
    assert!(verify(&deferred, &other, future).is_err());
    // So is the chain: another CA's verifier refuses the leaf.
    let stranger = DeferredTimeVerifier::new(
        webpki(&self::pki()),
        CertTimeCheck::after(2, updates.clone()),
    );
    assert!(verify(&stranger, &localhost(), future).is_err());
    // One update: still deferred; the second ends the window.
    updates.increment();
    assert!(verify(&deferred, &localhost(), future).is_ok());
    updates.increment();
    let e = verify(&deferred, &localhost(), future).unwrap_err();
    assert!(format!("{e:?}").contains("Expired"), "{e:?}");
}

async fn ke(running: &KeServer, pki: &Pki, check: &CertTimeCheck) -> Result<(), KeError> {
    let config = client_config_at(
        TrustAnchors::with_system(Some(&pki.ca_path)),
        check,
        Some(ten_years_ahead()),
    )?;
    key_exchange_using(
        "localhost",
        running.addr.port(),
        config,
        STEP,
        &AeadAlgorithm::SUPPORTED,
    )
    .await
    .map(drop)
}

#[tokio::test]
async fn key_exchange_with_a_clock_ten_years_ahead() {
    let pki = pki();
    let running = start(&pki, "", Announce::default()).await;
    // Without the option: the certificate looks expired.
    let e = ke(&running, &pki, &CertTimeCheck::always())
        .await
        .unwrap_err();
    assert!(matches!(e, KeError::Certificate { .. }), "{e:?}");
    assert!(e.needs_operator());
    // With certificate-time-check-after = 1: works until one update.
    let updates = SynchronizedUpdates::new();
    let check = CertTimeCheck::after(1, updates.clone());
    ke(&running, &pki, &check).await.unwrap();
    ke(&running, &pki, &check).await.unwrap();
    updates.increment();
    let e = ke(&running, &pki, &check).await.unwrap_err();
    assert!(matches!(e, KeError::Certificate { .. }), "{e:?}");
    running.cancel.cancel();
}

#[test]
fn config_key_is_parsed_and_bounded() {
    use sundial_daemon::config::{self, ConfigError};
    let file = std::path::Path::new("/etc/sundial/test.toml");
    let source = "[[source]]\nmode = \"nts\"\naddress = \"nts.example.com\"\n";
    let default = config::parse(source, file).unwrap();
    assert_eq!(default.synchronization.certificate_time_check_after, 0);
    let set = config::parse(
        &format!("{source}[synchronization]\ncertificate-time-check-after = 3\n"),
        file,
    )
    .unwrap();
    assert_eq!(set.synchronization.certificate_time_check_after, 3);
    for (value, words) in [("1001", "at most 1000"), ("-1", "")] {
        let text = format!("{source}[synchronization]\ncertificate-time-check-after = {value}\n");
        match config::parse(&text, file) {
            Err(ConfigError::Invalid(d)) => {
                assert_eq!(d.key, "synchronization.certificate-time-check-after", "{d}");
                assert_eq!(d.line, 5, "{d}");
                assert!(d.message.contains(words), "{d}");
            }
            other => panic!("{value}: {other:?}"),
        }
    }
}
