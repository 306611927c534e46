//! The life cycle of one ACME certificate: obtain it at first start (the KE
//! server starts listening only then), renew it when it is due, and back
//! off with jitter when the CA fails or refuses, while the old certificate
//! keeps serving. A new pair goes into the state directory and through
//! `ReloadableCert::reload`, the hot reload certbot's files use: handshakes
//! in flight keep their certificate, cookies never depend on it.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{Account, CertificateIdentifier};
use rand::SeedableRng;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::challenge::Challenges;
use super::order::{self, OrderError};
use super::schedule::{self, RetryPolicy};
use super::store::{Store, StoredCertificate};
use crate::config::AcmeConfig;
use crate::tls::{CertificateInfo, ReloadableCert, TlsError};

/// Test-only: a certificate counts as due for renewal this many
/// milliseconds after this process obtained or loaded it, so tests see a
/// renewal without waiting days. Not for production use.
pub const TEST_RENEW_AFTER_ENV: &str = "SUNDIAL_TEST_ACME_RENEW_AFTER_MS";
/// Test-only: the first retry wait in milliseconds (it doubles up to 8
/// times this), instead of ten minutes. Not for production use.
pub const TEST_RETRY_ENV: &str = "SUNDIAL_TEST_ACME_RETRY_MS";

/// The longest single sleep: the wall clock may be stepped meanwhile, and
/// the CA's renewal window may change, so the due time is recomputed.
const RECHECK: Duration = Duration::from_secs(6 * 3600);

/// What status and metrics read of one ACME certificate.
#[derive(Debug)]
pub struct AcmeShared {
    pub domains: Vec<String>,
    pub directory: String,
    pub renewals_succeeded: AtomicU64,
    pub renewals_failed: AtomicU64,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default, Clone)]
struct Progress {
    /// An order is being worked on now.
    ordering: bool,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// When the next order is placed (renewal due or retry).
    next_attempt: Option<SystemTime>,
    /// The wait chosen after the last failure.
    retry_delay: Option<Duration>,
}

/// The ACME part of a KE server's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeSnapshot {
    pub domains: Vec<String>,
    pub directory: String,
    /// An order is in progress now.
    pub ordering: bool,
    pub renewals_succeeded: u64,
    pub renewals_failed: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Unix seconds of the next order (renewal or retry).
    pub next_attempt_unix: Option<u64>,
    /// The back-off chosen after the last failure, milliseconds.
    pub retry_delay_ms: Option<u64>,
}

