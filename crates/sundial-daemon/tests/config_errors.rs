//! Wrong types and semantic errors: each names the file, the dotted key and
//! the line and column of the offending text.

use std::path::Path;

use sundial_daemon::config::{self, ConfigError};

const FILE: &str = "/etc/sundial/test.toml";

/// Parse `text` and return (key, line, column, message) of its error.
fn error(text: &str) -> (String, usize, usize, String) {
    match config::parse(text, Path::new(FILE)) {
        Ok(config) => panic!("expected an error, loaded {config:?}"),
        Err(ConfigError::Invalid(d)) => {
            assert_eq!(d.file, Path::new(FILE));
            assert!(
                d.to_string()
                    .starts_with(&format!("{FILE}:{}:{}: ", d.line, d.column))
            );
            (d.key, d.line, d.column, d.message)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn assert_error(text: &str, key: &str, line: usize, column: usize, words: &str) {
    let (found_key, found_line, found_column, message) = error(text);
    let context = format!("{text}\n=> `{found_key}` {found_line}:{found_column}: {message}");
    assert_eq!(found_key, key, "{context}");
    assert_eq!((found_line, found_column), (line, column), "{context}");
    assert!(message.contains(words), "expected `{words}` in: {context}");
}

const SERVER: &str = "[[server]]\nlisten = \"[::]:123\"\n";
const SOURCE: &str = "[[source]]\nmode = \"server\"\naddress = \"ntp.example.com\"\n";

#[test]
fn wrong_types_point_at_the_value() {
    assert_error(
        "[[server]]\nlisten = 123\n",
        "server[0].listen",
        2,
        10,
        "socket address",
    );
    assert_error(
        "[[server]]\nlisten = \"localhost:123\"\n",
        "server[0].listen",
        2,
        10,
        "socket address",
    );
    assert_error(
        &format!("{SERVER}rate-limiting-cache-size = -1\n"),
        "server[0].rate-limiting-cache-size",
        3,
        28,
        "invalid value",
    );
    assert_error(
        &format!("{SERVER}rate-limiting-cutoff-ms = \"1s\"\n"),
        "server[0].rate-limiting-cutoff-ms",
        3,
        27,
        "invalid type",
    );
    assert_error(
        &format!("{SERVER}require-nts = 3\n"),
        "server[0].require-nts",
        3,
        15,
        "\"deny\"",
    );
    assert_error(
        &format!(
            "{SERVER}allowlist = {{ filter = [\"10.0.0.0/8\", \"10.0.0.0/33\"], action = \"deny\" }}\n"
        ),
        "server[0].allowlist.filter[1]",
        3,
        39,
        "0 to 32",
    );
    assert_error(
        &format!("{SERVER}denylist = {{ filter = [\"fe80::/200\"], action = \"deny\" }}\n"),
        "server[0].denylist.filter[0]",
        3,
        24,
        "0 to 128",
    );
    assert_error(
        &format!("{SERVER}denylist = {{ filter = [\"::1/128\"], action = \"drop\" }}\n"),
        "server[0].denylist.action",
        3,
        45,
        "unknown variant",
    );
    assert_error(
        "[[source]]\nmode = \"pool\"\naddress = \"pool.ntp.org\"\ncount = \"four\"\n",
        "source[0].count",
        4,
        9,
        "invalid type",
    );
    assert_error(
        "[[source]]\nmode = \"radio\"\naddress = \"x\"\n",
        "source[0].mode",
        2,
        8,
        "unknown variant `radio`",
    );
    assert_error(
        &format!("{SOURCE}ntp-version = 6\n"),
        "source[0].ntp-version",
        4,
        15,
        "4, 5 or \"auto\"",
    );
    assert_error(
        "[[source]]\nmode = \"pool\"\naddress = \"pool.ntp.org\"\nignore = [\"10.0.0.1\", \"ten\"]\n",
        "source[0].ignore[1]",
        4,
        23,
        "IP address",
    );
    assert_error(
        &format!("{SOURCE}[synchronization]\nlocal-stratum = \"one\"\n"),
        "synchronization.local-stratum",
        5,
        17,
        "invalid type",
    );
    assert_error(
        &format!("{SOURCE}[synchronization]\nsingle-step-panic-threshold = \"infinite\"\n"),
        "synchronization.single-step-panic-threshold",
        5,
        31,
        "\"inf\"",
    );
    assert_error(
        &format!("{SOURCE}[synchronization]\nstartup-step-panic-threshold = {{ forward = -3 }}\n"),
        "synchronization.startup-step-panic-threshold.forward",
        5,
        44,
        "non-negative",
    );
    assert_error(
        &format!("{SOURCE}[synchronization]\nreference-id = \"TOOLONG\"\n"),
        "synchronization.reference-id",
        5,
        16,
        "four ASCII",
    );
    assert_error(
        &format!("{SOURCE}[observability]\nlog-level = \"loud\"\n"),
        "observability.log-level",
        5,
        13,
        "unknown variant",
    );
    assert_error(
        &format!("{SOURCE}[clock]\nobserve-only = \"yes\"\n"),
        "clock.observe-only",
        5,
        16,
        "invalid type",
    );
    assert_error(
        &format!("{SOURCE}[keyset]\nstale-key-count = 1.5\n"),
        "keyset.stale-key-count",
        5,
        19,
        "invalid type",
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let (key, line, column, message) = error("[[server]]\nlisten = \"[::]:123\nx = 1\n");
    assert_eq!(key, "");
    assert_eq!((line, column), (2, 19), "{message}");
    let (_, line, _, _) = error("[[server]\n");
    assert_eq!(line, 1);
}

#[test]
fn nothing_configured_is_an_error() {
    assert_error("", "", 1, 1, "configures nothing");
    assert_error("# only a comment\n\n", "", 1, 1, "configures nothing");
    assert_error(
        "[observability]\nlog-level = \"info\"\n",
        "",
        1,
        1,
        "configures nothing",
    );
}

#[test]
fn nts_ke_server_needs_both_certificate_paths() {
    let base = "[[nts-ke-server]]\nlisten = \"[::]:4460\"\n";
    assert_error(
        &format!("{base}certificate-chain-path = \"/c.pem\"\n"),
        "nts-ke-server[0].private-key-path",
        1,
        1,
        "missing field `private-key-path`",
    );
    assert_error(
        &format!("{base}private-key-path = \"/k.pem\"\n"),
        "nts-ke-server[0].certificate-chain-path",
        1,
        1,
        "missing field `certificate-chain-path`",
    );
    assert_error(
        &format!("{base}certificate-chain-path = \"\"\nprivate-key-path = \"/k.pem\"\n"),
        "nts-ke-server[0].certificate-chain-path",
        3,
        1,
        "empty",
    );
}

#[test]
fn semantic_ranges() {
    let ke = "[[nts-ke-server]]\nlisten = \"[::]:4460\"\ncertificate-chain-path = \"/c\"\nprivate-key-path = \"/k\"\n";
    assert_error(
        &format!("{SOURCE}[synchronization]\nlocal-stratum = 0\n"),
        "synchronization.local-stratum",
        5,
        1,
        "1 to 16",
    );
    assert_error(
        &format!("{SOURCE}[synchronization]\nlocal-stratum = 17\n"),
        "synchronization.local-stratum",
        5,
        1,
        "1 to 16",
    );
    assert_error(
        &format!("{SOURCE}[synchronization]\nminimum-agreeing-sources = 0\n"),
        "synchronization.minimum-agreeing-sources",
        5,
        1,
        ">= 1",
    );
    assert_error(
        &format!("{ke}key-exchange-timeout-ms = 0\n"),
        "nts-ke-server[0].key-exchange-timeout-ms",
        5,
        1,
        "at least 1 ms",
    );
    assert_error(
        &format!("{ke}concurrent-connections = 0\n"),
        "nts-ke-server[0].concurrent-connections",
        5,
        1,
        "at least one",
    );
    assert_error(
        &format!("{ke}accept-ntp-versions = [4, 3]\n"),
        "nts-ke-server[0].accept-ntp-versions[1]",
        5,
        27,
        "version 3",
    );
    assert_error(
        &format!("{SERVER}accept-ntp-versions = []\n"),
        "server[0].accept-ntp-versions",
        3,
        1,
        "at least one version",
    );
    assert_error(
        &format!("{SERVER}coalesce-us = 20000\n"),
        "server[0].coalesce-us",
        3,
        1,
        "at most 10000 microseconds",
    );
    assert_error(
        &format!("{ke}[keyset]\nkey-rotation-interval = 0\n"),
        "keyset.key-rotation-interval",
        6,
        1,
        "at least 1 second",
    );
    assert_error(
        &format!("{SOURCE}[source-defaults]\npoll-interval-limits = {{ min = 8, max = 6 }}\n"),
        "source-defaults.poll-interval-limits",
        5,
        1,
        "larger than max",
    );
    assert_error(
        &format!("{SOURCE}poll-interval-limits = {{ max = 40 }}\n"),
        "source[0].poll-interval-limits.max",
        4,
        26,
        "out of range",
    );
    assert_error(
        &format!("{SOURCE}[observability]\nobservation-permissions = 0o17777\n"),
        "observability.observation-permissions",
        5,
        1,
        "not a file mode",
    );
}

#[test]
fn source_mode_decides_the_keys() {
    assert_error(
        "[[source]]\nmode = \"nts\"\n",
        "source[0]",
        1,
        1,
        "missing field `address`",
    );
    assert_error(
        "[[source]]\nmode = \"nts\"\naddress = \"a.example\"\ncount = 3\n",
        "source[0].count",
        4,
        1,
        "not allowed for mode \"nts\"",
    );
    assert_error(
        "[[source]]\nmode = \"server\"\naddress = \"a.example\"\ncertificate-authority = \"/ca.pem\"\n",
        "source[0].certificate-authority",
        4,
        1,
        "not allowed for mode \"server\"",
    );
    assert_error(
        "[[source]]\nmode = \"sock\"\npath = \"/run/gps.sock\"\n",
        "source[0]",
        1,
        1,
        "missing field `precision`",
    );
    assert_error(
        "[[source]]\nmode = \"pps\"\npath = \"/dev/pps0\"\nprecision = 0\n",
        "source[0].precision",
        4,
        1,
        "positive",
    );
    assert_error(
        "[[source]]\nmode = \"server\"\naddress = \"a.example:ntp\"\n",
        "source[0].address",
        3,
        1,
        "not a port number",
    );
    assert_error(
        "[[source]]\nmode = \"pool\"\naddress = \"pool.ntp.org\"\ncount = 0\n",
        "source[0].count",
        4,
        1,
        "at least one server",
    );
}

#[test]
fn duplicate_listen_addresses_are_rejected() {
    assert_error(
        "[[server]]\nlisten = \"[::]:123\"\n\n[[server]]\nlisten = \"[::]:123\"\n",
        "server[1].listen",
        5,
        1,
        "server[0]",
    );
    let ke = |addr: &str| {
        format!(
            "[[nts-ke-server]]\nlisten = \"{addr}\"\ncertificate-chain-path = \"/c\"\nprivate-key-path = \"/k\"\n"
        )
    };
    assert_error(
        &format!("{}{}", ke("127.0.0.1:4460"), ke("127.0.0.1:4460")),
        "nts-ke-server[1].listen",
        6,
        1,
        "nts-ke-server[0]",
    );
    // UDP 123 and TCP 123 are different sockets.
    let text = format!("{SERVER}{}", ke("[::]:123"));
    assert!(config::parse(&text, Path::new(FILE)).is_ok());
}

#[test]
fn the_first_problem_in_the_file_is_reported() {
    let text = format!(
        "[[source]]\nmode = \"nts\"\naddress = \"a.example\"\ncount = 3\n{SERVER}[synchronization]\nlocal-stratum = 0\n"
    );
    let (key, line, _, _) = error(&text);
    assert_eq!((key.as_str(), line), ("source[0].count", 4));
}

#[test]
fn unreadable_file_names_the_path() {
    let missing = Path::new("/nonexistent/sundial/ntp.toml");
    match config::load(missing) {
        Err(err @ ConfigError::Read { .. }) => {
            assert!(
                err.to_string()
                    .starts_with("/nonexistent/sundial/ntp.toml: ")
            );
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn inherited_poll_limits_are_checked_as_they_combine() {
    // min 11 on the source, max 10 from the defaults.
    assert_error(
        &format!("{SOURCE}poll-interval-limits = {{ min = 11 }}\n"),
        "source[0].poll-interval-limits",
        4,
        1,
        "max (10) comes from [source-defaults]",
    );
    // max 3 on the source, min from written defaults.
    assert_error(
        &format!(
            "{SOURCE}poll-interval-limits = {{ max = 3 }}\n[source-defaults]\npoll-interval-limits = {{ min = 5, max = 9 }}\n"
        ),
        "source[0].poll-interval-limits",
        4,
        1,
        "min (5) comes from [source-defaults]",
    );
    // Raising the default max makes the same override fine.
    let text = format!(
        "{SOURCE}poll-interval-limits = {{ min = 11 }}\n[source-defaults]\npoll-interval-limits = {{ min = 4, max = 12 }}\n"
    );
    assert!(
        sundial_daemon::config::parse(&text, std::path::Path::new("t.toml")).is_ok(),
        "{text}"
    );
}

#[test]
fn acme_settings_are_checked_and_named() {
    let ke = "[[nts-ke-server]]\nlisten = \"[::]:4460\"\n";
    let acme = |body: &str| format!("{ke}[nts-ke-server.acme]\n{body}");
    assert_error(
        &acme("domains = []\n"),
        "nts-ke-server[0].acme.domains",
        4,
        1,
        "at least one domain",
    );
    assert_error(
        &acme("domains = [\"*.example.com\"]\n"),
        "nts-ke-server[0].acme.domains[0]",
        4,
        12,
        "DNS-01",
    );
    assert_error(
        &acme("domains = [\"a.example\"]\ncontact = \"nobody\"\n"),
        "nts-ke-server[0].acme.contact",
        5,
        1,
        "e-mail",
    );
    assert_error(
        &acme("domains = [\"a.example\"]\ndirectory = \"http://ca.example/dir\"\n"),
        "nts-ke-server[0].acme.directory",
        5,
        1,
        "https://",
    );
    assert_error(
        &acme("domains = [\"a.example\"]\nca-certificate = \"/nonexistent/ca.pem\"\n"),
        "nts-ke-server[0].acme.ca-certificate",
        5,
        1,
        "/nonexistent/ca.pem",
    );
    assert_error(
        &acme("domains = [\"a.example\"]\nchallenge = \"dns-01\"\n"),
        "nts-ke-server[0].acme.challenge",
        5,
        13,
        "http-01",
    );
    assert_error(
        &format!(
            "{ke}certificate-chain-path = \"/c.pem\"\nacme = {{ domains = [\"a.example\"] }}\n"
        ),
        "nts-ke-server[0].certificate-chain-path",
        3,
        1,
        "not both",
    );
    let two = format!(
        "{ke}acme = {{ domains = [\"a.example\"] }}\n\
         [[nts-ke-server]]\nlisten = \"[::]:4461\"\n\
         acme = {{ domains = [\"b.example\"], state-directory = \"/other\" }}\n"
    );
    assert_error(
        &two,
        "nts-ke-server[1].acme.challenge-listen",
        6,
        1,
        "already answers ACME challenges",
    );
}

#[test]
fn acme_staging_is_warned_about() {
    let text = "[[nts-ke-server]]\nlisten = \"[::]:4460\"\n\
                acme = { domains = [\"a.example\"], directory = \"letsencrypt-staging\" }\n\
                [keyset]\nkey-storage-path = \"/k\"\n";
    let config = config::parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    let warnings = config.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.key == "nts-ke-server[0].acme.directory" && w.message.contains("staging")),
        "{warnings:?}"
    );
}
