//! Interop of RFC 9769's interleaved mode over NTS with Debian's chronyd,
//! both ways, on loopback:
//!
//! 1. chronyd -x with `xleave` as an NTS client of `sundial run`: chronyc's
//!    `ntpdata` shows interleaved answers, with a sane offset and delay, and
//!    sundial's counters show interleaved answers with kernel transmit
//!    timestamps.
//! 2. `sundial run --observe` as an NTS client of chronyd -x, one source
//!    with `interleaved = true` and one without, to the same server:
//!    `sundial status` shows the first interleaved, the second basic, and
//!    their offsets agree within the noise of loopback.
//!
//! Neither daemon touches the clock.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sundial_daemon::status::SourceState;

use common::chrony::{self, Chronyd};
use common::{TempDir, ca, free_tcp_port, free_udp_port, poll_until, wait_for_tcp};

const POLL: Duration = Duration::from_millis(200);

/// Loopback: offsets and delays are tens of microseconds; these bounds
/// only catch a wrong timestamp pairing (which is off by a poll interval
/// or a whole exchange).
const SANE_OFFSET: f64 = 0.001;
const SANE_DELAY: f64 = 0.005;

fn fail(chronyd: &Chronyd, message: &str) -> ! {
    eprintln!("{}", chronyd.report());
    panic!("{message}");
}

#[test]
fn chrony_with_xleave_gets_interleaved_nts_answers_from_sundial() {
    let programs = chrony::programs();
    let dir = TempDir::new("chrony-xleave");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let socket = dir.join("sundial.sock");
    let config = format!(
        "{}\n[observability]\nobservation-path = \"{}\"\n",
        common::nts_server_config(&dir, &certs, ntp_port, ke_port),
        socket.display()
    );
    let (_sundial, _log) = common::start_sundial(&dir, "server", &config, true);
    let ke = SocketAddr::from(([127, 0, 0, 1], ke_port));
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "sundial's NTS-KE port did not open"
    );

    let line = format!("server 127.0.0.1 nts ntsport {ke_port} iburst minpoll 0 maxpoll 0 xleave");
    let chronyd = chrony::start_client(&programs, &dir, &line, &certs.ca);
    // A few interleaved answers in a row, each with a sane sample.
    let mut interleaved = 0;
    let data = poll_until(Duration::from_secs(40), POLL, || {
        let data = chronyd.ntpdata()?;
        if data.interleaved && data.authenticated {
            interleaved += 1;
        }
        (interleaved >= 5).then_some(data)
    })
    .unwrap_or_else(|| {
        fail(
            &chronyd,
            "chronyc ntpdata never showed interleaved NTS answers",
        )
    });
    assert!(data.offset.abs() < SANE_OFFSET, "offset {}", data.offset);
    assert!(
        (0.0..SANE_DELAY).contains(&data.delay),
        "delay {}",
        data.delay
    );
    let status = common::status(&socket).expect("sundial status");
    let server = &status.ntp_servers[0];
    assert!(server.interleaved >= 3, "{server:?}");
    assert!(
        server.tx_timestamps_captured >= server.interleaved,
        "{server:?}"
    );
    assert!(server.nts > 0, "{server:?}");
}

#[test]
fn sundial_interleaves_with_chronyd_and_agrees_with_basic_mode() {
    let programs = chrony::programs();
    let dir = TempDir::new("sundial-xleave");
    let certs = ca::generate(dir.path());
    let (ntp_port, ke_port) = (free_udp_port(), free_tcp_port());
    let _chronyd =
        chrony::start_server(&programs, &dir, ntp_port, ke_port, &certs.chain, &certs.key);
    let ke = SocketAddr::from(([127, 0, 0, 1], ke_port));
    assert!(
        wait_for_tcp(ke, Duration::from_secs(10)),
        "chronyd's NTS-KE port did not open"
    );

    let socket = dir.join("sundial.sock");
    let source = |interleaved: bool| {
        format!(
            "[[source]]\nmode = \"nts\"\naddress = \"localhost:{ke_port}\"\n\
             certificate-authority = \"{}\"\ninterleaved = {interleaved}\n\n",
            certs.ca.display()
        )
    };
    let config = format!(
        "{}{}[source-defaults]\npoll-interval-limits = {{ min = 0, max = 0 }}\n\
         initial-poll-interval = 0\n\n[synchronization]\nminimum-agreeing-sources = 1\n\n\
         [observability]\nobservation-path = \"{}\"\n",
        source(true),
        source(false),
        socket.display()
    );
    let (_sundial, log) = common::start_sundial(&dir, "client", &config, true);
    let status = poll_until(Duration::from_secs(40), POLL, || {
        let status = common::status(&socket)?;
        let (xleave, basic) = (status.sources.first()?, status.sources.get(1)?);
        let ready = xleave.interleave == "interleaved"
            && xleave.counters.interleaved_samples >= 5
            && basic.counters.samples >= 5
            && basic.state != SourceState::Unusable
            && xleave.state != SourceState::Unusable;
        ready.then_some(status)
    })
    .unwrap_or_else(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "sundial never showed an interleaved source:\n{:#?}\n{text}",
            common::status(&socket)
        )
    });
    let (xleave, basic) = (&status.sources[0], &status.sources[1]);
    assert_eq!(basic.interleave, "off");
    assert_eq!(basic.counters.interleaved_samples, 0);
    // Our requests' t1 is the kernel's.
    assert!(xleave.counters.kernel_tx_timestamps >= 5, "{xleave:?}");
    assert!(xleave.offset_seconds.abs() < SANE_OFFSET, "{xleave:?}");
    assert!(
        (0.0..SANE_DELAY).contains(&xleave.delay_seconds),
        "{xleave:?}"
    );
    // The same server through both modes: the two offsets agree within
    // what loopback's noise allows (both are tens of microseconds).
    let gap = (xleave.offset_seconds - basic.offset_seconds).abs();
    assert!(gap < 0.000_5, "interleaved {xleave:?}\nbasic {basic:?}");
    // The text status says so too.
    let out = Command::new(env!("CARGO_BIN_EXE_sundial"))
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .expect("sundial status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" interleaved "), "{text}");
}
