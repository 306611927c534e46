//! Files ntpd-rs users already have load unchanged, with ntpd-rs's defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sundial_daemon::config::{
    self, Config, FilterAction, LogLevel, NtpVersion, RequireNts, SourceConfig, SourceMode,
    StepThreshold, TimestampMode,
};

fn load(text: &str) -> Config {
    config::parse(text, Path::new("ntp.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

const SYSADMIN_SERVER: &str = r#"
[[server]]
listen = "[::]:123"

[[nts-ke-server]]
listen = "[::]:4460"
certificate-chain-path = "/path/to/certificate/chain.pem"
private-key-path = "/path/to/private.key"

[keyset]
key-storage-path = "/path/to/store/key/material"
"#;

const SYSADMIN_CLIENT: &str = r#"
[[source]]
mode = "nts"
address = "nts.netnod.se"

[[source]]
mode = "nts"
address = "my.private.server.example.com"
certificate-authority = "/path/to/certificate/authority.pem"
"#;

#[test]
fn the_sysadmins_server_file_is_a_pure_server_with_defaults() {
    let config = load(SYSADMIN_SERVER);
    assert!(config.is_pure_server());
    assert!(!config.steers_clock());
    let [server] = config.servers.as_slice() else {
        panic!("one server")
    };
    assert_eq!(server.listen, addr("[::]:123"));
    assert_eq!(server.rate_limiting_cache_size, 0);
    assert_eq!(server.rate_limiting_cutoff_ms, 0);
    assert_eq!(server.require_nts, RequireNts::No);
    assert_eq!(server.accept_ntp_versions, vec![3, 4]);
    assert!(server.allowlist.is_none() && server.denylist.is_none());
    let [ke] = config.nts_ke_servers.as_slice() else {
        panic!("one KE server")
    };
    assert_eq!(ke.listen, addr("[::]:4460"));
    assert_eq!(
        ke.certificate_chain_path,
        PathBuf::from("/path/to/certificate/chain.pem")
    );
    assert_eq!(ke.private_key_path, PathBuf::from("/path/to/private.key"));
    assert_eq!(ke.key_exchange_timeout_ms, 1000);
    assert_eq!(ke.concurrent_connections, 512);
    assert_eq!(ke.ntp_port, None);
    assert_eq!(ke.accept_ntp_versions, vec![4]);
    assert_eq!(
        config.keyset.key_storage_path,
        Some(PathBuf::from("/path/to/store/key/material"))
    );
    assert_eq!(config.keyset.stale_key_count, 7);
    assert_eq!(config.keyset.key_rotation_interval, 86_400);
    // The one thing to say about it: with no source and local-stratum 16 it
    // answers as unsynchronized, which clients do not use.
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].key, "synchronization.local-stratum");
}

#[test]
fn the_sysadmins_client_file_loads_with_ntpd_rs_defaults() {
    let config = load(SYSADMIN_CLIENT);
    assert!(!config.is_pure_server());
    assert!(config.steers_clock());
    let [SourceConfig::Nts(first), SourceConfig::Nts(second)] = config.sources.as_slice() else {
        panic!("two nts sources: {:?}", config.sources)
    };
    assert_eq!(first.address.to_string(), "nts.netnod.se:4460");
    assert_eq!(first.certificate_authority, None);
    assert_eq!(first.ntp_version, NtpVersion::V4);
    assert_eq!(second.address.host, "my.private.server.example.com");
    assert_eq!(
        second.certificate_authority,
        Some(PathBuf::from("/path/to/certificate/authority.pem"))
    );

    let sync = &config.synchronization;
    assert_eq!(sync.minimum_agreeing_sources, 3);
    assert_eq!(
        sync.single_step_panic_threshold,
        StepThreshold::both(1000.0)
    );
    assert_eq!(sync.startup_step_panic_threshold.forward, None);
    assert_eq!(sync.startup_step_panic_threshold.backward, Some(86_400.0));
    assert_eq!(sync.accumulated_step_panic_threshold, None);
    assert_eq!(sync.local_stratum, 16);
    assert!(sync.warn_on_jump);
    let defaults = &config.source_defaults;
    assert_eq!(
        (
            defaults.poll_interval_limits.min,
            defaults.poll_interval_limits.max
        ),
        (4, 10)
    );
    assert_eq!(defaults.initial_poll_interval, 4);
    let obs = &config.observability;
    assert_eq!(obs.effective_log_level(), LogLevel::Info);
    assert_eq!(obs.observation_permissions, 0o666);
    // sundial opens no metrics port unless the file asks for one.
    assert_eq!(obs.metrics_exporter_listen, None);
    assert_eq!(config.clock.timestamp_mode, TimestampMode::KernelAll);
    assert!(!config.clock.observe_only);

    // ntpd-rs only warns when too few sources can agree; the file still
    // loads, and `sundial run` refuses to start with it (a daemon that can
    // never synchronize is better stopped where it is seen).
    let errors = config.start_errors();
    assert!(
        errors
            .iter()
            .any(|w| w.key == "synchronization.minimum-agreeing-sources"),
        "{errors:?}"
    );
    assert!(
        !config
            .warnings()
            .iter()
            .any(|w| w.key == "synchronization.minimum-agreeing-sources")
    );
}

#[test]
fn source_addresses_get_mode_default_ports() {
    let config = load(
        r#"
[[source]]
mode = "server"
address = "ntp.example.com"
[[source]]
mode = "pool"
address = "pool.ntp.org:1123"
ignore = ["127.0.0.1"]
[[source]]
mode = "nts"
address = "[2001:db8::1]"
[[source]]
mode = "server"
address = "::1"
ntp-version = "auto"
"#,
    );
    let shown: Vec<String> = config
        .sources
        .iter()
        .map(|s| match s {
            SourceConfig::Server(s) => s.address.to_string(),
            SourceConfig::Pool(s) => format!("{} x{}", s.address, s.count),
            SourceConfig::Nts(s) => s.address.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "ntp.example.com:123",
            "pool.ntp.org:1123 x4",
            "[2001:db8::1]:4460",
            "[::1]:123"
        ]
    );
    assert_eq!(config.max_sources(), 7);
    let SourceConfig::Server(last) = &config.sources[3] else {
        panic!()
    };
    assert_eq!(last.ntp_version, NtpVersion::Auto);
}

#[test]
fn threshold_shapes_match_ntpd_rs() {
    let config = load(
        r#"
[[source]]
mode = "server"
address = "a.example"
[synchronization]
single-step-panic-threshold = "inf"
startup-step-panic-threshold = { forward = 10, backward = 0.5 }
accumulated-step-panic-threshold = 100
"#,
    );
    let sync = &config.synchronization;
    assert_eq!(
        sync.single_step_panic_threshold,
        StepThreshold {
            forward: None,
            backward: None
        }
    );
    assert!(sync.startup_step_panic_threshold.allows(10.0));
    assert!(!sync.startup_step_panic_threshold.allows(10.5));
    assert!(!sync.startup_step_panic_threshold.allows(-0.6));
    assert_eq!(sync.accumulated_step_panic_threshold, Some(100.0));

    let half = load(
        r#"
[[source]]
mode = "server"
address = "a.example"
[synchronization]
single-step-panic-threshold = { backward = 5 }
"#,
    );
    // A direction left out of the table has no limit, as in ntpd-rs.
    assert_eq!(
        half.synchronization.single_step_panic_threshold,
        StepThreshold {
            forward: None,
            backward: Some(5.0)
        }
    );
}

#[test]
fn server_filters_and_require_nts() {
    let config = load(
        r#"
[[server]]
listen = "0.0.0.0:123"
allowlist = { filter = ["192.168.1.1/24", "2001:db8::/32"], action = "ignore" }
denylist = { filter = ["192.168.1.66"], action = "deny" }
require-nts = true
[[server]]
listen = "[::]:123"
require-nts = "deny"
"#,
    );
    let server = &config.servers[0];
    let ip = |t: &str| t.parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.filter_action(ip("192.168.1.5")), None);
    assert_eq!(server.filter_action(ip("2001:db8::7")), None);
    assert_eq!(
        server.filter_action(ip("10.1.1.1")),
        Some(FilterAction::Ignore)
    );
    assert_eq!(
        server.filter_action(ip("192.168.1.66")),
        Some(FilterAction::Deny)
    );
    assert_eq!(server.require_nts, RequireNts::Ignore);
    assert_eq!(config.servers[1].require_nts, RequireNts::Deny);
}

