//! `sundial run`: start every configured service, supervise them, stop on
//! SIGTERM or SIGINT.
//!
//! Start-up does everything that can fail before it tells systemd it is
//! ready: the key file, certificates and every socket. Each failure names
//! its file or address.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use sundial_proto::ntp::packet::ReferenceId;
use sundial_proto::server::ServerState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, NtsKeServerConfig};
use crate::keystore::{KeyStore, KeyStoreError};
use crate::metrics::{self, MetricsStartError};
use crate::server::ntp::{self, NtpStartError, StateFn};
use crate::server::nts_ke::{self, Announce, KeStartError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error(transparent)]
    Ntp(#[from] NtpStartError),
    #[error(transparent)]
    NtsKe(#[from] KeStartError),
    #[error(transparent)]
    Metrics(#[from] MetricsStartError),
    #[error(
        "[[nts-ke-server]] {0}: the [[server]] sections listen on several ports ({1}); set ntp-port to the one to announce"
    )]
    AmbiguousPort(SocketAddr, String),
    #[error(
        "[[source]] is configured, but this version of sundial only serves time (NTS client support is not built yet)"
    )]
    SourcesUnsupported,
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// What a KE server announces: its own `ntp-server`, and `ntp-port` or,
/// when that is unset, the port every NTP listener shares if it is not 123
/// (so a test server on port 12300 just works; config loading already
/// refused the ambiguous case).
fn announce(config: &Config, ke: &NtsKeServerConfig) -> Result<Announce, RunError> {
    let port = match ke.ntp_port {
        Some(port) => Some(port),
        None => config::implicit_ntp_port(&config.servers)
            .map_err(|ports| RunError::AmbiguousPort(ke.listen, ports))?,
    };
    Ok(Announce {
        server: ke.ntp_server.clone(),
        port,
    })
}

/// The server's own time state. Without sources it is a local clock at
/// `local-stratum` (16, unsynchronized, unless configured).
fn state_fn(config: &Config) -> StateFn {
    let stratum = config.synchronization.local_stratum;
    let id = config
        .synchronization
        .reference_id
        .map_or(ReferenceId(*b"LOCL"), |r| ReferenceId(r.0));
    Arc::new(move |now| ServerState::local(stratum, id, now))
}

/// An IPv6 wildcard listener is dual-stack unless an IPv4 wildcard on the
/// same port is configured too (then both would collide).
fn v6_only(config: &Config, addr: SocketAddr) -> bool {
    addr.is_ipv6()
        && config.servers.iter().any(|s| {
            s.listen.is_ipv4() && s.listen.ip().is_unspecified() && s.listen.port() == addr.port()
        })
}

/// Runs until SIGTERM or SIGINT; returns once every task has stopped.
pub async fn run(config: Config, observe: bool) -> Result<(), RunError> {
    if !config.sources.is_empty() {
        return Err(RunError::SourcesUnsupported);
    }
    // No clock is ever steered without sources, so `observe` changes nothing
    // yet; it is accepted so scripts can use it from day one.
    let _ = observe;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();

    // The process with a KE server owns the key file; an NTP-only process
    // with a key file reads the one its fleet's KE server writes.
    let owner = !config.nts_ke_servers.is_empty();
    let keys = match (owner, config.keyset.key_storage_path.is_some()) {
        (true, _) => Some(KeyStore::open(&config.keyset)?),
        (false, true) => Some(KeyStore::open_reader(&config.keyset)?),
        (false, false) => None,
    };

    let state = state_fn(&config);
    let mut ntp_listeners = Vec::new();
    for server in &config.servers {
        ntp_listeners.push(ntp::bind(server, v6_only(&config, server.listen))?);
    }
    let mut ke_listeners = Vec::new();
    for ke in &config.nts_ke_servers {
        ke_listeners.push(nts_ke::bind(ke, announce(&config, ke)?).await?);
    }
    if let Some(addr) = config.observability.metrics_exporter_listen {
        let handles = metrics::Handles {
            // ntp_listeners is built from config.servers, in order.
            ntp_servers: (config.servers.iter().zip(&ntp_listeners))
                .map(|(server, listener)| (server.listen, listener.stats()))
                .collect(),
            nts_ke_servers: ke_listeners.iter().map(metrics::KeHandle::of).collect(),
        };
        let exporter = metrics::bind(addr).await?;
        tasks.spawn(exporter.run(move || handles.snapshot(SystemTime::now()), cancel.clone()));
    }

    for listener in ntp_listeners {
        let shared = keys.as_ref().map(KeyStore::shared);
        tasks.spawn(listener.run(shared, Arc::clone(&state), cancel.clone()));
    }
    match &keys {
        Some(store) if owner => {
            for listener in ke_listeners {
                tasks.spawn(listener.run(store.shared(), cancel.clone()));
            }
            tasks.spawn(store.clone().run_rotation(cancel.clone()));
        }
        Some(store) => {
            tasks.spawn(store.clone().run_follow(cancel.clone()));
        }
        None => {}
    }

    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!("sundial is running");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        Some(result) = tasks.join_next() => {
            tracing::error!(?result, "a service stopped unexpectedly: shutting down");
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
