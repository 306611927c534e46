//! `[security]` (a sundial addition): what the daemon gives up once it has
//! started. See docs/security.md, "Least privilege and sandbox".

use serde::Deserialize;

/// The user sundial runs as when it is started as root, unless
/// `[security] user` names another.
pub const DEFAULT_USER: &str = "sundial";

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecurityConfig {
    /// The user to switch to when started as root. Unset: `sundial`, and
    /// where no such user exists, root with no capabilities but those
    /// needed (a warning says so). Set: that user must exist.
    #[serde(default)]
    pub user: Option<String>,
    /// Confine file access with Landlock where the kernel has it.
    #[serde(default = "default_true")]
    pub landlock: bool,
    /// The system-call allow-list: what a call outside it does.
    #[serde(default)]
    pub seccomp: SeccompMode,
}

/// `[security] seccomp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompMode {
    /// A call outside the list kills the process (SECCOMP_RET_KILL_PROCESS).
    #[default]
    Kill,
    /// The kernel logs a call outside the list and lets it through
    /// (SECCOMP_RET_LOG): for finding what a new code path needs.
    Log,
    /// No filter.
    Off,
}

impl SeccompMode {
    /// The config value, for logs and status.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Log => "log",
            Self::Off => "off",
        }
    }
}

fn default_true() -> bool {
    true
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            user: None,
            landlock: true,
            seccomp: SeccompMode::default(),
        }
    }
}
