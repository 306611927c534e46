//! `[nts-ke-server.acme]`: the KE server obtains and renews its own
//! certificate from an ACME CA (RFC 8555) instead of reading files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{KeyPath, Problem};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous
/// rate limits, for trying a setup out first.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Where the account key, certificate and private key live by default.
pub const DEFAULT_STATE_DIRECTORY: &str = "/var/lib/sundial/acme";

fn default_directory() -> String {
    LETS_ENCRYPT.to_owned()
}

fn default_state_directory() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIRECTORY)
}

/// How the CA checks that we control the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ChallengeType {
    /// A plain HTTP request to port 80 (RFC 8555 8.3).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A TLS handshake with ALPN `acme-tls/1` on port 443 (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeType {
    /// The port the CA connects to; the only one it will use.
    #[must_use]
    pub fn port(self) -> u16 {
        match self {
            Self::Http01 => 80,
            Self::TlsAlpn01 => 443,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// One KE server's ACME settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AcmeConfig {
    /// The DNS names the certificate is for; the first is its subject.
    pub domains: Vec<String>,
    /// An e-mail address the CA may write to about the account.
    #[serde(default)]
    pub contact: Option<String>,
    /// The CA's directory URL, or `letsencrypt` / `letsencrypt-staging`.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// PEM CA certificate(s) the directory's HTTPS is verified against
    /// instead of the system roots (a private ACME CA).
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// `http-01` (default) or `tls-alpn-01`.
    #[serde(default)]
    pub challenge: ChallengeType,
    /// Where sundial answers the challenge (default `[::]:80` for http-01,
    /// `[::]:443` for tls-alpn-01). Bound at start and kept.
    #[serde(default)]
    pub challenge_listen: Option<SocketAddr>,
    /// The account key, certificate and private key (default
    /// `/var/lib/sundial/acme`).
    #[serde(default = "default_state_directory")]
    pub state_directory: PathBuf,
}

impl AcmeConfig {
    /// The directory URL, aliases resolved.
    #[must_use]
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "letsencrypt" => LETS_ENCRYPT,
            "letsencrypt-staging" => LETS_ENCRYPT_STAGING,
            other => other,
        }
    }

    /// Where the challenge listener binds.
    #[must_use]
    pub fn challenge_addr(&self) -> SocketAddr {
        self.challenge_listen.unwrap_or_else(|| {
            SocketAddr::new(
                std::net::Ipv6Addr::UNSPECIFIED.into(),
                self.challenge.port(),
            )
        })
    }

    /// The certificate chain and private key files in the state directory,
    /// which the KE server serves and hot-reloads like any other pair.
    #[must_use]
    pub fn certificate_files(&self) -> (PathBuf, PathBuf) {
        (
            self.state_directory.join("certificate.pem"),
            self.state_directory.join("private-key.pem"),
        )
    }

    pub(crate) fn check(&self, at: &KeyPath, problems: &mut Vec<Problem>) {
        if self.domains.is_empty() {
            problems.push(Problem::new(
                at.key("domains"),
                "name at least one domain for the certificate",
            ));
        }
        for (index, domain) in self.domains.iter().enumerate() {
            if let Err(message) = check_domain(domain) {
                problems.push(Problem::new(at.key("domains").index(index), message));
            }
        }
        if let Some(contact) = &self.contact {
            if let Err(message) = check_email(contact) {
                problems.push(Problem::new(at.key("contact"), message));
            }
        }
        let url = self.directory_url();
        if !url.starts_with("https://") || url.len() <= "https://".len() {
            problems.push(Problem::new(
                at.key("directory"),
                "an https:// URL, `letsencrypt` or `letsencrypt-staging`",
            ));
        }
        if let Some(path) = &self.ca_certificate {
            if let Err(message) = check_ca_file(path) {
                problems.push(Problem::new(at.key("ca-certificate"), message));
            }
        }
        if self.challenge_listen.is_some_and(|a| a.port() == 0) {
            problems.push(Problem::new(
                at.key("challenge-listen"),
                format!(
                    "the CA connects to port {} for {}: a fixed port is needed (forward it if sundial listens elsewhere)",
                    self.challenge.port(),
                    self.challenge.as_str()
                ),
            ));
        }
        if self.state_directory.as_os_str().is_empty() {
            problems.push(Problem::new(at.key("state-directory"), "the path is empty"));
        }
    }
}

/// A name an ACME CA can validate over HTTP or TLS: letters, digits and
/// hyphens in dot-separated labels; no wildcard (those need DNS-01) and no
/// IP address.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.starts_with("*.") {
        return Err(format!(
            "{domain:?}: wildcard names need the DNS-01 challenge, which sundial does not answer"
        ));
    }
    if domain.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{domain:?}: a DNS name, not an IP address"));
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("{domain:?} is not a valid DNS name"));
    }
    Ok(())
}

fn check_email(contact: &str) -> Result<(), String> {
    let address = contact.strip_prefix("mailto:").unwrap_or(contact);
    match address.split_once('@') {
        Some((user, host))
            if !user.is_empty()
                && host.contains('.')
                && !address.chars().any(|c| c.is_whitespace() || c == ',') =>
        {
            Ok(())
        }
        _ => Err(format!("{contact:?} is not an e-mail address")),
    }
}

/// The CA file must hold at least one PEM certificate: read now, so that
/// `sundial validate` finds a wrong path instead of the first renewal.
fn check_ca_file(path: &Path) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM \"CERTIFICATE\" block found",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(check_domain("time.example.com").is_ok());
        assert!(check_domain("localhost").is_ok());
        assert!(check_domain("time.example.com.").is_ok());
        assert!(check_domain("*.example.com").is_err());
        assert!(check_domain("192.0.2.1").is_err());
        assert!(check_domain("a..b").is_err());
        assert!(check_domain("-a.b").is_err());
        assert!(check_domain("a b").is_err());
        assert!(check_domain("").is_err());
    }

    #[test]
    fn emails() {
        assert!(check_email("ops@example.com").is_ok());
        assert!(check_email("mailto:ops@example.com").is_ok());
        assert!(check_email("ops").is_err());
        assert!(check_email("a@b").is_err());
        assert!(check_email("a@b.c, d@e.f").is_err());
    }
}
