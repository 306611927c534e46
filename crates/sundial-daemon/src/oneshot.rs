//! One-shot exchanges for `sundial query`: one NTS key exchange that also
//! reports the TLS session (the server's certificate chain, version and
//! cipher suite), and one NTP request/response with the kernel's receive
//! timestamp.
//!
//! A source's key exchange ([`crate::source::key_exchange`]) keeps only what
//! polling needs; a person checking a server wants to see which certificate
//! it presented, so the exchange is repeated here with the same trust
//! anchors ([`client_config`]) and the same error classification
//! ([`KeError`]), and keeps the TLS details.
#![forbid(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rustls::pki_types::{CertificateDer, ServerName};
use socket2::{Domain, Protocol, Socket, Type};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_client::{KeClient, KeClientError, KeClientProgress};
use sundial_proto::nts::key_export::derive_keys;
use sundial_proto::source::{
    Association, Discard, MAX_REQUEST_LEN, PollError, ResponseOutcome, Sample,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::clock::system_now;
use crate::config::NTP_PORT;
use crate::source::ke_client::client_config;
use crate::source::{KeError, KeOutcome};
use crate::tls::NTSKE_ALPN;

/// Bytes per TLS read; `KeClient` accumulates reads of any size.
const READ_CHUNK: usize = 4096;

/// Largest NTP answer read; a longer one is truncated and then fails to
/// authenticate, which is right for it.
const MAX_RESPONSE: usize = 8192;

/// A key exchange and the TLS session it ran in.
#[derive(Debug)]
pub struct KeReport {
    pub outcome: KeOutcome,
    /// The chain the server presented, leaf first (DER).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// `TLS 1.3` (the only version NTS-KE allows).
    pub tls_version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
}

/// As [`crate::source::key_exchange`], keeping the TLS details. `timeout`
/// covers DNS, TCP, TLS and the records.
pub async fn key_exchange_report(
    host: &str,
    port: u16,
    extra_roots: Option<&Path>,
    timeout: Duration,
    aead_preference: &[AeadAlgorithm],
) -> Result<KeReport, KeError> {
    let config = client_config(extra_roots)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| KeError::ServerName {
        host: host.to_owned(),
    })?;
    let exchange = async {
        let (tcp, ke_addr) = connect(host, port).await?;
        let tls_error = |source: io::Error| classify_tls(host, source);
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(tls_error)?;
        let protocol_error = |detail: String| KeError::Protocol {
            host: host.to_owned(),
            detail,
        };
        // RFC 8915 4: the client must not go on without ntske/1.
        if tls.get_ref().1.alpn_protocol() != Some(NTSKE_ALPN) {
            return Err(protocol_error(
                "server did not negotiate ALPN ntske/1".to_owned(),
            ));
        }
        let mut client = KeClient::new(aead_preference);
        tls.write_all(&client.request()).await.map_err(tls_error)?;
        tls.flush().await.map_err(tls_error)?;
        let ke_error = |e: KeClientError| match e {
            KeClientError::ServerError(code) => KeError::ErrorRecord {
                host: host.to_owned(),
                code,
            },
            other => protocol_error(other.to_string()),
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let response = loop {
            let n = tls.read(&mut buf).await.map_err(tls_error)?;
            if n == 0 {
                client.finish().map_err(ke_error)?;
                return Err(protocol_error("stream ended early".to_owned()));
            }
            match client
                .receive(buf.get(..n).unwrap_or_default())
                .map_err(ke_error)?
            {
                KeClientProgress::NeedMore => {}
                KeClientProgress::Done(response) => break response,
            }
        };
        let conn = tls.get_ref().1;
        let keys = derive_keys(
            response.protocol.to_u16(),
            response.algorithm,
            |label, context, out| {
                conn.export_keying_material(out, label.as_bytes(), Some(context))
                    .map(|_| ())
            },
        )
        .map_err(|e| protocol_error(format!("key export: {e}")))?;
        let peer_certificates = conn
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let tls_version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map_or_else(String::new, |s| format!("{:?}", s.suite()));
        let _ = tls.shutdown().await;
        Ok(KeReport {
            outcome: KeOutcome {
                keys,
                cookies: response.cookies,
                algorithm: response.algorithm,
                ntp_host: response.server.unwrap_or_else(|| host.to_owned()),
                ntp_port: response.port.unwrap_or(NTP_PORT),
                ke_addr,
            },
            peer_certificates,
            tls_version,
            cipher_suite,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(KeError::Timeout {
            host: host.to_owned(),
            timeout,
        }),
    }
}

/// Resolves `host` and connects to its addresses in turn.
async fn connect(host: &str, port: u16) -> Result<(TcpStream, SocketAddr), KeError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| KeError::Dns {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Err(source) => last = Some(KeError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| KeError::NoAddress {
        host: host.to_owned(),
    }))
}

/// Certificate rejections apart from other TLS failures, as the sources
/// classify them.
fn classify_tls(host: &str, source: io::Error) -> KeError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(reason)) => KeError::Certificate {
            host: host.to_owned(),
            detail: format!("{reason:?}"),
        },
        _ => KeError::Tls {
            host: host.to_owned(),
            source,
        },
    }
}

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
        connected_socket(server).map_err(|source| NtpExchangeError::Socket { server, source })?;
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
                r = socket.async_io(tokio::io::Interest::READABLE, || recv_with_timestamp(&socket, &mut response)) => r,
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

/// An ephemeral UDP socket of the server's family, connected (so ICMP port
/// unreachable comes back as an error and strangers' datagrams are dropped
/// by the kernel), with kernel receive timestamps on.
fn connected_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    // t4 from the kernel keeps our scheduling delay out of the delay.
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
    socket.bind(&local.into())?;
    socket.connect(&server.into())?;
    UdpSocket::from_std(socket.into())
}

fn recv_with_timestamp(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<NtpTimestamp>)> {
    let mut cmsg = cmsg_space!(TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut timestamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                timestamp = Some(NtpTimestamp::from_unix(
                    ts.tv_sec(),
                    u32::try_from(ts.tv_nsec()).unwrap_or(0),
                ));
            }
        }
    }
    Ok((msg.bytes, timestamp))
}
