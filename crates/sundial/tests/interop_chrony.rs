//! Interop: Debian's chronyd (4.3, GnuTLS) as an NTS client of `sundial run`
//! on loopback.
//!
//! 1. chrony does NTS-KE with sundial, follows sundial's Port Negotiation
//!    record to the NTP port (the chrony config names only the KE port, so
//!    without that record chrony would ask port 123 and get nothing), and
//!    gets NTS-authenticated replies. The time from chronyd's start to the
//!    first authenticated sample is printed (`--nocapture` shows it).
//! 2. sundial restarts with the same key file: chrony keeps being answered
//!    with the cookies it already holds, with no NAK and no new NTS-KE.
//! 3. Control: sundial restarts without its key file; chrony's cookies no
//!    longer open, sundial answers with an NTS NAK, and chrony does a new
//!    NTS-KE — which shows that step 2 would have caught lost keys.
//!
//! chronyd runs with `-x` and never touches this machine's clock; sundial
//! has no sources and never steers it either.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::chrony::{self, AuthData, Chronyd, NtpData};
use common::{ChildGuard, TempDir, poll_until};

/// Every wait in this test is bounded by one of these.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// After the key file is gone, chrony needs a poll to see the NAK and one
/// more to use its new cookies (polls are at most 4 s apart here).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(40);
/// chrony reports the NTS-KE age in whole seconds.
const MIN_KE_AGE_SECS: u64 = 3;
const POLL: Duration = Duration::from_millis(200);
/// Finer polling while measuring the time to the first sample.
const FAST_POLL: Duration = Duration::from_millis(20);

/// Starts `sundial run -c CONFIG`, output to `sundial-N.{stdout,stderr}`,
/// and waits until its NTS-KE port accepts connections.
fn start_sundial(dir: &TempDir, config: &Path, ke: SocketAddr, n: u32) -> ChildGuard {
    let stdout = dir.join(format!("sundial-{n}.stdout"));
    let stderr = dir.join(format!("sundial-{n}.stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .arg("run")
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).expect("sundial stdout file"))
        .stderr(fs::File::create(&stderr).expect("sundial stderr file"))
        .spawn()
        .expect("start sundial");
    let mut guard = ChildGuard::new(
        format!("sundial run #{n}"),
        child,
        vec![config.to_owned(), stdout, stderr],
    );
    let up = poll_until(START_TIMEOUT, Duration::from_millis(20), || {
        if let Some(status) = guard.try_wait() {
            return Some(Err(status));
        }
        common::wait_for_tcp(ke, Duration::from_millis(1)).then_some(Ok(()))
    });
    match up {
        Some(Ok(())) => guard,
        Some(Err(status)) => panic!("sundial run #{n} exited at start: {status}"),
        None => panic!("sundial run #{n}: NTS-KE port {ke} not open after {START_TIMEOUT:?}"),
    }
}

/// Stops sundial with SIGTERM; it must exit cleanly and in time.
fn stop_sundial(sundial: &mut ChildGuard) {
    let status = sundial
        .terminate(STOP_TIMEOUT)
        .unwrap_or_else(|| panic!("sundial did not exit within {STOP_TIMEOUT:?} of SIGTERM"));
    assert!(status.success(), "sundial exited with {status} on SIGTERM");
}

/// What chrony reports about its one source at one moment.
#[derive(Debug)]
struct Snapshot {
    auth: AuthData,
    ntp: NtpData,
    reach: u8,
    at: Instant,
}

fn snapshot(chronyd: &Chronyd) -> Option<Snapshot> {
    Some(Snapshot {
        auth: chronyd.authdata()?,
        ntp: chronyd.ntpdata()?,
        reach: chronyd.sources()?.reach,
        at: Instant::now(),
    })
}

/// Panics with chronyc's view of the source (the guards add the logs).
fn fail(chronyd: &Chronyd, message: &str) -> ! {
    eprintln!("{}", chronyd.report());
    panic!("{message}");
}

