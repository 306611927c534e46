//! `[keyset]`: the master keys that seal NTS cookies.

use std::path::PathBuf;

use serde::Deserialize;

use super::{KeyPath, Problem};

fn default_stale_key_count() -> usize {
    7
}

fn default_key_rotation_interval() -> u64 {
    86_400
}

/// Cookie key rotation and storage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeysetConfig {
    /// Old keys kept so cookies sealed with them still open (default 7).
    #[serde(default = "default_stale_key_count")]
    pub stale_key_count: usize,
    /// Seconds between key rotations (default 86400, a day).
    #[serde(default = "default_key_rotation_interval")]
    pub key_rotation_interval: u64,
    /// File that keeps the keys across restarts; unset keeps them in memory.
    #[serde(default)]
    pub key_storage_path: Option<PathBuf>,
}

impl Default for KeysetConfig {
    fn default() -> Self {
        Self {
            stale_key_count: default_stale_key_count(),
            key_rotation_interval: default_key_rotation_interval(),
            key_storage_path: None,
        }
    }
}

impl KeysetConfig {
    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        if self.key_rotation_interval == 0 {
            problems.push(Problem::new(
                at.key("key-rotation-interval"),
                "keys must live at least 1 second",
            ));
        }
        if self
            .key_storage_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            problems.push(Problem::new(
                at.key("key-storage-path"),
                "the path is empty",
            ));
        }
    }
}
