//! The ACME state directory: the account (its key and id, as instant-acme
//! serializes them, tagged with the directory URL they belong to), and the
//! certificate chain and private key the KE server serves.
//!
//! Every file is written whole to a temporary and renamed into place, mode
//! 0600 (`keystore::write_atomically`), in a directory of mode 0700, so a
//! crash leaves either the old file or the new one and no other user reads
//! a key.
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};

use crate::config::AcmeConfig;
use crate::keystore::write_atomically;
use crate::tls::{self, CertificateInfo, TlsError};

const ACCOUNT_FILE: &str = "account.json";
/// The directory URL the stored certificate came from: after a switch from
/// staging to production, the staging certificate is not kept.
const ISSUER_FILE: &str = "certificate-directory.txt";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("ACME state {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ACME state {}: not an account file sundial wrote: {source}", path.display())]
    Account {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The account file: the credentials and the directory they were made on,
/// so pointing the config at another CA makes a new account there.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// One KE server's state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// The configured directory URL.
    directory: String,
    chain: PathBuf,
    key: PathBuf,
}

impl Store {
    /// Creates the directory (0700) if it is missing; an existing one is
    /// tightened to 0700 as it holds private keys.
    pub fn open(config: &AcmeConfig) -> Result<Self, StoreError> {
        let dir = config.state_directory.clone();
        let io_err = |source| StoreError::Io {
            path: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
        let (chain, key) = config.certificate_files();
        Ok(Self {
            dir,
            directory: config.directory_url().to_owned(),
            chain,
            key,
        })
    }

    pub fn chain_path(&self) -> &Path {
        &self.chain
    }

    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The account made on `directory`, if one is stored. A file for
    /// another directory is ignored (and replaced at the next save).
    pub fn account(&self, directory: &str) -> Result<Option<AccountCredentials>, StoreError> {
        let path = self.dir.join(ACCOUNT_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let stored: StoredAccount = serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::Account { path, source })?;
        Ok((stored.directory == directory).then_some(stored.credentials))
    }

    pub fn save_account(
        &self,
        directory: &str,
        credentials: AccountCredentials,
    ) -> Result<(), StoreError> {
        let path = self.dir.join(ACCOUNT_FILE);
        let stored = StoredAccount {
            directory: directory.to_owned(),
            credentials,
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|source| StoreError::Account {
            path: path.clone(),
            source,
        })?;
        write_atomically(&path, &bytes).map_err(|source| StoreError::Io { path, source })
    }

    /// Drops the stored account, so the next order registers a new one.
    pub fn forget_account(&self) {
        let path = self.dir.join(ACCOUNT_FILE);
        if let Err(e) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the stale ACME account");
        }
    }

    /// Stores a new pair: the key first, then the chain, each renamed into
    /// place. The hot reload reads the two once they have settled and
    /// refuses a mismatched pair meanwhile, so no reader serves half of it.
    pub fn save_certificate(&self, chain_pem: &str, key_pem: &str) -> Result<(), StoreError> {
        let issuer = self.dir.join(ISSUER_FILE);
        let directory = format!("{}\n", self.directory);
        for (path, bytes) in [
            (&issuer, directory.as_str()),
            (&self.key, key_pem),
            (&self.chain, chain_pem),
        ] {
            write_atomically(path, bytes.as_bytes()).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The stored pair, if it loads, is valid at `now` and names every
    /// domain: then no new order is needed.
    pub fn certificate(
        &self,
        domains: &[String],
        now: SystemTime,
    ) -> Result<CertificateInfo, StoredCertificate> {
        if !self.chain.exists() {
            return Err(StoredCertificate::None);
        }
        let issuer = fs::read_to_string(self.dir.join(ISSUER_FILE)).unwrap_or_default();
        if issuer.trim() != self.directory {
            return Err(StoredCertificate::OtherCa(issuer.trim().to_owned()));
        }
        let (_, leaf) = tls::load_certified_key(&self.chain, &self.key, now)
            .map_err(StoredCertificate::Unusable)?;
        let missing: Vec<_> = domains
            .iter()
            .filter(|d| {
                let d = d.strip_suffix('.').unwrap_or(d);
                !leaf
                    .subject_alt_names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(d))
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(leaf)
        } else {
            Err(StoredCertificate::OtherNames(missing))
        }
    }
}

/// Why the stored certificate will not do.
#[derive(Debug, thiserror::Error)]
pub enum StoredCertificate {
    #[error("no certificate stored yet")]
    None,
    #[error("{0}")]
    Unusable(TlsError),
    #[error("the stored certificate came from another CA ({0:?})")]
    OtherCa(String),
    #[error("the stored certificate does not name {0:?}")]
    OtherNames(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, directory: &str) -> AcmeConfig {
        let text = format!(
            "domains = [\"a.example\"]\ndirectory = \"{directory}\"\nstate-directory = \"{}\"\n",
            dir.display()
        );
        toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_stored_pair_is_private_and_reused_only_for_its_ca_and_names() {
        let base = std::env::temp_dir().join(format!("sundial-acme-store-{}", std::process::id()));
        let dir = base.join("state");
        let store =
            Store::open(&config(&dir, "https://ca.example/dir")).unwrap_or_else(|e| panic!("{e}"));
        let now = SystemTime::now();
        let domains = vec!["a.example".to_owned()];
        assert!(matches!(
            store.certificate(&domains, now),
            Err(StoredCertificate::None)
        ));
        let (chain, key) = pair("a.example");
        store
            .save_certificate(&chain, &key)
            .unwrap_or_else(|e| panic!("{e}"));
        let mode = |p: &Path| {
            fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(store.chain_path()), 0o600);
        assert_eq!(mode(store.key_path()), 0o600);
        assert!(store.certificate(&domains, now).is_ok());
        assert!(matches!(
            store.certificate(&["b.example".to_owned()], now),
            Err(StoredCertificate::OtherNames(_))
        ));
        // Staging's certificate is not kept after a switch to production.
        let production = Store::open(&config(&dir, "https://other.example/dir"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            production.certificate(&domains, now),
            Err(StoredCertificate::OtherCa(_))
        ));
        let _ = fs::remove_dir_all(&base);
    }
}