impl AcmeShared {
    pub fn new(config: &AcmeConfig) -> Self {
        Self {
            domains: config.domains.clone(),
            directory: config.directory_url().to_owned(),
            renewals_succeeded: AtomicU64::new(0),
            renewals_failed: AtomicU64::new(0),
            progress: Mutex::new(Progress::default()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }

    #[must_use]
    pub fn snapshot(&self) -> AcmeSnapshot {
        let p = self
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        AcmeSnapshot {
            domains: self.domains.clone(),
            directory: self.directory.clone(),
            ordering: p.ordering,
            renewals_succeeded: self.renewals_succeeded.load(Ordering::Relaxed),
            renewals_failed: self.renewals_failed.load(Ordering::Relaxed),
            consecutive_failures: p.consecutive_failures,
            last_error: p.last_error,
            next_attempt_unix: p
                .next_attempt
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            retry_delay_ms: p
                .retry_delay
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("the CA's certificate does not load: {0}")]
    Install(#[from] TlsError),
    #[error("storing the certificate: {0}")]
    Store(#[from] super::store::StoreError),
}

/// Runs one KE server's certificate life cycle.
#[derive(Debug)]
pub struct Manager {
    pub config: AcmeConfig,
    pub store: Store,
    pub cert: Arc<ReloadableCert>,
    pub challenges: Arc<Challenges>,
    pub shared: Arc<AcmeShared>,
    pub policy: RetryPolicy,
    /// Test knob: renew this long after a certificate is installed.
    pub renew_after: Option<Duration>,
}

impl Manager {
    /// The production policy, or the test knobs when their variables are
    /// set (see [`TEST_RENEW_AFTER_ENV`], [`TEST_RETRY_ENV`]).
    pub fn policy_from_env() -> (RetryPolicy, Option<Duration>) {
        let ms = |name| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let policy = match ms(TEST_RETRY_ENV) {
            Some(first) => RetryPolicy {
                first,
                max: first * 8,
                rate_limited: first,
            },
            None => RetryPolicy::default(),
        };
        (policy, ms(TEST_RENEW_AFTER_ENV))
    }

    /// Loads the stored certificate into `cert` if it is still good; says
    /// why not otherwise.
    pub fn load_stored(&self) -> Result<CertificateInfo, String> {
        let now = SystemTime::now();
        match self.store.certificate(&self.config.domains, now) {
            Ok(_) => self
                .cert
                .reload(self.store.chain_path(), self.store.key_path(), now)
                .map_err(|e| e.to_string()),
            Err(StoredCertificate::None) => Err("no certificate obtained yet".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Obtains and renews until `cancel`. `ready` fires once a certificate
    /// is in place (at once if one was stored).
    pub async fn run(self, ready: oneshot::Sender<()>, cancel: CancellationToken) {
        let mut ready = Some(ready);
        let mut account: Option<Account> = None;
        let mut installed_at = tokio::time::Instant::now();
        // Set after a failure: the back-off's end, which then decides.
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        loop {
            if self.cert.leaf().is_some() {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            let (wait, replaces) = match retry_at {
                Some(at) => (
                    at.saturating_duration_since(tokio::time::Instant::now()),
                    None,
                ),
                None => {
                    let (due, replaces) = self.due(&mut account, installed_at).await;
                    self.shared.update(|p| p.next_attempt = Some(due));
                    let wait = due
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    (wait, replaces)
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait.min(RECHECK)) => {}
                }
                if wait > RECHECK {
                    continue;
                }
            }
            self.shared.update(|p| p.ordering = true);
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.attempt(&mut account, replaces) => outcome,
            };
            match outcome {
                Ok(leaf) => {
                    installed_at = tokio::time::Instant::now();
                    retry_at = None;
                    self.shared
                        .renewals_succeeded
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.update(|p| {
                        p.ordering = false;
                        p.consecutive_failures = 0;
                        p.last_error = None;
                        p.retry_delay = None;
                    });
                    tracing::info!(
                        domains = ?self.config.domains,
                        subject = %leaf.subject,
                        expires_in_days = leaf
                            .not_after
                            .duration_since(SystemTime::now())
                            .map_or(0, |d| d.as_secs() / 86_400),
                        "ACME certificate obtained; serving it from the next handshake"
                    );
                }
                Err(e) => {
                    let failures = self
                        .shared
                        .snapshot()
                        .consecutive_failures
                        .saturating_add(1);
                    let rate_limited = matches!(&e, AttemptError::Order(o) if o.rate_limited());
                    let delay = self.policy.delay(failures, rate_limited, &mut rng);
                    retry_at = Some(tokio::time::Instant::now() + delay);
                    self.shared.renewals_failed.fetch_add(1, Ordering::Relaxed);
                    let message = e.to_string();
                    self.shared.update(|p| {
                        p.ordering = false;
                        p.consecutive_failures = failures;
                        p.last_error = Some(message.clone());
                        p.retry_delay = Some(delay);
                        p.next_attempt = Some(SystemTime::now() + delay);
                    });
                    // Restored from the stored credentials at the next
                    // attempt: a CA that lost the account, or an HTTP
                    // client stuck on a broken connection, then recovers.
                    account = None;
                    if matches!(&e, AttemptError::Order(o) if o.account_unknown()) {
                        // The CA forgot us (a reset test CA, a deleted
                        // account): register anew next time.
                        self.store.forget_account();
                    }
                    let serving = if self.cert.leaf().is_some() {
                        "the current certificate keeps serving"
                    } else {
                        "the NTS-KE server stays off until a certificate is obtained"
                    };
                    tracing::warn!(
                        domains = ?self.config.domains,
                        failures,
                        retry_in = ?delay,
                        "ACME order failed: {message}; {serving}"
                    );
                }
            }
        }
    }

    /// When the served certificate is due, and the id to name it by in a
    /// renewal order if the CA offers ARI. No certificate: now.
    async fn due(
        &self,
        account: &mut Option<Account>,
        installed_at: tokio::time::Instant,
    ) -> (SystemTime, Option<CertificateIdentifier<'static>>) {
        let now = SystemTime::now();
        let Some(leaf) = self.cert.leaf() else {
            return (now, None);
        };
        let mut due = schedule::due_by_lifetime(leaf.not_before, leaf.not_after);
        if let Some(after) = self.renew_after {
            let since = installed_at.elapsed();
            due = due.min(now + after.saturating_sub(since));
        }
        let mut replaces = None;
        // ARI: ask the CA, where it offers it; its window wins.
        if let Some(id) = self.leaf_id() {
            if account.is_none() {
                *account = order::account(&self.config, &self.store).await.ok();
            }
            if let Some(acct) = account.as_ref() {
                match order::renewal_window(acct, &id).await {
                    Ok(Some((start, end))) => {
                        let ari = schedule::due_in_window(start, end, now, &mut rand::rng());
                        due = if self.renew_after.is_some() {
                            due.min(ari)
                        } else {
                            ari
                        };
                        replaces = Some(id);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "ACME renewal information unavailable");
                    }
                }
            }
        }
        (due, replaces)
    }

    fn leaf_id(&self) -> Option<CertificateIdentifier<'static>> {
        let leaf = CertificateDer::pem_file_iter(self.store.chain_path())
            .ok()?
            .next()?
            .ok()?;
        order::certificate_id(&leaf)
    }

    async fn attempt(
        &self,
        account: &mut Option<Account>,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<CertificateInfo, AttemptError> {
        let acct = match account.take() {
            Some(acct) => acct,
            None => order::account(&self.config, &self.store).await?,
        };
        *account = Some(acct.clone());
        tracing::info!(domains = ?self.config.domains, directory = %self.shared.directory, "placing an ACME order");
        let issued = order::obtain(&acct, &self.config, &self.challenges, replaces).await?;
        self.store
            .save_certificate(&issued.chain_pem, &issued.key_pem)?;
        let leaf = self.cert.reload(
            self.store.chain_path(),
            self.store.key_path(),
            SystemTime::now(),
        )?;
        Ok(leaf)
    }
}
