//! `sundial ca`: a private CA and a server certificate it signed, for NTS
//! servers that have no public certificate (a lab, a closed network).
//!
//! Why a CA and not one self-signed certificate: NTS clients verify the
//! server with ordinary WebPKI rules, and both rustls and GnuTLS (chrony)
//! refuse a self-signed leaf as a trust anchor. The CA is name-constrained
//! to the server's own names, so a client that trusts `ca.pem` trusts it
//! for that server only, even if `ca.key` leaks.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use time::OffsetDateTime;

/// How long the CA is valid, at least (longer if `--days` is longer): its
/// certificate is copied to every client, so it should outlive many
/// renewals of the server certificate.
const CA_DAYS: u32 = 3650;

/// Both certificates start a day in the past: a client whose clock is a
/// little behind (the reason it wants NTS) must still accept them.
const BACKDATE: Duration = Duration::from_secs(86_400);

/// Longest `--days` accepted: a hundred years is a typo, not a plan.
const MAX_DAYS: u32 = 36_500;

/// Arguments of `sundial ca`.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// The name clients use to reach the NTS-KE server (the `address` of
    /// their source), e.g. time.example.com. An IP address works too.
    #[arg(long, value_name = "NAME")]
    hostname: String,
    /// Also valid for this IP address; repeat for several.
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// Directory for the files; created with mode 0700 if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days the server certificate is valid.
    #[arg(long, value_name = "N", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
    days: u32,
    /// Replace files that already exist.
    #[arg(long)]
    force: bool,
}

/// Why `sundial ca` wrote nothing (or, for a write error, not everything).
#[derive(Debug)]
pub enum CaError {
    BadHostname(String),
    Exists(Vec<PathBuf>),
    Io(PathBuf, io::Error),
    Generate(rcgen::Error),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadHostname(name) => {
                write!(f, "--hostname {name:?} is not a DNS name or an IP address")
            }
            Self::Exists(paths) => {
                let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{} already exist{}; nothing written (--force replaces them)",
                    names.join(", "),
                    if names.len() == 1 { "s" } else { "" }
                )
            }
            Self::Io(path, e) => write!(f, "{}: {e}", path.display()),
            Self::Generate(e) => write!(f, "cannot generate the certificates: {e}"),
        }
    }
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e)
    }
}

/// The server's names, split the way certificates hold them.
#[derive(Debug)]
struct Names {
    dns: Option<String>,
    ips: Vec<IpAddr>,
}

impl Names {
    fn new(hostname: &str, extra_ips: &[IpAddr]) -> Result<Self, CaError> {
        let mut ips = Vec::new();
        let dns = match hostname.parse::<IpAddr>() {
            Ok(ip) => {
                ips.push(ip);
                None
            }
            Err(_) => Some(dns_name(hostname)?),
        };
        for ip in extra_ips {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        Ok(Self { dns, ips })
    }

    /// The name shown as the certificate's subject.
    fn primary(&self) -> String {
        match (&self.dns, self.ips.first()) {
            (Some(dns), _) => dns.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => String::new(),
        }
    }

    fn sans(&self) -> Result<Vec<SanType>, CaError> {
        let mut sans = Vec::new();
        if let Some(dns) = &self.dns {
            sans.push(SanType::DnsName(dns.clone().try_into()?));
        }
        sans.extend(self.ips.iter().copied().map(SanType::IpAddress));
        Ok(sans)
    }

    /// The CA may sign for exactly these names. RFC 5280 leaves a name
    /// type without a permitted subtree unconstrained, so when there is no
    /// DNS name (or no IP) that whole type is excluded instead.
    fn constraints(&self) -> NameConstraints {
        let mut permitted = Vec::new();
        let mut excluded = Vec::new();
        match &self.dns {
            Some(dns) => permitted.push(GeneralSubtree::DnsName(dns.clone())),
            // An empty DNS name matches every DNS name.
            None => excluded.push(GeneralSubtree::DnsName(String::new())),
        }
        for ip in &self.ips {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            permitted.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                *ip, prefix,
            )));
        }
        if self.ips.is_empty() {
            excluded.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
            )));
            excluded.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                0,
            )));
        }
        NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: excluded,
        }
    }
}

