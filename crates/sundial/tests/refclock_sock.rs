//! Stratum 1 from gpsd: the test plays gpsd, writing chrony-format SOCK
//! samples into the socket a running `sundial run --observe` created: good
//! samples, a burst of garbage, a jump, a leap warning. `sundial status`
//! shows the refclock selected, every refused datagram counted by reason,
//! and the daemon never stops. Then Debian's chronyd syncs to that sundial
//! over NTS and sees stratum 1 with reference id "GPS", as does `sundial
//! query`.
//!
//! Nothing touches this machine's clock: sundial only observes, chronyd
//! runs with -x.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TempDir, ca, chrony, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};
use sundial_daemon::status::{LeapStatus, SourceState, Status};

const SOCK_MAGIC: u32 = 0x534f_434b;
/// gpsd's serial time sits this far ahead of our clock in the test.
const OFFSET: f64 = 0.002;

/// One `struct sock_sample` as gpsd writes it on x86_64 and every other
/// 64-bit Linux: timeval (two 8-byte fields), double offset, int pulse,
/// int leap, int pad, int magic; 40 bytes in the machine's byte order.
fn sample(tv: Duration, offset: f64, pulse: i32, leap: i32, magic: u32) -> Vec<u8> {
    let secs = i64::try_from(tv.as_secs()).unwrap();
    let usec = i64::from(tv.subsec_micros());
    sample_raw(secs, usec, offset, pulse, leap, magic)
}

