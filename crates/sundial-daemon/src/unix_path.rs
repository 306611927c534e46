//! Making room for a Unix socket the daemon creates: the observation
//! socket and a refclock's SOCK socket. A socket file left by a daemon
//! that died is removed; one that somebody still answers on, and anything
//! that is not a socket, is left alone and refused.
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Why the path cannot take a new socket.
#[derive(Debug)]
pub(crate) enum Occupied {
    /// A live socket: another process (another sundial?) has it.
    InUse,
    /// A file that is not a socket; it is not ours to remove.
    NotASocket,
    Io(io::Error),
}

/// Removes a dead socket at `path`, if there is one. `answers` tells
/// whether a socket file has a live owner (a connect succeeds).
pub(crate) fn make_room(path: &Path, answers: impl FnOnce(&Path) -> bool) -> Result<(), Occupied> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if answers(path) {
                return Err(Occupied::InUse);
            }
            fs::remove_file(path).map_err(Occupied::Io)
        }
        Ok(_) => Err(Occupied::NotASocket),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Occupied::Io(e)),
    }
}
