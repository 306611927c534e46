//! `system-roots = false` (chrony's `nosystemcert`): a source trusts its
//! `certificate-authority` and nothing else, not even a server whose CA is
//! in the system's trust store.
//!
//! The system store is made to hold a test CA by pointing `SSL_CERT_FILE`
//! (which rustls-native-certs reads) at it. The store is read once per
//! process and changing the environment of a running test is unsafe, so
//! the test runs itself again as a child process with that variable set.

mod common;

use std::process::Command;

use common::{pki, within};
use sundial_daemon::config::{self, SourceConfig};
use sundial_daemon::server::nts_ke::Announce;
use sundial_daemon::source::{
    CertTimeCheck, KE_TIMEOUT, KeError, TrustAnchors, client_config_at, key_exchange_using,
};
use sundial_proto::nts::aead::AeadAlgorithm;

/// Set in the child: the CA file the parent put in `SSL_CERT_FILE`'s
/// place, which signs the child's server.
const CHILD: &str = "SUNDIAL_TEST_SYSTEM_ROOTS_CHILD";

#[test]
fn system_roots_false_trusts_only_the_certificate_authority() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    // The child makes its own PKI; the "system" CA must be the one that
    // signs its server, so the child writes it where the parent says.
    let dir = tempfile::tempdir().unwrap();
    let system_ca = dir.path().join("system-ca.pem");
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args(["--exact", "child_checks_both_settings", "--nocapture"])
        .env(CHILD, &system_ca)
        .env("SSL_CERT_FILE", &system_ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn child_checks_both_settings() {
    let Some(system_ca) = std::env::var_os(CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The server's CA goes into the "system" store before anything in
        // this process reads it; the source's own file holds another CA.
        let server = pki();
        std::fs::copy(&server.ca_path, &system_ca).unwrap();
        let other = pki();
        let ke = common::start(&server, "", Announce::default()).await;
        let port = ke.addr.port();
        let exchange = |system_roots: bool| {
            let config = client_config_at(
                TrustAnchors {
                    file: Some(&other.ca_path),
                    system_roots,
                },
                &CertTimeCheck::always(),
                None,
            )
            .unwrap();
            within(
                "KE",
                key_exchange_using(
                    "localhost",
                    port,
                    config,
                    KE_TIMEOUT,
                    &AeadAlgorithm::SUPPORTED,
                ),
            )
        };
        // Default: the system roots are trusted besides the file.
        assert_eq!(exchange(true).await.unwrap().outcome.cookies.len(), 8);
        // system-roots = false: only the file, which did not sign it.
        let error = exchange(false).await.unwrap_err();
        assert!(matches!(error, KeError::Certificate { .. }), "{error:?}");
        ke.stop().await;
    });
}

#[test]
fn the_key_is_parsed_and_needs_a_certificate_authority() {
    let base = "[[source]]\nmode = \"nts\"\naddress = \"time.example\"\n";
    let config = config::parse(
        &format!("{base}certificate-authority = \"/ca.pem\"\nsystem-roots = false\n[synchronization]\nminimum-agreeing-sources = 1\n"),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let Some(SourceConfig::Nts(source)) = config.sources.first() else {
        panic!("an nts source");
    };
    assert!(!source.system_roots);
    let default = config::parse(base, std::path::Path::new("t.toml")).unwrap();
    let Some(SourceConfig::Nts(source)) = default.sources.first() else {
        panic!("an nts source");
    };
    assert!(source.system_roots, "default unchanged");

    let error = config::parse(
        &format!("{base}system-roots = false\n"),
        std::path::Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("source[0].system-roots"), "{error}");
    assert!(error.contains("certificate-authority"), "{error}");

    let error = config::parse(
        "[[source]]\nmode = \"server\"\naddress = \"a\"\nsystem-roots = false\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("not allowed for mode"), "{error}");
}
