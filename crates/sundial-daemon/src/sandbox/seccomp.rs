//! The system-call allow-list (seccomp-BPF through `seccompiler`), applied
//! to every thread (TSYNC) once privileges are dropped. Anything not in
//! [`ALLOWED`] kills the process (`seccomp = "kill"`, the default) or is
//! logged by the kernel and allowed (`"log"`, to find what a new code path
//! needs: see docs/security.md, "Finding a missing system call").
//!
//! One table, one line per system call with the code path that needs it.
//! A new feature adds its calls here.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::config::SeccompMode;

/// The calls sundial makes after start, and why.
#[rustfmt::skip]
pub const ALLOWED: &[(libc::c_long, &str)] = &[
    // Memory: the allocator, thread stacks, TLS libraries.
    (libc::SYS_brk, "allocator"),
    (libc::SYS_mmap, "allocator, thread stacks"),
    (libc::SYS_munmap, "allocator, thread stacks"),
    (libc::SYS_mremap, "allocator (realloc of large blocks)"),
    (libc::SYS_mprotect, "thread stack guard pages"),
    (libc::SYS_madvise, "allocator returning memory"),
    // Threads and their synchronization (tokio, std, the NTP threads).
    (libc::SYS_futex, "locks, condition variables, thread parking"),
    (libc::SYS_clone, "threads (glibc's fallback without clone3)"),
    (libc::SYS_clone3, "threads: tokio's blocking pool (DNS, files)"),
    (libc::SYS_set_robust_list, "new threads (glibc)"),
    (libc::SYS_rseq, "new threads (glibc)"),
    (libc::SYS_set_tid_address, "new threads (glibc)"),
    (libc::SYS_gettid, "tracing thread ids, glibc"),
    (libc::SYS_getpid, "glibc, tokio"),
    (libc::SYS_sched_yield, "spin loops in locks"),
    (libc::SYS_sched_getaffinity, "tokio/std: available parallelism"),
    (libc::SYS_prctl, "PR_SET_NAME for new threads"),
    (libc::SYS_sigaltstack, "std's stack-overflow handler on new threads"),
    (libc::SYS_exit, "a thread ends"),
    (libc::SYS_exit_group, "the process ends"),
    (libc::SYS_restart_syscall, "a call interrupted by a signal resumes"),
    (libc::SYS_prlimit64, "std reads the stack limit for new threads"),
    (libc::SYS_uname, "glibc, rustls-native-certs"),
    // Signals: SIGTERM, SIGINT, SIGHUP (tokio's self-pipe).
    (libc::SYS_rt_sigaction, "signal handlers"),
    (libc::SYS_rt_sigprocmask, "threads block and unblock signals"),
    (libc::SYS_rt_sigreturn, "return from a signal handler"),
    (libc::SYS_tgkill, "abort() on a fatal error raises SIGABRT"),
    // Time.
    (libc::SYS_clock_gettime, "clocks, where the vDSO falls back"),
    (libc::SYS_gettimeofday, "clocks, where the vDSO falls back"),
    (libc::SYS_clock_nanosleep, "std::thread::sleep (NTP pacing, jump watch)"),
    (libc::SYS_nanosleep, "sleep"),
    (libc::SYS_clock_adjtime, "steering and reading the clock (discipline)"),
    (libc::SYS_adjtimex, "reading the kernel clock state"),
    (libc::SYS_getrandom, "cookies, nonces, TLS"),
    // The event loop (tokio/mio).
    (libc::SYS_epoll_create1, "tokio reactor"),
    (libc::SYS_epoll_ctl, "tokio reactor"),
    (libc::SYS_epoll_pwait, "tokio reactor"),
    (libc::SYS_eventfd2, "tokio waker"),
    (libc::SYS_ppoll, "glibc resolver, blocking waits"),
    // Sockets: NTP, NTS-KE, sources (NTP, KE, DNS), status, metrics,
    // sd_notify, refclock SOCK sources.
    (libc::SYS_socket, "KE client and DNS connections, sd_notify"),
    (libc::SYS_socketpair, "tokio signal self-pipe"),
    (libc::SYS_connect, "KE client, DNS, sources' UDP sockets"),
    (libc::SYS_bind, "sources' UDP sockets, refclock SOCK"),
    (libc::SYS_listen, "(listeners are bound before the filter; harmless)"),
    (libc::SYS_accept4, "NTS-KE, status and metrics connections"),
    (libc::SYS_getsockname, "sources, listeners"),
    (libc::SYS_getpeername, "connections"),
    (libc::SYS_setsockopt, "timestamps, buffers, TCP options"),
    (libc::SYS_getsockopt, "connect results (SO_ERROR)"),
    (libc::SYS_sendto, "NTP answers and requests, DNS, sd_notify"),
    (libc::SYS_recvfrom, "NTP requests and answers, DNS"),
    (libc::SYS_sendmsg, "NTP with ancillary data, DNS"),
    (libc::SYS_recvmsg, "NTP with kernel receive timestamps, MSG_ERRQUEUE"),
    (libc::SYS_sendmmsg, "batched NTP serving"),
    (libc::SYS_recvmmsg, "batched NTP serving"),
    (libc::SYS_shutdown, "closing TLS and status connections"),
    // Files: certificate reload, key storage, CA files, logs, /proc.
    (libc::SYS_openat, "certificates, keys, CA files, resolver files, /proc"),
    (libc::SYS_close, "every descriptor"),
    (libc::SYS_read, "files and sockets"),
    (libc::SYS_write, "files, sockets, logs"),
    (libc::SYS_writev, "logs, sockets"),
    (libc::SYS_readv, "sockets"),
    (libc::SYS_pread64, "files"),
    (libc::SYS_lseek, "files"),
    (libc::SYS_fstat, "files"),
    (libc::SYS_newfstatat, "file stamps for reloads"),
    (libc::SYS_statx, "file stamps for reloads (std's metadata)"),
    (libc::SYS_readlinkat, "symlink switches of certificates"),
    (libc::SYS_getdents64, "trust-anchor directories, /proc/self/task"),
    (libc::SYS_fcntl, "non-blocking and close-on-exec flags"),
    (libc::SYS_ioctl, "FIONBIO, terminal checks; PPS devices"),
    (libc::SYS_fsync, "key storage (atomic write)"),
    (libc::SYS_fdatasync, "key storage"),
    (libc::SYS_renameat, "key storage (atomic replace)"),
    (libc::SYS_renameat2, "key storage (atomic replace)"),
    (libc::SYS_unlinkat, "key storage temporaries, the status socket at exit"),
    (libc::SYS_mkdirat, "key storage directory"),
    (libc::SYS_fchmod, "key file mode"),
    (libc::SYS_fchmodat, "status socket mode"),
    (libc::SYS_faccessat, "glibc resolver"),
    (libc::SYS_faccessat2, "glibc resolver"),
    (libc::SYS_dup, "std"),
    (libc::SYS_dup3, "std"),
    (libc::SYS_pipe2, "std"),
    (libc::SYS_getuid, "status"),
    (libc::SYS_geteuid, "status"),
    (libc::SYS_getgid, "status"),
    (libc::SYS_getegid, "status"),
];

