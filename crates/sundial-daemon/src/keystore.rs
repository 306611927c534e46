//! The server's cookie keyset: created at first start, rotated on schedule,
//! shared by the NTS-KE server and every NTP server in the process, and kept
//! across restarts in `[keyset] key-storage-path`, so clients holding
//! cookies never notice a restart.
//!
//! The file is written atomically (a temporary file in the same directory,
//! fsync, rename, fsync of the directory) with mode 0600. A file that exists
//! but cannot be read or decoded stops the start: silently generating new
//! keys would invalidate every client's cookies at once.
//!
//! Fleet mode: the process that runs an NTS-KE server owns the file (it
//! generates, rotates and writes it). A process that only serves NTP with
//! `key-storage-path` set is a *reader*: it loads the file, never writes it,
//! and follows it as the owner's copies arrive (the file carries the next
//! key ahead of time, so a copy may lag by up to one rotation interval).
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sundial_proto::nts::keyset::{KeySet, KeySetConfig, KeySetError};
use tokio_util::sync::CancellationToken;

use crate::config::KeysetConfig;
use crate::file_stamp::{FileStamp, Settled};

/// The keyset as the KE server and NTP servers share it: readers seal and
/// open cookies, the rotation task is the only writer.
pub type SharedKeySet = Arc<RwLock<KeySet>>;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    #[error("{}: cannot read the key file: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A fleet reader (no `[[nts-ke-server]]`) found no key file: only the
    /// owner creates it.
    #[error(
        "{}: no key file yet. This process has no [[nts-ke-server]], so it only reads the key file its fleet's [[nts-ke-server]] writes: start the [[nts-ke-server]] owner first (same key-storage-path), or copy its key file here",
        path.display()
    )]
    NoSharedFile { path: PathBuf },
    #[error("{}: the key file is not a valid sundial keyset: {source}", path.display())]
    Decode { path: PathBuf, source: KeySetError },
    #[error("{}: cannot write the key file: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// The keyset and where it lives.
#[derive(Debug, Clone)]
pub struct KeyStore {
    path: Option<PathBuf>,
    keys: SharedKeySet,
    /// Generated or rotated at open and not stored yet ([`Self::commit`]).
    unsaved: bool,
}

/// How often a reader checks the shared key file.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Unix seconds now, for the rotation schedule (wall clock on purpose: the
/// schedule must survive restarts and agree across machines sharing keys).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn proto_config(config: &KeysetConfig) -> KeySetConfig {
    KeySetConfig {
        rotation_interval_secs: config.key_rotation_interval,
        stale_key_count: config.stale_key_count,
    }
}

impl KeyStore {
    /// Loads the stored keyset, or creates (and stores) a new one when
    /// there is no file yet; rotates it if rotations were missed while the
    /// daemon was down.
    pub fn open(config: &KeysetConfig) -> Result<Self, KeyStoreError> {
        let mut store = Self::open_unsaved(config)?;
        store.commit()?;
        Ok(store)
    }

    /// As [`Self::open`], but a new or rotated keyset is only stored by
    /// [`Self::commit`]: the daemon commits once every socket is bound, so a
    /// start that fails (a port in use) leaves no key file behind.
    pub fn open_unsaved(config: &KeysetConfig) -> Result<Self, KeyStoreError> {
        let settings = proto_config(config);
        let now = unix_now();
        let mut rng = rand::rng();
        let Some(path) = config.key_storage_path.clone() else {
            return Ok(Self {
                path: None,
                keys: Arc::new(RwLock::new(KeySet::generate(settings, now, &mut rng))),
                unsaved: false,
            });
        };
        let (mut keyset, mut dirty) = match fs::read(&path) {
            Ok(bytes) => {
                let keyset =
                    KeySet::decode(&bytes, settings).map_err(|source| KeyStoreError::Decode {
                        path: path.clone(),
                        source,
                    })?;
                tracing::info!(path = %path.display(), keys = keyset.len(), "loaded NTS cookie keys");
                (keyset, false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no key file yet: generating NTS cookie keys");
                (KeySet::generate(settings, now, &mut rng), true)
            }
            Err(source) => return Err(KeyStoreError::Read { path, source }),
        };
        remove_stale_temporaries(&path);
        dirty |= keyset.rotate_if_due(now, &mut rng);
        Ok(Self {
            path: Some(path),
            keys: Arc::new(RwLock::new(keyset)),
            unsaved: dirty,
        })
    }

    /// Stores what [`Self::open_unsaved`] generated or rotated, if anything.
    pub fn commit(&mut self) -> Result<(), KeyStoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.unsaved {
            return Ok(());
        }
        let encoded = self.keys.read().map(|k| k.encode()).unwrap_or_default();
        write_atomically(path, &encoded).map_err(|source| KeyStoreError::Write {
            path: path.clone(),
            source,
        })?;
        self.unsaved = false;
        Ok(())
    }

