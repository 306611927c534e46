//! Certificate rejections in words a sysadmin can act on. rustls reports
//! `UnknownIssuer` or `NotValidForNameContext { expected: IpAddress(..) }`;
//! the person reading `sundial query` or the source's log wants to know
//! what failed and what to check: which CA file, which names the
//! certificate holds against the one connected to, the dates against this
//! machine's clock.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::Path;

use rustls::CertificateError;
use rustls::pki_types::{ServerName, UnixTime};
use x509_parser::time::ASN1Time;

/// What the source trusted, for the sentence about an unknown issuer.
fn trusted(file: Option<&Path>) -> String {
    match file {
        Some(file) => format!(
            "the CA in {} (nor is it a certificate pinned there)",
            file.display()
        ),
        None => "any CA in the system's trust store".to_owned(),
    }
}

fn date(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|secs| ASN1Time::from_timestamp(secs).ok())
        .map_or_else(
            || format!("{} s after 1970", time.as_secs()),
            |t| t.to_string(),
        )
}

fn name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// webpki lists the certificate's names in their debug form,
/// `DnsName("localhost")` and `IpAddress(127.0.0.1)`: the name itself.
fn presented_name(debug: &str) -> String {
    let inner = |prefix: &str| {
        debug
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(|name| name.trim_matches('"').to_owned())
    };
    inner("DnsName(")
        .or_else(|| inner("IpAddress("))
        .unwrap_or_else(|| debug.to_owned())
}

const CLOCK_HINT: &str =
    "if this machine's clock is wrong, see [synchronization] certificate-time-check-after";

/// One sentence on why the certificate of `host` was refused; `file` is the
/// source's `certificate-authority` (or query's `--ca`), if any.
#[must_use]
pub fn describe(reason: &CertificateError, host: &str, file: Option<&Path>) -> String {
    match reason {
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by {}",
            trusted(file)
        ),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = name(expected);
            let presented: Vec<String> = presented.iter().map(|p| presented_name(p)).collect();
            if presented.is_empty() {
                return format!(
                    "the certificate names no host, you connected to {expected}"
                );
            }
            let mut text = format!(
                "the certificate is for {}, you connected to {expected}",
                presented.join(", ")
            );
            let by_ip = expected.parse::<std::net::IpAddr>().is_ok();
            let has_ip = presented
                .iter()
                .any(|p| p.parse::<std::net::IpAddr>().is_ok());
            if by_ip && !has_ip {
                text.push_str(
                    " (an IP address is checked against the certificate's IP addresses: connect by one of its names, or add IP:",
                );
                let _ = write!(text, "{expected} to its subjectAltName)");
            }
            text
        }
        CertificateError::NotValidForName => {
            format!("the certificate is not valid for {host}")
        }
        CertificateError::ExpiredContext { time, not_after } => format!(
            "the server's certificate expired on {} (this machine's clock says {}; {CLOCK_HINT})",
            date(*not_after),
            date(*time)
        ),
        CertificateError::Expired => {
            format!("the server's certificate has expired ({CLOCK_HINT})")
        }
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "the server's certificate is not valid before {} (this machine's clock says {}; {CLOCK_HINT})",
            date(*not_before),
            date(*time)
        ),
        CertificateError::NotValidYet => {
            format!("the server's certificate is not valid yet ({CLOCK_HINT})")
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the certificate is not for a TLS server (its extended key usage lacks serverAuth)"
                .to_owned()
        }
        // A trusted CA has the issuer's name but not its key: to a person,
        // the same as an unknown issuer (two `sundial ca` runs, say).
        CertificateError::BadSignature => format!(
            "the server's certificate is not signed by {} (a CA there has its issuer's name, but another key)",
            trusted(file)
        ),
        CertificateError::BadEncoding => "the certificate does not parse".to_owned(),
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "the server presents a CA certificate (CA:TRUE) as its own: to trust it, pin exactly that certificate (certificate-authority, or query's --ca), or give the server a certificate signed by a CA".to_owned()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn unknown_issuer_names_the_file_or_the_system_store() {
        let file = PathBuf::from("/etc/sundial/ca.pem");
        let text = describe(&CertificateError::UnknownIssuer, "h", Some(&file));
        assert!(
            text.contains("not signed by the CA in /etc/sundial/ca.pem"),
            "{text}"
        );
        let text = describe(&CertificateError::UnknownIssuer, "h", None);
        assert!(text.contains("system's trust store"), "{text}");
    }

    #[test]
    fn a_name_mismatch_by_ip_says_both_and_what_to_do() {
        let reason = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap_or_else(|e| panic!("{e}")),
            presented: vec!["DnsName(\"localhost\")".to_owned()],
        };
        let text = describe(&reason, "127.0.0.1", None);
        assert!(
            text.starts_with("the certificate is for localhost, you connected to 127.0.0.1"),
            "{text}"
        );
        assert!(text.contains("IP:127.0.0.1"), "{text}");
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(presented_name("DnsName(\"time.test\")"), "time.test");
        assert_eq!(presented_name("IpAddress(192.0.2.1)"), "192.0.2.1");
        assert_eq!(presented_name("IpAddress(::1)"), "::1");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn dates_are_dates() {
        let reason = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_000_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(978_307_200)),
        };
        let text = describe(&reason, "h", None);
        assert!(text.contains("2001"), "{text}");
        assert!(text.contains("certificate-time-check-after"), "{text}");
    }
}