#[test]
fn refclocks_load_with_ntpd_rs_keys() {
    let config = load(
        r#"
[[source]]
mode = "sock"
path = "/run/ntpd-rs/chrony.ttyAMA0.sock"
precision = 1e-3
[[source]]
mode = "pps"
path = "/dev/pps0"
precision = 1e-7
period = 0.1
accuracy = 1e-6
[[source]]
mode = "sock"
path = "/run/chrony.ttyS0.sock"
measurement_noise_estimate = 4e-6
[synchronization]
minimum-agreeing-sources = 1
reference-id = "GPS"
"#,
    );
    let modes: Vec<SourceMode> = config.sources.iter().map(SourceConfig::mode).collect();
    assert_eq!(modes, [SourceMode::Sock, SourceMode::Pps, SourceMode::Sock]);
    assert!(modes.iter().all(|m| m.is_supported() && m.is_refclock()));
    match &config.sources[..] {
        [
            SourceConfig::Sock(sock),
            SourceConfig::Pps(pps),
            SourceConfig::Sock(old),
        ] => {
            assert_eq!(sock.path, Path::new("/run/ntpd-rs/chrony.ttyAMA0.sock"));
            assert_eq!((sock.precision, sock.accuracy), (1e-3, 0.0));
            assert_eq!((pps.precision, pps.accuracy, pps.period), (1e-7, 1e-6, 0.1));
            // ntpd-rs's deprecated variance: precision is its square root.
            assert!((old.precision - 2e-3).abs() < 1e-12, "{old:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    // A PPS counts for no agreeing source, as in ntpd-rs.
    assert_eq!(config.max_sources(), 2);
}

#[test]
fn a_pps_without_a_whole_time_source_is_warned_about() {
    let config = load(
        "[[source]]\nmode = \"pps\"\npath = \"/dev/pps0\"\nprecision = 1e-7\n\
         [synchronization]\nminimum-agreeing-sources = 1\n",
    );
    let warnings = config.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.key == "source[0]" && w.message.contains("never used")),
        "{warnings:?}"
    );
}

#[test]
fn observe_only_is_a_clock_setting() {
    let config = load(
        "[[source]]\nmode = \"nts\"\naddress = \"nts.netnod.se\"\n[clock]\nobserve-only = true\n",
    );
    assert!(config.clock.observe_only);
    assert!(!config.steers_clock());
}

#[test]
fn accepted_but_ignored_keys_are_warned_about() {
    let config = load(
        r#"
[[server]]
listen = "127.0.0.1:123"

[[nts-ke-server]]
listen = "127.0.0.1:4460"
certificate-chain-path = "/c"
private-key-path = "/k"
accept-ntp-versions = [4, 5]

[keyset]
key-storage-path = "/var/lib/sundial/keys"

[clock]
clock = "/dev/ptp0"
interface = "eth0"
timestamp-mode = "hardware"
"#,
    );
    let warned: Vec<String> = config.warnings().into_iter().map(|w| w.key).collect();
    for key in [
        "nts-ke-server[0].accept-ntp-versions",
        "clock.clock",
        "clock.interface",
        "clock.timestamp-mode",
    ] {
        assert!(warned.contains(&key.to_owned()), "{key}: {warned:?}");
    }
    // warn-on-jump is implemented (clock/jump.rs), so it is no warning.
    assert!(!warned.iter().any(|k| k.contains("warn-on-jump")));
}
