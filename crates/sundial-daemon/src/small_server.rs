//! The accept loop shared by the daemon's small local services (the
//! metrics endpoint and the observation socket): a bounded number of short
//! connections, each with a deadline, and accept errors (EMFILE) that back
//! off instead of spinning, warning once a minute at most (the NTS-KE
//! listener shares that policy).
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// Pause after a failed accept such as EMFILE: long enough not to spin on a
/// full descriptor table, short enough that service resumes soon after
/// descriptors are freed. The NTS-KE listener uses it too.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a listener that keeps failing to accept says so at warn
/// level; the failures between are logged at debug.
pub const ACCEPT_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Decides which accept failures are worth a warning. While the descriptor
/// table is full, a connection closing somewhere lets one accept through
/// between failures; keying the warning on time rather than on "first
/// failure since a success" keeps those from each starting a new warning.
#[derive(Debug, Default)]
pub struct AcceptWarnings {
    last_warned: Option<Instant>,
}

impl AcceptWarnings {
    /// Records a failure at `now`; true if it should be a warning.
    pub fn should_warn(&mut self, now: Instant) -> bool {
        let due = self
            .last_warned
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_WARN_INTERVAL);
        if due {
            self.last_warned = Some(now);
        }
        due
    }
}

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
    let mut warnings = AcceptWarnings::default();
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
            Ok(stream) => stream,
            Err(e) => {
                if warnings.should_warn(Instant::now()) {
                    tracing::warn!(service = what, error = %e, "accept failed; backing off");
                } else {
                    tracing::debug!(service = what, error = %e, "accept failed again");
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_a_minute_however_failures_and_successes_interleave() {
        let start = Instant::now();
        let mut w = AcceptWarnings::default();
        assert!(w.should_warn(start));
        // Failures every 100 ms for the rest of the minute, successes or
        // not in between, stay quiet.
        for tenth in 1..600 {
            assert!(!w.should_warn(start + Duration::from_millis(100 * tenth)));
        }
        assert!(w.should_warn(start + ACCEPT_WARN_INTERVAL));
        assert!(!w.should_warn(start + ACCEPT_WARN_INTERVAL + Duration::from_secs(1)));
    }
}
