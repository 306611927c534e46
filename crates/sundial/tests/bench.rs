//! `sundial bench` runs against `sundial run --observe` on loopback and
//! prints its RESULT lines. A smoke test of the measuring tool, not a
//! timed test: it checks that the modes work and verify what they get,
//! never how fast.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ChildGuard, TempDir, ca, free_tcp_port, free_udp_port, nts_server_config, output_within,
    start_sundial, wait_for_tcp,
};

/// Runs `sundial bench ARGS` (killed after 60 s), which must succeed, and
/// returns what it printed.
fn bench(args: &[String]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.arg("bench").args(args);
    let out = output_within(
        cmd,
        Duration::from_secs(60),
        &format!("sundial bench {args:?}"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value of `key=` on the RESULT line.
fn field(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .filter(|l| l.starts_with("RESULT"))
        .flat_map(str::split_whitespace)
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in:\n{stdout}"))
        .to_owned()
}

#[test]
fn bench_ke_and_nts_complete_verified_exchanges_against_sundial() {
    let dir = TempDir::new("bench");
    let certs = ca::generate(dir.path());
    let (ke_port, ntp_port) = (free_tcp_port(), free_udp_port());
    let config = nts_server_config(&dir, &certs, ntp_port, ke_port);
    let (server, _log) = start_sundial(&dir, "server", &config, true);
    let ke: SocketAddr = format!("127.0.0.1:{ke_port}").parse().expect("address");
    assert!(wait_for_tcp(ke, Duration::from_secs(10)), "KE port not up");
    let pid = server.id().to_string();
    let ca = certs.ca.display().to_string();

    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let stdout = bench(&args(&[
        "ke",
        "--ke",
        &ke.to_string(),
        "--ca",
        &ca,
        "--connections",
        "2",
        "--duration",
        "1",
        "--server-pid",
        &pid,
    ]));
    assert_eq!(field(&stdout, "failed"), "0", "{stdout}");
    assert_eq!(field(&stdout, "cookies_per_handshake"), "8.00", "{stdout}");
    assert!(field(&stdout, "handshakes").parse::<u64>().expect("count") > 0);
    // The server's CPU is read from /proc.
    assert!(
        field(&stdout, "cpu_us_per_handshake")
            .parse::<f64>()
            .is_ok(),
        "{stdout}"
    );

    let stdout = bench(&args(&[
        "nts",
        "--server",
        &format!("127.0.0.1:{ntp_port}"),
        "--ke",
        &ke.to_string(),
        "--ca",
        &ca,
        "--key-exchanges",
        "2",
        "--rate",
        "2000",
        "--duration",
        "1",
    ]));
    assert_eq!(field(&stdout, "bad"), "0", "{stdout}");
    assert!(
        field(&stdout, "verified").parse::<u64>().expect("verified") > 0,
        "{stdout}"
    );
}

/// `sundial bench relay` with 2 ms each way (no jitter) in front of the
/// null server: every NTP request sent through it comes back, in 4 ms
/// plus the relay's and the loopback's own few tens of microseconds, and
/// the relay stops by itself and reports what it relayed.
#[test]
fn bench_relay_delays_each_direction_and_stops_by_itself() {
    let (server_port, relay_port) = (free_udp_port(), free_udp_port());
    let server = format!("127.0.0.1:{server_port}");
    let relay: SocketAddr = format!("127.0.0.1:{relay_port}").parse().expect("address");
    let reflect = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["bench", "reflect", "--listen", &server, "--duration", "20"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start sundial bench reflect");
    let _reflect = ChildGuard::new("reflect", reflect, Vec::new());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    cmd.args([
        "bench",
        "relay",
        "--listen",
        &relay.to_string(),
        "--upstream",
        &server,
        "--out-delay-ms",
        "2",
        "--in-delay-ms",
        "2",
        "--jitter-ms",
        "0",
        "--duration",
        "3",
    ]);
    let relay_run =
        thread::spawn(move || output_within(cmd, Duration::from_secs(30), "sundial bench relay"));

    let client = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut round_trips = Vec::new();
    // Both children need a moment to bind: early requests may go unanswered.
    for i in 0u8..40 {
        if round_trips.len() >= 5 {
            break;
        }
        let mut request = [0u8; 48];
        request[0] = 0x23; // LI 0, version 4, mode 3
        request[47] = i; // the transmit timestamp tells answers apart
        let sent = Instant::now();
        client.send_to(&request, relay).expect("send to the relay");
        let mut answer = [0u8; 64];
        if let Ok((48, _)) = client.recv_from(&mut answer) {
            // The origin timestamp echoes our transmit timestamp.
            if answer[24..32] == request[40..48] {
                round_trips.push(sent.elapsed());
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(round_trips.len() >= 5, "answers: {round_trips:?}");
    for rtt in &round_trips {
        assert!(
            *rtt >= Duration::from_micros(3_900) && *rtt < Duration::from_millis(20),
            "round trips {round_trips:?}, expected about 4 ms"
        );
    }

    let out = relay_run.join().expect("the relay's thread");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relayed: u64 = field(&stdout, "in_relayed").parse().expect("count");
    assert!(relayed >= 5, "{stdout}");
    assert_eq!(field(&stdout, "out_dropped"), "0", "{stdout}");
    assert!(
        field(&stdout, "late_max_us").parse::<u64>().is_ok(),
        "{stdout}"
    );
}
