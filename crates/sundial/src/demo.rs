//! `sundial demo`: NTS on this machine, end to end, in ten seconds and no
//! configuration. It runs the daemon's own building blocks: a throwaway CA
//! from `sundial ca`, the NTS-KE and NTP servers of `sundial run` on
//! 127.0.0.1 ephemeral ports, and an NTS source of them whose measurements
//! go through the real synchronizer to an observe-only clock. It prints
//! what happens as it happens, then a status table.
//!
//! Nothing leaves 127.0.0.1, the clock is never changed (the clock the
//! synchronizer steers is [`ObserveClock`]), and every file lives in a
//! fresh private temporary directory that is removed at the end.

mod report;

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sundial_daemon::clock::Clock;
use sundial_daemon::clock::observe::ObserveClock;
use sundial_daemon::config::{self, Config};
use sundial_daemon::discipline;
use sundial_daemon::keystore::KeyStore;
use sundial_daemon::server::ntp::{self, StateFn};
use sundial_daemon::server::nts_ke::{self, Announce};
use sundial_daemon::source::{self, SourceEvent, SourceStatus};
use sundial_proto::ntp::packet::ReferenceId;
use sundial_proto::nts::cookie::cookie_len;
use sundial_proto::server::ServerState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ca;
use report::{Log, Summary};

/// Longest `--seconds`: a demo, not a server.
const MAX_SECONDS: u64 = 3600;

/// How long the tasks get to stop once cancelled, before the temporary
/// directory is removed anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Arguments of `sundial demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long to run before printing the status table (Ctrl-C ends it
    /// sooner).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    seconds: u64,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("cannot create a temporary directory: {0}")]
    TempDir(io::Error),
    #[error("{}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("cannot generate the throwaway certificates: {0}")]
    Ca(String),
    #[error("the demo's own configuration does not load (a bug): {0}")]
    Config(String),
    #[error("cannot start the servers: {0}")]
    Start(String),
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(io::Error),
}

/// `sundial demo`: runs, prints, returns the exit code (0 once at least
/// one authenticated sample arrived, 1 otherwise).
pub fn run(args: &DemoArgs) -> u8 {
    // The daemon's pieces log through tracing; shown only when asked for,
    // so the demo's own lines stay readable.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(io::stderr)
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sundial demo: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let mut log = Log::new(io::stdout());
    match runtime.block_on(demo(Duration::from_secs(args.seconds), &mut log)) {
        Ok(summary) if summary.samples > 0 => 0,
        Ok(_) => {
            eprintln!("sundial demo: no authenticated sample arrived; something is wrong");
            1
        }
        Err(e) => {
            eprintln!("sundial demo: {e}");
            1
        }
    }
}

/// The TOML of the demo's server: the same file format a sysadmin writes.
fn server_toml(dir: &Path) -> String {
    let path = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    format!(
        "[[server]]\n\
         listen = \"127.0.0.1:0\"\n\n\
         [[nts-ke-server]]\n\
         listen = \"127.0.0.1:0\"\n\
         certificate-chain-path = {}\n\
         private-key-path = {}\n\n\
         [keyset]\n\
         key-storage-path = {}\n\n\
         [synchronization]\n\
         local-stratum = 1\n",
        path("server-chain.pem"),
        path("server.key"),
        path("cookie-keys"),
    )
}

/// The TOML of the demo's client: one NTS source polled every second
/// (2^0 s), so ten seconds show ten samples.
fn client_toml(dir: &Path, ke: SocketAddr) -> String {
    format!(
        "[[source]]\n\
         mode = \"nts\"\n\
         address = \"{ke}\"\n\
         certificate-authority = {:?}\n\n\
         [source-defaults]\n\
         poll-interval-limits = {{ min = 0, max = 0 }}\n\
         initial-poll-interval = 0\n\n\
         [synchronization]\n\
         minimum-agreeing-sources = 1\n",
        dir.join("ca.pem").display().to_string(),
    )
}

fn parse(text: &str, name: &str) -> Result<Config, DemoError> {
    config::parse(text, Path::new(name)).map_err(|e| DemoError::Config(e.to_string()))
}

/// Writes the CA and server files with the modes `sundial ca` gives them.
fn write_certificates(dir: &Path) -> Result<(), DemoError> {
    let files = ca::generate_pem("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], 2)
        .map_err(|e| DemoError::Ca(e.to_string()))?;
    for (name, contents, mode) in files {
        let path = dir.join(name);
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(contents.as_bytes()));
        written.map_err(|source| DemoError::Write { path, source })?;
    }
    Ok(())
}

