//! Telling whether a file was replaced, by polling its metadata: used to
//! follow renewed certificates and a shared key file without inotify, which
//! would miss symlink switches and does not work on every filesystem.
#![forbid(unsafe_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What identifies one version of a file: where a symlink points, and the
/// target's device, inode, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    link: Option<PathBuf>,
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    /// The file's stamp now; `None` if it cannot be read.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            link: std::fs::read_link(path).ok(),
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// Debounces changes: a new stamp counts once it has been seen on two polls
/// in a row, so a file caught while being written is not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled<T> {
    seen: T,
    pending: Option<T>,
}

impl<T: PartialEq> Settled<T> {
    pub fn new(initial: T) -> Self {
        Self {
            seen: initial,
            pending: None,
        }
    }

    /// Feeds this poll's value; true when a change has settled and should be
    /// acted on now.
    pub fn poll(&mut self, now: T) -> bool {
        if now == self.seen {
            self.pending = None;
            false
        } else if self.pending.as_ref() == Some(&now) {
            self.seen = now;
            self.pending = None;
            true
        } else {
            self.pending = Some(now);
            false
        }
    }

    /// Accepts `now` as seen (after a forced reload).
    pub fn reset(&mut self, now: T) {
        self.seen = now;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_counts_once_it_stands_still() {
        let mut s = Settled::new(1);
        assert!(!s.poll(1));
        assert!(!s.poll(2)); // first sight of the change
        assert!(!s.poll(3)); // still moving
        assert!(s.poll(3)); // stood still for a poll
        assert!(!s.poll(3));
    }

    #[test]
    fn stamps_see_a_rewrite() {
        let dir = std::env::temp_dir().join(format!("sundial-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, b"one").unwrap();
        let a = FileStamp::of(&f).unwrap();
        std::fs::write(dir.join("g"), b"three").unwrap();
        std::fs::rename(dir.join("g"), &f).unwrap();
        assert_ne!(FileStamp::of(&f).unwrap(), a);
        assert!(FileStamp::of(&dir.join("missing")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
