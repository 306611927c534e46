//! Helpers for the integration tests of the `sundial` binary: private temp
//! dirs, free loopback ports, a throwaway CA, and guards that never leave a
//! child process running (they kill it on drop, also when a test panics,
//! and then print its logs if the test failed).
// Each test binary compiles this module and uses its own subset of it.
#![allow(dead_code)]

pub mod ca;
pub mod chrony;
pub mod nts;
pub mod pebble;

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A private directory (mode 0700) under the system temp dir, unique per
/// process and call. Removed on drop when the test passed; kept (and its
/// path printed) when it failed, for a post-mortem.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // Short: the chronyd control socket path must fit in sun_path.
        let name = format!(
            "sd-{label}-{}-{nanos:x}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let dir = Self { path };
        dir.private_subdir(".");
        dir
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates `rel` (and parents) with mode 0700; returns its path.
    pub fn private_subdir(&self, rel: &str) -> PathBuf {
        let path = self.path.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path.join(rel);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A loopback UDP port nobody uses right now (bind port 0, read, release).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
    socket.local_addr().expect("local address").port()
}

/// A loopback TCP port nobody uses right now.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port on 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

/// Polls `check` every `interval` until it returns `Some`, or `None` after
/// `timeout`.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(interval);
    }
}

/// Runs `cmd` to its end (stdin empty, stdout and stderr captured),
/// killing it and failing the test if it is still running after `limit`:
/// a hung command never hangs the test run.
pub fn output_within(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let exited = poll_until(limit, Duration::from_millis(20), || {
        child.try_wait().expect("wait").map(drop)
    });
    if exited.is_none() {
        let _ = child.kill();
        panic!("{what} still running after {limit:?}");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what} output: {e}"))
}

/// True once `addr` accepts a TCP connection, false after `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    poll_until(timeout, Duration::from_millis(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .ok()
            .map(drop)
    })
    .is_some()
}

/// A child process that is killed (SIGKILL) and reaped when the guard
/// drops, so a failing test never leaves it running. When the test failed,
/// the drop also prints the child's log files.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    logs: Vec<PathBuf>,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child, logs: Vec<PathBuf>) -> Self {
        Self {
            name: name.into(),
            child: Some(child),
            logs,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if the child has exited (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; the status, or
    /// `None` if it is still running (the guard still kills it on drop).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let child = self.child.as_mut()?;
        let pid = i32::try_from(child.id()).expect("pid fits in i32");
        if child.try_wait().ok().flatten().is_none() {
            kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
        }
        let status = poll_until(timeout, Duration::from_millis(10), || {
            child.try_wait().ok().flatten()
        })?;
        self.child = None;
        Some(status)
    }

    /// The logs of this child, for a failure message.
    pub fn dump_logs(&self) {
        for log in &self.logs {
            let mut text = String::new();
            let _ = fs::File::open(log).and_then(|mut f| f.read_to_string(&mut text));
            eprintln!(
                "----- {} ({}) -----\n{}----- end of {} -----",
                self.name,
                log.display(),
                text,
                log.display()
            );
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            self.dump_logs();
        }
    }
}

/// Writes `config` to `dir/NAME.toml` and starts `sundial run` on it
/// (`--observe` when asked: no test may change the clock), its log in
/// `dir/NAME.log` at info level. The guard kills it and shows the log if
/// the test fails.
pub fn start_sundial(
    dir: &TempDir,
    name: &str,
    config: &str,
    observe: bool,
) -> (ChildGuard, PathBuf) {
    start_sundial_with_env(dir, name, config, observe, &[])
}

/// The user a test daemon started as root drops to, as a packaged one
/// drops to `sundial`.
pub const NOBODY: u32 = 65534;

/// Started as root (CI and the development machines), a test daemon runs
/// as a real one does: it drops to a user of its own (`nobody` here; the
/// package creates `sundial`), under the system-call filter and Landlock.
/// What it must reach after the drop is handed to that user, as the
/// package's directories are: the test directory itself (its key file,
/// observation socket and configuration live there) and the files at its
/// top (certificates and keys). Subdirectories (chronyd's among them) are
/// left as they are. A configuration with its own `[security]` section
/// is left alone.
pub fn unprivileged(dir: &TempDir, config: &str) -> String {
    use std::os::unix::fs::{MetadataExt, chown};
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root || config.contains("[security]") {
        return config.to_owned();
    }
    let hand_over = |path: &Path| {
        chown(path, Some(NOBODY), Some(NOBODY))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    };
    hand_over(dir.path());
    for entry in fs::read_dir(dir.path()).expect("read the test directory") {
        let entry = entry.expect("a directory entry");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            hand_over(&entry.path());
        }
    }
    format!("{config}\n[security]\nuser = \"nobody\"\n")
}

/// [`start_sundial`] with extra environment variables (test knobs).
pub fn start_sundial_with_env(
    dir: &TempDir,
    name: &str,
    config: &str,
    observe: bool,
    env: &[(&str, &str)],
) -> (ChildGuard, PathBuf) {
    let config = unprivileged(dir, config);
    let path = dir.write(&format!("{name}.toml"), &config);
    let log = dir.join(format!("{name}.log"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.arg("run");
    if observe {
        cmd.arg("--observe");
    }
    cmd.envs(env.iter().copied());
    let child = cmd
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).expect("create the daemon's log"))
        .spawn()
        .expect("start sundial run");
    (ChildGuard::new(name, child, vec![path, log.clone()]), log)
}

/// A stratum-1 NTS server on loopback: NTP on `ntp_port`, NTS-KE on
/// `ke_port` with `certs`, cookie keys kept in `dir/ntskeys`.
pub fn nts_server_config(
    dir: &TempDir,
    certs: &ca::CertFiles,
    ntp_port: u16,
    ke_port: u16,
) -> String {
    format!(
        "[[server]]\nlisten = \"127.0.0.1:{ntp_port}\"\n\n\
         [[nts-ke-server]]\nlisten = \"127.0.0.1:{ke_port}\"\n\
         certificate-chain-path = \"{}\"\nprivate-key-path = \"{}\"\n\n\
         [keyset]\nkey-storage-path = \"{}\"\n\n\
         [synchronization]\nlocal-stratum = 1\n",
        certs.chain.display(),
        certs.key.display(),
        dir.join("ntskeys").display()
    )
}

/// `sundial status --json --socket PATH`, parsed; `None` while it fails.
pub fn status(socket: &Path) -> Option<sundial_daemon::status::Status> {
    let out = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
