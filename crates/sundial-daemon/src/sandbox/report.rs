//! What the process holds, read back from /proc/self/status: what
//! `sundial status` shows and the start-up log says.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// The sandbox as it stands, for `sundial status` (text and JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// The user the daemon runs as, and its uid.
    pub user: String,
    pub uid: u32,
    /// Effective capabilities by name (`cap_sys_time`), empty for none.
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    /// "enforced (ABI n)", "unsupported by the kernel" or "off".
    pub landlock: String,
    /// "filter", "strict" or "off" (the kernel's Seccomp field).
    pub seccomp: String,
}

/// Capability names by number (linux/capability.h).
const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// `CAP_SYS_TIME`, the one capability a steering daemon keeps.
pub const CAP_SYS_TIME: u32 = 25;

/// The names of the bits set in `mask`.
#[must_use]
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match CAP_NAMES.get(bit as usize) {
            Some(name) => format!("cap_{name}"),
            None => format!("cap_{bit}"),
        })
        .collect()
}

/// The fields of /proc/self/status the sandbox is judged by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub uid: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub no_new_privs: bool,
    /// 0 off, 1 strict, 2 filter.
    pub seccomp: u8,
}

impl ProcStatus {
    /// Parses the text of /proc/PID/status; missing fields stay zero.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                // Real, effective, saved, filesystem: the effective one.
                "Uid" => {
                    out.uid = value
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
                "CapEff" => out.cap_effective = u64::from_str_radix(value, 16).unwrap_or(0),
                "CapPrm" => out.cap_permitted = u64::from_str_radix(value, 16).unwrap_or(0),
                "NoNewPrivs" => out.no_new_privs = value == "1",
                "Seccomp" => out.seccomp = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        out
    }

    /// This process, now.
    pub fn read_self() -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/self/status")?))
    }

    #[must_use]
    pub fn seccomp_name(&self) -> &'static str {
        match self.seccomp {
            0 => "off",
            1 => "strict",
            _ => "filter",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields_are_read() {
        let text = "Name:\tsundial\nUid:\t0\t65534\t65534\t65534\nCapPrm:\t0000000002000000\nCapEff:\t0000000002000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let s = ProcStatus::parse(text);
        assert_eq!(s.uid, 65534);
        assert_eq!(s.cap_effective, 1 << CAP_SYS_TIME);
        assert!(s.no_new_privs);
        assert_eq!(s.seccomp_name(), "filter");
        assert_eq!(capability_names(s.cap_effective), ["cap_sys_time"]);
        assert_eq!(ProcStatus::parse("garbage"), ProcStatus::default());
    }
}
