//! Every key the configuration types accept is documented: it appears in
//! docs/config.md, in docs/examples/ntpd-rs-full.toml (which claims to show
//! every key), and, when ntpd-rs has no such key, in config.md's list of
//! sundial's additions. The accepted keys come from the types themselves:
//! each table is given an unknown key, and serde's "expected one of" list
//! is read back, so a key added to a struct cannot go undocumented.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sundial_daemon::config;

const UNKNOWN: &str = "sundial-no-such-key";

/// Each table: its dotted name, and a file that puts [`UNKNOWN`] in it.
fn tables() -> Vec<(&'static str, String)> {
    let u = format!("{UNKNOWN} = 1");
    let source = "[[source]]\nmode = \"server\"\naddress = \"a.example\"\n";
    let server = "[[server]]\nlisten = \"127.0.0.1:123\"\n";
    let ke = "[[nts-ke-server]]\nlisten = \"127.0.0.1:4460\"\ncertificate-chain-path = \"/c\"\nprivate-key-path = \"/k\"\n";
    vec![
        ("source", format!("{source}{u}\n")),
        (
            "source-defaults",
            format!("{source}[source-defaults]\n{u}\n"),
        ),
        (
            "source-defaults.poll-interval-limits",
            format!(
                "{source}[source-defaults]\npoll-interval-limits = {{ min = 4, max = 10, {u} }}\n"
            ),
        ),
        ("server", format!("{server}{u}\n")),
        (
            "server.allowlist",
            format!("{server}allowlist = {{ filter = [], action = \"deny\", {u} }}\n"),
        ),
        ("nts-ke-server", format!("{ke}{u}\n")),
        (
            "nts-ke-server.acme",
            format!(
                "[[nts-ke-server]]\nlisten = \"127.0.0.1:4460\"\n[nts-ke-server.acme]\ndomains = [\"a.example\"]\n{u}\n"
            ),
        ),
        ("keyset", format!("{source}[keyset]\n{u}\n")),
        (
            "synchronization",
            format!("{source}[synchronization]\n{u}\n"),
        ),
        (
            "synchronization.algorithm",
            format!("{source}[synchronization.algorithm]\n{u}\n"),
        ),
        ("observability", format!("{source}[observability]\n{u}\n")),
        ("clock", format!("{source}[clock]\n{u}\n")),
        ("security", format!("{source}[security]\n{u}\n")),
    ]
}

