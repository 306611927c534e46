//! Certificate hot reload for the NTS-KE server: when certbot, lego or a
//! symlink switch replaces the files at certificate-chain-path or
//! private-key-path, new connections present the new pair within a few
//! seconds, with no restart; SIGHUP forces a reload at once.
//!
//! Files are polled (metadata only) rather than watched with inotify: it
//! works the same through symlink switches, on every filesystem, and costs
//! two stat calls a second. A change is acted on once the files have stood
//! still for one poll, so a renewal that writes the certificate and then
//! the key is not caught half-way. A pair that does not load (unreadable,
//! mismatched, expired) is logged with the file named and the old pair keeps
//! serving.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::file_stamp::{FileStamp, Settled};
use crate::tls::{CertificateInfo, ReloadableCert};

/// How often the files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Warn when the served certificate expires within this.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);
/// How often the expiry is checked.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Watches one listener's certificate and key files.
#[derive(Debug)]
pub struct CertWatch {
    pub chain: PathBuf,
    pub key: PathBuf,
    pub cert: Arc<ReloadableCert>,
}

impl CertWatch {
    fn stamps(&self) -> (Option<FileStamp>, Option<FileStamp>) {
        (FileStamp::of(&self.chain), FileStamp::of(&self.key))
    }

    fn reload(&self, why: &str) {
        match self.cert.reload(&self.chain, &self.key, SystemTime::now()) {
            Ok(leaf) => {
                tracing::info!(
                    why,
                    subject = %leaf.subject,
                    expires_in_days = days_left(&leaf),
                    "NTS-KE certificate reloaded"
                );
                warn_if_expiring(&leaf);
            }
            Err(e) => tracing::error!(why, "{e}; still serving the previous certificate"),
        }
    }

    /// Polls until cancelled; reloads on a settled change or on SIGHUP.
    pub async fn run(self, cancel: CancellationToken) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: certificates reload on file changes only");
                None
            }
        };
        if let Some(leaf) = self.cert.leaf() {
            warn_if_expiring(&leaf);
        }
        let mut files = Settled::new(self.stamps());
        let mut last_expiry_check = tokio::time::Instant::now();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = hup => {
                    self.reload("SIGHUP");
                    files.reset(self.stamps());
                }
                () = tokio::time::sleep(POLL_INTERVAL) => {
                    if files.poll(self.stamps()) {
                        self.reload("files changed");
                    }
                    if last_expiry_check.elapsed() >= EXPIRY_CHECK_EVERY {
                        last_expiry_check = tokio::time::Instant::now();
                        if let Some(leaf) = self.cert.leaf() {
                            warn_if_expiring(&leaf);
                        }
                    }
                }
            }
        }
    }
}

fn days_left(leaf: &CertificateInfo) -> i64 {
    match leaf.not_after.duration_since(SystemTime::now()) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs() / 86_400).unwrap_or(i64::MAX),
    }
}

/// A certificate about to expire is for the sysadmin to act on.
fn warn_if_expiring(leaf: &CertificateInfo) {
    let soon = SystemTime::now() + EXPIRY_WARNING;
    if leaf.not_after < soon {
        tracing::warn!(
            subject = %leaf.subject,
            days_left = days_left(leaf),
            "the NTS-KE certificate expires within 14 days: renew it (sundial picks up the new files by itself)"
        );
    }
}
