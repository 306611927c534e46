//! `sundial run`: start every configured service, supervise them, stop on
//! SIGTERM or SIGINT.
//!
//! Start-up does everything that can fail before it tells systemd it is
//! ready: the key file, certificates and every socket. Each failure names
//! its file or address.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sundial_proto::ntp::packet::ReferenceId;
use sundial_proto::server::ServerState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::acme::challenge::{self, ChallengeListener, Challenges};
use crate::acme::manager::{AcmeShared, Manager};
use crate::acme::store::Store;
use crate::clock::Clock;
use crate::clock::jump::{self, LedgerClock, StepLedger};
use crate::clock::linux::LinuxClock;
use crate::clock::observe::ObserveClock;
use crate::config::{self, AcmeConfig, Config, NtsKeServerConfig, SourceConfig};
use crate::discipline::{self, Discipline, Panicked, SharedState};
use crate::keystore::{KeyStore, KeyStoreError, SharedKeySet};
use crate::metrics::{self, MetricsStartError};
use crate::sandbox::{self, SandboxError};
use crate::server::ntp::{self, NtpStartError, StateFn};
use crate::server::nts_ke::{self, Announce, KeStartError, NtpTarget};
use crate::source;
use crate::status::{self, KeyRole, StatusStartError};
use crate::tls::ReloadableCert;

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
    #[error(transparent)]
    Status(#[from] StatusStartError),
    #[error(transparent)]
    Sources(#[from] source::SourceStartError),
    #[error(
        "[[nts-ke-server]] {0}: the [[server]] sections listen on several ports ({1}); set ntp-port to the one to announce"
    )]
    AmbiguousPort(SocketAddr, String),
    /// A source's `certificate-authority` cannot be used: the source would
    /// fail every key exchange, so the start stops here, naming the file.
    #[error("[[source]] {address}: {error}")]
    SourceTrust {
        address: String,
        error: Box<source::KeError>,
    },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("[[nts-ke-server]] {0}: {1}")]
    AcmeState(SocketAddr, crate::acme::store::StoreError),
    #[error("[[nts-ke-server]] {listen}: cannot listen for ACME challenges on {addr}: {source}")]
    AcmeChallenge {
        listen: SocketAddr,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A step beyond a panic threshold was refused: the daemon stops and
    /// must not be restarted blindly (exit code [`EXIT_PANIC`]).
    #[error(transparent)]
    Panic(#[from] Panicked),
}

/// Exit status after a refused panic step, distinct so that the systemd
/// unit can refuse to restart (`RestartPreventExitStatus=3`).
pub const EXIT_PANIC: u8 = 3;

/// What a KE server announces: its own `ntp-server` (or each of its
/// `ntp-servers` in turn), and `ntp-port` or, when that is unset, the port
/// every NTP listener shares if it is not 123 (so a test server on port
/// 12300 just works; config loading already refused the ambiguous case).
fn announce(config: &Config, ke: &NtsKeServerConfig) -> Result<Announce, RunError> {
    let port = match ke.ntp_port {
        Some(port) => Some(port),
        None => config::implicit_ntp_port(&config.servers)
            .map_err(|ports| RunError::AmbiguousPort(ke.listen, ports))?,
    };
    if ke.ntp_servers.is_empty() {
        return Ok(Announce::single(ke.ntp_server.clone(), port));
    }
    // Entries were checked at load; each may carry its own port.
    let targets = ke
        .ntp_servers
        .iter()
        .filter_map(|entry| config::HostPort::parse(entry, 0).ok())
        .map(|hp| NtpTarget {
            server: Some(hp.host),
            port: if hp.port == 0 { port } else { Some(hp.port) },
        })
        .collect();
    Ok(Announce { targets })
}

/// The server's own time state. Without sources it is a local clock at
/// `local-stratum` (16, unsynchronized, unless configured).
fn state_fn(config: &Config) -> StateFn {
    let stratum = config.synchronization.local_stratum;
    let id = ReferenceId(config.synchronization.local_reference_id());
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

/// The clock the discipline steers: the kernel's, or with `--observe` /
/// `[clock] observe-only` one that only records what it would have done;
/// its steps recorded in `ledger` so warn-on-jump knows them for ours.
fn clock(config: &Config, observe: bool, ledger: &StepLedger) -> Arc<dyn Clock> {
    let inner: Arc<dyn Clock> = if observe || config.clock.observe_only {
        tracing::info!("observe-only: measuring and serving, never changing the clock");
        Arc::new(ObserveClock::new())
    } else {
        Arc::new(LinuxClock::new())
    };
    Arc::new(LedgerClock::new(inner, ledger.clone()))
}

/// Reads every source's `certificate-authority` as its key exchanges will:
/// a typo in the path must stop the start, as a missing server key does,
/// rather than leave a source failing in the background for ever.
fn check_source_trust(config: &Config) -> Result<(), RunError> {
    for source in &config.sources {
        let (address, file, system_roots) = match source {
            SourceConfig::Nts(s) => (
                &s.address,
                s.certificate_authority.as_deref(),
                s.system_roots,
            ),
            SourceConfig::NtsPool(s) => (
                &s.address,
                s.certificate_authority.as_deref(),
                s.system_roots,
            ),
            _ => continue,
        };
        if file.is_none() {
            continue;
        }
        let trust = source::TrustAnchors { file, system_roots };
        if let Err(error) = source::client_config_at(trust, &source::CertTimeCheck::always(), None)
        {
            return Err(RunError::SourceTrust {
                address: address.to_string(),
                error: Box::new(error),
            });
        }
    }
    Ok(())
}

/// Runs until SIGTERM or SIGINT; returns once every task has stopped.
pub async fn run(config: Config, observe: bool) -> Result<(), RunError> {
    check_source_trust(&config)?;
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // Steps this daemon makes, so warn-on-jump reports only others'.
    let steps = StepLedger::new();

    // The process with a KE server owns the key file; an NTP-only process
    // with a key file reads the one its fleet's KE server writes.
    let owner = !config.nts_ke_servers.is_empty();
    let mut keys = match (owner, config.keyset.key_storage_path.is_some()) {
        // Stored only once every socket is bound (`commit` below): a start
        // that fails leaves no key file behind.
        (true, _) => Some(KeyStore::open_unsaved(&config.keyset)?),
        (false, true) => Some(KeyStore::open_reader(&config.keyset)?),
        (false, false) => None,
    };

    // With sources, what the NTP server says about our time comes from the
    // discipline; without, from local-stratum.
    let mut sources = None;
    let mut observed = status::Handles {
        started: Some(started),
        observe_only: observe || config.clock.observe_only,
        ..status::Handles::default()
    };
    let state = if config.sources.is_empty() {
        observed.local = Some(status::LocalClock {
            stratum: config.synchronization.local_stratum,
            reference_id: config.synchronization.local_reference_id(),
        });
        state_fn(&config)
    } else {
        let origin = Instant::now();
        let (events_tx, events_rx) = mpsc::channel(256);
        let running = source::spawn_sources(&config, origin, events_tx, cancel.clone())?;
        let shared = SharedState::new(ServerState {
            stratum: config.synchronization.local_stratum,
            ..ServerState::UNSYNCHRONIZED
        });
        // Start from the frequency the kernel already corrects (reading it
        // changes nothing), so a restart does not throw that away.
        let frequency = LinuxClock::new()
            .read_state()
            .map_or(0.0, |k| k.frequency_ppm);
        let discipline = Discipline::new(
            discipline::settings(&config),
            clock(&config, observe, &steps),
            shared.clone(),
            &running.handles,
            frequency,
            origin,
        )
        .with_synchronized_updates(running.synchronized_updates.clone());
        observed.sources = running.handles.iter().map(status::SourceInfo::of).collect();
        observed.discipline = Some(discipline.observe());
        sources = Some((
            running.tasks,
            tokio::spawn(discipline.run(events_rx, cancel.clone())),
        ));
        shared.state_fn()
    };
    let mut ntp_listeners = Vec::new();
    for server in &config.servers {
        ntp_listeners.push(ntp::bind(server, v6_only(&config, server.listen))?);
    }
    let mut ke_listeners = Vec::new();
    let mut acme_servers = Vec::new();
    for ke in &config.nts_ke_servers {
        match &ke.acme {
            None => ke_listeners.push(nts_ke::bind(ke, announce(&config, ke)?).await?),
            Some(acme) => {
                acme_servers.push(prepare_acme(ke, acme, announce(&config, ke)?).await?);
            }
        }
    }
    // ntp_listeners is built from config.servers, in order.
    observed.ntp_servers = (config.servers.iter().zip(&ntp_listeners))
        .map(|(server, listener)| (server.listen, listener.stats()))
        .collect();
    observed.nts_ke_servers = ke_listeners.iter().map(status::KeHandle::of).collect();
    observed
        .nts_ke_servers
        .extend(acme_servers.iter().map(AcmeServer::handle));
    observed.keyset = keys.as_ref().map(|store| status::KeysetHandle {
        keys: store.shared(),
        path: store.path().map(std::path::Path::to_owned),
        role: if owner {
            KeyRole::Owner
        } else {
            KeyRole::Reader
        },
    });
    if let Some(addr) = config.observability.metrics_exporter_listen {
        let handles = observed.clone();
        let exporter = metrics::bind(addr).await?;
        tasks.spawn(exporter.run(move || handles.snapshot(SystemTime::now()), cancel.clone()));
    }
    let sandboxed = Arc::clone(&observed.sandbox);
    if let Some(path) = &config.observability.observation_path {
        let listener = status::bind(path, config.observability.observation_permissions)?;
        tasks.spawn(listener.run(move || observed.snapshot(SystemTime::now()), cancel.clone()));
    }

    // Every socket is bound and every key and certificate read: give up
    // all that serving does not need (docs/security.md). The key file is
    // stored after, as the user that rotates it.
    let steers = !observe && config.steers_clock();
    let _ = sandboxed.set(sandbox::enter(&config, steers)?);

    // Every socket is bound: the start can no longer fail for want of
    // one, so a new keyset may be stored (before rotation can write too).
    if let Some(store) = keys.as_mut() {
        store.commit()?;
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
            for server in acme_servers {
                server.spawn(&mut tasks, store.shared(), &cancel);
            }
            tasks.spawn(store.clone().run_rotation(cancel.clone()));
        }
        Some(store) => {
            tasks.spawn(store.clone().run_follow(cancel.clone()));
        }
        None => {}
    }

    if config.synchronization.warn_on_jump {
        // Detection only, in observe mode too: the clock is never touched.
        tasks.spawn(jump::watch(steps.clone(), cancel.clone()));
    }

    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    // SIGHUP reloads certificates (each KE listener watches for it); the
    // daemon itself must never die of it, KE server or not.
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!("sundial is running");
    let (mut source_tasks, mut discipline) = match sources {
        Some((tasks, discipline)) => (tasks, Some(discipline)),
        None => (JoinSet::new(), None),
    };
    let mut outcome = Ok(());
    loop {
        let discipline_done = async {
            match discipline.as_mut() {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading certificates");
                continue;
            }
            Some(result) = tasks.join_next() => {
                tracing::error!(?result, "a service stopped unexpectedly: shutting down");
            }
            result = discipline_done => {
                discipline = None;
                match result {
                    Ok(Err(panicked)) => outcome = Err(RunError::Panic(panicked)),
                    other => tracing::error!(?other, "the discipline stopped unexpectedly: shutting down"),
                }
            }
        }
        break;
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    while source_tasks.join_next().await.is_some() {}
    if let Some(handle) = discipline {
        let _ = handle.await;
    }
    outcome
}

/// A KE server whose certificate comes from ACME, everything bound.
struct AcmeServer {
    pending: nts_ke::PendingKe,
    challenge: ChallengeListener,
    manager: Manager,
}

impl AcmeServer {
    fn handle(&self) -> status::KeHandle {
        let (listen, stats, certificate) = self.pending.handle();
        status::KeHandle {
            listen,
            stats,
            certificate,
            acme: Some(Arc::clone(&self.manager.shared)),
        }
    }

    /// The challenge listener and the life cycle start now; the KE
    /// listener once a certificate is in place.
    fn spawn(self, tasks: &mut JoinSet<()>, keys: SharedKeySet, cancel: &CancellationToken) {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tasks.spawn(self.challenge.run(cancel.clone()));
        tasks.spawn(self.manager.run(ready_tx, cancel.clone()));
        let pending = self.pending;
        let cancel = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                ready = ready_rx => {
                    if ready.is_err() {
                        return;
                    }
                    match pending.listen() {
                        Ok(listener) => listener.run(keys, cancel).await,
                        Err(e) => tracing::error!("{e}"),
                    }
                }
            }
        });
    }
}