async fn demo(duration: Duration, log: &mut Log<impl Write>) -> Result<Summary, DemoError> {
    log.banner(&format!(
        "sundial demo: an NTS server and an NTS client on this machine, for {} s.\n\
         Nothing leaves 127.0.0.1; the clock is not changed; Ctrl-C stops it early.",
        duration.as_secs()
    ));
    let dir = tempfile::Builder::new()
        .prefix("sundial-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let dir_path = dir.path().to_owned();
    write_certificates(&dir_path)?;
    log.line(&format!(
        "throwaway CA and certificate for localhost/127.0.0.1 in {}",
        dir_path.display()
    ));

    let cancel = CancellationToken::new();
    let result = run_demo(duration, &dir_path, &cancel, log).await;
    // Whatever happened, nothing may keep running on the directory.
    cancel.cancel();
    let shown = dir_path.display().to_string();
    match dir.close() {
        Ok(()) => log.line(&format!("removed {shown}")),
        Err(e) => log.line(&format!("could not remove {shown}: {e}")),
    }
    result
}

/// Starts everything, watches until `duration` or Ctrl-C, prints the
/// table, stops everything.
async fn run_demo(
    duration: Duration,
    dir: &Path,
    cancel: &CancellationToken,
    log: &mut Log<impl Write>,
) -> Result<Summary, DemoError> {
    let server = parse(&server_toml(dir), "(demo server)")?;
    let (Some(ntp_config), Some(ke_config)) =
        (server.servers.first(), server.nts_ke_servers.first())
    else {
        return Err(DemoError::Config("no server sections".to_owned()));
    };
    let keys = KeyStore::open(&server.keyset).map_err(|e| DemoError::Start(e.to_string()))?;
    let ntp_listener = ntp::bind(ntp_config, false).map_err(|e| DemoError::Start(e.to_string()))?;
    let ntp_addr = ntp_listener
        .local_addr()
        .map_err(|e| DemoError::Start(e.to_string()))?;
    // The port is only known now that it is bound, so the KE server is
    // told it directly rather than through `ntp-port` in the file.
    let announce = Announce::single(None, Some(ntp_addr.port()));
    let ke_listener = nts_ke::bind(ke_config, announce)
        .await
        .map_err(|e| DemoError::Start(e.to_string()))?;
    let ke_addr = ke_listener.local_addr();
    let (ntp_stats, ke_stats) = (ntp_listener.stats(), ke_listener.stats());

    let mut tasks = tokio::task::JoinSet::new();
    // A stratum-1 server on the local clock, as `local-stratum = 1` makes
    // `sundial run` without sources.
    let state: StateFn = Arc::new(|now| ServerState::local(1, ReferenceId(*b"DEMO"), now));
    tasks.spawn(ntp_listener.run(Some(keys.shared()), state, cancel.clone()));
    tasks.spawn(ke_listener.run(keys.shared(), cancel.clone()));
    log.line(&format!(
        "NTS-KE server on {ke_addr} (TLS 1.3), NTP server on {ntp_addr}"
    ));

    let client = parse(&client_toml(dir, ke_addr), "(demo client)")?;
    let origin = Instant::now();
    let (events_tx, mut events) = mpsc::channel(64);
    let mut sources = source::spawn_sources(&client, origin, events_tx, cancel.clone())
        .map_err(|e| DemoError::Start(e.to_string()))?;
    // The daemon's own discipline loop, on an observe-only clock; the demo
    // sees every source event first, prints it, then hands it on.
    let clock = Arc::new(ObserveClock::new());
    let shared = discipline::SharedState::new(ServerState::UNSYNCHRONIZED);
    let discipline = discipline::Discipline::new(
        discipline::settings(&client),
        Arc::clone(&clock) as Arc<dyn Clock>,
        shared,
        &sources.handles,
        0.0,
        origin,
    );
    let mut observed = discipline.observe();
    let (forward, forwarded) = mpsc::channel(64);
    let mut loop_task = tokio::spawn(discipline.run(forwarded, cancel.clone()));
    let mut summary = Summary::default();
    let mut synchronized = false;

    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            () = &mut deadline => break,
            signal = &mut ctrl_c => {
                signal.map_err(DemoError::Signal)?;
                log.line("Ctrl-C: stopping");
                break;
            }
            ended = &mut loop_task => {
                if let Ok(Err(panicked)) = ended {
                    log.line(&format!("the synchronizer stopped: {panicked}"));
                }
                break;
            }
            changed = observed.changed() => {
                if changed.is_err() {
                    break;
                }
                let status = observed.borrow_and_update().sync.clone();
                if status.synchronized && !synchronized {
                    log.line(&format!(
                        "synchronized: the synchronizer selected the source (stratum {}); \
                         `sundial run` would now steer the clock, the demo only records it",
                        status.stratum
                    ));
                }
                synchronized = status.synchronized;
                continue;
            }
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        match &event {
            SourceEvent::Status(_, status) => describe_status(log, &mut summary, status),
            SourceEvent::Measurement(_, m) => {
                summary.samples += 1;
                // An NTS source hands on only authenticated answers.
                log.line(&format!(
                    "sample {}: offset {:+.6} s  delay {:.6} s  stratum {}  (NTS-authenticated)",
                    summary.samples, m.offset, m.delay, m.stratum
                ));
            }
            SourceEvent::Unreachable(_) => log.line("the source is unreachable"),
            // SourceEvent is non-exhaustive: newer events are not shown.
            _ => {}
        }
        if forward.send(event).await.is_err() {
            break;
        }
    }

    let status = observed.borrow().sync.clone();
    report::table(
        log,
        &status,
        &sources.handles,
        &summary,
        &ntp_stats,
        &ke_stats,
        &clock.actions(),
    );
    // Every task watches `cancel`; the grace lets them close their files
    // before the directory goes (a straggler is aborted when its JoinSet
    // drops).
    cancel.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sources.tasks.join_next().await.is_some() {}
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(summary)
}

fn describe_status(log: &mut Log<impl Write>, summary: &mut Summary, status: &SourceStatus) {
    match status {
        SourceStatus::KeyExchanged {
            ke_server,
            ntp_server,
            algorithm,
            cookies,
        } => {
            summary.key_exchanges += 1;
            summary.cookies_at_ke = *cookies;
            // Our server's cookies have a fixed length per algorithm.
            let length =
                cookie_len(*algorithm).map_or_else(String::new, |len| format!(" of {len} bytes"));
            log.line(&format!(
                "key exchange with {ke_server}: TLS 1.3, {}, {cookies} cookies{length}, NTP server {ntp_server}",
                algorithm
            ));
        }
        SourceStatus::KeyExchangeFailed { error, .. } => {
            log.line(&format!("key exchange failed: {error}"));
        }
        SourceStatus::ResolveFailed { error, .. } => {
            log.line(&format!("cannot reach the NTP server: {error}"));
        }
        other => log.line(&format!("source: {other:?}")),
    }
}
