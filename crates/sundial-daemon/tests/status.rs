//! The observation socket in-process, in a temp dir: one JSON snapshot per
//! connection, the configured file mode, stale and foreign files at the
//! path, errors that name it, removal at shutdown; and the snapshot itself
//! from live handles.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::within;
use sundial_daemon::config::SourceMode;
use sundial_daemon::discipline::Observed;
use sundial_daemon::server::ntp::NtpStats;
use sundial_daemon::source::{SourceId, SourceStats};
use sundial_daemon::status::{
    self, ClockKind, Handles, KeyRole, KeysetHandle, LeapStatus, LocalClock, SourceInfo,
    SourceState, Status, StatusStartError,
};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::refclock::Rejection;
use sundial_sync::{Leap, NoSyncReason, SourceStatus, SyncStatus};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn set(counter: &AtomicU64, value: u64) {
    counter.store(value, Ordering::Relaxed);
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        within("observer stop", self.task).await.unwrap();
    }
}

fn serve(path: &Path, mode: u32, handles: Handles) -> Running {
    let listener = status::bind(path, mode).unwrap();
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(listener.run(move || handles.snapshot(SystemTime::now()), cancel.clone()));
    Running { cancel, task }
}

async fn read(path: &Path) -> Status {
    let mut stream = within("connect", UnixStream::connect(path)).await.unwrap();
    let mut bytes = Vec::new();
    within("read to close", stream.read_to_end(&mut bytes))
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn pure_server() -> (Handles, Arc<NtpStats>) {
    let stats = Arc::new(NtpStats::default());
    set(&stats.received, 3);
    set(&stats.nts, 2);
    let handles = Handles {
        started: Some(Instant::now()),
        ntp_servers: vec![("127.0.0.1:123".parse().unwrap(), Arc::clone(&stats))],
        local: Some(LocalClock {
            stratum: 1,
            reference_id: *b"GPS\0",
        }),
        ..Handles::default()
    };
    (handles, stats)
}

#[tokio::test]
async fn each_connection_gets_one_fresh_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observe");
    let (handles, stats) = pure_server();
    let running = serve(&path, 0o640, handles);

    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640, "mode {mode:o}");

    let status = read(&path).await;
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.system.clock, ClockKind::Local);
    // A local clock has nobody to measure it against.
    assert_eq!(status.clock_error_seconds, None);
    assert_eq!(status.clock_uncertainty_seconds, None);
    assert_eq!(status.virtual_correction_seconds, None);
    assert!(status.system.synchronized);
    assert_eq!(status.system.reference_id, "GPS");
    assert_eq!(status.system.leap, LeapStatus::None);
    assert_eq!(status.ntp_servers[0].received, 3);
    assert_eq!(status.ntp_servers[0].nts, 2);

    stats.received.fetch_add(1, Ordering::Relaxed);
    assert_eq!(read(&path).await.ntp_servers[0].received, 4);

    running.stop().await;
    assert!(!path.exists(), "the socket outlived the observer");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observe");
    // A daemon that died leaves its socket file behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let running = serve(&path, 0o666, pure_server().0);
    assert_eq!(read(&path).await.ntp_servers.len(), 1);

    // A second daemon with the same path must not steal the socket.
    let err = status::bind(&path, 0o666).unwrap_err();
    assert!(matches!(err, StatusStartError::InUse { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("observation socket {}: ", path.display())),
        "{err}"
    );
    // ... and the first still answers.
    assert_eq!(read(&path).await.ntp_servers.len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("observe");
    std::fs::write(&path, "not a socket").unwrap();
    let err = status::bind(&path, 0o666).unwrap_err();
    assert!(
        matches!(err, StatusStartError::NotASocket { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[tokio::test]
async fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/observe");
    let err = status::bind(&path, 0o666).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("observation socket {}: ", path.display())),
        "{err}"
    );
}

#[tokio::test]
async fn a_snapshot_joins_sources_discipline_and_keys() {
    let nts = SourceStats::default();
    set(&nts.cookies, 8);
    set(&nts.reach, 0o17);
    set(&nts.key_exchanges, 2);
    set(&nts.last_key_exchange, 1_700_000_000);
    let plain = SourceStats::default();
    set(&plain.cookies, 0);
    set(&plain.unanswered, 3);
    let pps = SourceStats::default();
    set(&pps.samples, 40);
    set(&pps.rejected[Rejection::Stale as usize], 2);
    set(&pps.missed_intervals, 5);
    let sources = vec![
        SourceInfo {
            id: SourceId(0),
            name: "nts a.example:4460".to_owned(),
            mode: SourceMode::Nts,
            stats: Arc::new(nts),
            path: None,
            interleave_requested: false,
        },
        SourceInfo {
            id: SourceId(1),
            name: "pool b.example slot 0".to_owned(),
            mode: SourceMode::Pool,
            stats: Arc::new(plain),
            path: None,
            interleave_requested: false,
        },
        SourceInfo {
            id: SourceId(2),
            name: "pps /dev/pps0".to_owned(),
            mode: SourceMode::Pps,
            stats: Arc::new(pps),
            path: Some("/dev/pps0".into()),
            interleave_requested: false,
        },
    ];
    let observed = tokio::sync::watch::Sender::new(Observed {
        sync: SyncStatus {
            synchronized: false,
            reason: Some(NoSyncReason::TooFewAgreeing {
                agreeing: 1,
                required: 2,
            }),
            stratum: 16,
            reference_id: *b"INIT",
            root_delay: 0.0,
            root_dispersion: 0.0,
            leap: Leap::Unsynchronized,
            offset: 0.0,
            estimated_offset: -4e-6,
            pending_slew: 1e-3,
            uncertainty: 1e-5,
            frequency_ppm: -3.25,
            sources: vec![
                SourceStatus {
                    id: sundial_sync::SourceId(0),
                    state: sundial_sync::SourceState::Candidate,
                    offset: 0.001,
                    delay: 0.01,
                    jitter: 0.0001,
                    reach: 1,
                    poll: 5,
                    unnumbered_pulses: 0,
                },
                SourceStatus {
                    id: sundial_sync::SourceId(2),
                    state: sundial_sync::SourceState::Unusable,
                    offset: 0.0,
                    delay: 0.0,
                    jitter: 0.0,
                    reach: 0xff,
                    poll: 5,
                    unnumbered_pulses: 38,
                },
            ],
        },
        servers: HashMap::from([(SourceId(0), "192.0.2.1:123".parse().unwrap())]),
        strata: HashMap::from([(SourceId(0), 2)]),
        virtual_correction: Some(0.003),
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keys = KeySet::generate(KeySetConfig::default(), now, &mut rand::rng());
    let current = keys.current_id();
    let handles = Handles {
        observe_only: true,
        sources,
        discipline: Some(observed.subscribe()),
        keyset: Some(KeysetHandle {
            keys: Arc::new(RwLock::new(keys)),
            path: None,
            role: KeyRole::Reader,
        }),
        ..Handles::default()
    };
    let status = handles.snapshot(SystemTime::now());

    assert!(status.observe_only);
    assert_eq!(status.system.clock, ClockKind::Sources);
    assert!(!status.system.synchronized);
    assert_eq!(
        status.system.reason.as_deref(),
        Some("too few sources agree: 1 agree, 2 required")
    );
    assert_eq!(status.system.reference_id, "INIT");
    assert_eq!(status.system.frequency_ppm, -3.25);
    // Observe-only: the virtual clock's error ignores the pending slew,
    // which it has already taken.
    assert_eq!(status.clock_error_seconds, Some(4e-6));
    assert_eq!(status.clock_uncertainty_seconds, Some(1e-5));
    assert_eq!(status.virtual_correction_seconds, Some(0.003));

    let (a, b) = (&status.sources[0], &status.sources[1]);
    assert_eq!(a.state, SourceState::Candidate);
    assert_eq!(a.address, Some("192.0.2.1:123".parse().unwrap()));
    assert_eq!(a.stratum, Some(2));
    assert_eq!(a.nts_cookies, Some(8));
    assert_eq!(a.reach, 0o17);
    assert_eq!(a.poll_exponent, 5);
    assert_eq!(a.offset_seconds, 0.001);
    assert_eq!(a.last_key_exchange, Some(1_700_000_000));
    assert_eq!(a.counters.key_exchanges, 2);
    // Not yet heard of by the synchronizer: unusable, no address, no jar.
    assert_eq!(b.state, SourceState::Unusable);
    assert_eq!(b.mode, "pool");
    assert_eq!(b.address, None);
    assert_eq!(b.nts_cookies, None);
    assert_eq!(b.last_key_exchange, None);
    assert_eq!(b.unanswered_polls, 3);
    assert_eq!((a.refclock.as_ref(), b.refclock.as_ref()), (None, None));

    // A PPS that no whole-time source numbers yet: its pulses are counted
    // as refused, beside the stale ones.
    let pps = &status.sources[2];
    assert_eq!(pps.mode, "pps");
    assert_eq!(pps.counters.samples, 40);
    let refclock = pps.refclock.as_ref().expect("a refclock row");
    assert_eq!(refclock.path, Path::new("/dev/pps0"));
    assert_eq!(
        refclock.rejected,
        [("stale".to_owned(), 2), ("unnumbered".to_owned(), 38)].into()
    );
    assert_eq!(refclock.missed_intervals, 5);

    let keyset = status.keyset.unwrap();
    assert_eq!(keyset.current_key_id, current);
    assert_eq!(keyset.role, KeyRole::Reader);
    assert!(keyset.keys >= 1 && keyset.next_rotation > now);
}
