//! The guides' configurations work as shown: every ```toml block in
//! docs/*.md, every docs/examples/*.toml and packaging/*.toml loads, is no start error
//! (`Config::start_errors`), and draws none of the warnings that mean "this
//! will not do anything" (a pure server at stratum 16, which no client
//! uses; a source mode sundial does not run). Other warnings (a key file
//! left unset, say) are allowed: the config still works.
//!
//! Markers, for what is not meant to run on its own:
//! - `<!-- docs-test: partial -->` on the line before a ```toml fence: a
//!   fragment to add to a whole file (a `[synchronization]` table alone).
//!   It must still be valid TOML whose every key is known; only "configures
//!   nothing" and a file it names being absent here are forgiven.
//! - `# docs-test: reference` in an example file: it shows every key, not a
//!   setup to run (ntpd-rs-full.toml); it must load, warnings allowed.

use std::path::{Path, PathBuf};

use sundial_daemon::config::{self, Config};

const PARTIAL: &str = "<!-- docs-test: partial -->";
const REFERENCE: &str = "# docs-test: reference";

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// A ```toml block: where it starts, its text, whether it is partial.
struct Block {
    line: usize,
    text: String,
    partial: bool,
}

fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut previous = "";
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if current.is_some() && trimmed == "```" {
            blocks.extend(current.take());
            continue;
        }
        match current.as_mut() {
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None if trimmed == "```toml" => {
                current = Some(Block {
                    line: index + 1,
                    text: String::new(),
                    partial: previous == PARTIAL,
                });
            }
            None => {}
        }
        if !trimmed.is_empty() {
            previous = trimmed;
        }
    }
    assert!(current.is_none(), "a ```toml block is never closed");
    blocks
}

/// Warnings that mean the configuration does nothing useful.
fn fatal_warnings(config: &Config) -> Vec<String> {
    let mut fatal: Vec<String> = config
        .start_errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    fatal.extend(
        config
            .warnings()
            .iter()
            .filter(|w| {
                w.key == "synchronization.local-stratum"
                    || (w.key.starts_with("source[") && w.key.ends_with("].mode"))
            })
            .map(ToString::to_string),
    );
    fatal
}

fn check(origin: &str, text: &str, partial: bool) -> Result<(), String> {
    match config::parse(text, Path::new(origin)) {
        Ok(config) if !partial => {
            let fatal = fatal_warnings(&config);
            if fatal.is_empty() {
                Ok(())
            } else {
                Err(format!("{origin}: will not work: {}", fatal.join("; ")))
            }
        }
        Ok(_) => Ok(()),
        Err(e) if partial && e.to_string().contains("configures nothing") => Ok(()),
        // A snippet names files on the reader's machine (a private CA's
        // certificate): that they are absent here says nothing of the keys.
        Err(e) if partial && e.to_string().contains("No such file or directory") => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn every_toml_block_in_the_guides_works_as_shown() {
    let mut failures = Vec::new();
    let mut seen = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(docs_dir())
        .unwrap_or_else(|e| panic!("docs/: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    entries.sort();
    for path in entries {
        let markdown = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for block in toml_blocks(&markdown) {
            seen += 1;
            let origin = format!("docs/{name}:{}", block.line);
            if let Err(e) = check(&origin, &block.text, block.partial) {
                failures.push(e);
            }
        }
    }
    assert!(seen >= 4, "the guides' configurations: found {seen}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// docs/examples/*.toml, and packaging/*.toml (a packaged default config
/// is copied even more often than an example).
fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [docs_dir().join("examples"), docs_dir().join("../packaging")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml")),
        );
    }
    files.sort();
    files
}

#[test]
fn every_example_file_works_as_shown() {
    let mut failures = Vec::new();
    let files = example_files();
    assert!(files.len() >= 4, "the shipped examples: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let reference = text.lines().any(|l| l.trim() == REFERENCE);
        let origin = path.display().to_string();
        let result = if reference {
            config::parse(&text, &path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            check(&origin, &text, false)
        };
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_checker_catches_what_it_should() {
    let blocks = toml_blocks(
        "text\n\n```toml\n[[server]]\nlisten = \"[::]:123\"\n```\n\n<!-- docs-test: partial -->\n```toml\n[synchronization]\nlocal-stratum = 2\n```\n",
    );
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].line, 3);
    assert!(!blocks[0].partial && blocks[1].partial);
    // A pure server at stratum 16: loads, but no client uses it.
    let error = check("x", &blocks[0].text, false).unwrap_err();
    assert!(error.contains("local-stratum"), "{error}");
    assert!(check("x", &blocks[1].text, true).is_ok());
    // A partial block still has its keys checked.
    let error = check("x", "[synchronization]\nlocal-stratun = 2\n", true).unwrap_err();
    assert!(error.contains("local-stratun"), "{error}");
    // Too few sources to agree is a start error.
    let error = check(
        "x",
        "[[source]]\nmode = \"nts\"\naddress = \"a.example\"\n",
        false,
    )
    .unwrap_err();
    assert!(error.contains("minimum-agreeing-sources"), "{error}");
}
