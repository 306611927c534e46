//! Plain NTP sources: one `server`, or one slot of a `pool`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use sundial_proto::source::Association;

use super::backoff::RetryBackoff;
use super::ntp::{LoopExit, NtpSocket, run_polls};
use super::{Claim, Claims, PollControl, SourceContext, SourceStatus, ignored, resolve};
use crate::config::HostPort;

/// What a plain task polls.
#[derive(Debug)]
pub(crate) enum Target {
    /// `mode = "server"`: the first address the name resolves to.
    Server(HostPort),
    /// One of a pool's `count` slots: an address no other slot uses, not
    /// in `ignore`, and not one that failed this slot before.
    PoolSlot {
        address: HostPort,
        ignore: Vec<IpAddr>,
        claims: Claims,
    },
}

pub(crate) async fn run(ctx: SourceContext, mut poll: PollControl, target: Target) {
    // Resolution retries follow the same schedule as key exchanges.
    let mut backoff = RetryBackoff::new();
    // Addresses this slot gave up on (unreachable or demobilized).
    let mut failed: HashSet<SocketAddr> = HashSet::new();
    loop {
        if !ctx.wait(backoff.delay()).await {
            return;
        }
        backoff.attempted();
        let (server, _claim) = match pick(&target, &mut failed).await {
            Ok(picked) => picked,
            Err(error) => {
                tracing::debug!(%error, "cannot find an NTP server to poll");
                let retry_in = backoff.delay();
                if !ctx
                    .status(SourceStatus::ResolveFailed { error, retry_in })
                    .await
                    || !ctx.became_unreachable("no server address").await
                {
                    return;
                }
                continue;
            }
        };
        let socket = match NtpSocket::connect(server) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::debug!(%server, error = %e, "cannot open a socket to the server");
                failed.insert(server);
                let status = SourceStatus::ResolveFailed {
                    error: format!("{server}: {e}"),
                    retry_in: backoff.delay(),
                };
                if !ctx.status(status).await {
                    return;
                }
                continue;
            }
        };
        tracing::debug!(%server, "polling");
        if !ctx.status(SourceStatus::Polling { server }).await {
            return;
        }
        let mut assoc = Association::plain(poll.exponent());
        let exit = run_polls(&ctx, &mut poll, &mut assoc, &socket, || backoff.confirmed()).await;
        match exit {
            LoopExit::Cancelled => return,
            LoopExit::Unreachable => {
                failed.insert(server);
                if !ctx.became_unreachable("no answer to 8 polls").await {
                    return;
                }
            }
            LoopExit::Demobilized => {
                tracing::warn!(%server, "server refuses to serve us (DENY/RSTR kiss)");
                if !ctx.status(SourceStatus::Demobilized { server }).await
                    || !ctx.became_unreachable("access denied").await
                {
                    return;
                }
                match target {
                    // A single server that refuses us stays refused.
                    Target::Server(_) => return,
                    Target::PoolSlot { .. } => {
                        failed.insert(server);
                    }
                }
            }
            // Plain associations never ask for keys; poll afresh.
            LoopExit::NeedKeyExchange => {}
        }
    }
}

/// Resolves the target and picks the address to poll.
async fn pick(
    target: &Target,
    failed: &mut HashSet<SocketAddr>,
) -> Result<(SocketAddr, Option<Claim>), String> {
    match target {
        Target::Server(address) => {
            let addrs = resolve(address)
                .await
                .map_err(|e| format!("resolving {address}: {e}"))?;
            // A server whose only address failed is tried again: it may
            // come back. With several, prefer one that has not failed.
            let addr = addrs
                .iter()
                .find(|a| !failed.contains(a))
                .or(addrs.first())
                .copied()
                .ok_or_else(|| format!("{address} resolves to no address"))?;
            failed.clear();
            Ok((addr, None))
        }
        Target::PoolSlot {
            address,
            ignore,
            claims,
        } => {
            let addrs = resolve(address)
                .await
                .map_err(|e| format!("resolving {address}: {e}"))?;
            let usable = |failed: &HashSet<SocketAddr>| {
                addrs
                    .iter()
                    .filter(|a| !ignored(ignore, a.ip()) && !failed.contains(a))
                    .find_map(|a| claims.claim(*a).map(|claim| (*a, Some(claim))))
            };
            if let Some(picked) = usable(failed) {
                return Ok(picked);
            }
            // Everything left has failed this slot once: give them another
            // chance rather than stay idle for good.
            failed.clear();
            usable(failed).ok_or_else(|| {
                format!("{address}: every address is ignored or used by another slot")
            })
        }
    }
}
