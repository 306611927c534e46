//! The `sundial` command: one binary, one small function per subcommand.
#![forbid(unsafe_code)]

mod bench;
mod ca;
mod completions;
mod demo;
mod man;
mod query;
mod status;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sundial_daemon::config::{self, ConfigError};

/// An NTP daemon built around Network Time Security.
///
/// sundial gets authenticated time from NTS servers (RFC 8915) and
/// disciplines the clock, and serves NTP and NTS to others, as
/// /etc/sundial/ntp.toml says (see ntp.toml(5); an ntpd-rs ntp.toml loads
/// unchanged). `sundial run` is the daemon, usually started by systemd as
/// sundial.service; the other commands check a configuration, show what the
/// daemon is doing, ask a server for the time, and make certificates.
#[derive(Debug, Parser)]
#[command(name = "sundial", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file [default: /etc/sundial/ntp.toml, else
        /// /etc/ntpd-rs/ntp.toml if only that exists].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Measure and serve, but never change the clock (same as
        /// `[clock] observe-only = true`).
        #[arg(long)]
        observe: bool,
    },
    /// Check a configuration file without starting anything.
    Validate {
        /// Configuration file [default: as for `run`].
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a private CA and a server certificate it signs, for an NTS
    /// server without a public certificate.
    Ca(ca::CaArgs),
    /// Show what the running daemon is doing: sources, servers, keys
    /// (read from its observation socket).
    Status(status::StatusArgs),
    /// Ask one server for the time, once: NTS key exchange, then one
    /// NTS-protected NTP exchange (or plain NTP with --ntp), and show what
    /// it said. Never changes the clock.
    Query(query::QueryArgs),
    /// See NTS work on this machine: a throwaway NTS server on 127.0.0.1
    /// and a client of it, for a few seconds. Needs no config, no network,
    /// never changes the clock.
    Demo(demo::DemoArgs),
    /// Load an NTP or NTS server with a rate sweep (a measuring tool).
    Bench(bench::BenchArgs),
    /// Print the shell completion script for SHELL on standard output
    /// (the package installs those for bash, zsh and fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages sundial(8) and ntp.toml(5) into DIR (how
    /// packaging/man/ is made).
    #[command(hide = true)]
    Man {
        /// Where to write them.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The command line as `--help`, the man page and the completions see it.
/// `--version` (long) adds the commit, target and AES, which only the
/// running binary knows, and which the man page must not carry (it would
/// differ at every commit).
fn command() -> clap::Command {
    Cli::command().long_version(sundial_daemon::build_info::long_version())
}

/// Exit status for a configuration that does not load.
const EXIT_INVALID: u8 = 1;

fn main() -> ExitCode {
    let cli = match command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(e) => {
            // `query --json` promises one JSON object on stdout whatever
            // happens, bad arguments included.
            let args: Vec<String> = std::env::args().skip(1).collect();
            if e.use_stderr() && query::wants_json(&args) {
                let _ = e.print();
                return ExitCode::from(query::print_usage_error(&args, &e.to_string()));
            }
            e.exit()
        }
    };
    let code = match cli.command {
        Command::Run { config, observe } => run(&config::resolve_path(config.as_deref()), observe),
        Command::Validate { config } => validate(
            &config::resolve_path(config.as_deref()),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Command::Bench(args) => match bench::run(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sundial bench: {e}");
                EXIT_FAILED
            }
        },
        Command::Query(args) => query::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Ca(args) => match ca::run(&args, &mut std::io::stdout().lock()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sundial ca: {e}");
                EXIT_FAILED
            }
        },
        Command::Completions { shell } => {
            completions::run(shell, Cli::command(), &mut std::io::stdout().lock())
        }
        Command::Man { out } => match man::write_pages(Cli::command(), &out) {
            Ok(paths) => {
                for path in paths {
                    println!("{}", path.display());
                }
                0
            }
            Err(e) => {
                eprintln!("sundial man: {}: {e}", out.display());
                EXIT_FAILED
            }
        },
    };
    ExitCode::from(code)
}

/// Exit status for a daemon that could not start or failed while running.
const EXIT_FAILED: u8 = 1;