/// Opens the state directory, binds the challenge listener and reserves
/// the KE address, all before the daemon reports ready (and before any
/// privilege drop). A stored certificate that is still good is served at
/// once; otherwise the KE listener waits for the first one.
async fn prepare_acme(
    ke: &NtsKeServerConfig,
    acme: &AcmeConfig,
    announce: Announce,
) -> Result<AcmeServer, RunError> {
    let listen = ke.listen;
    let store = Store::open(acme).map_err(|e| RunError::AcmeState(listen, e))?;
    let cert = Arc::new(ReloadableCert::empty());
    let challenges = Arc::new(Challenges::default());
    let addr = acme.challenge_addr();
    let challenge = challenge::bind(addr, acme.challenge, Arc::clone(&challenges))
        .await
        .map_err(|source| RunError::AcmeChallenge {
            listen,
            addr,
            source,
        })?;
    let pending = nts_ke::reserve(ke, announce, Arc::clone(&cert))?;
    let (policy, renew_after) = Manager::policy_from_env();
    let manager = Manager {
        config: acme.clone(),
        store,
        cert,
        challenges,
        shared: Arc::new(AcmeShared::new(acme)),
        policy,
        renew_after,
    };
    match manager.load_stored() {
        Ok(leaf) => tracing::info!(
            %listen,
            subject = %leaf.subject,
            "serving the stored ACME certificate; no new order until it is due"
        ),
        Err(why) => tracing::warn!(
            %listen,
            directory = manager.shared.directory,
            "NTS-KE server not started yet: {why}; obtaining a certificate over ACME first"
        ),
    }
    Ok(AcmeServer {
        pending,
        challenge,
        manager,
    })
}
