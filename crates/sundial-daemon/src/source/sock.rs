//! `mode = "sock"`: the samples gpsd writes for chrony, on a Unix datagram
//! socket that sundial creates at `path` (gpsd only connects to it, so
//! sundial must start first). Each datagram is parsed and judged by
//! `sundial_proto::refclock::sock`; a refused one is counted by reason,
//! logged at debug, and otherwise ignored: whatever a local process sends
//! never stops the source.
//!
//! The socket's mode is [`SOCKET_MODE`]: its owner and group may write,
//! nobody else, because whoever can write there can set this machine's
//! time. gpsd usually connects as root before it drops privileges.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sundial_proto::refclock::sock::{self, SockSample};
use sundial_proto::refclock::{Rejection, UnixTime, sample_age};
use tokio::net::UnixDatagram;

use super::ntp::leap;
use super::refclock::{Liveness, Reference, system_now};
use super::{SourceContext, SourceStartError};

/// The socket file's mode: read and write for sundial's user and group.
pub const SOCKET_MODE: u32 = 0o660;

/// gpsd sends a sample a second while the receiver has a fix.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Larger than a sample, so that a longer datagram shows its length.
const RECEIVE_BUFFER: usize = 64;

/// A bound SOCK socket; the file is removed again when this is dropped.
#[derive(Debug)]
pub(crate) struct SockSocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl SockSocket {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SockSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates the socket at `path` with [`SOCKET_MODE`]; a stale socket file
/// is replaced, a live one (another daemon's) is not. Must be called
/// inside a tokio runtime.
pub(crate) fn bind(path: &Path) -> Result<SockSocket, SourceStartError> {
    let alive =
        |p: &Path| std::os::unix::net::UnixDatagram::unbound().is_ok_and(|s| s.connect(p).is_ok());
    crate::unix_path::make_room(path, alive)
        .map_err(|occupied| SourceStartError::occupied(path, occupied))?;
    let socket = UnixDatagram::bind(path).map_err(|e| SourceStartError::socket(path, e))?;
    let bound = SockSocket {
        socket,
        path: path.to_owned(),
    };
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| SourceStartError::socket(path, e))?;
    Ok(bound)
}

/// A datagram as a sample and its age, or why not.
fn judge(datagram: &[u8], now: UnixTime) -> Result<(SockSample, f64), Rejection> {
    let sample = sock::parse(datagram).map_err(|e| {
        tracing::debug!(error = %e, "SOCK datagram refused");
        e.rejection()
    })?;
    let age = sample_age(sample.taken, now).inspect_err(|_| {
        tracing::debug!(?sample, "SOCK sample too old or from the future");
    })?;
    Ok((sample, age))
}

/// Reads samples until cancelled.
pub(crate) async fn run(ctx: SourceContext, socket: SockSocket, reference: Reference) {
    tracing::info!(path = %socket.path.display(), "waiting for gpsd's samples");
    let mut live = Liveness::new(SAMPLE_INTERVAL);
    let mut ticks = live.ticks();
    let mut buf = [0u8; RECEIVE_BUFFER];
    loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => break,
            _ = ticks.tick() => {
                if live.tick(&ctx) && !ctx.became_unreachable("no samples from gpsd").await {
                    break;
                }
            }
            received = socket.socket.recv(&mut buf) => {
                let datagram = match received {
                    Ok(n) => buf.get(..n).unwrap_or_default(),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the SOCK socket");
                        if !ctx.wait(Duration::from_millis(100)).await {
                            break;
                        }
                        continue;
                    }
                };
                match judge(datagram, system_now()) {
                    Err(why) => ctx.reject(why),
                    Ok((sample, age)) => {
                        live.heard();
                        let sent = ctx
                            .refclock_sample(reference, age, sample.offset, leap(sample.leap))
                            .await;
                        if !sent {
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sundial-sock-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_a_stale_one_replaced() {
        let dir = dir();
        let path = dir.join("chrony.ttyS0.sock");
        let first = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE, "{mode:o}");
        assert!(matches!(bind(&path), Err(SourceStartError::InUse { .. })));
        drop(first);
        assert!(!path.exists(), "the socket outlived its source");

        // A socket file whose owner died (std leaves the file behind).
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
        assert!(path.exists());
        let again = bind(&path).unwrap();
        assert_eq!(again.path(), path);
        drop(again);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn samples_are_judged_by_their_age_on_our_clock() {
        let now = UnixTime {
            secs: 1_700_000_100,
            nanos: 0,
        };
        let datagram = |secs: i64| {
            let mut b = Vec::new();
            b.extend_from_slice(&secs.to_ne_bytes());
            b.extend_from_slice(&500_000i64.to_ne_bytes());
            b.extend_from_slice(&0.25f64.to_ne_bytes());
            b.extend_from_slice(&[0; 12]);
            b.extend_from_slice(&sock::SOCK_MAGIC.to_ne_bytes());
            b
        };
        let (sample, age) = judge(&datagram(1_700_000_099), now).unwrap();
        assert_eq!((sample.offset, age), (0.25, 0.5));
        assert_eq!(
            judge(&datagram(1_700_000_000), now).err(),
            Some(Rejection::Stale)
        );
        assert_eq!(judge(&[1, 2, 3], now).err(), Some(Rejection::Length));
    }
}
