//! One credential change applied on every thread of the process.
//!
//! Linux keeps capabilities, the no-new-privs bit, securebits and the
//! Landlock domain per thread, and by the time `run` has bound its sockets
//! the tokio runtime's threads exist. glibc broadcasts set*id() to every
//! thread itself; nothing broadcasts capset(2) or landlock_restrict_self(2)
//! (Landlock's own all-threads flag needs ABI 8). So each thread is sent a
//! real-time signal whose handler applies [`Step`] to itself with raw
//! system calls, as libcap's psx does; threads created meanwhile are found
//! by reading /proc/self/task again until no thread is left out.
//!
//! Sound because the handler only reads atomics and makes system calls
//! (async-signal-safe), saves errno, and the statics it reads are written
//! before any signal is sent, under a lock that lets one broadcast run at a
//! time.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What each thread does to itself, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Switch uid and gid (and drop supplementary groups) when still root.
    pub switch_to: Option<(u32, u32)>,
    /// Still uid 0 afterwards: set SECBIT_NOROOT (locked), so that an
    /// execve could not hand root its capabilities back.
    pub noroot: bool,
    /// The capabilities kept, permitted and effective (bit n = cap n).
    pub capabilities: u64,
    /// A Landlock ruleset to restrict every thread with, or -1.
    pub landlock_fd: i32,
}

const FLAG_SWITCH: u32 = 1;
const FLAG_NOROOT: u32 = 2;

static UID: AtomicU32 = AtomicU32::new(0);
static GID: AtomicU32 = AtomicU32::new(0);
static FLAGS: AtomicU32 = AtomicU32::new(0);
static CAPS: AtomicU64 = AtomicU64::new(0);
static LANDLOCK_FD: AtomicI32 = AtomicI32::new(-1);
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// The first failure: stage in the high half, errno in the low half.
static FAILURE: AtomicU64 = AtomicU64::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The system call that failed, for the error message.
const STAGES: [&str; 8] = [
    "",
    "prctl(PR_SET_KEEPCAPS)",
    "setgroups",
    "setresgid",
    "setresuid",
    "prctl(PR_SET_SECUREBITS)",
    "capset",
    "prctl(PR_SET_NO_NEW_PRIVS) / landlock_restrict_self",
];

/// Applies `Step` on the calling thread. Only system calls: this runs in
/// a signal handler.
fn apply_here() -> Result<(), (u32, i32)> {
    let flags = FLAGS.load(Ordering::SeqCst);
    let check = |stage: u32, ret: libc::c_long| {
        if ret < 0 {
            // SAFETY: errno is this thread's.
            Err((stage, unsafe { *libc::__errno_location() }))
        } else {
            Ok(())
        }
    };
    // SAFETY (every call below): plain system calls on this thread's own
    // credentials, with pointers to locals that outlive the call.
    unsafe {
        if flags & FLAG_SWITCH != 0 && libc::geteuid() == 0 {
            let uid = UID.load(Ordering::SeqCst);
            let gid = GID.load(Ordering::SeqCst);
            check(1, libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
            let groups = [gid];
            check(2, libc::syscall(libc::SYS_setgroups, 1, groups.as_ptr()))?;
            check(3, libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
            check(4, libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
            check(1, libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0).into())?;
        }
        if flags & FLAG_NOROOT != 0 {
            let bits = libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0);
            check(5, bits.into())?;
            let want = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED;
            let bits = libc::c_ulong::try_from(bits).unwrap_or(0);
            if bits & want != want {
                check(
                    5,
                    libc::prctl(libc::PR_SET_SECUREBITS, bits | want, 0, 0, 0).into(),
                )?;
            }
        }
        let caps = CAPS.load(Ordering::SeqCst);
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let half = |shift: u32| {
            let bits = u32::try_from((caps >> shift) & 0xffff_ffff).unwrap_or(0);
            CapData {
                effective: bits,
                permitted: bits,
                inheritable: 0,
            }
        };
        let data = [half(0), half(32)];
        check(
            6,
            libc::syscall(
                libc::SYS_capset,
                std::ptr::from_mut(&mut header),
                data.as_ptr(),
            ),
        )?;
        check(7, libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
        let fd = LANDLOCK_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            check(7, libc::syscall(libc::SYS_landlock_restrict_self, fd, 0))?;
        }
    }
    Ok(())
}

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: errno is this thread's; restored so the interrupted code
    // never sees the handler's.
    let saved = unsafe { *libc::__errno_location() };
    if let Err((stage, errno)) = apply_here() {
        let code = (u64::from(stage) << 32) | u64::from(errno.unsigned_abs());
        let _ = FAILURE.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }
    PENDING.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn thread_ids() -> io::Result<Vec<i32>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        if let Some(id) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn failure() -> io::Result<()> {
    match FAILURE.swap(0, Ordering::SeqCst) {
        0 => Ok(()),
        code => {
            let stage = usize::try_from(code >> 32).unwrap_or(0);
            let errno = i32::try_from(code & 0xffff_ffff).unwrap_or(0);
            let error = io::Error::from_raw_os_error(errno);
            Err(io::Error::new(
                error.kind(),
                format!("{}: {error}", STAGES.get(stage).copied().unwrap_or("?")),
            ))
        }
    }
}

/// Applies `step` to every thread of the process, this one first. An error
/// leaves some threads changed: the caller must not go on serving.
pub fn on_every_thread(step: Step) -> io::Result<()> {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (uid, gid) = step.switch_to.unwrap_or((0, 0));
    UID.store(uid, Ordering::SeqCst);
    GID.store(gid, Ordering::SeqCst);
    let flags = if step.switch_to.is_some() {
        FLAG_SWITCH
    } else {
        0
    } | if step.noroot { FLAG_NOROOT } else { 0 };
    FLAGS.store(flags, Ordering::SeqCst);
    CAPS.store(step.capabilities, Ordering::SeqCst);
    LANDLOCK_FD.store(step.landlock_fd, Ordering::SeqCst);
    FAILURE.store(0, Ordering::SeqCst);

    let signal = libc::SIGRTMIN() + 4;
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe
    // (see `on_signal`); the previous action is put back below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&raw mut action.sa_mask);
        if libc::sigaction(signal, &raw const action, &raw mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let outcome = signal_all(signal);
    // SAFETY: restores the action saved above.
    unsafe { libc::sigaction(signal, &raw const old, std::ptr::null_mut()) };
    outcome
}

fn signal_all(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: plain identity queries.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let mut done = HashSet::from([me]);
    PENDING.store(1, Ordering::SeqCst);
    on_signal(0);
    failure()?;
    loop {
        let new: Vec<i32> = thread_ids()?
            .into_iter()
            .filter(|t| !done.contains(t))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        for tid in new {
            done.insert(tid);
            PENDING.fetch_add(1, Ordering::SeqCst);
            // SAFETY: tgkill to a thread of this process.
            if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) } != 0 {
                // A thread that ended meanwhile needs nothing.
                PENDING.fetch_sub(1, Ordering::SeqCst);
                let error = io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::ESRCH) {
                    return Err(error);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while PENDING.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a thread did not take the signal within 5 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        failure()?;
    }
}
