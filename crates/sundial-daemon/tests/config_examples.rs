//! Every shipped example loads, and an unknown key added to any table of any
//! example is rejected with the file, the dotted key and the exact line.

use std::path::{Path, PathBuf};

use sundial_daemon::config::{self, ConfigError, Diagnostic};

const UNKNOWN: &str = "sundial-no-such-key";

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the four shipped examples: {files:?}");
    // The Debian package's /etc/sundial/ntp.toml.
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/ntp.toml"));
    files
}

fn diagnostic(result: Result<config::Config, ConfigError>) -> Diagnostic {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err
            .diagnostic()
            .cloned()
            .unwrap_or_else(|| panic!("expected a located error, got {err}")),
    }
}

#[test]
fn every_example_validates() {
    for path in examples() {
        if let Err(err) = config::load(&path) {
            panic!("{err}");
        }
    }
}

/// A place to add an unknown key: the line to insert after (or edit), the
/// key path that the error must name, and how to build the text.
struct Injection {
    line: usize,
    key: String,
    text: String,
}

/// Table path of a `[a.b]` / `[[a]]` header, counting array elements.
fn header_path(header: &str, counts: &mut std::collections::HashMap<String, usize>) -> String {
    if let Some(name) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
        let name = name.trim().to_owned();
        let index = counts.entry(name.clone()).or_insert(0);
        let path = format!("{name}[{index}]");
        *index += 1;
        path
    } else {
        let name = header.trim_start_matches('[').trim_end_matches(']').trim();
        // A sub-table of an array element (`[nts-ke-server.acme]`) belongs
        // to the last element: `nts-ke-server[2].acme`.
        match name.split_once('.') {
            Some((array, rest)) if counts.get(array).is_some_and(|n| *n > 0) => {
                let last = counts.get(array).copied().unwrap_or(1) - 1;
                format!("{array}[{last}].{rest}")
            }
            _ => name.to_owned(),
        }
    }
}

/// One injection per table in the file: the root, every `[header]` and
/// `[[header]]`, and every single-line inline table `key = { .. }`.
fn injections(text: &str) -> Vec<Injection> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let with_line = |index: usize, new_line: String| {
        let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        edited.insert(index, new_line);
        edited.join("\n") + "\n"
    };
    // The root table: a key before the first header.
    out.push(Injection {
        line: 1,
        key: UNKNOWN.to_owned(),
        text: with_line(0, format!("{UNKNOWN} = 1")),
    });
    let mut counts = std::collections::HashMap::new();
    let mut table = String::new();
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = header_path(trimmed, &mut counts);
            out.push(Injection {
                line: index + 2,
                key: format!("{table}.{UNKNOWN}"),
                text: with_line(index + 1, format!("{UNKNOWN} = 1")),
            });
        } else if let Some((key, value)) = trimmed.split_once('=') {
            let value = value.trim();
            if value.starts_with('{') && value.ends_with('}') && !trimmed.starts_with('#') {
                let key = key.trim();
                let inner = value.trim_start_matches('{');
                let edited_line = format!("{key} = {{ {UNKNOWN} = 1,{inner}");
                let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
                if let Some(slot) = edited.get_mut(index) {
                    *slot = edited_line;
                }
                let prefix = if table.is_empty() {
                    String::new()
                } else {
                    format!("{table}.")
                };
                out.push(Injection {
                    line: index + 1,
                    key: format!("{prefix}{key}.{UNKNOWN}"),
                    text: edited.join("\n") + "\n",
                });
            }
        }
    }
    out
}

#[test]
fn unknown_key_in_any_table_names_file_key_and_line() {
    let mut checked = 0;
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        for injection in injections(&text) {
            let found = diagnostic(config::parse(&injection.text, &path));
            let context = format!(
                "{} with `{}` added at line {}: got {found}",
                path.display(),
                injection.key,
                injection.line
            );
            assert_eq!(found.file, path, "{context}");
            assert_eq!(found.key, injection.key, "{context}");
            assert_eq!(found.line, injection.line, "{context}");
            assert!(found.message.contains(UNKNOWN), "{context}");
            assert!(found.source_line.contains(UNKNOWN), "{context}");
            let shown = found.to_string();
            assert!(
                shown.starts_with(&format!("{}:{}:", path.display(), injection.line)),
                "{context}"
            );
            checked += 1;
        }
    }
    // Root + every header + inline tables across the four examples.
    assert!(checked >= 30, "only {checked} tables were exercised");
}

/// docs/config.md documents every key: each key used anywhere in the full
/// example (which uses every key sundial accepts) appears there as `key`.
#[test]
fn reference_page_documents_every_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reference = std::fs::read_to_string(root.join("docs/config.md"))
        .unwrap_or_else(|e| panic!("docs/config.md: {e}"));
    let full = std::fs::read_to_string(root.join("docs/examples/ntpd-rs-full.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let table: toml::Table = toml::from_str(&full).unwrap_or_else(|e| panic!("{e}"));
    let mut keys = vec!["clock".to_owned()];
    collect_keys(&toml::Value::Table(table), &mut keys);
    // Code spans of the page; a key counts as documented when one of them
    // holds it as a whole word (`key`, `[table]`, `{ forward, backward }`).
    let spans: Vec<&str> = reference.split('`').skip(1).step_by(2).collect();
    let is_word_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let documented = |key: &str| {
        spans.iter().any(|span| {
            span.split(|c: char| !is_word_char(c))
                .any(|word| word == key)
        })
    };
    let missing: Vec<&String> = keys.iter().filter(|key| !documented(key)).collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/config.md: {missing:?}"
    );
}

fn collect_keys(value: &toml::Value, keys: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                keys.push(key.clone());
                collect_keys(value, keys);
            }
        }
        toml::Value::Array(array) => array.iter().for_each(|v| collect_keys(v, keys)),
        _ => {}
    }
}
