//! chronyd as an NTS client on loopback, and what chronyc reports about it.
//! chronyd always runs with `-x`: it never touches this machine's clock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ChildGuard, TempDir};

/// chronyd and chronyc, found in PATH or the sbin directories (chronyd
/// lives in /usr/sbin, often not in a test runner's PATH).
#[derive(Debug, Clone)]
pub struct Programs {
    pub chronyd: PathBuf,
    pub chronyc: PathBuf,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Panics with what to do when chrony is not installed.
pub fn programs() -> Programs {
    match (find_program("chronyd"), find_program("chronyc")) {
        (Some(chronyd), Some(chronyc)) => Programs { chronyd, chronyc },
        _ => panic!(
            "chronyd/chronyc not found: the interop tests need Debian's chrony; \
             run scripts/test, which installs it (apt-get install chrony)"
        ),
    }
}

/// A running chronyd client and its control socket.
#[derive(Debug)]
pub struct Chronyd {
    pub guard: ChildGuard,
    chronyc: PathBuf,
    socket: PathBuf,
}

/// Starts `chronyd -x -n` with one NTS source line `server` (a chrony
/// `server` directive) trusting `ca`, its state in `dir/chrony`.
pub fn start_client(programs: &Programs, dir: &TempDir, server: &str, ca: &Path) -> Chronyd {
    let state = dir.private_subdir("chrony");
    let run = dir.private_subdir("chrony/run");
    let nts = dir.private_subdir("chrony/nts");
    let logdir = dir.private_subdir("chrony/log");
    let socket = run.join("chronyd.sock");
    let config = format!(
        "# chronyd -x as an NTS client (never touches the clock); no NTP server socket\n\
         port 0\n\
         {server}\n\
         ntstrustedcerts {ca}\n\
         nosystemcert\n\
         ntsdumpdir {nts}\n\
         cmdport 0\n\
         bindcmdaddress {socket}\n\
         pidfile {pid}\n\
         logdir {logdir}\n\
         log measurements\n",
        ca = ca.display(),
        nts = nts.display(),
        socket = socket.display(),
        pid = state.join("chronyd.pid").display(),
        logdir = logdir.display(),
    );
    let conf = dir.write("chrony/chrony.conf", &config);
    let (child, log) = spawn_chronyd(programs, &state, &conf);
    let guard = ChildGuard::new(
        "chronyd",
        child,
        vec![
            conf,
            log,
            state.join("chronyd.stderr"),
            logdir.join("measurements.log"),
        ],
    );
    Chronyd {
        guard,
        chronyc: programs.chronyc.clone(),
        socket,
    }
}

impl Chronyd {
    /// `chronyc -h SOCKET -n [-c] COMMAND`: stdout, or `None` when chronyc
    /// fails (e.g. before chronyd has opened its socket).
    pub fn chronyc(&self, csv: bool, command: &str) -> Option<String> {
        let mut cmd = Command::new(&self.chronyc);
        cmd.arg("-h").arg(&self.socket).arg("-n");
        if csv {
            cmd.arg("-c");
        }
        let out = cmd.arg(command).stdin(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The first source's row of `authdata`.
    pub fn authdata(&self) -> Option<AuthData> {
        AuthData::parse_csv(&self.chronyc(true, "authdata")?)
    }

    /// The first source's `ntpdata`.
    pub fn ntpdata(&self) -> Option<NtpData> {
        NtpData::parse(&self.chronyc(false, "ntpdata")?)
    }

    /// The first source's row of `sources`.
    pub fn sources(&self) -> Option<Source> {
        Source::parse_csv(&self.chronyc(true, "sources")?)
    }

    /// All three reports as text, for a failure message.
    pub fn report(&self) -> String {
        ["authdata", "sources", "ntpdata"]
            .iter()
            .map(|c| {
                format!(
                    "$ chronyc -n {c}\n{}",
                    self.chronyc(false, c)
                        .unwrap_or_else(|| "(chronyc failed)\n".to_owned())
                )
            })
            .collect()
    }
}

/// A row of `chronyc -c authdata` (chrony 4.3): name, mode, key id, AEAD
/// type, key length, seconds since the last successful NTS-KE ("Last"),
/// NTS-KE attempts since then ("Atmp"), whether an NTS NAK came since the
/// last request ("NAK"), cookies held ("Cook"), last cookie length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthData {
    pub mode: String,
    pub aead: u32,
    pub last_ke_secs: u64,
    pub ke_attempts: u32,
    pub nak: u32,
    pub cookies: u32,
    pub cookie_len: u32,
}

impl AuthData {
    fn parse_csv(text: &str) -> Option<Self> {
        let fields: Vec<&str> = text.lines().next()?.split(',').collect();
        let [
            _name,
            mode,
            _key_id,
            aead,
            _klen,
            last,
            atmp,
            nak,
            cook,
            clen,
        ] = fields[..]
        else {
            return None;
        };
        Some(Self {
            mode: mode.to_owned(),
            aead: aead.parse().ok()?,
            last_ke_secs: last.parse().ok()?,
            ke_attempts: atmp.parse().ok()?,
            nak: nak.parse().ok()?,
            cookies: cook.parse().ok()?,
            cookie_len: clen.parse().ok()?,
        })
    }
}

/// The lines of `chronyc ntpdata` this test reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NtpData {
    pub remote_port: u16,
    /// The server's reference id, as chronyc prints it in hex.
    pub reference_id: u32,
    pub stratum: u8,
    pub authenticated: bool,
    pub total_tx: u64,
    pub total_rx: u64,
    pub total_valid_rx: u64,
    /// "Interleaved": the last valid answer was in interleaved mode.
    pub interleaved: bool,
    /// "Offset" and "Peer delay" of the last sample, seconds.
    pub offset: f64,
    pub delay: f64,
}

impl NtpData {
    fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
        };
        Some(Self {
            remote_port: field("Remote port")?.parse().ok()?,
            // "47505300 (GPS)"
            reference_id: u32::from_str_radix(field("Reference ID")?.split(' ').next()?, 16)
                .ok()?,
            stratum: field("Stratum")?.parse().ok()?,
            authenticated: field("Authenticated")? == "Yes",
            total_tx: field("Total TX")?.parse().ok()?,
            total_rx: field("Total RX")?.parse().ok()?,
            total_valid_rx: field("Total valid RX")?.parse().ok()?,
            interleaved: field("Interleaved").is_some_and(|v| v == "Yes"),
            offset: seconds(&field("Offset")?)?,
            delay: seconds(&field("Peer delay")?)?,
        })
    }
}

