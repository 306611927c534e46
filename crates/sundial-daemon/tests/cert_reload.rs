//! Certificate hot reload: replacing the files (in place, or by a symlink
//! switch as certbot does) changes the certificate new connections see
//! within seconds, a connection in progress is not dropped, a broken pair
//! leaves the old one serving, and SIGHUP reloads at once.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Ca, ca, ke_config, localhost, ntske_client, start_with, within};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use sundial_daemon::server::nts_ke::Announce;
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_client::{KeClient, KeClientProgress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// Writes a fresh leaf (CN = `cn`) and its key as `<name>.chain.pem` and
/// `<name>.key.pem` in `dir`; returns both paths and the leaf's DER.
fn leaf(ca: &Ca, dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let chain = dir.join(format!("{name}.chain.pem"));
    let key_path = dir.join(format!("{name}.key.pem"));
    std::fs::write(&chain, format!("{}{}", cert.pem(), ca.pem)).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (chain, key_path, cert.der().to_vec())
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(addr: SocketAddr, ca: &Ca) -> Stream {
    let tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let client = TlsConnector::from(ntske_client(&ca.der));
    within("TLS handshake", client.connect(localhost(), tcp))
        .await
        .unwrap()
}

fn served_leaf(stream: &Stream) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Runs a whole key exchange on an open connection; returns the cookies.
async fn key_exchange(mut stream: Stream) -> usize {
    let mut client = KeClient::new(&[AeadAlgorithm::AesSivCmac256]);
    stream.write_all(&client.request()).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = within("read", stream.read(&mut buf)).await.unwrap();
        assert_ne!(n, 0, "closed before the response ended");
        if let KeClientProgress::Done(response) = client.receive(&buf[..n]).unwrap() {
            return response.cookies.len();
        }
    }
}

/// Polls until a new connection is served `want`, for at most `within`.
async fn wait_for_leaf(addr: SocketAddr, ca: &Ca, want: &[u8], within: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if served_leaf(&connect(addr, ca).await) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "new certificate not served within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(chain: &Path, key: &Path) -> (SocketAddr, CancellationToken) {
    // A long exchange timeout: the connection held open across the swap
    // must outlive it on its own merits.
    let extra = "key-exchange-timeout-ms = 30000\n";
    let server = start_with(
        &ke_config(chain, key, "127.0.0.1:0", extra),
        Announce::default(),
    )
    .await;
    (server.addr, server.cancel)
}

#[tokio::test]
async fn replaced_files_are_served_within_seconds_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (chain1, key1, der1) = leaf(&ca, dir.path(), "one", "first");
    let live_chain = dir.path().join("chain.pem");
    let live_key = dir.path().join("key.pem");
    std::fs::copy(&chain1, &live_chain).unwrap();
    std::fs::copy(&key1, &live_key).unwrap();
    let (addr, cancel) = start(&live_chain, &live_key).await;

    let before = connect(addr, &ca).await;
    assert_eq!(served_leaf(&before), der1);

    // A renewal rewrites both files in place.
    let (chain2, key2, der2) = leaf(&ca, dir.path(), "two", "second");
    std::fs::copy(&chain2, &live_chain).unwrap();
    std::fs::copy(&key2, &live_key).unwrap();
    let took = wait_for_leaf(addr, &ca, &der2, Duration::from_secs(5)).await;
    eprintln!("in-place renewal served after {took:?}");

    // The connection opened before the swap still completes its exchange.
    assert_eq!(key_exchange(before).await, 8);

    // A broken pair (key of another certificate) keeps the current one.
    let (_, key3, _) = leaf(&ca, dir.path(), "three", "third");
    std::fs::copy(&key3, &live_key).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(served_leaf(&connect(addr, &ca).await), der2);
    cancel.cancel();
}

#[tokio::test]
async fn a_symlink_switch_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (chain1, key1, der1) = leaf(&ca, dir.path(), "one", "first");
    let (chain2, key2, der2) = leaf(&ca, dir.path(), "two", "second");
    let live_chain = dir.path().join("fullchain.pem");
    let live_key = dir.path().join("privkey.pem");
    std::os::unix::fs::symlink(&chain1, &live_chain).unwrap();
    std::os::unix::fs::symlink(&key1, &live_key).unwrap();
    let (addr, cancel) = start(&live_chain, &live_key).await;
    assert_eq!(served_leaf(&connect(addr, &ca).await), der1);

    // certbot points the live links at the new archive files.
    for (target, link) in [(&chain2, &live_chain), (&key2, &live_key)] {
        let tmp = dir.path().join("tmp-link");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, link).unwrap();
    }
    let took = wait_for_leaf(addr, &ca, &der2, Duration::from_secs(5)).await;
    eprintln!("symlink switch served after {took:?}");
    cancel.cancel();
}

#[tokio::test]
async fn sighup_reloads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let (chain1, key1, _) = leaf(&ca, dir.path(), "one", "first");
    let (addr, cancel) = start(&chain1, &key1).await;
    // Give the watcher a moment to install its SIGHUP handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Overwrite with a new pair but keep the metadata change invisible to
    // polling long enough that only SIGHUP can explain a fast reload.
    let (chain2, key2, der2) = leaf(&ca, dir.path(), "two", "second");
    std::fs::copy(&chain2, &chain1).unwrap();
    std::fs::copy(&key2, &key1).unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let took = wait_for_leaf(addr, &ca, &der2, Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_millis(900),
        "SIGHUP reload took {took:?}"
    );
    cancel.cancel();
}