    /// Opens the key file read-only, for an NTP server of a fleet whose
    /// NTS-KE server writes the file. The file must exist.
    pub fn open_reader(config: &KeysetConfig) -> Result<Self, KeyStoreError> {
        let settings = proto_config(config);
        let path = config
            .key_storage_path
            .clone()
            .ok_or_else(|| KeyStoreError::Read {
                path: PathBuf::new(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "no key-storage-path"),
            })?;
        let keyset = read_keyset(&path, settings).map_err(|e| match e {
            KeyStoreError::Read { path, source } if source.kind() == io::ErrorKind::NotFound => {
                KeyStoreError::NoSharedFile { path }
            }
            other => other,
        })?;
        tracing::info!(path = %path.display(), current = keyset.current_id(), "following the shared NTS cookie key file (read-only)");
        Ok(Self {
            path: Some(path),
            keys: Arc::new(RwLock::new(keyset)),
            unsaved: false,
        })
    }

    /// As a reader: reloads the file whenever a new copy has settled, until
    /// cancelled. A copy that does not load keeps the current keys serving.
    pub async fn run_follow(self, cancel: CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut file = Settled::new(FileStamp::of(&path));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
            if !file.poll(FileStamp::of(&path)) {
                continue;
            }
            let settings = self.keys.read().map(|k| k.config()).unwrap_or_default();
            match read_keyset(&path, settings) {
                Ok(new) => {
                    tracing::info!(
                        current = new.current_id(),
                        "reloaded the shared NTS cookie key file"
                    );
                    if let Ok(mut keys) = self.keys.write() {
                        *keys = new;
                    }
                }
                Err(e) => tracing::error!("{e}; still serving the keys loaded before"),
            }
        }
    }

    pub fn shared(&self) -> SharedKeySet {
        Arc::clone(&self.keys)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Rotates when due and stores the result; returns when to look again.
    pub fn rotate_now(&self) -> Duration {
        let now = unix_now();
        let encoded = {
            let Ok(mut keys) = self.keys.write() else {
                return Duration::from_secs(60);
            };
            if !keys.rotate_if_due(now, &mut rand::rng()) {
                return Duration::from_secs(keys.next_rotation().saturating_sub(now).max(1));
            }
            tracing::info!(current = keys.current_id(), "rotated NTS cookie keys");
            keys.encode()
        };
        if let Some(path) = &self.path {
            // The new keys stay in use from memory; a failed store is for the
            // sysadmin to fix before the next restart, so say so loudly.
            if let Err(e) = write_atomically(path, &encoded) {
                tracing::error!(path = %path.display(), error = %e, "cannot store rotated NTS cookie keys: a restart now would invalidate cookies issued since");
            }
        }
        self.keys
            .read()
            .map(|k| Duration::from_secs(k.next_rotation().saturating_sub(now).max(1)))
            .unwrap_or(Duration::from_secs(60))
    }

    /// Rotates on schedule until cancelled.
    pub async fn run_rotation(self, cancel: CancellationToken) {
        loop {
            let store = self.clone();
            let wait = tokio::task::spawn_blocking(move || store.rotate_now())
                .await
                .unwrap_or(Duration::from_secs(60));
            // Re-check at least hourly: the wall clock may jump while we sleep.
            let wait = wait.min(Duration::from_secs(3600));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn read_keyset(path: &Path, settings: KeySetConfig) -> Result<KeySet, KeyStoreError> {
    let bytes = fs::read(path).map_err(|source| KeyStoreError::Read {
        path: path.to_owned(),
        source,
    })?;
    KeySet::decode(&bytes, settings).map_err(|source| KeyStoreError::Decode {
        path: path.to_owned(),
        source,
    })
}

/// Removes the temporary files of writes that a crash (kill -9, power loss)
/// cut short: each carries the pid of the process that wrote it, so without
/// this every crash during a store would leave one behind for good. Only
/// the owner calls this, before it writes again; failures are harmless.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_owned();
    prefix.push(".tmp.");
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if file_name.to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(file = %entry.path().display(), "removed a key file left half-written by a crash")
                }
                Err(e) => {
                    tracing::debug!(file = %entry.path().display(), error = %e, "cannot remove a stale temporary key file")
                }
            }
        }
    }
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old file or the new one, never a mix; mode 0600. Directories it has to
/// create get mode 0700: they hold nothing but secrets.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "key storage path has no file name",
        )
    })?;
    let mut tmp_name = file_name.to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(path: &Path) -> KeysetConfig {
        KeysetConfig {
            key_storage_path: Some(path.to_owned()),
            ..KeysetConfig::default()
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sundial-keystore-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn created_stored_and_reloaded_with_mode_0600() {
        let dir = temp_dir("reload");
        let path = dir.join("keys/ntskeys");
        let first = KeyStore::open(&config(&path)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let created = fs::metadata(dir.join("keys")).unwrap().permissions().mode() & 0o777;
        assert_eq!(created, 0o700, "a key directory sundial creates is private");
        let id = first.shared().read().unwrap().current_id();
        let again = KeyStore::open(&config(&path)).unwrap();
        assert_eq!(again.shared().read().unwrap().current_id(), id);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_file_stops_the_start_and_is_kept() {
        let dir = temp_dir("corrupt");
        let path = dir.join("ntskeys");
        fs::write(&path, b"not a keyset").unwrap();
        let err = KeyStore::open(&config(&path)).unwrap_err();
        assert!(matches!(err, KeyStoreError::Decode { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(fs::read(&path).unwrap(), b"not a keyset");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_path_is_an_error_naming_it() {
        let dir = temp_dir("unreadable");
        // A directory where the file should be cannot be read as a file.
        let path = dir.join("ntskeys");
        fs::create_dir_all(&path).unwrap();
        let err = KeyStore::open(&config(&path)).unwrap_err();
        assert!(matches!(err, KeyStoreError::Read { .. }), "{err}");
        assert!(err.to_string().contains("ntskeys"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reader_needs_the_file_and_never_writes_it() {
        let dir = temp_dir("reader");
        let path = dir.join("ntskeys");
        let missing = KeyStore::open_reader(&config(&path)).unwrap_err();
        assert!(
            matches!(missing, KeyStoreError::NoSharedFile { .. }),
            "{missing}"
        );
        let said = missing.to_string();
        assert!(
            said.contains("start the [[nts-ke-server]] owner first"),
            "{said}"
        );
        assert!(said.contains("copy its key file here"), "{said}");
        let owner = KeyStore::open(&config(&path)).unwrap();
        let before = fs::read(&path).unwrap();
        let reader = KeyStore::open_reader(&config(&path)).unwrap();
        assert_eq!(
            reader.shared().read().unwrap().current_id(),
            owner.shared().read().unwrap().current_id()
        );
        assert_eq!(fs::read(&path).unwrap(), before);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temporaries_left_by_a_crash_are_removed_at_start() {
        let dir = temp_dir("stale-tmp");
        let path = dir.join("ntskeys");
        let _ = KeyStore::open(&config(&path)).unwrap();
        let stale = dir.join("ntskeys.tmp.99999");
        fs::write(&stale, b"half a keyset").unwrap();
        let other = dir.join("unrelated.tmp.1");
        fs::write(&other, b"not ours").unwrap();
        let _ = KeyStore::open(&config(&path)).unwrap();
        assert!(!stale.exists());
        assert!(other.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_store_keeps_the_rotated_keys_in_memory() {
        let dir = temp_dir("store-fails");
        let path = dir.join("keys/ntskeys");
        let store = KeyStore::open(&KeysetConfig {
            key_rotation_interval: 1,
            ..config(&path)
        })
        .unwrap();
        let before = store.shared().read().unwrap().current_id();
        // The key directory becomes a file: every later store fails, as
        // on a read-only or full disk (chmod does not stop root).
        fs::remove_dir_all(dir.join("keys")).unwrap();
        fs::write(dir.join("keys"), b"").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let _ = store.rotate_now();
        let after = store.shared().read().unwrap().current_id();
        assert_ne!(before, after, "rotated in memory despite the failed store");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unsaved_keyset_is_written_only_on_commit() {
        let dir = temp_dir("unsaved");
        let path = dir.join("keys/ntskeys");
        let mut store = KeyStore::open_unsaved(&config(&path)).unwrap();
        assert!(!path.exists(), "nothing written before commit");
        assert!(!dir.join("keys").exists());
        store.commit().unwrap();
        let stored = fs::read(&path).unwrap();
        let again = KeyStore::open_unsaved(&config(&path)).unwrap();
        assert_eq!(
            again.shared().read().unwrap().current_id(),
            store.shared().read().unwrap().current_id()
        );
        assert_eq!(fs::read(&path).unwrap(), stored);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn in_memory_without_a_path() {
        let store = KeyStore::open(&KeysetConfig::default()).unwrap();
        assert!(store.path().is_none());
        assert_eq!(store.shared().read().unwrap().len(), 1);
    }
}
