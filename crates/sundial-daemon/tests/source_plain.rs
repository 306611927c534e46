//! Plain `server` and `pool` sources against our own NTP server on
//! loopback: measurements flow, a pool never gives two slots one address,
//! and `ignore` is honoured.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::within;
use sundial_daemon::config;
use sundial_daemon::server::ntp::{self, StateFn};
use sundial_daemon::source::{SourceEvent, SourceId, SourceStatus, spawn_sources};
use sundial_proto::ntp::packet::ReferenceId;
use sundial_proto::server::ServerState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A plain NTP server on 127.0.0.1; returns its port.
fn ntp_server(cancel: &CancellationToken) -> u16 {
    let cfg = config::parse(
        "[[server]]\nlisten = \"127.0.0.1:0\"\n",
        Path::new("test.toml"),
    )
    .unwrap();
    let listener = ntp::bind(&cfg.servers[0], false).unwrap();
    let port = listener.local_addr().unwrap().port();
    let state: StateFn = Arc::new(|now| ServerState::local(2, ReferenceId(*b"TEST"), now));
    tokio::spawn(listener.run(None, state, cancel.clone()));
    port
}

fn config_with(sources: &str) -> config::Config {
    let text = format!(
        "[source-defaults]\npoll-interval-limits = {{ min = -6, max = -6 }}\ninitial-poll-interval = -6\n{sources}"
    );
    config::parse(&text, Path::new("test.toml")).unwrap()
}

#[tokio::test]
async fn a_server_source_measures_and_a_pool_slot_never_doubles_up() {
    let cancel = CancellationToken::new();
    let port = ntp_server(&cancel);
    // One address behind the pool: slot 0 takes it, slot 1 finds none.
    let config = config_with(&format!(
        "[[source]]\nmode = \"server\"\naddress = \"127.0.0.1:{port}\"\n\
         [[source]]\nmode = \"pool\"\naddress = \"127.0.0.1:{port}\"\ncount = 2\n"
    ));
    let (tx, mut rx) = mpsc::channel(64);
    let mut sources =
        spawn_sources(&config, Instant::now(), tx, cancel.clone()).expect("no refclock to open");
    assert_eq!(sources.handles.len(), 3);

    let mut measured = [0usize; 3];
    let mut slot1_failed = false;
    while measured[0] < 3 || measured[1] + measured[2] < 3 || !slot1_failed {
        match within("event", rx.recv()).await.unwrap() {
            SourceEvent::Measurement(SourceId(id), m) => {
                assert!(m.offset.abs() < 0.010, "offset {}", m.offset);
                assert_eq!(m.stratum, 2);
                measured[id as usize] += 1;
            }
            SourceEvent::Status(SourceId(id), SourceStatus::ResolveFailed { error, .. }) => {
                assert!(id >= 1, "{error}");
                assert!(error.contains("used by another slot"), "{error}");
                slot1_failed = true;
            }
            SourceEvent::Status(_, SourceStatus::Polling { server }) => {
                assert_eq!(server.port(), port);
            }
            // The idle slot is reported unreachable.
            SourceEvent::Unreachable(SourceId(id)) => assert!(id >= 1),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        measured[1] == 0 || measured[2] == 0,
        "only one pool slot may poll the one address: {measured:?}"
    );
    cancel.cancel();
    while within("tasks end", sources.tasks.join_next())
        .await
        .is_some()
    {}
}

#[tokio::test]
async fn a_pool_ignores_the_addresses_it_is_told_to() {
    let cancel = CancellationToken::new();
    let port = ntp_server(&cancel);
    let config = config_with(&format!(
        "[[source]]\nmode = \"pool\"\naddress = \"127.0.0.1:{port}\"\ncount = 1\nignore = [\"127.0.0.1\"]\n"
    ));
    let (tx, mut rx) = mpsc::channel(64);
    let mut sources =
        spawn_sources(&config, Instant::now(), tx, cancel.clone()).expect("no refclock to open");
    match within("event", rx.recv()).await.unwrap() {
        SourceEvent::Status(_, SourceStatus::ResolveFailed { .. }) => {}
        other => panic!("{other:?}"),
    }
    cancel.cancel();
    while within("tasks end", sources.tasks.join_next())
        .await
        .is_some()
    {}
}
