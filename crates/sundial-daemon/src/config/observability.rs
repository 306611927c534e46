//! `[observability]`: logs, the status socket and metrics.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{KeyPath, Problem};

fn default_observation_permissions() -> u32 {
    0o666
}

fn default_ansi_colors() -> bool {
    true
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Everything, including per-packet detail.
    Trace,
    /// Detail useful when debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something a sysadmin should look at.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The name as written in the file (and as `tracing` filters spell it).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// How the daemon can be watched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Log level; unset means `info` in sundial (see docs/config.md).
    #[serde(default)]
    pub log_level: Option<LogLevel>,
    /// Colour in terminal logs (default true).
    #[serde(default = "default_ansi_colors")]
    pub ansi_colors: bool,
    /// Unix socket where the daemon publishes its state for
    /// `sundial status`; unset means no socket.
    #[serde(default)]
    pub observation_path: Option<PathBuf>,
    /// File mode of that socket (default 0o666).
    #[serde(default = "default_observation_permissions")]
    pub observation_permissions: u32,
    /// Address of the Prometheus endpoint; unset means none. (ntpd-rs's
    /// default, 127.0.0.1:9975, is where its separate exporter listens once
    /// a sysadmin enables it; sundial serves metrics itself, so it opens
    /// no port unless asked.)
    #[serde(default)]
    pub metrics_exporter_listen: Option<SocketAddr>,
    /// sundial addition: append logs to this file instead of stderr.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            log_level: None,
            ansi_colors: default_ansi_colors(),
            observation_path: None,
            observation_permissions: default_observation_permissions(),
            metrics_exporter_listen: None,
            log_path: None,
        }
    }
}

impl ObservabilityConfig {
    /// The level in force: the file's, or `info`.
    #[must_use]
    pub fn effective_log_level(&self) -> LogLevel {
        self.log_level.unwrap_or(LogLevel::Info)
    }

    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        if self.observation_permissions > 0o7777 {
            problems.push(Problem::new(
                at.key("observation-permissions"),
                format!(
                    "{:#o} is not a file mode (write it in octal, e.g. 0o660)",
                    self.observation_permissions
                ),
            ));
        }
        for (key, path) in [
            ("observation-path", &self.observation_path),
            ("log-path", &self.log_path),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                problems.push(Problem::new(at.key(key), "the path is empty"));
            }
        }
    }
}
