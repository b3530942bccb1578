//! Tracker URLs: only what announcing needs (scheme, host, port, path), parsed without a URL
//! crate so the host can be checked against the loopback policy before any name is resolved.

use std::fmt;
use std::net::IpAddr;

/// URLs longer than this are refused (real announce URLs, passkeys included, are far shorter).
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A lower-case DNS name.
    Name(String),
}

impl Host {
    /// A loopback address, or `localhost` (which never needs DNS).
    pub fn is_loopback(&self) -> bool {
        match self {
            Host::Ip(IpAddr::V4(v4)) => v4.is_loopback(),
            Host::Ip(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
            Host::Name(n) => n == "localhost",
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed tracker URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackerUrl {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    /// Path and query as given (fragment dropped), `/` when empty.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("unsupported scheme (http, https and udp trackers are known)")]
    Scheme,
    #[error("bad host")]
    Host,
    #[error("bad port")]
    Port,
    #[error("user info in a tracker URL is not supported")]
    UserInfo,
    #[error("control characters or spaces in the URL")]
    Characters,
}

impl TrackerUrl {
    pub fn parse(s: &str) -> Result<TrackerUrl, UrlError> {
        let s = s.trim();
        if s.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::Characters);
        }
        let (scheme, rest) = s.split_once("://").ok_or(UrlError::Scheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "udp" => Scheme::Udp,
            _ => return Err(UrlError::Scheme),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match (port, scheme) {
            (Some(p), _) => p,
            (None, Scheme::Http) => 80,
            (None, Scheme::Https) => 443,
            (None, Scheme::Udp) => return Err(UrlError::Port),
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(TrackerUrl { scheme, host, port, path })
    }

    /// The BEP 48 scrape path: the last path segment must start with `announce`, which
    /// becomes `scrape`; otherwise the tracker has no known scrape URL.
    pub fn scrape_path(&self) -> Option<String> {
        let (path, query) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let slash = path.rfind('/')?;
        let tail = path[slash + 1..].strip_prefix("announce")?;
        let mut out = format!("{}scrape{tail}", &path[..=slash]);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

impl fmt::Display for TrackerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Udp => "udp",
        };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

fn split_host_port(authority: &str) -> Result<(Host, Option<u16>), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(UrlError::Host)?;
        let ip: std::net::Ipv6Addr = addr.parse().map_err(|_| UrlError::Host)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::Port)?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        (parse_host(h)?, p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or(UrlError::Port)?),
    };
    Ok((host, port))
}

fn parse_host(h: &str) -> Result<Host, UrlError> {
    if let Ok(ip) = h.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(UrlError::Host);
    }
    Ok(Host::Name(h.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_shapes() {
        let u = TrackerUrl::parse("http://Tracker.Example.org/announce?passkey=a%20b#frag").unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.host, Host::Name("tracker.example.org".into()));
        assert_eq!((u.port, u.path.as_str()), (80, "/announce?passkey=a%20b"));
        let u = TrackerUrl::parse("udp://127.0.0.1:6969").unwrap();
        assert_eq!((u.scheme, u.port, u.path.as_str()), (Scheme::Udp, 6969, "/"));
        assert!(u.host.is_loopback());
        let u = TrackerUrl::parse("https://[::1]:8443/a").unwrap();
        assert_eq!(u.to_string(), "https://[::1]:8443/a");
        assert!(TrackerUrl::parse("http://localhost:1/announce").unwrap().host.is_loopback());
        assert!(!TrackerUrl::parse("http://localhost.evil.com/").unwrap().host.is_loopback());
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "ftp://x/",
            "udp://x",
            "http://u:p@x/",
            "http://x:0/",
            "http://x:99999/",
            "http://[::1/",
            "http://a b/",
            "http:///announce",
            "http://exa%mple/",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(TrackerUrl::parse(&format!("http://x/{}", "a".repeat(MAX_URL_LEN))), Err(UrlError::TooLong));
    }

    #[test]
    fn scrape_paths_follow_bep_48() {
        let s = |u: &str| TrackerUrl::parse(u).unwrap().scrape_path();
        assert_eq!(s("http://x/announce").as_deref(), Some("/scrape"));
        assert_eq!(s("http://x/a/announce.php?k=1").as_deref(), Some("/a/scrape.php?k=1"));
        assert_eq!(s("http://x/announce/x"), None);
        assert_eq!(s("http://x/a"), None);
    }
}
