//! Least privilege and the filesystem sandbox, seen from outside: a
//! `sundial run --observe` started as root ends up as `nobody` with no
//! capabilities and no-new-privs on every thread (/proc/PID/status), and
//! `sundial status` says so. After the drop it still serves NTS-KE and NTS
//! (`sundial query`), stores and rotates its keys, and reloads certificates
//! from where they were; with Landlock, a certificate moved to a directory
//! the configuration never named cannot be read. All of it under the
//! system-call filter, and a call outside the filter's list ends the
//! process. A steering daemon (its clock writes made no-ops) keeps
//! CAP_SYS_TIME and nothing else, whether it drops from root itself or is
//! started unprivileged with ambient capabilities, as the systemd unit
//! does.
//!
//! The first test needs root (CI and the development machines run tests as root); skips
//! with a message otherwise.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{NOBODY, TempDir, ca, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};
use sundial_daemon::sandbox::ProcStatus;

fn euid_is_root() -> bool {
    ProcStatus::read_self().is_ok_and(|s| s.uid == 0)
}

fn mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Certificates under `dir`, readable by nobody's group as a package
/// would set them up (root:sundial 0640 for the key).
fn certs_in(dir: &Path) -> ca::CertFiles {
    fs::create_dir_all(dir).unwrap();
    mode(dir, 0o755);
    let certs = ca::generate(dir);
    chown(&certs.key, Some(0), Some(NOBODY)).unwrap();
    mode(&certs.key, 0o640);
    mode(&certs.chain, 0o644);
    certs
}

/// Points `link` at `target`, replacing it atomically as a renewal tool does.
fn repoint(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).unwrap();
    fs::rename(&tmp, link).unwrap();
}

fn log_has(log: &Path, what: &str, count: usize) -> bool {
    fs::read_to_string(log).is_ok_and(|text| text.matches(what).count() >= count)
}

fn hup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -HUP {pid}");
}

