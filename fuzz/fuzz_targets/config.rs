//! The configuration file as untrusted input: `sundial_daemon::config::parse`
//! on arbitrary text (seeded with every example configuration, and guided by
//! `fuzz/config.dict`, the file's key names). No panic; the outcome does not
//! depend on anything but the text; an error names the file, a line inside
//! the text (or just past its end) and a column, and quotes that line; a
//! configuration that loads answers every question the daemon asks of it at
//! start (`warnings`, `start_errors`, the sizing helpers).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sundial_daemon::config;

const ORIGIN: &str = "/etc/sundial/fuzz.toml";

fuzz_target!(|data: &[u8]| {
    // `config::load` refuses a file that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new(ORIGIN);
    match config::parse(text, origin) {
        Ok(config) => {
            let _ = config.warnings();
            let _ = config.start_errors();
            let _ = (config.is_pure_server(), config.steers_clock());
            let _ = config.max_sources();
            let _ = config::implicit_ntp_port(&config.servers);
            assert!(config::parse(text, origin).is_ok(), "parse is deterministic");
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(shown.starts_with(ORIGIN), "error names the file: {shown}");
            let diagnostic = err.diagnostic().expect("parse errors are about content");
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(diagnostic.line >= 1 && diagnostic.line <= lines.len());
            assert!(diagnostic.column >= 1);
            let raw_line = lines[diagnostic.line - 1];
            // Quoted without its line ending's carriage returns.
            let line = raw_line.trim_end_matches('\r');
            assert_eq!(diagnostic.source_line, line, "the quoted line is the text's");
            // At most just past the line's last character (a `\r` may be
            // what is wrong).
            assert!(diagnostic.column <= raw_line.chars().count() + 1);
            let again = config::parse(text, origin).expect_err("parse is deterministic");
            assert_eq!(again.to_string(), shown);
        }
    }
});
