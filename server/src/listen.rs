//! What `--listen` (memcached's `-l`) and `--port` (`-p`) accept, and the
//! socket addresses they resolve to at start.
//!
//! Accepted forms: `127.0.0.1:11211`, `[::1]:11211`, `localhost:11211`
//! (a hostname, resolved when the node starts), `11211` (a bare port, on
//! the default address) and `127.0.0.1` or `localhost` (an address, on the
//! default port). `--port` replaces whatever port `--listen` gave.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The address used when `--listen` names only a port.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The port used when `--listen` names only an address (memcached's).
pub const DEFAULT_PORT: u16 = 11211;

/// Where to listen, as given: a host (an IP address or a name) and maybe a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// An IP address or a hostname.
    pub host: String,
    /// The port, if one was given.
    pub port: Option<u16>,
}

impl ListenSpec {
    /// Parses one of the accepted forms (see the module docs).
    pub fn parse(text: &str) -> Result<ListenSpec, String> {
        let text = text.trim();
        let invalid = |why: &str| {
            format!(
                "`{text}` is not an address to listen on ({why}; examples: 127.0.0.1:11211, \
                 localhost:11211, [::1]:11211, 11211, 0.0.0.0)"
            )
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port(text).ok_or_else(|| invalid("the port is over 65535"))?;
            return Ok(ListenSpec {
                host: DEFAULT_HOST.to_owned(),
                port: Some(port),
            });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenSpec {
                host: addr.ip().to_string(),
                port: Some(addr.port()),
            });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(ListenSpec {
                host: ip.to_string(),
                port: None,
            });
        }
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let ip = inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("not an IPv6 address between the brackets"))?;
            return Ok(ListenSpec {
                host: ip.to_string(),
                port: None,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let port = parse_port(port).ok_or_else(|| invalid("the port is not 0..65535"))?;
                (host, Some(port))
            }
            None => (text, None),
        };
        if !is_hostname(host) {
            return Err(invalid("not a hostname or an IP address"));
        }
        Ok(ListenSpec {
            host: host.to_owned(),
            port,
        })
    }

    /// The same spec with `port` instead of the one given (`--port`).
    pub fn with_port(&self, port: Option<u16>) -> ListenSpec {
        ListenSpec {
            host: self.host.clone(),
            port: port.or(self.port),
        }
    }

    /// The port to use: the given one or memcached's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// Resolves the host (a name is looked up now) into socket addresses.
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let port = self.port_or_default();
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(addrs)
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port_or_default();
        if self.host.contains(':') {
            write!(f, "[{}]:{port}", self.host)
        } else {
            write!(f, "{}:{port}", self.host)
        }
    }
}

/// Binds a TCP listener on the first address `spec` resolves to that can
/// be bound (non-blocking, ready for tokio). The error names the address.
pub fn bind(spec: &ListenSpec) -> anyhow::Result<std::net::TcpListener> {
    let addrs = spec
        .resolve()
        .map_err(|err| anyhow::anyhow!("cannot resolve {}: {err}", spec.host))?;
    let mut last = None;
    for addr in addrs {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                return Ok(listener);
            }
            Err(err) => last = Some((addr, err)),
        }
    }
    let (addr, err) = last.expect("resolve returns at least one address");
    if addr.to_string() == spec.to_string() {
        Err(anyhow::anyhow!("cannot listen on {addr}: {err}"))
    } else {
        Err(anyhow::anyhow!("cannot listen on {addr} ({spec}): {err}"))
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok()
}

/// RFC 1123 hostnames: dot-separated labels of letters, digits and inner
/// hyphens, at most 253 bytes.
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, port: Option<u16>) -> ListenSpec {
        ListenSpec {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn accepts_memcached_users_forms() {
        let parse = |text| ListenSpec::parse(text).unwrap();
        assert_eq!(parse("127.0.0.1:11211"), spec("127.0.0.1", Some(11211)));
        assert_eq!(parse("11311"), spec("127.0.0.1", Some(11311)));
        assert_eq!(parse("localhost:11211"), spec("localhost", Some(11211)));
        assert_eq!(parse("localhost"), spec("localhost", None));
        assert_eq!(parse("0.0.0.0"), spec("0.0.0.0", None));
        assert_eq!(parse("[::1]:5"), spec("::1", Some(5)));
        assert_eq!(parse("[::1]"), spec("::1", None));
        assert_eq!(parse("::1"), spec("::1", None));
        assert_eq!(
            parse("cache-1.example.org:0"),
            spec("cache-1.example.org", Some(0))
        );
    }

    #[test]
    fn refuses_what_is_no_address() {
        for bad in [
            "",
            "70000",
            "host:port",
            "host:70000",
            "-bad",
            "a b",
            "[::1",
            "[nope]",
            "h:",
        ] {
            assert!(ListenSpec::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn port_flag_replaces_the_port_and_names_resolve() {
        let given = ListenSpec::parse("localhost:1").unwrap();
        assert_eq!(given.with_port(Some(2)).to_string(), "localhost:2");
        assert_eq!(given.with_port(None).to_string(), "localhost:1");
        assert_eq!(spec("::1", None).to_string(), "[::1]:11211");
        let addrs = spec("localhost", Some(7)).resolve().unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 7));
    }
}
