//! NTS sources: key exchange, then authenticated polls until the server
//! wants new keys, the cookies run out or the server falls silent, then a
//! new key exchange on the RFC 8915 retry schedule. Never plain NTP.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::source::Association;

use super::backoff::RetryBackoff;
use super::cert_time::CertTimeCheck;
use super::ke_client::{TrustAnchors, key_exchange_with};
use super::ntp::{LoopExit, NtpSocket, run_polls};
use super::{KE_TIMEOUT, PollControl, SourceContext, SourceStatus, resolve};
use crate::config::HostPort;

/// Failed key exchanges in a row before the source is reported
/// unreachable: one failure is often a blip (a restart of the KE server).
const FAILURES_BEFORE_UNREACHABLE: u32 = 2;

/// What an NTS task needs from its `[[source]]`.
#[derive(Debug)]
pub(crate) struct Target {
    /// The NTS-KE host and port.
    pub(crate) address: HostPort,
    pub(crate) certificate_authority: Option<PathBuf>,
    /// `system-roots`.
    pub(crate) system_roots: bool,
    /// `certificate-time-check-after`.
    pub(crate) cert_time: CertTimeCheck,
}

pub(crate) async fn run(ctx: SourceContext, mut poll: PollControl, target: Target) {
    let mut backoff = RetryBackoff::new();
    // Operator-facing KE failures warn once per run of failures.
    let mut warned = false;
    loop {
        if !ctx.wait(backoff.delay()).await {
            return;
        }
        backoff.attempted();
        let exchange = key_exchange_with(
            &target.address.host,
            target.address.port,
            TrustAnchors {
                file: target.certificate_authority.as_deref(),
                system_roots: target.system_roots,
            },
            &target.cert_time,
            KE_TIMEOUT,
            &AeadAlgorithm::SUPPORTED,
        );
        let result = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            result = exchange => result,
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                ctx.stats
                    .key_exchange_failures
                    .fetch_add(1, Ordering::Relaxed);
                let operator = error.needs_operator();
                if operator && !warned {
                    tracing::warn!(%error, "NTS key exchange failed");
                    warned = true;
                } else {
                    tracing::debug!(%error, "NTS key exchange failed");
                }
                let status = SourceStatus::KeyExchangeFailed {
                    error: error.to_string(),
                    operator,
                    retry_in: backoff.delay(),
                };
                if !ctx.status(status).await {
                    return;
                }
                if backoff.unconfirmed() >= FAILURES_BEFORE_UNREACHABLE
                    && !ctx.became_unreachable("NTS key exchange fails").await
                {
                    return;
                }
                continue;
            }
        };
        warned = false;
        ctx.stats.key_exchanges.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        ctx.stats
            .last_key_exchange
            .store(now.map_or(0, |d| d.as_secs()), Ordering::Relaxed);
        ctx.stats
            .aead
            .store(u64::from(outcome.algorithm.to_u16()), Ordering::Relaxed);

        let ntp = HostPort {
            host: outcome.ntp_host.clone(),
            port: outcome.ntp_port,
        };
        let server = match resolve(&ntp).await {
            Ok(addrs) => addrs.into_iter().next(),
            Err(e) => {
                tracing::debug!(server = %ntp, error = %e, "cannot resolve the NTP server the KE named");
                None
            }
        };
        let socket = server.map(NtpSocket::connect);
        let socket = match socket {
            Some(Ok(socket)) => socket,
            Some(Err(e)) => {
                tracing::debug!(server = %ntp, error = %e, "cannot open a socket to the NTP server");
                continue;
            }
            None => continue,
        };
        tracing::debug!(
            ke = %outcome.ke_addr,
            ntp = %socket.server(),
            algorithm = ?outcome.algorithm,
            cookies = outcome.cookies.len(),
            "NTS key exchange done"
        );
        let status = SourceStatus::KeyExchanged {
            ke_server: outcome.ke_addr,
            ntp_server: socket.server(),
            algorithm: outcome.algorithm,
            cookies: outcome.cookies.len(),
        };
        if !ctx.status(status).await {
            return;
        }
        // Kept only while there are other keys to try them with.
        let mut spare_cookies = outcome
            .fallback_keys
            .as_ref()
            .map(|_| outcome.cookies.clone());
        let mut fallback_keys = outcome.fallback_keys;
        let mut assoc = Association::nts(outcome.keys, outcome.cookies, poll.exponent());
        let exit = loop {
            // The schedule resets only once the new keys gave us time.
            let exit =
                run_polls(&ctx, &mut poll, &mut assoc, &socket, || backoff.confirmed()).await;
            // chrony's fallback for AES-128-GCM-SIV: the server did not
            // answer record 1024, so we used chrony's legacy keys; if it
            // answered nothing but an NTS NAK it is a compliant server
            // unaware of the record. Its cookies hold the compliant keys:
            // the cookies not sent yet still work with those.
            if let (LoopExit::NeedKeyExchange, 0) = (&exit, assoc.stats().samples)
                && let (Some(keys), Some(cookies)) = (fallback_keys.take(), spare_cookies.take())
            {
                let sent = usize::try_from(assoc.stats().requests).unwrap_or(usize::MAX);
                let unsent: Vec<Vec<u8>> = cookies.into_iter().skip(sent).collect();
                if !unsent.is_empty() {
                    tracing::debug!(
                        cookies = unsent.len(),
                        "NTS NAK to legacy AES-128-GCM-SIV keys: switching to compliant keys"
                    );
                    assoc = Association::nts(keys, unsent, poll.exponent());
                    continue;
                }
            }
            break exit;
        };
        match exit {
            LoopExit::Cancelled => return,
            LoopExit::NeedKeyExchange => {
                tracing::debug!("new NTS key exchange needed");
            }
            LoopExit::Unreachable => {
                if !ctx.became_unreachable("no answer to 8 NTS polls").await {
                    return;
                }
            }
            LoopExit::Demobilized => {
                let server = socket.server();
                tracing::warn!(%server, "NTS server refuses to serve us (DENY/RSTR kiss)");
                let _ = ctx.status(SourceStatus::Demobilized { server }).await;
                let _ = ctx.became_unreachable("access denied").await;
                return;
            }
        }
    }
}
