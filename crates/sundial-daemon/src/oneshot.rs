//! One-shot exchanges for `sundial query`: one NTS key exchange that also
//! reports the TLS session (the server's certificate chain, version and
//! cipher suite), and one NTP request/response with the kernel's receive
//! timestamp.
//!
//! The key exchange is the sources' own ([`key_exchange_report`] keeps the
//! TLS details a person checking a server wants to see), and the NTP
//! exchange polls through the sources' [`NtpSocket`].
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sundial_proto::source::{
    Association, Discard, MAX_REQUEST_LEN, PollError, ResponseOutcome, Sample,
};
use tokio::time::Instant;

use crate::clock::system_now;
use crate::source::NtpSocket;
pub use crate::source::{KeReport, key_exchange_report};

/// Largest NTP answer read; a longer one is truncated and then fails to
/// authenticate, which is right for it.
const MAX_RESPONSE: usize = 8192;

/// Why one NTP exchange gave no answer to judge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NtpExchangeError {
    /// The NTS cookie jar is empty (cannot happen right after a key
    /// exchange that gave cookies).
    #[error("no NTS cookie to send")]
    NoCookie,
    #[error("cannot open a UDP socket to {server}: {source}")]
    Socket {
        server: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The host answered with ICMP port unreachable: nothing listens.
    #[error("{server} refused the request (nothing listens on that port)")]
    Refused { server: SocketAddr },
    #[error("receiving from {server}: {source}")]
    Receive {
        server: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// No believed answer in time. `discarded` says what did arrive (for
    /// NTS: answers that failed authentication).
    #[error("no valid answer from {server} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
        discarded: Vec<Discard>,
    },
}

/// What one NTP exchange gave.
#[derive(Debug)]
pub struct NtpExchange {
    /// The association's verdict on the answer: a sample, a kiss, an
    /// unusable answer or NTSN (never `Discarded`).
    pub outcome: ResponseOutcome,
    /// The answer's bytes, for the header fields a sample does not carry.
    pub packet: Vec<u8>,
    /// The receive timestamp came from the kernel (else the system clock
    /// read after the read returned).
    pub kernel_timestamp: bool,
    /// Requests sent (a lost datagram is retried within the timeout).
    pub requests: u32,
    /// Datagrams discarded before the answer was believed.
    pub discarded: Vec<Discard>,
}

impl NtpExchange {
    pub fn sample(&self) -> Option<&Sample> {
        match &self.outcome {
            ResponseOutcome::Sample(sample) => Some(sample),
            _ => None,
        }
    }
}

/// Sends requests from `assoc` to `server` (one every `retry`, since UDP
/// may lose one) until an answer is believed or `timeout` passes.
pub async fn ntp_exchange(
    server: SocketAddr,
    assoc: &mut Association,
    timeout: Duration,
    retry: Duration,
) -> Result<NtpExchange, NtpExchangeError> {
    let socket =
        NtpSocket::connect(server).map_err(|source| NtpExchangeError::Socket { server, source })?;
    let mut rng = StdRng::from_os_rng();
    let mut request = vec![0u8; MAX_REQUEST_LEN];
    let mut response = vec![0u8; MAX_RESPONSE];
    let deadline = Instant::now() + timeout;
    let retry = retry.max(Duration::from_millis(10));
    let mut discarded = Vec::new();
    let mut requests = 0u32;
    while Instant::now() < deadline {
        // t1 as late as the association allows.
        let len = match assoc.poll(system_now(), &mut rng, &mut request) {
            Ok(len) => len,
            Err(PollError::NeedKeyExchange) => return Err(NtpExchangeError::NoCookie),
            Err(e) => {
                return Err(NtpExchangeError::Socket {
                    server,
                    source: io::Error::other(e.to_string()),
                });
            }
        };
        requests += 1;
        if let Err(source) = socket.send(request.get(..len).unwrap_or_default()).await {
            return Err(send_error(server, source));
        }
        let resend_at = (Instant::now() + retry).min(deadline);
        loop {
            let received = tokio::select! {
                () = tokio::time::sleep_until(resend_at) => break,
                r = socket.recv(&mut response) => r,
            };
            let (n, kernel_ts) = match received {
                Ok(r) => r,
                Err(source) if source.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(NtpExchangeError::Refused { server });
                }
                Err(source) => return Err(NtpExchangeError::Receive { server, source }),
            };
            let t4 = kernel_ts.unwrap_or_else(system_now);
            let packet = response.get(..n).unwrap_or_default();
            match assoc.handle_response(packet, t4) {
                ResponseOutcome::Discarded(why) => discarded.push(why),
                outcome => {
                    return Ok(NtpExchange {
                        outcome,
                        packet: packet.to_vec(),
                        kernel_timestamp: kernel_ts.is_some(),
                        requests,
                        discarded,
                    });
                }
            }
        }
    }
    Err(NtpExchangeError::Timeout {
        server,
        timeout,
        discarded,
    })
}

fn send_error(server: SocketAddr, source: io::Error) -> NtpExchangeError {
    if source.kind() == io::ErrorKind::ConnectionRefused {
        NtpExchangeError::Refused { server }
    } else {
        NtpExchangeError::Receive { server, source }
    }
}