/// The keys serde lists as expected in an unknown-field error.
fn expected_keys(message: &str) -> BTreeSet<String> {
    let Some((_, list)) = message.split_once("expected") else {
        panic!("no list of expected keys in: {message}");
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Table name -> the keys its type accepts.
fn accepted() -> BTreeMap<&'static str, BTreeSet<String>> {
    tables()
        .into_iter()
        .map(|(table, text)| {
            let error = config::parse(&text, Path::new("t.toml"))
                .expect_err("an unknown key is an error")
                .to_string();
            assert!(error.contains(UNKNOWN), "{table}: {error}");
            (table, expected_keys(&error))
        })
        .collect()
}

/// The keys ntpd-rs's own `ntp.toml` has, per table: everything else the
/// types accept is a sundial addition and belongs in config.md's list.
const NTPD_RS_KEYS: &[(&str, &[&str])] = &[
    (
        "source",
        &[
            "accuracy",
            "address",
            "certificate-authority",
            "count",
            "ignore",
            "initial-poll-interval",
            "measurement_noise_estimate",
            "mode",
            "ntp-version",
            "path",
            "period",
            "poll-interval-limits",
            "precision",
        ],
    ),
    (
        "source-defaults",
        &["initial-poll-interval", "poll-interval-limits"],
    ),
    ("source-defaults.poll-interval-limits", &["max", "min"]),
    (
        "server",
        &[
            "accept-ntp-versions",
            "allowlist",
            "denylist",
            "listen",
            "rate-limiting-cache-size",
            "rate-limiting-cutoff-ms",
            "require-nts",
        ],
    ),
    ("server.allowlist", &["action", "filter"]),
    (
        "nts-ke-server",
        &[
            "accept-ntp-versions",
            "accepted-pool-authentication-tokens",
            "authorized-pool-server-certificates",
            "certificate-chain-path",
            "concurrent-connections",
            "key-exchange-timeout-ms",
            "listen",
            "ntp-port",
            "ntp-server",
            "private-key-path",
        ],
    ),
    (
        "keyset",
        &[
            "key-rotation-interval",
            "key-storage-path",
            "stale-key-count",
        ],
    ),
    (
        "synchronization",
        &[
            "accumulated-step-panic-threshold",
            "algorithm",
            "local-stratum",
            "minimum-agreeing-sources",
            "reference-id",
            "single-step-panic-threshold",
            "startup-step-panic-threshold",
            "warn-on-jump",
        ],
    ),
    (
        "observability",
        &[
            "ansi-colors",
            "log-level",
            "metrics-exporter-listen",
            "observation-path",
            "observation-permissions",
        ],
    ),
    ("clock", &["clock", "interface", "timestamp-mode"]),
];

/// Tables that are sundial's own as a whole: listed once in the additions
/// by their key, their keys documented in their own config.md table.
const SUNDIAL_TABLES: &[&str] = &["nts-ke-server.acme"];

fn ntpd_rs_has(table: &str, key: &str) -> bool {
    // ntpd-rs's [synchronization.algorithm] is taken over whole.
    table == "synchronization.algorithm"
        || SUNDIAL_TABLES.contains(&table)
        || NTPD_RS_KEYS
            .iter()
            .any(|(t, keys)| *t == table && keys.contains(&key))
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `text` holds `word` not as part of a longer key.
fn has_word(text: &str, word: &str) -> bool {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    text.match_indices(word).any(|(at, _)| {
        let before = text.get(..at).and_then(|t| t.chars().next_back());
        let after = text.get(at + word.len()..).and_then(|t| t.chars().next());
        !before.is_some_and(is_key_char) && !after.is_some_and(is_key_char)
    })
}

#[test]
fn every_accepted_key_is_in_config_md() {
    let doc = read("docs/config.md");
    let missing: Vec<String> = accepted()
        .into_iter()
        .flat_map(|(table, keys)| keys.into_iter().map(move |k| (table, k)))
        // A key holding a table is named by its heading: `[a.key]`.
        .filter(|(_, key)| {
            !doc.contains(&format!("`{key}`")) && !doc.contains(&format!(".{key}]`"))
        })
        .map(|(table, key)| format!("{table}.{key}"))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the config types accept but docs/config.md never names: {missing:?}"
    );
}

#[test]
fn every_sundial_addition_is_in_config_md_list_of_additions() {
    let doc = read("docs/config.md");
    let start = doc
        .find("- Additions:")
        .expect("config.md has a list of additions");
    let rest = doc.get(start + 2..).unwrap_or_default();
    let end = rest.find("\n- ").unwrap_or(rest.len());
    let list = rest.get(..end).unwrap_or_default();
    let missing: Vec<String> = accepted()
        .into_iter()
        .flat_map(|(table, keys)| keys.into_iter().map(move |k| (table, k)))
        .filter(|(table, key)| !ntpd_rs_has(table, key) && !has_word(list, key))
        .map(|(table, key)| format!("{table}.{key}"))
        .collect();
    assert!(
        missing.is_empty(),
        "sundial additions missing from config.md's list of additions: {missing:?}"
    );
}

/// Table name -> keys used in the file, sections of arrays merged.
fn keys_in(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(
        prefix: &str,
        value: &toml::Value,
        out: &mut BTreeMap<String, BTreeSet<String>>,
        depth: usize,
    ) {
        let tables: Vec<&toml::Table> = match value {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(items) => items.iter().filter_map(toml::Value::as_table).collect(),
            _ => return,
        };
        for table in tables {
            for (key, inner) in table {
                if !prefix.is_empty() {
                    out.entry(prefix.to_owned())
                        .or_default()
                        .insert(key.clone());
                }
                if depth < 2 {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, inner, out, depth + 1);
                }
            }
        }
    }
    let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let mut out = BTreeMap::new();
    walk("", &value, &mut out, 0);
    out
}

#[test]
fn the_full_example_shows_every_accepted_key() {
    let used = keys_in(&read("docs/examples/ntpd-rs-full.toml"));
    let mut missing = Vec::new();
    for (table, keys) in accepted() {
        let present = used.get(table).cloned().unwrap_or_default();
        let table_keys = keys.into_iter().filter(|k| !present.contains(k));
        missing.extend(table_keys.map(|k| format!("{table}.{k}")));
    }
    assert!(
        missing.is_empty(),
        "keys docs/examples/ntpd-rs-full.toml does not show: {missing:?}"
    );
}

#[test]
fn the_key_lists_are_read_from_the_types() {
    let accepted = accepted();
    assert!(accepted["server"].contains("coalesce-us"));
    assert!(accepted["source"].contains("system-roots"));
    assert!(!accepted["source"].contains(UNKNOWN));
    assert!(has_word("`[clock] observe-only`", "observe-only"));
    assert!(!has_word("`rate-limiting-burst`", "rate-limiting"));
}