fn sample_raw(secs: i64, usec: i64, offset: f64, pulse: i32, leap: i32, magic: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&secs.to_ne_bytes());
    b.extend_from_slice(&usec.to_ne_bytes());
    b.extend_from_slice(&offset.to_ne_bytes());
    b.extend_from_slice(&pulse.to_ne_bytes());
    b.extend_from_slice(&leap.to_ne_bytes());
    b.extend_from_slice(&0i32.to_ne_bytes());
    b.extend_from_slice(&magic.to_ne_bytes());
    b
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// gpsd, sending a good sample every 100 ms (ten times its real rate, so
/// the test is quick) with a few µs of jitter and the leap indicator set
/// in `leap`, until dropped.
struct Gpsd {
    leap: Arc<AtomicI32>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Gpsd {
    fn start(path: &Path) -> Self {
        let leap = Arc::new(AtomicI32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (leap_, stop_, path) = (Arc::clone(&leap), Arc::clone(&stop), path.to_owned());
        let thread = thread::spawn(move || {
            let socket = UnixDatagram::unbound().unwrap();
            let mut i = 0u32;
            while !stop_.load(Ordering::Relaxed) {
                let jitter = f64::from(i % 7) * 1e-6 - 3e-6;
                let bytes = sample(
                    now(),
                    OFFSET + jitter,
                    0,
                    leap_.load(Ordering::Relaxed),
                    SOCK_MAGIC,
                );
                let _ = socket.send_to(&bytes, &path);
                i += 1;
                thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            leap,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Gpsd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls the status until `check` accepts it (30 s at most).
fn status_until(socket: &Path, what: &str, check: impl Fn(&Status) -> bool) -> Status {
    let mut last = None;
    let found = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let s = common::status(socket)?;
        let ok = check(&s);
        last = Some(s.clone());
        ok.then_some(s)
    });
    found.unwrap_or_else(|| panic!("{what}: never seen; last status: {last:#?}"))
}

fn config(
    dir: &TempDir,
    certs: &ca::CertFiles,
    sock: &Path,
    ntp_port: u16,
    ke_port: u16,
) -> String {
    format!(
        "[[source]]\nmode = \"sock\"\npath = \"{sock}\"\nprecision = 1e-3\n\n\
         [[server]]\nlisten = \"127.0.0.1:{ntp_port}\"\n\n\
         [[nts-ke-server]]\nlisten = \"127.0.0.1:{ke_port}\"\n\
         certificate-chain-path = \"{chain}\"\nprivate-key-path = \"{key}\"\n\n\
         [keyset]\nkey-storage-path = \"{keys}\"\n\n\
         [synchronization]\nminimum-agreeing-sources = 1\n\n\
         [observability]\nobservation-path = \"{observe}\"\n",
        sock = sock.display(),
        chain = certs.chain.display(),
        key = certs.key.display(),
        keys = dir.join("ntskeys").display(),
        observe = dir.join("observe").display(),
    )
}

#[test]
fn gpsd_makes_sundial_a_stratum_1_nts_server_that_chrony_follows() {
    let programs = chrony::programs();
    let dir = TempDir::new("gpsd");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let sock: PathBuf = dir.join("chrony.ttyS0.sock");
    let observe = dir.join("observe");
    let (mut sundial, log) = common::start_sundial(
        &dir,
        "sundial",
        &config(&dir, &certs, &sock, ntp_port, ke_port),
        true,
    );
    let ke = format!("127.0.0.1:{ke_port}").parse().unwrap();
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "NTS-KE port did not open"
    );
    // sundial made the socket before it started serving; gpsd may write to
    // it as sundial's user or group, nobody else.
    let mode = std::fs::metadata(&sock)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    // 1. Good samples: the refclock is selected, we serve stratum 1.
    let gpsd = Gpsd::start(&sock);
    let s = status_until(&observe, "the refclock selected", |s| {
        s.system.synchronized
            && s.sources
                .first()
                .is_some_and(|r| r.state == SourceState::Selected && r.counters.samples >= 10)
    });
    assert_eq!(s.system.stratum, 1, "{s:#?}");
    assert_eq!(s.system.reference_id, "GPS");
    assert_eq!(s.system.leap, LeapStatus::None);
    let source = &s.sources[0];
    assert_eq!(source.mode, "sock");
    assert_eq!(source.stratum, Some(0));
    let refclock = source.refclock.as_ref().expect("a refclock row");
    assert_eq!(refclock.path, sock);
    assert!(refclock.rejected.is_empty(), "{refclock:?}");
    // Observe-only: the virtual clock took gpsd's 2 ms.
    let correction = s.virtual_correction_seconds.unwrap();
    assert!((correction - OFFSET).abs() < 2e-4, "{s:#?}");

    // 2. A burst of garbage, each kind counted, nothing stops.
    let garbage = UnixDatagram::unbound().unwrap();
    let send = |bytes: &[u8]| garbage.send_to(bytes, &sock).map(drop).unwrap();
    let good = sample(now(), OFFSET, 0, 0, SOCK_MAGIC);
    for len in [0, 7, 39] {
        send(&good[..len]);
    }
    send(&[good.clone(), vec![0]].concat());
    send(&[0xa5; 200]);
    for magic in [0, 0x4b43_4f53, SOCK_MAGIC + 1] {
        send(&sample(now(), OFFSET, 0, 0, magic));
    }
    for offset in [f64::NAN, f64::INFINITY, 1e12] {
        send(&sample(now(), offset, 0, 0, SOCK_MAGIC));
    }
    send(&sample(now(), OFFSET, 1, 0, SOCK_MAGIC));
    send(&sample(now(), OFFSET, 0, 9, SOCK_MAGIC));
    let t = now();
    send(&sample_raw(
        t.as_secs() as i64,
        1_000_000,
        OFFSET,
        0,
        0,
        SOCK_MAGIC,
    ));
    for _ in 0..2 {
        send(&sample(
            now() - Duration::from_secs(60),
            OFFSET,
            0,
            0,
            SOCK_MAGIC,
        ));
    }
    let want: std::collections::BTreeMap<String, u64> = [
        ("length", 5),
        ("magic", 3),
        ("offset", 3),
        ("pulse", 1),
        ("leap", 1),
        ("timestamp", 1),
        ("stale", 2),
    ]
    .map(|(k, n)| (k.to_owned(), n))
    .into();
    let s = status_until(&observe, "every refused datagram counted", |s| {
        s.sources[0]
            .refclock
            .as_ref()
            .is_some_and(|r| r.rejected == want)
    });
    assert!(s.system.synchronized, "{s:#?}");
    let samples = s.sources[0].counters.samples;
    status_until(&observe, "samples after the garbage", |s| {
        s.sources[0].counters.samples > samples + 5
    });

    // 3. A jump: one sample half a second off is no reason to step.
    send(&sample(now(), 0.5, 0, 0, SOCK_MAGIC));
    thread::sleep(Duration::from_secs(1));
    let s = status_until(&observe, "still synchronized after the jump", |s| {
        s.system.synchronized && s.sources[0].state == SourceState::Selected
    });
    let correction = s.virtual_correction_seconds.unwrap();
    assert!((correction - OFFSET).abs() < 2e-4, "{s:#?}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("stepping the clock"), "{text}");

    // 4. gpsd announces a leap second: so do we.
    gpsd.leap.store(1, Ordering::Relaxed);
    status_until(&observe, "the leap warning", |s| {
        s.system.leap == LeapStatus::InsertSecond
    });
    gpsd.leap.store(0, Ordering::Relaxed);
    status_until(&observe, "the leap warning withdrawn", |s| {
        s.system.leap == LeapStatus::None
    });

    // 5. `sundial query` over NTS: stratum 1, reference id GPS.
    let out = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["query", "--json", "--ca"])
        .arg(&certs.ca)
        .arg(format!("localhost:{ke_port}"))
        .output()
        .unwrap();
    let query: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(query["ntp"]["authenticated"], true, "{query}");
    assert_eq!(query["ntp"]["stratum"], 1, "{query}");
    assert_eq!(query["ntp"]["reference_id"], "GPS", "{query}");

    // 6. chronyd as an NTS client of this stratum-1 server.
    let chronyd = chrony::start_client(
        &programs,
        &dir,
        &format!(
            "server localhost port {ntp_port} nts ntsport {ke_port} iburst minpoll 0 maxpoll 2"
        ),
        &certs.ca,
    );
    let seen = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let ntp = chronyd.ntpdata()?;
        let source = chronyd.sources()?;
        (ntp.authenticated && ntp.stratum == 1 && source.state == "*").then_some(ntp)
    });
    let ntp = seen.unwrap_or_else(|| {
        eprintln!("{}", chronyd.report());
        panic!("chronyd never selected sundial at stratum 1 over NTS");
    });
    assert_eq!(ntp.reference_id, u32::from_be_bytes(*b"GPS\0"));
    assert!(ntp.total_valid_rx >= 1);

    // The daemon outlived all of it, and stops cleanly.
    drop(gpsd);
    let stopped = sundial.terminate(Duration::from_secs(10));
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    assert!(!sock.exists(), "the socket outlived the daemon");
}
