//! `sundial completions SHELL`: the shell's completion script, made by
//! clap_complete from the same command definition as `--help`.

use std::io::Write;

use clap::Command;
use clap_complete::{Generator, Shell};

/// Writes the script for `shell` to `out`; 0, or 1 with a message when it
/// cannot be written (a closed pipe is not worth a panic).
pub fn run(shell: Shell, mut cmd: Command, out: &mut impl Write) -> u8 {
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
            for word in ["sundial", "validate", "status", "config"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