#[test]
fn started_as_root_it_ends_up_unprivileged_sandboxed_and_still_works() {
    if !euid_is_root() {
        eprintln!("SKIPPED: needs root to show the privilege drop");
        return;
    }
    let dir = TempDir::new("sandbox");
    mode(dir.path(), 0o755);
    let cert_dir = dir.join("certs");
    let first = certs_in(&cert_dir.join("a"));
    let chain = cert_dir.join("chain.pem");
    let key = cert_dir.join("key.pem");
    symlink(&first.chain, &chain).unwrap();
    symlink(&first.key, &key).unwrap();
    let keys = dir.join("keys");
    fs::create_dir(&keys).unwrap();
    chown(&keys, Some(NOBODY), Some(NOBODY)).unwrap();
    mode(&keys, 0o700);
    // Its own directory, as /run/sundial: the socket's directory is
    // writable to the daemon (it removes the socket at exit).
    let run = dir.join("run");
    fs::create_dir(&run).unwrap();
    chown(&run, Some(NOBODY), Some(NOBODY)).unwrap();
    let socket = run.join("observe");
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let config = format!(
        "[[server]]\nlisten = \"127.0.0.1:{ntp_port}\"\n\n\
         [[nts-ke-server]]\nlisten = \"127.0.0.1:{ke_port}\"\n\
         certificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n\n\
         [keyset]\nkey-storage-path = \"{}\"\nkey-rotation-interval = 1\n\n\
         [synchronization]\nlocal-stratum = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n\n\
         [security]\nuser = \"nobody\"\n",
        chain.display(),
        key.display(),
        keys.join("ntskeys").display(),
        socket.display(),
    );
    let (mut daemon, log) = common::start_sundial(&dir, "sandboxed", &config, true);
    let pid = daemon.id();
    assert!(
        wait_for_tcp(
            format!("127.0.0.1:{ke_port}").parse().unwrap(),
            Duration::from_secs(20)
        ),
        "the KE port never opened"
    );
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        common::status(&socket).filter(|s| s.sandbox.is_some())
    })
    .expect("status never showed the sandbox");

    // Every thread: nobody, no capabilities at all, no-new-privs.
    let tasks: Vec<_> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tasks.len() > 1, "one thread only: the test shows nothing");
    for task in &tasks {
        let text = fs::read_to_string(task.join("status")).unwrap();
        assert!(
            text.contains(&format!("\nUid:\t{NOBODY}\t{NOBODY}\t{NOBODY}\t{NOBODY}\n")),
            "{}: {text}",
            task.display()
        );
        let s = ProcStatus::parse(&text);
        assert_eq!((s.cap_permitted, s.cap_effective), (0, 0), "{text}");
        assert!(s.no_new_privs, "{text}");
    }

    // `sundial status` says the same.
    let sandbox = status.sandbox.expect("sandbox in status");
    assert_eq!(sandbox.user, "nobody");
    assert_eq!(sandbox.uid, NOBODY);
    assert!(sandbox.capabilities.is_empty(), "{sandbox:?}");
    assert!(sandbox.no_new_privs);
    // Everything below runs under the system-call filter, in kill mode,
    // where the kernel (or a container) lets a filter be installed.
    if sandbox.seccomp.starts_with("off") {
        eprintln!(
            "seccomp: {} here: this run shows the paths without the filter",
            sandbox.seccomp
        );
    } else {
        assert_eq!(sandbox.seccomp, "filter (kill)", "{sandbox:?}");
    }
    let landlock = sandbox.landlock.starts_with("enforced");
    if !landlock {
        eprintln!(
            "Landlock: {} here: its part of the test is skipped",
            sandbox.landlock
        );
    }
    let text = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Sandbox: user nobody (uid 65534), capabilities none, no-new-privs on"),
        "{text}"
    );

    // The key file was first stored after the drop, and rotations store it
    // again: it is nobody's.
    let stored = keys.join("ntskeys");
    let first_id = status.keyset.as_ref().map(|k| k.current_key_id);
    let rotated = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let id = common::status(&socket)?.keyset?.current_key_id;
        (Some(id) != first_id).then_some(id)
    });
    assert!(rotated.is_some(), "no key rotation seen");
    assert_eq!(fs::metadata(&stored).unwrap().uid(), NOBODY);

    // NTS-KE and NTS-protected NTP, served by the unprivileged daemon.
    let query = |ca: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sundial"))
            .arg("query")
            .arg("--ca")
            .arg(ca)
            .arg(format!("localhost:{ke_port}"))
            .output()
            .unwrap()
    };
    let out = query(&first.ca);
    assert!(
        out.status.success(),
        "query: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A renewal beside the first certificate reloads.
    let second = certs_in(&cert_dir.join("b"));
    repoint(&chain, &second.chain);
    repoint(&key, &second.key);
    hup(pid);
    assert!(
        poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
            log_has(&log, "NTS-KE certificate reloaded", 1).then_some(())
        })
        .is_some(),
        "no reload after the drop: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let out = query(&second.ca);
    assert!(
        out.status.success(),
        "query after reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A certificate in a directory the configuration never named: DAC
    // lets nobody read it, Landlock does not.
    if landlock {
        let elsewhere = certs_in(&dir.join("elsewhere"));
        repoint(&chain, &elsewhere.chain);
        repoint(&key, &elsewhere.key);
        hup(pid);
        assert!(
            poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
                log_has(&log, "still serving the previous certificate", 1).then_some(())
            })
            .is_some(),
            "Landlock let the daemon read another directory: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            log_has(&log, "ermission denied", 1),
            "{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        // Still serving the certificate it had.
        assert!(query(&second.ca).status.success());
    }
    // SIGTERM still ends it cleanly, and the unprivileged daemon removes
    // its observation socket.
    let exit = daemon.terminate(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    assert!(!socket.exists(), "the observation socket was left behind");
}

