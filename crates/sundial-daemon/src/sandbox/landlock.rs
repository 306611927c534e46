//! The filesystem sandbox: a Landlock ruleset that allows [`Paths`] and
//! nothing else. Built here, enforced on every thread by `threads`.
#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr,
};

use super::paths::Paths;

/// The newest ABI whose rights we ask for; an older kernel enforces what
/// it knows (best effort), a kernel without Landlock nothing.
const ABI_WANTED: ABI = ABI::V5;

/// A ruleset ready to enforce, or why there is none.
#[derive(Debug)]
pub enum Prepared {
    Ruleset {
        fd: OwnedFd,
        abi: i32,
    },
    /// The kernel has no Landlock (or it is disabled).
    Unsupported,
}

/// The running kernel's Landlock ABI version, 0 when it has none: the
/// newest whose rights a ruleset can handle in full.
fn kernel_abi() -> i32 {
    let abis = [
        (ABI::V7, 7),
        (ABI::V6, 6),
        (ABI::V5, 5),
        (ABI::V4, 4),
        (ABI::V3, 3),
        (ABI::V2, 2),
        (ABI::V1, 1),
    ];
    abis.into_iter()
        .find(|(abi, _)| {
            Ruleset::default()
                .set_compatibility(CompatLevel::HardRequirement)
                .handle_access(AccessFs::from_all(*abi))
                .and_then(|r| r.create())
                .is_ok()
        })
        .map_or(0, |(_, n)| n)
}

/// Builds the ruleset for `paths`. Paths that do not exist are skipped.
pub fn prepare(paths: &Paths) -> Result<Prepared, landlock::RulesetError> {
    // Every right is handled (so execute is denied everywhere); reading
    // and writing are granted, never executing: NSS modules are mapped,
    // not executed.
    let handled = AccessFs::from_all(ABI_WANTED);
    let read = AccessFs::from_read(ABI_WANTED) & !AccessFs::Execute;
    let all = handled & !AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)?
        .create()?;
    for (list, access) in [(&paths.read, read), (&paths.write, all)] {
        for path in list {
            let Ok(fd) = PathFd::new(path) else {
                continue;
            };
            // A file gets only the rights that apply to files.
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(ABI_WANTED)
            };
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    let abi = kernel_abi();
    match Option::<OwnedFd>::from(ruleset) {
        Some(fd) if abi > 0 => Ok(Prepared::Ruleset { fd, abi }),
        _ => Ok(Prepared::Unsupported),
    }
}
