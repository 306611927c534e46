//! `sundial completions SHELL`: the shell's completion script, made by
//! clap_complete from the same command definition as `--help`.

use std::io::Write;

use clap::Command;
use clap_complete::{Generator, Shell};

/// Writes the script for `shell` to `out`; 0, or 1 with a message when it
/// cannot be written (a closed pipe is not worth a panic).
pub fn run(shell: Shell, cmd: Command, out: &mut impl Write) -> u8 {
    let mut cmd = visible(&cmd);
    cmd.set_bin_name("sundial");
    cmd.build();
    let mut script = Vec::new();
    let written = shell
        .try_generate(&cmd, &mut script)
        .and_then(|()| out.write_all(&script))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("sundial completions: {e}");
            1
        }
    }
}

/// The command without its hidden subcommands: clap_complete offers those
/// too, and `sundial man` is for packaging, not for a person at a prompt.
/// (clap cannot remove a subcommand, so this is a copy of the top level.)
fn visible(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_name().to_owned())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(version) = cmd.get_version() {
        copy = copy.version(version.to_owned());
    }
    if let Some(about) = cmd.get_about() {
        copy = copy.about(about.clone());
    }
    if let Some(long_about) = cmd.get_long_about() {
        copy = copy.long_about(long_about.clone());
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            assert_eq!(run(shell, crate::Cli::command(), &mut out), 0);
            let script = String::from_utf8_lossy(&out);
            for word in ["sundial", "validate", "status", "config", "completions"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
            assert!(
                !script.contains("Write the man pages") && !script.contains("sundial,man)"),
                "{shell} offers the hidden `man`"
            );
        }
    }
}
