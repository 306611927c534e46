//! The accept loop shared by the daemon's small local services (the
//! metrics endpoint and the observation socket): a bounded number of short
//! connections, each with a deadline, and accept errors (EMFILE) that back
//! off instead of spinning.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more wait in the kernel's accept queue.
/// Prometheus scrapes one connection at a time; the headroom is for a
/// person with curl or `sundial status`.
pub const MAX_CONNECTIONS: usize = 8;
/// A whole connection, request to close, so a silent or trickling client
/// cannot hold a slot.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts with `accept` and serves each connection with `handle` until
/// `cancel`; connections still open are dropped at cancel.
pub async fn serve_connections<S, A, AF, H, HF>(
    what: &'static str,
    mut accept: A,
    handle: H,
    cancel: CancellationToken,
) where
    S: Send + 'static,
    A: FnMut() -> AF,
    AF: Future<Output = io::Result<S>>,
    H: Fn(S) -> HF,
    HF: Future<Output = io::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    let mut accept_failing = false;
    loop {
        while tasks.try_join_next().is_some() {}
        // A permit before accept: at the limit, clients queue in the kernel
        // instead of costing us memory.
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => {
                accept_failing = false;
                stream
            }
            Err(e) => {
                // One warning per run of failures, not ten lines a second.
                if !accept_failing {
                    tracing::warn!(service = what, error = %e, "accept failed; backing off");
                }
                accept_failing = true;
                drop(permit);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let served = handle(stream);
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = cancel.cancelled() => {}
                result = tokio::time::timeout(CONNECTION_TIMEOUT, served) => {
                    if let Ok(Err(e)) = result {
                        tracing::debug!(service = what, error = %e, "connection failed");
                    }
                }
            }
        });
    }
    tasks.shutdown().await;
}
