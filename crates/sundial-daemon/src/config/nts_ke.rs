//! `[[nts-ke-server]]`: NTS key exchange over TLS 1.3 on TCP.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::acme::AcmeConfig;
use super::address::HostPort;
use super::server::check_versions;
use super::source::NTP_PORT;
use super::{KeyPath, Problem};

fn default_key_exchange_timeout_ms() -> u64 {
    1000
}

fn default_concurrent_connections() -> usize {
    512
}

fn default_accept_ntp_versions() -> Vec<u8> {
    vec![4]
}

/// One NTS-KE listener. Its certificate comes either from the two files
/// (both required) or from ACME (`[nts-ke-server.acme]`, neither file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NtsKeServerConfig {
    /// TCP socket address, e.g. `[::]:4460`.
    pub listen: SocketAddr,
    /// PEM certificate chain offered to clients, leaf first. Empty when
    /// the certificate comes from ACME.
    #[serde(default)]
    pub certificate_chain_path: PathBuf,
    /// PEM private key of the leaf certificate. Empty with ACME.
    #[serde(default)]
    pub private_key_path: PathBuf,
    /// *sundial:* obtain and renew the certificate over ACME instead.
    #[serde(default)]
    pub acme: Option<AcmeConfig>,
    /// A key exchange that takes longer is dropped (default 1000 ms).
    #[serde(default = "default_key_exchange_timeout_ms")]
    pub key_exchange_timeout_ms: u64,
    /// Connections handled at once; when all are taken, a newcomer evicts
    /// the oldest connection still in its TLS handshake (default 512).
    #[serde(default = "default_concurrent_connections")]
    pub concurrent_connections: usize,
    /// NTP port sent in the Port Negotiation record when not 123.
    #[serde(default)]
    pub ntp_port: Option<u16>,
    /// NTP server name sent in the Server Negotiation record when the NTP
    /// server is not this host.
    #[serde(default)]
    pub ntp_server: Option<String>,
    /// *sundial:* several NTP servers (`host` or `host:port`) named in turn,
    /// one per key exchange, to spread the clients of one KE front over a
    /// fleet that shares its key file. Instead of `ntp-server`.
    #[serde(default)]
    pub ntp_servers: Vec<String>,
    /// NTP versions clients may negotiate (default `[4]`).
    #[serde(default = "default_accept_ntp_versions")]
    pub accept_ntp_versions: Vec<u8>,
    /// ntpd-rs experimental NTS pool: certificates of pool KE servers allowed
    /// to request keys for their clients. Accepted, not used by sundial.
    #[serde(default)]
    pub authorized_pool_server_certificates: Vec<PathBuf>,
    /// ntpd-rs experimental NTS pool: tokens a pool presents. Accepted, not
    /// used by sundial.
    #[serde(default)]
    pub accepted_pool_authentication_tokens: Vec<String>,
}

impl NtsKeServerConfig {
    /// The certificate chain and key served: the configured files, or the
    /// ones ACME keeps in its state directory.
    #[must_use]
    pub fn certificate_files(&self) -> (PathBuf, PathBuf) {
        match &self.acme {
            Some(acme) => acme.certificate_files(),
            None => (
                self.certificate_chain_path.clone(),
                self.private_key_path.clone(),
            ),
        }
    }

    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        for (key, path) in [
            ("certificate-chain-path", &self.certificate_chain_path),
            ("private-key-path", &self.private_key_path),
        ] {
            if self.acme.is_some() {
                if !path.as_os_str().is_empty() {
                    problems.push(Problem::new(
                        at.key(key),
                        "the certificate comes from [nts-ke-server.acme]: give either the files or acme, not both",
                    ));
                }
            } else if path.as_os_str().is_empty() {
                // Absent and empty are both refused; which was meant shows
                // in whether the key is on the line named.
                problems.push(Problem::new(
                    at.key(key),
                    format!(
                        "missing field `{key}` (or the path is empty); or let ACME provide the certificate with [nts-ke-server.acme]"
                    ),
                ));
            }
        }
        if let Some(acme) = &self.acme {
            acme.check(&at.key("acme"), problems);
        }
        if self.key_exchange_timeout_ms == 0 {
            problems.push(Problem::new(
                at.key("key-exchange-timeout-ms"),
                "the timeout must be at least 1 ms",
            ));
        }
        if self.concurrent_connections == 0 {
            problems.push(Problem::new(
                at.key("concurrent-connections"),
                "at least one connection must be allowed",
            ));
        }
        if self.ntp_port == Some(0) {
            problems.push(Problem::new(
                at.key("ntp-port"),
                "port 0 cannot be given to clients",
            ));
        }
        if let Some(name) = &self.ntp_server {
            if let Err(message) = HostPort::parse(name, NTP_PORT) {
                problems.push(Problem::new(at.key("ntp-server"), message));
            }
            if !self.ntp_servers.is_empty() {
                problems.push(Problem::new(
                    at.key("ntp-servers"),
                    "give either ntp-server or ntp-servers, not both",
                ));
            }
        }
        for (index, name) in self.ntp_servers.iter().enumerate() {
            if let Err(message) = HostPort::parse(name, NTP_PORT) {
                problems.push(Problem::new(at.key("ntp-servers").index(index), message));
            }
        }
        check_versions(
            &self.accept_ntp_versions,
            &[4, 5],
            &at.key("accept-ntp-versions"),
            problems,
        );
    }
}
