use std::net::{IpAddr, SocketAddr};

/// Which addresses Sluice may talk to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Confine all traffic to loopback (`--loopback-only`, `SLUICE_LOOPBACK_ONLY=1`).
    pub loopback_only: bool,
}

impl NetPolicy {
    pub fn allows(&self, addr: &SocketAddr) -> bool {
        !self.loopback_only || is_loopback(addr.ip())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_refuses_public_addresses() {
        let p = NetPolicy { loopback_only: true };
        assert!(p.allows(&"127.0.0.7:6881".parse().unwrap()));
        assert!(p.allows(&"[::1]:6881".parse().unwrap()));
        assert!(!p.allows(&"10.0.0.1:6881".parse().unwrap()));
        assert!(!p.allows(&"[::ffff:8.8.8.8]:53".parse().unwrap()));
        assert!(NetPolicy::default().allows(&"8.8.8.8:53".parse().unwrap()));
    }
}
