//! The committed man pages and completions (packaging/man/ and
//! packaging/completions/, which the package installs) are what `sundial
//! man` and `sundial completions` make from the clap definitions and
//! docs/config.md, and `--version` says what the build is.

use std::path::Path;
use std::process::Command;

const REGENERATE: &str = "packaging/regenerate.sh";

fn sundial() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sundial"))
}

fn packaging() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

#[test]
fn committed_man_pages_match_their_sources() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = sundial()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = packaging().join("man");
    for page in ["sundial.8", "ntp.toml.5"] {
        let made = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{e}"));
        let kept = std::fs::read_to_string(committed.join(page)).unwrap_or_default();
        assert!(
            made == kept,
            "packaging/man/{page} differs from its source (the clap definitions or \
             docs/config.md): regenerate it with `{REGENERATE}` and commit it"
        );
    }
}

#[test]
fn committed_completions_match_their_source() {
    for (shell, file) in [
        ("bash", "sundial.bash"),
        ("zsh", "_sundial"),
        ("fish", "sundial.fish"),
    ] {
        let out = sundial()
            .args(["completions", shell])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kept = std::fs::read(packaging().join("completions").join(file)).unwrap_or_default();
        assert!(
            out.stdout == kept,
            "packaging/completions/{file} differs from `sundial completions {shell}`: \
             regenerate it with `{REGENERATE}` and commit it"
        );
    }
}

#[test]
fn the_man_page_says_what_help_says() {
    let page = std::fs::read_to_string(packaging().join("man/sundial.8"))
        .unwrap_or_else(|e| panic!("{e}"));
    let help = sundial()
        .args(["run", "--help"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Measure and serve, but never change the clock"),
        "{help}"
    );
    assert!(page.contains("Measure and serve, but never change the clock"));
    for section in [
        "SUNDIAL RUN",
        "SUNDIAL VALIDATE",
        "SUNDIAL STATUS",
        "SUNDIAL COMPLETIONS",
    ] {
        assert!(
            page.contains(&format!(".SH \"{section}\"")),
            "no section {section}"
        );
    }
    assert!(
        !page.contains("SUNDIAL MAN\""),
        "the hidden `man` has no section"
    );
}

#[test]
fn version_names_the_commit_and_the_aes_build() {
    let out = sundial()
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("sundial {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("\nAES: "), "{text}");
    assert!(text.contains("\ntarget: "), "{text}");
}
