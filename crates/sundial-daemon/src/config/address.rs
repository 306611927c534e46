//! `host[:port]` as ntpd-rs writes source addresses: a DNS name or an IP
//! literal, with the port optional. The name is kept unresolved; DNS happens
//! when the source starts, so a file validates on a machine without network.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};

/// A host name or IP literal plus a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// DNS name or IP literal, without brackets.
    pub host: String,
    /// The port, defaulted by the source mode when the file gave none.
    pub port: u16,
}

impl HostPort {
    /// Parse `text`, using `default_port` when it names no port.
    ///
    /// Accepted: `name`, `name:port`, `1.2.3.4`, `1.2.3.4:port`, `::1`,
    /// `[::1]`, `[::1]:port`. A bare IPv6 literal never carries a port, the
    /// same rule ntpd-rs applies (more than one colon means IPv6).
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the address is empty".to_owned());
        }
        if let Ok(socket) = text.parse::<SocketAddr>() {
            return Ok(Self {
                host: socket.ip().to_string(),
                port: socket.port(),
            });
        }
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Self {
                    host: ip.to_string(),
                    port: default_port,
                })
                .map_err(|_| format!("`{text}` is not a valid bracketed IPv6 address"));
        }
        if text.matches(':').count() > 1 {
            return text
                .parse::<Ipv6Addr>()
                .map(|ip| Self {
                    host: ip.to_string(),
                    port: default_port,
                })
                .map_err(|_| {
                    format!("`{text}` is not a valid IPv6 address (write `[address]:port` to add a port)")
                });
        }
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("`{port}` in `{text}` is not a port number (0-65535)"))?;
                (host, port)
            }
            None => (text, default_port),
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host name before the port"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '[' || c == ']') {
            return Err(format!("`{host}` is not a host name or IP address"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HostPort;

    fn show(text: &str, default: u16) -> String {
        HostPort::parse(text, default).map_or_else(|e| format!("error: {e}"), |a| a.to_string())
    }

    #[test]
    fn forms_ntpd_rs_accepts() {
        assert_eq!(show("nts.netnod.se", 4460), "nts.netnod.se:4460");
        assert_eq!(show("example.com:5678", 123), "example.com:5678");
        assert_eq!(show("127.0.0.1", 123), "127.0.0.1:123");
        assert_eq!(show("127.0.0.1:456", 123), "127.0.0.1:456");
        assert_eq!(show("::1", 123), "[::1]:123");
        assert_eq!(show("[::1]:456", 123), "[::1]:456");
        assert_eq!(show("[::1]", 4460), "[::1]:4460");
    }

    #[test]
    fn bad_forms_are_explained() {
        assert!(show("example.com:http", 123).contains("not a port number"));
        assert!(show(":some:invalid:1", 123).contains("IPv6"));
        assert!(show("", 123).contains("empty"));
        assert!(show(":123", 123).contains("no host"));
        assert!(show("example.com:70000", 123).contains("not a port number"));
    }
}
