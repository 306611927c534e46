//! Which files the daemon still needs once it is sandboxed, from the
//! configuration: the one list Landlock is built from. A new code path that
//! opens files after start adds its paths here.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::config::{Config, SourceConfig};

/// What the daemon may open after start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    /// Read only (no execute), the path and (for directories) everything
    /// beneath it.
    pub read: Vec<PathBuf>,
    /// Read and write (create, rename, remove) beneath these.
    pub write: Vec<PathBuf>,
}

/// Read by the C library and rustls at run time: name resolution for NTS
/// sources (getaddrinfo and the NSS modules it loads) and the system's
/// trust anchors for their key exchanges. Absent ones are skipped.
const SYSTEM_READ: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/usr/lib/ssl",
    // NSS modules (libnss_*.so) are loaded on first use.
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    // systemd-resolved's resolv.conf, where /etc/resolv.conf points there.
    "/run/systemd/resolve",
    // /proc/self/status, for `sundial status` (the sandbox itself).
    "/proc/self",
];

/// A file's directory (for reloads that replace the file) and, when the
/// path is a symlink, its target's directory as it is at start.
fn file_and_dirs(path: &Path, out: &mut Vec<PathBuf>) {
    out.push(path.to_owned());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        out.push(dir.to_owned());
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        if let Some(dir) = real.parent() {
            out.push(dir.to_owned());
        }
        out.push(real);
    }
}

impl Paths {
    /// The paths `config` needs after start.
    #[must_use]
    pub fn for_config(config: &Config) -> Self {
        let mut paths = Self::default();
        paths.read.extend(SYSTEM_READ.iter().map(PathBuf::from));
        for ke in &config.nts_ke_servers {
            file_and_dirs(&ke.certificate_chain_path, &mut paths.read);
            file_and_dirs(&ke.private_key_path, &mut paths.read);
            // ACME: its state (account, certificate, key) is rewritten at
            // every renewal; a private CA's certificate is read for each.
            if let Some(acme) = &ke.acme {
                paths.write.push(acme.state_directory.clone());
                if let Some(ca) = &acme.ca_certificate {
                    file_and_dirs(ca, &mut paths.read);
                }
            }
        }
        for source in &config.sources {
            match source {
                SourceConfig::Nts(s) => {
                    if let Some(ca) = &s.certificate_authority {
                        file_and_dirs(ca, &mut paths.read);
                    }
                }
                SourceConfig::NtsPool(s) => {
                    if let Some(ca) = &s.certificate_authority {
                        file_and_dirs(ca, &mut paths.read);
                    }
                }
                // Reference clocks: the SOCK source's socket (its
                // directory, where it is re-created) and the PPS device.
                SourceConfig::Sock(s) => file_and_dirs(&s.path, &mut paths.write),
                // The device itself only (its directory is /dev), in the
                // write list for the ioctl right PPS_FETCH needs.
                SourceConfig::Pps(s) => paths.write.push(s.path.clone()),
                SourceConfig::Server(_) | SourceConfig::Pool(_) => {}
            }
        }
        // The key file is replaced by rename: its directory is writable.
        if let Some(keys) = &config.keyset.key_storage_path {
            file_and_dirs(keys, &mut paths.write);
        }
        // The observation socket is removed at exit.
        if let Some(socket) = &config.observability.observation_path {
            file_and_dirs(socket, &mut paths.write);
        }
        if let Some(log) = &config.observability.log_path {
            paths.write.push(log.clone());
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::Paths;
    use crate::config;

    #[test]
    fn the_config_names_what_stays_reachable() {
        let text = r#"
            [[source]]
            mode = "nts"
            address = "time.example"
            certificate-authority = "/etc/sundial/ca/ca.pem"
            [[source]]
            mode = "pps"
            path = "/dev/pps0"
            precision = 0.000001
            [[nts-ke-server]]
            listen = "127.0.0.1:4460"
            certificate-chain-path = "/etc/sundial/tls/chain.pem"
            private-key-path = "/etc/sundial/tls/key.pem"
            [keyset]
            key-storage-path = "/var/lib/sundial/ntskeys"
            [observability]
            observation-path = "/run/sundial/observe"
            log-path = "/var/log/sundial/sundial.log"
        "#;
        let config = config::parse(text, Path::new("t.toml")).expect("a valid config");
        let paths = Paths::for_config(&config);
        let has = |list: &[PathBuf], p: &str| list.iter().any(|x| x == Path::new(p));
        for read in ["/etc/sundial/tls", "/etc/sundial/ca", "/etc/resolv.conf"] {
            assert!(has(&paths.read, read), "{read} not readable");
        }
        for write in [
            "/var/lib/sundial",
            "/run/sundial",
            "/var/log/sundial/sundial.log",
            "/dev/pps0",
        ] {
            assert!(has(&paths.write, write), "{write} not writable");
        }
        // Never a whole system directory to write, nor /dev to read.
        for (list, p) in [
            (&paths.write, "/etc"),
            (&paths.read, "/dev"),
            (&paths.write, "/dev"),
        ] {
            assert!(!has(list, p), "{p}");
        }
        assert!(!has(&paths.read, "/etc/sundial"));
    }
}