#[test]
fn chrony_gets_nts_time_from_sundial_and_keeps_its_cookies_across_a_restart() {
    let programs = chrony::programs();
    let dir = TempDir::new("chrony");
    let certs = common::ca::generate(dir.path());
    let keys_dir = dir.private_subdir("keys");
    let key_file = keys_dir.join("ntskeys");
    let ntp_port = common::free_udp_port();
    let ke_port = common::free_tcp_port();
    let ke_addr = SocketAddr::from(([127, 0, 0, 1], ke_port));
    // Written last, when the certificates it names exist: started as
    // root, the daemon drops to `nobody` (see common::unprivileged).
    let config = dir.write(
        "sundial.toml",
        &common::unprivileged(
            &dir,
            &format!(
                "[[server]]\n\
             listen = \"127.0.0.1:{ntp_port}\"\n\
             \n\
             [[nts-ke-server]]\n\
             listen = \"{ke_addr}\"\n\
             certificate-chain-path = \"{chain}\"\n\
             private-key-path = \"{key}\"\n\
             \n\
             [keyset]\n\
             key-storage-path = \"{keys}\"\n\
             \n\
             [synchronization]\n\
             local-stratum = 1\n\
             \n\
             [observability]\n\
             ansi-colors = false\n",
                chain = certs.chain.display(),
                key = certs.key.display(),
                keys = key_file.display(),
            ),
        ),
    );

    // 1. First contact: NTS-KE, port negotiation, authenticated NTP.
    let mut sundial = start_sundial(&dir, &config, ke_addr, 1);
    // No `port`: chrony must take the NTP port from the Port Negotiation
    // record. 127.0.0.1 rather than localhost, which may resolve to ::1.
    let server_line = format!("server 127.0.0.1 nts ntsport {ke_port} iburst minpoll 0 maxpoll 2");
    let started = Instant::now();
    let chronyd = chrony::start_client(&programs, &dir, &server_line, &certs.ca);

    let Some(first_sample) = poll_until(SYNC_TIMEOUT, FAST_POLL, || {
        let ntp = chronyd.ntpdata()?;
        (ntp.authenticated && ntp.total_valid_rx > 0).then(|| started.elapsed())
    }) else {
        fail(&chronyd, "no NTS-authenticated reply from sundial")
    };
    eprintln!(
        "chronyd start to first NTS-authenticated sample from sundial: {:.0} ms",
        first_sample.as_secs_f64() * 1000.0
    );

    let Some(before) = poll_until(SYNC_TIMEOUT, POLL, || {
        let s = snapshot(&chronyd)?;
        (s.auth.mode == "NTS"
            && s.auth.cookies > 0
            && s.auth.nak == 0
            && s.ntp.authenticated
            && s.ntp.total_rx >= 2
            && s.reach != 0
            // An NTS-KE age of a few seconds, so a new key exchange after
            // the restart would show as an age that drops.
            && s.auth.last_ke_secs >= MIN_KE_AGE_SECS)
            .then_some(s)
    }) else {
        fail(
            &chronyd,
            "chrony never reached a steady NTS state with sundial",
        )
    };
    if before.ntp.remote_port != ntp_port {
        fail(
            &chronyd,
            &format!(
                "chrony talks NTP to port {} instead of the negotiated {ntp_port}",
                before.ntp.remote_port
            ),
        );
    }
    assert_eq!(before.ntp.stratum, 1, "sundial's local-stratum is 1");
    assert_eq!(before.auth.ke_attempts, 0, "{before:?}");
    assert_eq!(
        before.auth.aead, 15,
        "AEAD_AES_SIV_CMAC_256 is what chrony negotiates"
    );
    eprintln!(
        "steady: {} cookies of {} bytes, NTP RX {}",
        before.auth.cookies, before.auth.cookie_len, before.ntp.total_rx
    );

    // 2. Restart with the same key file: the old cookies must still open.
    stop_sundial(&mut sundial);
    let mode = fs::metadata(&key_file)
        .unwrap_or_else(|e| panic!("{}: {e}", key_file.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let mut sundial = start_sundial(&dir, &config, ke_addr, 2);

    let Some(after) = poll_until(SYNC_TIMEOUT, POLL, || {
        let s = snapshot(&chronyd)?;
        if s.auth.nak != 0
            || s.auth.ke_attempts != 0
            || s.auth.last_ke_secs < before.auth.last_ke_secs
        {
            fail(
                &chronyd,
                &format!(
                    "chrony lost its NTS session over a sundial restart that kept the key file: {s:?}"
                ),
            );
        }
        (s.ntp.total_rx >= before.ntp.total_rx + 2 && s.ntp.authenticated).then_some(s)
    }) else {
        fail(&chronyd, "chrony got no replies after sundial restarted")
    };
    // "Last" counts from the one NTS-KE of step 1: no second one happened.
    let waited = after.at.duration_since(before.at).as_secs();
    assert!(
        after.auth.last_ke_secs + 1 >= before.auth.last_ke_secs + waited,
        "NTS-KE age went from {} s to {} s over {waited} s: a new key exchange happened",
        before.auth.last_ke_secs,
        after.auth.last_ke_secs
    );
    assert!(
        after.ntp.total_valid_rx > before.ntp.total_valid_rx,
        "{before:?} -> {after:?}"
    );
    eprintln!(
        "restart kept the session: NTP RX {} -> {}, NTS-KE age {} s -> {} s, NAK 0",
        before.ntp.total_rx, after.ntp.total_rx, before.auth.last_ke_secs, after.auth.last_ke_secs
    );

    // 3. Control: a restart that loses the key file forces a new NTS-KE.
    stop_sundial(&mut sundial);
    fs::remove_file(&key_file).expect("remove the key file");
    let restarted = Instant::now();
    let mut sundial = start_sundial(&dir, &config, ke_addr, 3);
    let mut saw_nak = false;
    let Some(recovered) = poll_until(RECOVER_TIMEOUT, POLL, || {
        let s = snapshot(&chronyd)?;
        saw_nak |= s.auth.nak != 0;
        let fresh_ke = s.auth.last_ke_secs <= restarted.elapsed().as_secs() + 1;
        (fresh_ke
            && s.auth.cookies > 0
            && s.ntp.authenticated
            && s.ntp.total_rx > after.ntp.total_rx)
            .then_some(s)
    }) else {
        fail(
            &chronyd,
            "chrony did not recover with a new NTS-KE after sundial lost its keys",
        )
    };
    eprintln!(
        "control: without the key file chrony re-keyed (NAK seen: {saw_nak}; NTS-KE age {} s)",
        recovered.auth.last_ke_secs
    );

    stop_sundial(&mut sundial);
    drop(chronyd);
}
