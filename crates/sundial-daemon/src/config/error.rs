//! Configuration errors. Every error a sysadmin can cause by editing the file
//! names the file, the dotted key and the line and column, because "invalid
//! config" without a location sends people bisecting their file by hand.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is wrong: TOML syntax, an unknown
    /// key, a value of the wrong type, or a value that parses but makes no
    /// sense (see [`Diagnostic`]).
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    /// The located diagnostic, when the error is about the file's content.
    #[must_use]
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid(diagnostic) => Some(diagnostic),
        }
    }
}

/// One located problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the text came from (as given to `load` or `parse`).
    pub file: PathBuf,
    /// Dotted key path, e.g. `server[0].rate-limiting-cache-size`; empty for
    /// a syntax error that is not inside any key.
    pub key: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, in words.
    pub message: String,
    /// The text of the offending line, so a terminal shows it without the
    /// reader opening the file.
    pub source_line: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}