/// The x86-64 calls that newer architectures dropped (glibc and std still
/// use some of them there).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const ALLOWED_X86_64: &[(libc::c_long, &str)] = &[
    (libc::SYS_open, "older code paths in glibc"),
    (libc::SYS_stat, "older code paths in glibc"),
    (libc::SYS_lstat, "older code paths in glibc"),
    (libc::SYS_access, "glibc resolver"),
    (libc::SYS_readlink, "std::fs::canonicalize"),
    (libc::SYS_rename, "key storage (std::fs::rename)"),
    (libc::SYS_unlink, "std::fs::remove_file"),
    (libc::SYS_mkdir, "std::fs::create_dir"),
    (libc::SYS_chmod, "status socket mode"),
    (libc::SYS_poll, "glibc resolver, std"),
    (libc::SYS_epoll_wait, "tokio reactor"),
    (libc::SYS_arch_prctl, "new threads (TLS)"),
    (libc::SYS_pipe, "std"),
    (libc::SYS_getdents, "directories"),
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_X86_64: &[(libc::c_long, &str)] = &[];

fn target_arch() -> Option<TargetArch> {
    if cfg!(target_arch = "x86_64") {
        Some(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(TargetArch::aarch64)
    } else {
        None
    }
}

/// The compiled filter, or `None` where this architecture has no table.
pub fn program(mode: SeccompMode) -> Result<Option<BpfProgram>, seccompiler::BackendError> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(None),
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
    };
    let Some(arch) = target_arch() else {
        return Ok(None);
    };
    // c_long is i64 here, but not on every target this file compiles for.
    #[allow(clippy::useless_conversion)]
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_X86_64)
        .map(|(nr, _)| (i64::from(*nr), Vec::new()))
        .collect();
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)?;
    Ok(Some(filter.try_into()?))
}

/// Applies `program` to every thread of the process.
pub fn apply(program: &BpfProgram) -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter_all_threads(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compiles_to_a_filter_without_duplicates() {
        let mut numbers: Vec<_> = ALLOWED.iter().chain(ALLOWED_X86_64).map(|e| e.0).collect();
        let all = numbers.len();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), all, "a system call listed twice");
        assert!(!numbers.contains(&libc::SYS_execve));
        assert!(program(SeccompMode::Kill).is_ok());
        assert!(program(SeccompMode::Off).is_ok_and(|p| p.is_none()));
    }
}
