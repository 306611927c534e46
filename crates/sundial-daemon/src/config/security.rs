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
}

fn default_true() -> bool {
    true
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            user: None,
            landlock: true,
        }
    }
}
