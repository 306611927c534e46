//! What this build is: the version, the git commit and how AES is done.
//! `sundial --version` prints it, and the status snapshot carries it so
//! `sundial status` can tell a daemon still running the old binary after
//! an upgrade.

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit built from (short hash), or "unknown" outside a git
/// checkout (build.rs).
pub const COMMIT: &str = env!("SUNDIAL_GIT_COMMIT");

/// How the NTS AEADs get their AES. A portable build (the default) picks
/// AES-NI at run time when the CPU has it; a build for a CPU with AES
/// (`-C target-cpu=native` on such a CPU, or `-C target-feature=+aes`)
/// inlines the instructions, is faster, and stops with SIGILL on a CPU
/// without them (docs/operations.md, "Install").
pub const AES: &str = if cfg!(target_feature = "aes") {
    "native (built for CPUs with AES instructions)"
} else {
    "portable (AES instructions used at run time when the CPU has them)"
};

/// The version and commit as one comparable string: "0.1.0 (1a2b3c4d5e6f)".
#[must_use]
pub fn version_and_commit() -> String {
    format!("{VERSION} ({COMMIT})")
}

/// What `sundial --version` prints after the name: version and commit on
/// the first line, then the target and the AES in use.
#[must_use]
pub fn long_version() -> String {
    format!(
        "{}\ntarget: {}-{}\nAES: {AES}",
        version_and_commit(),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}