/// `sundial run`: load the configuration, set up logging, run until
/// SIGTERM or SIGINT.
fn run(path: &Path, observe: bool) -> u8 {
    let mut stderr = std::io::stderr().lock();
    let config = match config::load(path) {
        Ok(config) => config,
        Err(err) => {
            report_error(&err, &mut stderr);
            return EXIT_INVALID;
        }
    };
    let start_errors = config.start_errors();
    for error in &start_errors {
        let _ = writeln!(stderr, "{}: error: {error}", path.display());
    }
    if !start_errors.is_empty() {
        return EXIT_INVALID;
    }
    drop(stderr);
    if let Err(e) = init_logging(&config.observability) {
        eprintln!("sundial: {e}");
        return EXIT_FAILED;
    }
    for warning in config.warnings() {
        tracing::warn!("{}: `{}`: {}", path.display(), warning.key, warning.message);
    }
    let config_logs_to_file = config.observability.log_path.is_some();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sundial: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    match runtime.block_on(sundial_daemon::run::run(config, observe)) {
        Ok(()) => 0,
        Err(e) => {
            // Once where a person sees it: stderr (the journal under
            // systemd) always, and the log file too when logs go there.
            if config_logs_to_file {
                tracing::error!("{e}");
            }
            eprintln!("sundial: {e}");
            match e {
                sundial_daemon::run::RunError::Panic(_) => sundial_daemon::run::EXIT_PANIC,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// Logs go to stderr (journald picks them up) or to `log-path`; the level
/// is `log-level`, overridden by `RUST_LOG` when set.
fn init_logging(observability: &config::ObservabilityConfig) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let level = observability.effective_log_level().as_str();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &observability.log_path {
        Some(log_path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .map_err(|e| format!("{}: cannot open the log file: {e}", log_path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init()
        }
        None => builder
            // Colours only for a person at a terminal, never into journald
            // or a redirected file.
            .with_ansi(observability.ansi_colors && std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
    }
    .map_err(|e| format!("cannot set up logging: {e}"))
}

/// `sundial validate`: load and check; "FILE: ok" and 0, or the located
/// error and 1. Warnings go to `err` and do not fail the check.
fn validate(path: &Path, out: &mut impl Write, err: &mut impl Write) -> u8 {
    match config::load(path) {
        Ok(config) => {
            for warning in config.warnings() {
                let _ = writeln!(err, "{}: warning: {warning}", path.display());
            }
            let start_errors = config.start_errors();
            for error in &start_errors {
                let _ = writeln!(
                    err,
                    "{}: error: {error} (sundial run refuses to start)",
                    path.display()
                );
            }
            if !start_errors.is_empty() {
                return EXIT_INVALID;
            }
            let _ = writeln!(out, "{}: ok", path.display());
            0
        }
        Err(error) => {
            report_error(&error, err);
            EXIT_INVALID
        }
    }
}

/// The error line, then the offending line of the file with a caret under
/// the column, the way compilers show it.
fn report_error(error: &ConfigError, err: &mut impl Write) {
    let _ = writeln!(err, "{error}");
    if let Some(diagnostic) = error.diagnostic() {
        if !diagnostic.source_line.is_empty() {
            let gutter = diagnostic.line.to_string();
            let _ = writeln!(err, "{gutter} | {}", diagnostic.source_line);
            let _ = writeln!(
                err,
                "{} | {}^",
                " ".repeat(gutter.len()),
                " ".repeat(diagnostic.column.saturating_sub(1))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn validate_accepts_every_shipped_example() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&examples).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                let (mut out, mut err) = (Vec::new(), Vec::new());
                let code = validate(&path, &mut out, &mut err);
                let err = String::from_utf8_lossy(&err);
                assert_eq!(code, 0, "{}: {err}", path.display());
                assert!(String::from_utf8_lossy(&out).ends_with(": ok\n"));
                seen += 1;
            }
        }
        assert!(seen >= 4, "expected the shipped examples, found {seen}");
    }

    #[test]
    fn validate_reports_file_key_and_line() {
        let dir = std::env::temp_dir().join(format!("sundial-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[[server]]\nlisten = \"[::]:123\"\nbogus = 1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = validate(&path, &mut out, &mut err);
        let err = String::from_utf8_lossy(&err).into_owned();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.contains(&format!("{}:3:1:", path.display())), "{err}");
        assert!(err.contains("`server[0].bogus`"), "{err}");
        assert!(err.contains("3 | bogus = 1"), "{err}");
    }
}
