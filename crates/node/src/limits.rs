//! Limits shared by every torrent of a session, and the gate every peer address passes.
//!
//! Each engine caps its own torrent (`EngineConfig::max_peers`, `max_half_open`); a node with
//! many torrents also needs a ceiling for the whole process (file descriptors, router NAT
//! tables). A [`Slot`] is one connection's share of that ceiling: it is taken before a dial
//! starts or right after an accept, travels with the socket and frees itself when the
//! connection's tasks are dropped. A dial waits for a slot; an inbound connection that finds
//! none is closed at once (the remote side will retry later, as it would on a full client).
//!
//! The [`Gate`] combines the network policy with the IP blocklist: it is asked before every
//! dial, on every accept and for every address learned (trackers, DHT, LSD, magnet peers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::blocklist::Blocklist;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::NetPolicy;
use crate::transport::{Dialer, Dialled};

/// Ceilings for the whole session (all torrents and magnet fetches together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Peer connections open at once, inbound and outbound, including those still dialling or
    /// handshaking.
    pub connections: usize,
    /// Outbound connects (TCP or uTP) in flight at once.
    pub half_open: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { connections: 200, half_open: 32 }
    }
}

/// One connection's share of [`ConnectionLimits::connections`]; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, Clone)]
pub(crate) struct Slots {
    connections: Arc<Semaphore>,
    half_open: Arc<Semaphore>,
}

impl Slots {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.connections.max(1))),
            half_open: Arc::new(Semaphore::new(limits.half_open.max(1))),
        }
    }

    /// A slot for a connection just accepted, if one is free.
    pub(crate) fn try_inbound(&self) -> Option<Slot> {
        self.connections.clone().try_acquire_owned().ok().map(|p| Slot { _permit: p })
    }

    /// Waits for a connection slot and a half-open one, then connects through `dialer` within
    /// `timeout` (counted from the start of the connect, not of the wait). The half-open slot
    /// is held until the first transport connects; a transport still racing after that runs
    /// within the connection's slot.
    pub(crate) async fn dial(
        &self,
        dialer: &Dialer,
        addr: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<(Dialled, Slot)> {
        let closed = || std::io::Error::other("session stopped");
        let slot = Slot { _permit: self.connections.clone().acquire_owned().await.map_err(|_| closed())? };
        let _half_open = self.half_open.acquire().await.map_err(|_| closed())?;
        let dialled = tokio::time::timeout(timeout, dialer.dial(addr)).await.map_err(|_| {
            dialer.forget(addr);
            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
        })??;
        Ok((dialled, slot))
    }

    #[cfg(test)]
    fn free(&self) -> (usize, usize) {
        (self.connections.available_permits(), self.half_open.available_permits())
    }
}

/// Whom the session talks to: the network policy, then the blocklist.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    pub(crate) policy: NetPolicy,
    pub(crate) blocklist: Option<Arc<Blocklist>>,
}

impl Gate {
    /// Why `addr` may not be talked to, or `None` if it may.
    pub(crate) fn refuses(&self, addr: &SocketAddr) -> Option<&'static str> {
        if !self.policy.allows(addr) {
            Some("not on loopback (loopback-only)")
        } else if self.blocklist.as_ref().is_some_and(|b| b.contains(addr.ip())) {
            Some("in the blocklist")
        } else {
            None
        }
    }

    pub(crate) fn allows(&self, addr: &SocketAddr) -> bool {
        self.refuses(addr).is_none()
    }

    /// Keeps the addresses that may be dialled, logging the others.
    pub(crate) fn filter(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
        addrs
            .into_iter()
            .filter(|a| match self.refuses(a) {
                None => true,
                Some(why) => {
                    tracing::debug!(addr = %a, why, "peer address ignored");
                    false
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_applies_policy_then_blocklist() {
        let (list, _) = Blocklist::parse("bad:127.0.0.61-127.0.0.61\n");
        let gate = Gate { policy: NetPolicy { loopback_only: true }, blocklist: Some(Arc::new(list)) };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(gate.refuses(&a("127.0.0.61:1")), Some("in the blocklist"));
        assert_eq!(gate.refuses(&a("[::ffff:127.0.0.61]:1")), Some("in the blocklist"));
        assert!(gate.refuses(&a("10.0.0.1:1")).is_some());
        assert!(gate.allows(&a("127.0.0.62:1")));
        assert_eq!(gate.filter([a("127.0.0.61:1"), a("127.0.0.62:1")]), vec![a("127.0.0.62:1")]);
    }

    #[test]
    fn inbound_slots_run_out_and_come_back() {
        let slots = Slots::new(ConnectionLimits { connections: 2, half_open: 1 });
        let a = slots.try_inbound().unwrap();
        let _b = slots.try_inbound().unwrap();
        assert!(slots.try_inbound().is_none());
        drop(a);
        assert!(slots.try_inbound().is_some());
        assert_eq!(slots.free(), (1, 1));
    }
}