#[test]
fn a_system_call_outside_the_allow_list_ends_the_process() {
    use std::os::unix::process::ExitStatusExt;
    if !fs::read_to_string("/proc/self/status").is_ok_and(|t| t.contains("\nSeccomp:")) {
        eprintln!("SKIPPED: this kernel has no seccomp");
        return;
    }
    let dir = TempDir::new("seccomp");
    let config = dir.write(
        "sundial.toml",
        &format!(
            "[[server]]\nlisten = \"127.0.0.1:{}\"\n[synchronization]\nlocal-stratum = 1\n\
             [security]\nlandlock = false\n",
            free_udp_port()
        ),
    );
    let log = dir.join("sundial.log");
    // The test-only trigger: once sandboxed, the daemon calls execve.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["run", "--observe", "-c"])
        .arg(&config)
        .env("SUNDIAL_TEST_FORBIDDEN_SYSCALL", "execve")
        .env("RUST_LOG", "info")
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let exit = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    });
    if log_has(&log, "cannot install the system-call filter", 1) {
        eprintln!(
            "SKIPPED: the kernel (or a container) refuses the filter: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    let Some(exit) = exit else {
        let _ = child.kill();
        panic!(
            "still running after execve: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    };
    assert_eq!(
        exit.signal(),
        Some(nix::sys::signal::Signal::SIGSYS as i32),
        "{exit:?}: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(log_has(&log, "trying execve", 1));
}

/// benches/accuracy/noclockset.c built into `dir`: as LD_PRELOAD, it turns
/// every clock-writing libc call into a read, so a steering daemon under
/// test can never change this machine's clock.
fn clock_shim(dir: &TempDir) -> std::path::PathBuf {
    let shim = dir.join("noclockset.so");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/accuracy/noclockset.c");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&shim)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("run cc (the Rust toolchain's linker needs it too)");
    assert!(built.success(), "cannot build the clock shim");
    shim
}

/// A steering client (no `--observe`) whose one source is a port nobody
/// answers on, its status socket in `dir/run` (nobody's).
fn steering_config(dir: &TempDir, extra: &str) -> (String, std::path::PathBuf) {
    let run = dir.join("run");
    fs::create_dir(&run).unwrap();
    chown(&run, Some(NOBODY), Some(NOBODY)).unwrap();
    let socket = run.join("observe");
    let config = format!(
        "[[source]]\nmode = \"server\"\naddress = \"127.0.0.1:{}\"\n\n\
         [synchronization]\nminimum-agreeing-sources = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n{extra}",
        free_udp_port(),
        socket.display(),
    );
    (config, socket)
}

/// Every thread of `pid` is nobody with exactly CAP_SYS_TIME and
/// no-new-privs, runs with the shim loaded, and status says the same.
fn assert_only_sys_time(pid: u32, socket: &Path, log: &Path) {
    let status = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
        common::status(socket).filter(|s| s.sandbox.is_some())
    })
    .unwrap_or_else(|| {
        panic!(
            "status never showed the sandbox: {}",
            fs::read_to_string(log).unwrap_or_default()
        )
    });
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains("noclockset.so"), "the shim is not loaded");
    let only_sys_time = 1u64 << sundial_daemon::sandbox::CAP_SYS_TIME;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let text = fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(
            text.contains(&format!("\nUid:\t{NOBODY}\t{NOBODY}\t{NOBODY}\t{NOBODY}\n")),
            "{text}"
        );
        let s = ProcStatus::parse(&text);
        assert_eq!(
            (s.cap_permitted, s.cap_effective),
            (only_sys_time, only_sys_time),
            "{text}"
        );
        assert!(s.no_new_privs, "{text}");
    }
    let sandbox = status.sandbox.expect("sandbox in status");
    assert_eq!(sandbox.user, "nobody", "{sandbox:?}");
    assert_eq!(sandbox.capabilities, ["cap_sys_time"], "{sandbox:?}");
    // The start-up log says what it holds.
    assert!(
        log_has(log, "privileges dropped user=nobody", 1)
            && log_has(log, "capabilities=[\"cap_sys_time\"]", 1),
        "{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// The one capability a steering daemon keeps. The daemon here steers (no
/// `--observe`), but it can never change this machine's clock: its only
/// source is a port nobody answers on, and every clock-writing libc call
/// goes through [`clock_shim`].
#[test]
fn steering_it_keeps_cap_sys_time_and_nothing_else() {
    if !euid_is_root() {
        eprintln!("SKIPPED: needs root to show what a steering daemon keeps");
        return;
    }
    let dir = TempDir::new("sandbox-steer");
    mode(dir.path(), 0o755);
    let shim = clock_shim(&dir);
    let (config, socket) = steering_config(&dir, "\n[security]\nuser = \"nobody\"\n");
    let (mut daemon, log) = common::start_sundial_with_env(
        &dir,
        "steering",
        &config,
        false,
        &[("LD_PRELOAD", shim.to_str().unwrap())],
    );
    assert_only_sys_time(daemon.id(), &socket, &log);
    let exit = daemon.terminate(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

/// Started as packaging/sundial.service starts it: already its own user
/// (nobody here), with CAP_SYS_TIME and CAP_NET_BIND_SERVICE as ambient
/// capabilities, no-new-privs set (`setpriv` plays systemd). It keeps
/// CAP_SYS_TIME, drops the other once its sockets are bound, and logs and
/// reports what it holds.
#[test]
fn started_unprivileged_by_the_unit_it_keeps_only_what_it_needs() {
    if !euid_is_root() {
        eprintln!("SKIPPED: needs root to start the daemon as another user");
        return;
    }
    let dir = TempDir::new("sandbox-unit");
    mode(dir.path(), 0o755);
    let shim = clock_shim(&dir);
    let (config, socket) = steering_config(&dir, "");
    let config = dir.write("sundial.toml", &config);
    let log = dir.join("sundial.log");
    let caps = "+sys_time,+net_bind_service";
    let child = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .args(["--inh-caps", caps, "--ambient-caps", caps])
        .args(["--bounding-set", &format!("-all,{caps}"), "--no-new-privs"])
        .arg(env!("CARGO_BIN_EXE_sundial"))
        .args(["run", "-c"])
        .arg(&config)
        .env("LD_PRELOAD", &shim)
        .env("RUST_LOG", "info")
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("run setpriv (util-linux)");
    let mut daemon = common::ChildGuard::new("sundial run (as the unit)", child, vec![log.clone()]);
    assert_only_sys_time(daemon.id(), &socket, &log);
    let exit = daemon.terminate(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}