/// "+0.000012345 seconds" as a number.
fn seconds(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// A row of `chronyc -c sources`: mode, state, name, stratum, poll, reach
/// (an octal register of the last 8 polls), last RX age, offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub state: String,
    pub reach: u8,
}

impl Source {
    fn parse_csv(text: &str) -> Option<Self> {
        let fields: Vec<&str> = text.lines().next()?.split(',').collect();
        Some(Self {
            state: (*fields.get(1)?).to_owned(),
            reach: u8::from_str_radix(fields.get(5)?, 8).ok()?,
        })
    }
}

/// Starts `chronyd -x -n` as an NTS server on 127.0.0.1 / ::1: NTP on
/// `ntp_port`, NTS-KE on `ke_port`, a local stratum-1 clock (so clients
/// accept it without an upstream), its state in `dir/chrony-server`.
pub fn start_server(
    programs: &Programs,
    dir: &TempDir,
    ntp_port: u16,
    ke_port: u16,
    chain: &Path,
    key: &Path,
) -> ChildGuard {
    let state = dir.private_subdir("chrony-server");
    let run = dir.private_subdir("chrony-server/run");
    let nts = dir.private_subdir("chrony-server/nts");
    let logdir = dir.private_subdir("chrony-server/log");
    let config = format!(
        "# chronyd -x as an NTS server on loopback (never touches the clock)\n\
         bindaddress 127.0.0.1\n\
         port {ntp_port}\n\
         allow 127.0.0.0/8\n\
         allow ::1/128\n\
         local stratum 1\n\
         ntsport {ke_port}\n\
         ntsservercert {chain}\n\
         ntsserverkey {key}\n\
         ntsdumpdir {nts}\n\
         ntsprocesses 1\n\
         cmdport 0\n\
         bindcmdaddress {socket}\n\
         pidfile {pid}\n\
         logdir {logdir}\n",
        chain = chain.display(),
        key = key.display(),
        nts = nts.display(),
        socket = run.join("chronyd.sock").display(),
        pid = state.join("chronyd.pid").display(),
        logdir = logdir.display(),
    );
    let conf = dir.write("chrony-server/chrony.conf", &config);
    let (child, log) = spawn_chronyd(programs, &state, &conf);
    ChildGuard::new(
        "chronyd server",
        child,
        vec![conf, log, state.join("chronyd.stderr")],
    )
}

/// `chronyd -x -n -u root` on `conf`, its log and stderr in `state`: never
/// touches the clock. Returns the child and the log's path.
fn spawn_chronyd(
    programs: &Programs,
    state: &Path,
    conf: &Path,
) -> (std::process::Child, std::path::PathBuf) {
    let log = state.join("chronyd.log");
    let stderr = std::fs::File::create(state.join("chronyd.stderr")).expect("chronyd.stderr");
    let child = Command::new(&programs.chronyd)
        .args(["-x", "-n", "-u", "root", "-L", "0", "-l"])
        .arg(&log)
        .arg("-f")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", programs.chronyd.display()));
    (child, log)
}
