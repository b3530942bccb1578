//! Peer exchange (BEP 11, `ut_pex`): telling connected peers whom we are connected to, and
//! learning peers from what they tell us, so a torrent started from one peer (or with its
//! tracker down) finds the rest of the swarm through it.
//!
//! What we tell a peer: the listen addresses of our handshaken peers (the address we dialled,
//! or an inbound peer's address with the port it gave as `p`; an inbound peer that gave none
//! is not passed on), never the peer itself, never an address we are still dialling or failed
//! to reach. The first message goes out [`PEX_FIRST_DELAY`] after the peer's extended
//! handshake offers `ut_pex`, so the peers dialled at start are in it, then one every
//! [`PEX_INTERVAL`] with what changed since: at most [`PEX_ADDED_MAX`] added and
//! [`PEX_DROPPED_MAX`] dropped (an address gone beyond those is forgotten untold: a stale
//! entry costs the peer one failed dial). No change, no message.
//!
//! What we learn is a stranger's claim about strangers, so flooding is bounded three ways: a
//! message less than [`PEX_RECV_INTERVAL`] after the last one taken from that peer is
//! ignored; at most [`PEX_TAKE_MAX`] added entries are looked at per message; at most
//! [`PEX_BOOK_MAX`] addresses enter the address book from PEX over the torrent's life.
//! Entries naming the sender or a peer we are connected to are skipped.
//! Learned addresses join the address book like a tracker's (`learn_addr`: bans, backoff and
//! connection limits apply; the driver still filters what it dials). Dropped lists are
//! ignored: the address may still be good, and backoff copes if not. A malformed message
//! disconnects. A private torrent ([`crate::Config::private`]) neither offers, sends nor takes
//! PEX.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::Timestamp;
use sluice_wire::{ExtendedHandshake, Message, PexMessage, PexPeer, UT_PEX, pex_flags};

use super::peer::Peer;
use super::{PeerKey, Torrent};

/// The extended id we receive `ut_pex` messages as.
pub(crate) const OUR_UT_PEX: u8 = 1;
pub(crate) const PEX_FIRST_DELAY: Duration = Duration::from_secs(3);
pub(crate) const PEX_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const PEX_RECV_INTERVAL: Duration = Duration::from_secs(45);
pub(crate) const PEX_ADDED_MAX: usize = 50;
pub(crate) const PEX_DROPPED_MAX: usize = 50;
pub(crate) const PEX_TAKE_MAX: usize = 50;
pub(crate) const PEX_BOOK_MAX: usize = 500;

impl Torrent {
    /// The peer's extended handshake: where it listens, and whether (as which id) it takes PEX.
    pub(super) fn pex_handshake(&mut self, key: PeerKey, ext: &ExtendedHandshake, now: Timestamp) {
        let private = self.config.private;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.outbound
            && let Some(port) = ext.listen_port
        {
            peer.listen_addr = Some(SocketAddr::new(peer.addr.ip(), port));
        }
        peer.ut_pex = ext.extension_id(UT_PEX).filter(|_| !private);
        if peer.ut_pex.is_none() {
            peer.pex_next = None;
        } else if peer.pex_next.is_none() {
            peer.pex_next = Some(now + PEX_FIRST_DELAY);
        }
    }

    /// Sends `key` what changed among our peers since our last message to it (if anything),
    /// and schedules the next one.
    pub(super) fn send_pex(&mut self, key: PeerKey, now: Timestamp) {
        let Some(to) = self.peers.get(&key) else {
            return;
        };
        let (Some(id), addr, listen) = (to.ut_pex, to.addr, to.listen_addr) else {
            return;
        };
        let current: BTreeMap<SocketAddr, u8> = self
            .peers
            .values()
            .filter(|p| p.key != key && p.is_active())
            .filter_map(|p| Some((p.listen_addr?, pex_flags_of(p))))
            .filter(|&(a, _)| a != addr && Some(a) != listen)
            .collect();
        let Some(to) = self.peers.get_mut(&key) else {
            return;
        };
        to.pex_next = Some(now + PEX_INTERVAL);
        let added: Vec<PexPeer> = current
            .iter()
            .filter(|(a, _)| !to.pex_told.contains(a))
            .take(PEX_ADDED_MAX)
            .map(|(&addr, &flags)| PexPeer { addr, flags })
            .collect();
        let dropped: Vec<SocketAddr> =
            to.pex_told.iter().filter(|a| !current.contains_key(a)).take(PEX_DROPPED_MAX).copied().collect();
        to.pex_told.retain(|a| current.contains_key(a));
        to.pex_told.extend(added.iter().map(|p| p.addr));
        if added.is_empty() && dropped.is_empty() {
            return;
        }
        let mut payload = Vec::new();
        PexMessage { added, dropped }.encode(&mut payload);
        to.send(&Message::Extended { id, payload: &payload }, now, &mut self.flush);
    }

    pub(super) fn on_pex_message(&mut self, key: PeerKey, payload: &[u8], now: Timestamp) {
        if self.config.private {
            return;
        }
        let msg = match PexMessage::decode(payload) {
            Ok(msg) => msg,
            Err(e) => return self.protocol_error(key, e.to_string(), now),
        };
        let Some(from) = self.peers.get_mut(&key) else {
            return;
        };
        if from.pex_taken_at.is_some_and(|t| now < t + PEX_RECV_INTERVAL) {
            return;
        }
        from.pex_taken_at = Some(now);
        let sender = from.addr;
        // Peers connected already (an inbound one is not in the address book under its listen
        // address), the sender included, would only be dialled to be found duplicates.
        let connected: BTreeSet<SocketAddr> = self.peers.values().filter_map(|p| p.listen_addr).collect();
        let candidates =
            msg.added.iter().map(|p| p.addr).filter(|&a| dialable(a) && a != sender && !connected.contains(&a));
        for a in candidates.take(PEX_TAKE_MAX) {
            if self.pex_learned >= PEX_BOOK_MAX {
                break;
            }
            if self.learn_addr(a, now) {
                self.pex_learned += 1;
            }
        }
        self.try_connect(now);
    }
}

fn pex_flags_of(p: &Peer) -> u8 {
    let mut flags = 0;
    if p.has.is_full() {
        flags |= pex_flags::SEED;
    }
    if p.outbound {
        flags |= pex_flags::REACHABLE;
    }
    flags
}

/// An address one could connect to at all (not port 0, unspecified, multicast or broadcast).
fn dialable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = match ip {
        std::net::IpAddr::V4(v4) => v4.is_broadcast(),
        std::net::IpAddr::V6(_) => false,
    };
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}
