//! The real `sundial run` on loopback under faults (issue 6, items 1 and
//! 4): SIGKILL in a loop while keys rotate every second and are stored; a
//! key directory that stops taking writes under a running daemon (cookies
//! issued before each kill must still open afterwards); and an NTS-KE
//! listener out of file descriptors (EMFILE), which must back off instead
//! of spinning.
//!
//! Smaller than production: 6 kills, one rotation a second (so every run
//! lives through one or two rotations and stores), `stale-key-count = 64`
//! so the oldest cookie of the test is still within the kept keys.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::nts::{key_exchange, nts_query};
use common::{ChildGuard, TempDir, ca, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};
use sundial_proto::nts::aead::NtsKeys;
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};

const STALE_KEYS: usize = 64;

struct Daemon {
    ke: SocketAddr,
    ntp: SocketAddr,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

fn setup(dir: &TempDir, keyfile: &Path) -> Daemon {
    setup_with(dir, keyfile, "")
}

fn setup_with(dir: &TempDir, keyfile: &Path, ke_extra: &str) -> Daemon {
    let certs = ca::generate(dir.path());
    let ke: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let ntp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let config = dir.write(
        "sundial.toml",
        &common::unprivileged(
            dir,
            &format!(
                "[[server]]\nlisten = \"{ntp}\"\n\n[[nts-ke-server]]\nlisten = \"{ke}\"\n\
             certificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n{ke_extra}\n\
             [keyset]\nkey-storage-path = \"{}\"\nkey-rotation-interval = 1\n\
             stale-key-count = {STALE_KEYS}\n\n[synchronization]\nlocal-stratum = 1\n",
                certs.chain.display(),
                certs.key.display(),
                keyfile.display()
            ),
        ),
    );
    std::fs::write(dir.join("ca.path"), certs.ca.display().to_string()).unwrap();
    Daemon {
        ke,
        ntp,
        config,
        log: dir.join("sundial.log"),
    }
}

fn start(d: &Daemon, run: usize) -> ChildGuard {
    start_with_fd_limit(d, run, None)
}

/// Starts `sundial run`, under `ulimit -n limit` if given (the shell sets
/// the limit for itself and then execs the daemon, so nothing else in the
/// test runs short of descriptors).
fn start_with_fd_limit(d: &Daemon, run: usize, limit: Option<u32>) -> ChildGuard {
    let log = d.log.with_extension(format!("{run}.log"));
    let mut command = match limit {
        None => Command::new(env!("CARGO_BIN_EXE_sundial")),
        Some(n) => {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                .arg(env!("CARGO_BIN_EXE_sundial"));
            c
        }
    };
    let child = command
        .args(["run", "-c"])
        .arg(&d.config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = ChildGuard::new(format!("sundial run #{run}"), child, vec![log.clone()]);
    assert!(
        wait_for_tcp(d.ke, Duration::from_secs(10)),
        "KE server did not start"
    );
    // The key file is stored once the daemon has dropped its privileges,
    // a moment after its sockets open: "running" comes after both.
    let _ = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("sundial is running"))
            .then_some(())
    });
    guard
}

fn kill9(guard: &mut ChildGuard) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(i32::try_from(guard.id()).unwrap());
    kill(pid, Signal::SIGKILL).unwrap();
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(10), || guard
            .try_wait())
        .is_some(),
        "the daemon survived SIGKILL"
    );
}

fn ca_path(dir: &TempDir) -> std::path::PathBuf {
    std::fs::read_to_string(dir.join("ca.path")).unwrap().into()
}