/// A host name as certificates want it: lower case, no trailing dot,
/// letters, digits and inner hyphens in labels of 1 to 63 characters.
fn dns_name(hostname: &str) -> Result<String, CaError> {
    let name = hostname
        .strip_suffix('.')
        .unwrap_or(hostname)
        .to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(CaError::BadHostname(hostname.to_owned()));
    }
    Ok(name)
}

/// What gets written: file name, contents, mode, and what it is for.
struct Output {
    name: &'static str,
    contents: String,
    mode: u32,
    purpose: &'static str,
}

/// The PEM files of a new CA and server certificate.
fn generate(names: &Names, days: u32, now: OffsetDateTime) -> Result<Vec<Output>, CaError> {
    let not_before = now - BACKDATE;
    let day = Duration::from_secs(86_400);

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("sundial private CA for {}", names.primary()),
    );
    // pathlen 0: it signs servers, never another CA.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.name_constraints = Some(names.constraints());
    ca.not_before = not_before;
    ca.not_after = now + day * CA_DAYS.max(days.saturating_add(1));
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut server = CertificateParams::default();
    server.subject_alt_names = names.sans()?;
    server.distinguished_name = DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, names.primary());
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before;
    server.not_after = now + day * days;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    Ok(vec![
        Output {
            name: "ca.pem",
            contents: ca_cert.pem(),
            mode: 0o644,
            purpose: "the CA certificate: copy it to every client",
        },
        Output {
            name: "ca.key",
            contents: ca_key_pem,
            mode: 0o600,
            purpose: "the CA's private key: keep it secret, and off the server",
        },
        Output {
            name: "server.pem",
            contents: server_cert.pem(),
            mode: 0o644,
            purpose: "the server certificate alone",
        },
        Output {
            name: "server-chain.pem",
            contents: server_cert.pem() + &ca_cert.pem(),
            mode: 0o644,
            purpose: "the server certificate, then the CA: what the server presents",
        },
        Output {
            name: "server.key",
            contents: server_key.serialize_pem(),
            mode: 0o600,
            purpose: "the server's private key (PKCS#8)",
        },
    ])
}

/// The same CA and server certificate for `hostname` (and `ips`), as
/// `(file name, PEM, mode)`, for `sundial demo`, which writes them into its
/// own temporary directory.
pub(crate) fn generate_pem(
    hostname: &str,
    ips: &[IpAddr],
    days: u32,
) -> Result<Vec<(&'static str, String, u32)>, CaError> {
    let names = Names::new(hostname, ips)?;
    let files = generate(&names, days, OffsetDateTime::now_utc())?;
    Ok(files
        .into_iter()
        .map(|f| (f.name, f.contents, f.mode))
        .collect())
}

/// Creates `dir` (mode 0755, parents as needed) unless it exists; returns
/// its absolute path for the config lines. Not 0700: ca.pem and the
/// certificates are public, and a daemon running as another user (chronyd
/// drops to `_chrony`) must be able to reach them; the two keys are
/// protected by their own mode 0600.
fn prepare_dir(dir: &Path) -> Result<PathBuf, CaError> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| CaError::Io(dir.to_owned(), e))?;
    }
    fs::canonicalize(dir).map_err(|e| CaError::Io(dir.to_owned(), e))
}

/// Writes through a temporary file and a rename, so the file gets `mode`
/// from its first byte (even when it replaces one with a looser mode) and
/// is never seen half-written.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    let io_err = |e| CaError::Io(path.to_owned(), e);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CaError::Io(tmp, e)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| CaError::Io(tmp.clone(), e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CaError::Io(tmp.clone(), e))?;
    fs::rename(&tmp, path).map_err(io_err)
}

/// `sundial ca`: generate, write, and tell the sysadmin what to paste.
pub fn run(args: &CaArgs, out: &mut impl Write) -> Result<(), CaError> {
    let names = Names::new(&args.hostname, &args.ips)?;
    // Generate first: a failure then leaves nothing behind.
    let files = generate(&names, args.days, OffsetDateTime::now_utc())?;
    if !args.force {
        let existing: Vec<PathBuf> = files
            .iter()
            .map(|f| args.out.join(f.name))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            return Err(CaError::Exists(existing));
        }
    }
    let dir = prepare_dir(&args.out)?;
    for file in &files {
        write_file(&dir.join(file.name), &file.contents, file.mode)?;
    }
    let _ = print_summary(out, &dir, &names, args.days, &files);
    Ok(())
}

