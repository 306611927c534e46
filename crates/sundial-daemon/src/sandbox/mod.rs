//! Least privilege after start: once `run` has bound its sockets and read
//! its keys and certificates, the daemon switches to its own user, keeps
//! CAP_SYS_TIME only when it steers the clock, sets no-new-privs and
//! confines its file access with Landlock. docs/security.md has the
//! layers, what each stops, and the tests that show them.

mod landlock;
mod paths;
mod report;
mod seccomp;
mod threads;

pub use seccomp::ALLOWED as SECCOMP_ALLOWED;

use std::sync::{Arc, OnceLock};

use nix::unistd::{Uid, User, geteuid};

pub use paths::Paths;
pub use report::{CAP_SYS_TIME, ProcStatus, SandboxStatus, capability_names};

use crate::config::{Config, DEFAULT_USER};

/// Why the sandbox could not be entered. The daemon does not start then:
/// half a sandbox is not one to serve from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error(
        "[security] user: no user {0:?} on this machine (create it, e.g. with packaging/sundial.sysusers, or name another)"
    )]
    NoSuchUser(String),
    #[error("[security] user: cannot look up {0:?}: {1}")]
    Lookup(String, nix::Error),
    #[error("cannot build the Landlock ruleset: {0}")]
    Landlock(#[from] ::landlock::RulesetError),
    #[error("cannot build the system-call filter: {0}")]
    Seccomp(#[from] seccompiler::BackendError),
    #[error("cannot drop privileges: {0}")]
    Drop(std::io::Error),
}

/// Shared with the status socket, set once the sandbox is entered.
pub type SharedStatus = Arc<OnceLock<SandboxStatus>>;

/// The user to become, when started as root: `None` stays root (with no
/// capabilities but the ones needed), which happens with `user = "root"`
/// or when the default user does not exist.
fn target_user(config: &Config) -> Result<Option<User>, SandboxError> {
    let (name, explicit) = match &config.security.user {
        Some(name) => (name.as_str(), true),
        None => (DEFAULT_USER, false),
    };
    match User::from_name(name) {
        Ok(Some(user)) if user.uid.is_root() => Ok(None),
        Ok(Some(user)) => Ok(Some(user)),
        Ok(None) if explicit => Err(SandboxError::NoSuchUser(name.to_owned())),
        Ok(None) => {
            tracing::warn!(
                "started as root and there is no user {DEFAULT_USER:?}: staying root, with only the capabilities needed; create the user (packaging/sundial.sysusers) or set [security] user"
            );
            Ok(None)
        }
        Err(e) => Err(SandboxError::Lookup(name.to_owned(), e)),
    }
}

fn user_name(uid: Uid) -> String {
    User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Enters the sandbox on every thread. `steers` is whether the clock is
/// steered (CAP_SYS_TIME is kept only then).
pub fn enter(config: &Config, steers: bool) -> Result<SandboxStatus, SandboxError> {
    let before = ProcStatus::read_self().map_err(SandboxError::Drop)?;
    let root = geteuid().is_root();
    let user = if root { target_user(config)? } else { None };
    let wanted = if steers { 1u64 << CAP_SYS_TIME } else { 0 };
    let capabilities = wanted & before.cap_permitted;
    if steers && capabilities == 0 {
        tracing::warn!(
            "no CAP_SYS_TIME: the clock cannot be steered (run as root, or give the capability, as packaging/sundial.service does)"
        );
    }
    prepare_key_dir(config, user.as_ref()).map_err(SandboxError::Drop)?;
    hand_over_dirs(config, user.as_ref()).map_err(SandboxError::Drop)?;
    let prepared = if config.security.landlock {
        Some(landlock::prepare(&Paths::for_config(config))?)
    } else {
        None
    };
    let (landlock_fd, landlock_state) = match &prepared {
        Some(landlock::Prepared::Ruleset { fd, abi }) => (
            std::os::fd::AsRawFd::as_raw_fd(fd),
            format!("enforced (ABI {abi})"),
        ),
        Some(landlock::Prepared::Unsupported) => {
            tracing::warn!(
                "Landlock is not available in this kernel: files are not sandboxed (the other layers still hold)"
            );
            (-1, "unsupported by the kernel".to_owned())
        }
        None => (-1, "off".to_owned()),
    };
    let filter = seccomp::program(config.security.seccomp)?;
    let switch_to = user.as_ref().map(|u| (u.uid.as_raw(), u.gid.as_raw()));
    let name = match &user {
        Some(u) => u.name.clone(),
        None => user_name(geteuid()),
    };
    threads::on_every_thread(threads::Step {
        switch_to,
        noroot: root && switch_to.is_none(),
        capabilities,
        landlock_fd,
    })
    .map_err(SandboxError::Drop)?;
    drop(prepared);
    // After no-new-privs is set on every thread, which TSYNC needs.
    let mode = config.security.seccomp;
    let seccomp_state = match &filter {
        Some(program) => match seccomp::apply(program) {
            Ok(()) => mode.name().to_owned(),
            Err(e) => {
                tracing::warn!(
                    "cannot install the system-call filter ({e}): system calls are not filtered (the other layers still hold)"
                );
                format!("unavailable ({e})")
            }
        },
        None if mode == crate::config::SeccompMode::Off => "off".to_owned(),
        None => {
            tracing::warn!(
                "no system-call table for this architecture: system calls are not filtered"
            );
            "unsupported architecture".to_owned()
        }
    };
    let after = ProcStatus::read_self().map_err(SandboxError::Drop)?;
    let status = SandboxStatus {
        user: name,
        uid: after.uid,
        capabilities: capability_names(after.cap_effective),
        no_new_privs: after.no_new_privs,
        landlock: landlock_state,
        seccomp: format!("{} ({seccomp_state})", after.seccomp_name()),
    };
    tracing::info!(
        user = %status.user,
        uid = status.uid,
        capabilities = ?status.capabilities,
        no_new_privs = status.no_new_privs,
        landlock = %status.landlock,
        seccomp = %status.seccomp,
        "privileges dropped"
    );
    check_still_readable(config);
    forbidden_call_for_tests();
    Ok(status)
}

/// Test only (docs/security.md): with `SUNDIAL_TEST_FORBIDDEN_SYSCALL=execve`
/// in its environment the daemon tries to execute /bin/true once
/// sandboxed, so a test can show the filter ends the process. Without the
/// filter the daemon would become /bin/true and exit: nothing it could not
/// do anyway.
fn forbidden_call_for_tests() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("SUNDIAL_TEST_FORBIDDEN_SYSCALL").is_some_and(|v| v == "execve") {
        tracing::warn!("SUNDIAL_TEST_FORBIDDEN_SYSCALL=execve: trying execve, as a test asked");
        let error = std::process::Command::new("/bin/true").exec();
        tracing::warn!("execve failed: {error}");
    }
}

/// The key file is first stored after the drop, into a directory that
/// Landlock can only name if it exists: one that does not is created now
/// (0700, as the keystore would), owned by the user to become.
fn prepare_key_dir(config: &Config, user: Option<&User>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = config
        .keyset
        .key_storage_path
        .as_deref()
        .and_then(std::path::Path::parent)
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    else {
        return Ok(());
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    if let Some(user) = user {
        std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
    }
    Ok(())
}

/// The directories the daemon rewrites files in (key storage, ACME state),
/// when root owns them and root is being left: handed to the new user,
/// or every store after the switch would fail. Only private ones (0700,
/// as sundial creates them): a shared directory such as /etc/sundial is
/// never given away.
fn hand_over_dirs(config: &Config, user: Option<&User>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(user) = user else {
        return Ok(());
    };
    let keys = config
        .keyset
        .key_storage_path
        .as_deref()
        .and_then(std::path::Path::parent);
    let acme = config
        .nts_ke_servers
        .iter()
        .filter_map(|ke| ke.acme.as_ref())
        .map(|acme| acme.state_directory.as_path());
    for dir in keys.into_iter().chain(acme) {
        let private_to_root = std::fs::metadata(dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o777 == 0o700);
        if private_to_root {
            std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
    }
    Ok(())
}

/// Certificates and keys are read again on reload, and an ACME server's
/// CA file at every order: say now, not at the first renewal, when the new
/// user cannot read them. (ACME's own certificate lives in its state
/// directory, which the daemon owns, and may not exist yet.)
fn check_still_readable(config: &Config) {
    for ke in &config.nts_ke_servers {
        let (paths, fails) = match &ke.acme {
            Some(acme) => (
                acme.ca_certificate.iter().collect::<Vec<_>>(),
                "ACME orders will fail",
            ),
            None => (
                vec![&ke.certificate_chain_path, &ke.private_key_path],
                "certificate reloads will fail",
            ),
        };
        for path in paths {
            if let Err(e) = std::fs::File::open(path) {
                tracing::warn!(
                    "{}: not readable after the privilege drop ({e}): {fails}; see docs/security.md for the layout",
                    path.display()
                );
            }
        }
    }
}