#[test]
fn kill_9_during_rotations_never_loses_a_key_or_a_cookie() {
    const KILLS: usize = 6;
    let dir = TempDir::new("kill9");
    let keyfile = dir.join("keys/ntskeys");
    let d = setup(&dir, &keyfile);
    let ca = ca_path(&dir);
    let settings = KeySetConfig {
        rotation_interval_secs: 1,
        stale_key_count: STALE_KEYS,
    };
    // One (keys, cookie) per run, to replay after every later restart.
    let mut issued: Vec<(usize, NtsKeys, Vec<u8>)> = Vec::new();
    for run in 0..KILLS {
        let mut daemon = start(&d, run);
        // Every start loads (or creates) a valid keyset.
        let bytes = std::fs::read(&keyfile).unwrap();
        KeySet::decode(&bytes, settings).unwrap_or_else(|e| panic!("run {run}: {e}"));
        // Cookies from every earlier run still open.
        for (from, keys, cookie) in &issued {
            nts_query(d.ntp, keys, cookie)
                .unwrap_or_else(|e| panic!("run {run}, cookie of run {from}: {e}"));
        }
        let (keys, response) = key_exchange(d.ke, &ca);
        let cookies = response.cookies;
        // Kill at a different point of the rotation cycle each time:
        // 0 to 1.5 s after the key exchange, crossing stores.
        std::thread::sleep(Duration::from_millis(250 * run as u64));
        // The cookie issued just now opens before the kill too.
        nts_query(d.ntp, &keys, &cookies[0]).unwrap();
        issued.push((run, keys, cookies[1].clone()));
        kill9(&mut daemon);
    }
    let mut daemon = start(&d, KILLS);
    for (from, keys, cookie) in &issued {
        nts_query(d.ntp, keys, cookie)
            .unwrap_or_else(|e| panic!("final run, cookie of run {from}: {e}"));
    }
    // Half-written temporaries of killed stores are cleaned at start.
    let leftovers: Vec<_> = std::fs::read_dir(keyfile.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp."))
        .collect();
    assert!(leftovers.len() <= 1, "left behind: {leftovers:?}");
    daemon.terminate(Duration::from_secs(5));
}

#[test]
fn a_key_directory_that_refuses_writes_keeps_the_daemon_serving_and_says_so() {
    let dir = TempDir::new("rofs");
    let keydir = dir.join("keys");
    let keyfile = keydir.join("ntskeys");
    let d = setup(&dir, &keyfile);
    let ca = ca_path(&dir);
    let mut daemon = start(&d, 0);
    let (old_keys, old_response) = key_exchange(d.ke, &ca);
    let old_cookies = old_response.cookies;
    // As root, chmod does not stop writes; a file where the key directory
    // was does: the temporary file cannot be created, as on a read-only or
    // full file system, and the stored keys become unreachable.
    std::fs::remove_dir_all(&keydir).unwrap();
    std::fs::write(&keydir, b"").unwrap();
    let log = d.log.with_extension("0.log");
    let logged = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("cannot store rotated NTS cookie keys")
            .then_some(())
    });
    assert!(logged.is_some(), "no error logged about the failed store");
    assert!(daemon.try_wait().is_none(), "the daemon stopped");
    // Still serving with the keys in memory, after further rotations:
    // the old cookie opens, and a new key exchange works.
    std::thread::sleep(Duration::from_millis(1500));
    nts_query(d.ntp, &old_keys, &old_cookies[0]).unwrap();
    let (keys, response) = key_exchange(d.ke, &ca);
    nts_query(d.ntp, &keys, &response.cookies[0]).unwrap();
    daemon.terminate(Duration::from_secs(5));
}

/// CPU time (user + system) the process has used, in clock ticks (1/100 s
/// on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

#[test]
fn out_of_descriptors_the_ke_listener_backs_off_instead_of_spinning() {
    // 64 descriptors for the daemon: about 20 go to its runtime, sockets
    // and files, so 120 connections exhaust them while the table
    // (concurrent-connections = 512) still has room: accept() fails with
    // EMFILE, and the pending connections keep the socket readable.
    let dir = TempDir::new("emfile");
    let keyfile = dir.join("keys/ntskeys");
    let d = setup_with(
        &dir,
        &keyfile,
        "key-exchange-timeout-ms = 20000\nconcurrent-connections = 512\n",
    );
    let ca = ca_path(&dir);
    let mut daemon = start_with_fd_limit(&d, 0, Some(64));
    let pid = daemon.id();
    let crowd: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(d.ke).unwrap())
        .collect();
    // Wait for the first EMFILE, then measure CPU over 2 s of exhaustion.
    let log = d.log.with_extension("0.log");
    let warned = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("NTS-KE accept failed; backing off")
            .then_some(())
    });
    assert!(warned.is_some(), "no EMFILE warning");
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings = text.matches("NTS-KE accept failed; backing off").count();
    eprintln!("CPU over 2 s out of descriptors: {used} ticks; {warnings} warning(s)");
    // A spinning accept loop burns a whole core: ~200 ticks. Backing off
    // every 100 ms costs next to nothing.
    assert!(used < 40, "{used} ticks of CPU in 2 s: spinning");
    assert_eq!(warnings, 1, "one warning a minute, not one per retry");
    assert!(daemon.try_wait().is_none(), "the daemon stopped");
    // Descriptors come back when the crowd leaves; service resumes.
    drop(crowd);
    let served = poll_until(Duration::from_secs(10), Duration::from_millis(200), || {
        std::panic::catch_unwind(|| key_exchange(d.ke, &ca)).ok()
    });
    assert!(
        served.is_some(),
        "no key exchange after descriptors were freed"
    );
    daemon.terminate(Duration::from_secs(5));
}