fn print_summary(
    out: &mut impl Write,
    dir: &Path,
    names: &Names,
    days: u32,
    files: &[Output],
) -> io::Result<()> {
    let mut valid_for: Vec<String> = names.dns.iter().cloned().collect();
    valid_for.extend(names.ips.iter().map(IpAddr::to_string));
    writeln!(
        out,
        "Wrote to {}, valid for {} for {days} days:",
        dir.display(),
        valid_for.join(", ")
    )?;
    for file in files {
        writeln!(
            out,
            "  {:<17} {:04o}  {}",
            file.name, file.mode, file.purpose
        )?;
    }
    let path = |name: &str| dir.join(name).display().to_string();
    let address = names.primary();
    writeln!(out)?;
    writeln!(
        out,
        "Server, in ntp.toml (the daemon's user must be able to read server.key):"
    )?;
    writeln!(out, "  [[nts-ke-server]]")?;
    writeln!(out, "  listen = \"[::]:4460\"")?;
    writeln!(
        out,
        "  certificate-chain-path = {:?}",
        path("server-chain.pem")
    )?;
    writeln!(out, "  private-key-path = {:?}", path("server.key"))?;
    writeln!(out)?;
    writeln!(
        out,
        "Clients (sundial or ntpd-rs), with ca.pem copied to the client:"
    )?;
    writeln!(out, "  [[source]]")?;
    writeln!(out, "  mode = \"nts\"")?;
    writeln!(out, "  address = {address:?}")?;
    writeln!(out, "  certificate-authority = {:?}", path("ca.pem"))?;
    writeln!(out)?;
    writeln!(
        out,
        "  # with fewer than 3 sources, also [synchronization] minimum-agreeing-sources"
    )?;
    writeln!(out)?;
    writeln!(out, "Clients (chrony, in chrony.conf):")?;
    writeln!(out, "  ntstrustedcerts {}", path("ca.pem"))?;
    writeln!(out, "  server {address} nts iburst")?;
    if let Some(closed) = closed_to_others(dir) {
        writeln!(out)?;
        writeln!(
            out,
            "Note: {} is closed to other users (no o+x), so a daemon running as another user \
             (chronyd runs as _chrony) cannot read ca.pem here: copy ca.pem where it can \
             (e.g. /etc/chrony/), or open that directory.",
            closed.display()
        )?;
    }
    Ok(())
}

/// The first directory from the root down to `dir` that other users cannot
/// pass through, if any: behind it, ca.pem's own 0644 does not help.
fn closed_to_others(dir: &Path) -> Option<PathBuf> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    chain.into_iter().find_map(|d| {
        let mode = fs::metadata(d).ok()?.permissions().mode();
        (mode & 0o001 == 0).then(|| d.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked_and_normalised() {
        assert_eq!(
            dns_name("Time.Example.COM.").ok(),
            Some("time.example.com".to_owned())
        );
        assert_eq!(dns_name("a-b.c1").ok(), Some("a-b.c1".to_owned()));
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "*.example.com",
            "a_b.c",
            &"x".repeat(64),
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_ip_hostname_becomes_an_ip_name_and_duplicates_go() {
        let ip: IpAddr = "192.0.2.1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let names = Names::new("192.0.2.1", &[ip]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names.dns, None);
        assert_eq!(names.ips, vec![ip]);
        assert_eq!(names.primary(), "192.0.2.1");
        // No DNS name: DNS names are excluded, so the CA can sign none.
        let constraints = names.constraints();
        assert_eq!(
            constraints.excluded_subtrees,
            vec![GeneralSubtree::DnsName(String::new())]
        );
    }

    #[test]
    fn without_ips_every_ip_is_excluded() {
        let names = Names::new("time.test", &[]).unwrap_or_else(|e| panic!("{e}"));
        let constraints = names.constraints();
        assert_eq!(
            constraints.permitted_subtrees,
            vec![GeneralSubtree::DnsName("time.test".to_owned())]
        );
        assert_eq!(constraints.excluded_subtrees.len(), 2);
    }
}
