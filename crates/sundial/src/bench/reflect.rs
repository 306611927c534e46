//! `sundial bench reflect`: a null NTP server, the ceiling of the socket
//! path. It reads and writes with the same batched I/O as sundial's NTP
//! server (recvmmsg with SO_TIMESTAMPNS, sendmmsg, one socket) but does no
//! protocol work: each answer is the request's header turned around
//! (mode 4, stratum 1, origin = the request's transmit timestamp, the
//! kernel's receive timestamp, one transmit timestamp per batch). Nothing
//! is parsed, checked, rate limited or sealed.
//!
//! Swept like any server, it tells how many answers per second the kernel's
//! UDP path alone allows on the core it is pinned to: no server that uses
//! UDP sockets on that core, whatever its own code costs, can answer more.
//! That is the figure a throughput goal has to be held against. It is a
//! measuring tool: it stops by itself after `--duration` seconds.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use sundial_daemon::server::ntp::batch::{RxBatch, TxBatch};
use sundial_daemon::server::ntp::now_ntp;
use sundial_proto::ntp::timestamp::NtpTimestamp;

/// NTP header length: shorter datagrams are not answered.
const HEADER: usize = 48;
/// Receive buffer, as sundial's NTP server asks for.
const RECV_BUFFER: usize = 4 << 20;

pub fn run(listen: SocketAddr, seconds: f64) -> Result<(), String> {
    let socket = UdpSocket::bind(listen).map_err(|e| format!("reflect: bind {listen}: {e}"))?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| format!("reflect: SO_TIMESTAMPNS: {e}"))?;
    // Best effort, like the server: a smaller buffer only loses more at
    // bursts, which the sweep reports as loss.
    let _ = setsockopt(&socket, sockopt::RcvBuf, &RECV_BUFFER);
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("reflect: {e}"))?;
    println!("# sundial bench reflect on {listen} for {seconds:.0} s: a null NTP server");
    let fd = socket.as_raw_fd();
    let mut rx = RxBatch::new();
    let mut tx = TxBatch::new();
    let (mut answered, mut failed) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.1, super::MAX_SECONDS));
    while Instant::now() < end {
        let n = match rx.receive(fd) {
            Ok(n) => n,
            // The idle timeout, a signal, or an ICMP error from an earlier
            // answer to a generator socket that has gone: none ends the run.
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => continue,
            Err(e) => return Err(format!("reflect: recvmmsg: {e}")),
        };
        let transmit = now_ntp();
        for i in 0..n {
            let Some((meta, request)) = rx.get(i) else {
                continue;
            };
            let (Some(peer), Some(header)) = (meta.peer, request.get(..HEADER)) else {
                continue;
            };
            let received = meta.timestamp.unwrap_or(transmit);
            let out = tx.next_buf();
            if let Some(answer) = out.get_mut(..HEADER) {
                turn_around(header, received, transmit, answer);
                tx.push(HEADER, peer);
            }
        }
        let sent = tx.flush(fd);
        answered += sent.sent;
        failed += sent.failed;
    }
    println!("RESULT_REFLECT answered={answered} send_failed={failed}");
    Ok(())
}

/// Writes the answer to `request` (48 bytes each): the least a server
/// must put in for a client to accept it.
fn turn_around(request: &[u8], received: NtpTimestamp, transmit: NtpTimestamp, answer: &mut [u8]) {
    answer.copy_from_slice(request);
    let version = request.first().map_or(4, |b| (b >> 3) & 7);
    let words: [(usize, [u8; 8]); 3] = [
        (
            24,
            request
                .get(40..48)
                .and_then(|t| t.try_into().ok())
                .unwrap_or([0; 8]),
        ),
        (32, received.to_bits().to_be_bytes()),
        (40, transmit.to_bits().to_be_bytes()),
    ];
    if let Some(first) = answer.get_mut(..4) {
        // LI 0, the request's version, mode 4; stratum 1; poll kept;
        // precision 2^-20.
        first.copy_from_slice(&[
            (version << 3) | 4,
            1,
            request.get(2).copied().unwrap_or(0),
            0xec,
        ]);
    }
    for (at, bytes) in words {
        if let Some(field) = answer.get_mut(at..at + 8) {
            field.copy_from_slice(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_proto::ntp::packet::{Mode, NtpHeader};

    #[test]
    fn the_answer_is_one_a_client_accepts() {
        let sent = NtpTimestamp::from_bits(0x1234_5678_9abc_def0);
        let request = NtpHeader::client_request(0, sent).to_bytes();
        let (received, transmit) = (NtpTimestamp::from_bits(7), NtpTimestamp::from_bits(9));
        let mut answer = [0u8; HEADER];
        turn_around(&request, received, transmit, &mut answer);
        let (header, _) = NtpHeader::parse(&answer).expect("answer parses");
        assert_eq!(header.mode, Mode::Server);
        assert_eq!(header.stratum, 1);
        assert_eq!(header.origin_timestamp, sent);
        assert_eq!(header.receive_timestamp, received);
        assert_eq!(header.transmit_timestamp, transmit);
    }
}
