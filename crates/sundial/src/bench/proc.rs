//! A server process's CPU time and memory, read from /proc, so that CPU
//! per response is measured over exactly the requests of one step.

use nix::unistd::{SysconfVar, sysconf};

/// User plus system CPU seconds of `pid` (all its threads) and of its live
/// child processes: chronyd serves NTS-KE from forked helpers, whose CPU a
/// key-exchange benchmark must count.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let own = process_cpu_seconds(pid)?;
    Some(
        own + children(pid)
            .into_iter()
            .filter_map(process_cpu_seconds)
            .sum::<f64>(),
    )
}

/// The direct children of `pid`, from every thread's `children` list.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'. After it come state (field 3), ..., utime (14), stime (15).
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = sysconf(SysconfVar::CLK_TCK).ok()??;
    Some((utime + stime) as f64 / ticks as f64)
}

/// Resident and peak resident memory.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

pub fn memory_kib(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}
