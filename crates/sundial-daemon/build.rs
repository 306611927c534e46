//! Records the git commit the daemon is built from, for `sundial --version`
//! and the status snapshot: a running daemon can then be told apart from
//! the binary an upgrade installed beside it.
//!
//! A build outside a git checkout (a source tarball, a distribution's
//! build) says "unknown", or whatever `SUNDIAL_GIT_COMMIT` names.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SUNDIAL_GIT_COMMIT");
    let commit = match std::env::var("SUNDIAL_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=SUNDIAL_GIT_COMMIT={commit}");
}

/// The short hash of HEAD, or `None` when there is no git or no checkout.
/// Asks cargo to run this again when HEAD or the branch it names moves,
/// and only then: any other trigger would rebuild the crate for nothing.
fn git_commit() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch])?);
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"])?);
    // Only files that exist: cargo would run a build script that names a
    // missing one at every build (a fresh clone may keep the branch in
    // packed-refs only, or have no packed-refs).
    for path in watched {
        let path = Path::new(&dir).join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
