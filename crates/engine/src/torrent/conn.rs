//! Connection lifecycle: the address book, dialing with backoff, accepting, timers, dropping
//! peers and banning them.
//!
//! Addresses are dialled in the order they become due, except that an address that sent
//! blocks on an earlier connection goes before those that never did: a streaming client wants
//! its slots on peers known to deliver. Each failure (a dial that fails, a connection dropped
//! before it was healthy) doubles the address's wait. At the peer limit, a peer that has sent
//! nothing for `REPLACE_IDLE` gives its slot to an address never tried (one per rechoke), so a
//! torrent whose slots filled with useless peers keeps looking.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{PeerId, Timestamp};
use sluice_wire::{Decoder, Handshake, Message};

use super::peer::{Peer, Phase};
use super::{DisconnectReason, Event, Output, PeerKey, Torrent};

/// First reconnect delay; doubled per consecutive failure up to `BACKOFF_MAX`.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// A connection that lived this long resets the failure count.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Due queue entries looked at for one that delivered before (and for an untried one).
const PREFER_SCAN: usize = 64;
/// A peer that sent no block for this long may be replaced at the peer limit.
const REPLACE_IDLE: Duration = Duration::from_secs(60);

/// A dialable address.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrEntry {
    /// The peer slot using it now.
    pub peer: Option<PeerKey>,
    pub failures: u32,
    /// Queued for dialing at this time (also the key in `connect_queue`).
    pub queued: Option<Timestamp>,
    /// Turned out to be a seed while we were one too.
    pub seed: bool,
    /// Ourselves: never dialed again.
    pub is_self: bool,
    /// It sent blocks on an earlier connection: dialled before addresses that never did.
    pub delivered: bool,
}

impl Torrent {
    /// Largest frame accepted from a peer: a block, the bitfield, or an extension message.
    fn max_frame(&self) -> u32 {
        let bitfield = self.lengths.num_pieces().div_ceil(8) + 1;
        bitfield.max(sluice_core::BLOCK_SIZE + 9).max(1 << 16)
    }

    /// Adds `addr` to the address book, queued for dialing; whether it was new.
    pub(super) fn learn_addr(&mut self, addr: SocketAddr, now: Timestamp) -> bool {
        if self.shut_down || self.banned.contains(&addr) || self.addrs.contains_key(&addr) {
            return false;
        }
        self.addrs.insert(addr, AddrEntry { queued: Some(now), ..AddrEntry::default() });
        self.connect_queue.insert((now, addr));
        true
    }

    pub(super) fn can_dial(&self) -> bool {
        !self.shut_down
            && self.peers.len() < self.config.max_peers
            && self.half_open < self.config.max_half_open
            && (self.config.seed_when_complete || !self.picker.is_complete())
    }

    /// Queues again the seeds we hung up on while we were complete.
    pub(super) fn requeue_seeds(&mut self, now: Timestamp) {
        for (addr, e) in self.addrs.iter_mut().filter(|(_, e)| e.seed && e.peer.is_none() && e.queued.is_none()) {
            e.queued = Some(now);
            self.connect_queue.insert((now, *addr));
        }
    }

    pub(super) fn try_connect(&mut self, now: Timestamp) {
        while self.can_dial() {
            let Some((at, addr)) = self.next_dial(now) else {
                break;
            };
            self.connect_queue.remove(&(at, addr));
            let complete = self.picker.is_complete();
            let Some(entry) = self.addrs.get_mut(&addr) else {
                continue;
            };
            entry.queued = None;
            if entry.peer.is_some() || entry.is_self || (complete && entry.seed) {
                continue;
            }
            let key = PeerKey(self.next_key);
            self.next_key += 1;
            entry.peer = Some(key);
            let peer = Peer::new(key, addr, true, self.lengths.num_pieces(), self.initial_pipeline(), now);
            self.peers.insert(key, peer);
            self.arm_timer(key);
            self.half_open += 1;
            self.outputs.push_back(Output::Connect { peer: key, addr });
        }
    }

    /// Due queue entries, earliest first (a bounded look-ahead).
    fn due(&self, now: Timestamp) -> impl Iterator<Item = &(Timestamp, SocketAddr)> {
        self.connect_queue.iter().take_while(move |(at, _)| *at <= now).take(PREFER_SCAN)
    }

    /// The due entry to dial next: one that delivered before, else the earliest.
    fn next_dial(&self, now: Timestamp) -> Option<(Timestamp, SocketAddr)> {
        let delivered = |(_, a): &&(Timestamp, SocketAddr)| self.addrs.get(a).is_some_and(|e| e.delivered);
        self.due(now).find(delivered).or_else(|| self.due(now).next()).copied()
    }

    /// At the peer limit, with an address never tried due: drops the active peer that has sent
    /// no block for longest (`REPLACE_IDLE` at least; never one we are uploading to), whose
    /// slot then goes to the next dial. Not once the torrent is complete.
    pub(super) fn replace_idle_peer(&mut self, now: Timestamp) {
        if self.shut_down
            || self.picker.is_complete()
            || self.peers.len() < self.config.max_peers
            || self.half_open >= self.config.max_half_open
        {
            return;
        }
        let untried = |(_, a): &&(Timestamp, SocketAddr)| {
            self.addrs.get(a).is_some_and(|e| e.failures == 0 && e.peer.is_none() && !e.is_self)
        };
        if !self.due(now).any(|e| untried(&e)) {
            return;
        }
        let victim = self
            .peers
            .values()
            .filter(|p| p.is_active() && (p.am_choking || !p.peer_interested))
            .map(|p| (p.last_block_at.unwrap_or(p.active_since), p.key))
            .filter(|(since, _)| now.saturating_since(*since) >= REPLACE_IDLE)
            .min();
        if let Some((_, key)) = victim {
            self.remove_peer(key, DisconnectReason::Replaced, true, now);
        }
    }

    pub(super) fn initial_pipeline(&self) -> usize {
        self.config.initial_pipeline.clamp(self.config.min_pipeline.max(1), self.config.max_pipeline.max(1))
    }

    pub(super) fn accept_inbound(&mut self, addr: SocketAddr, now: Timestamp) -> Option<PeerKey> {
        if self.shut_down || self.banned.contains(&addr) || self.peers.len() >= self.config.max_peers {
            return None;
        }
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let mut peer = Peer::new(key, addr, false, self.lengths.num_pieces(), self.initial_pipeline(), now);
        peer.decoder = Some(Decoder::new(self.max_frame()));
        self.peers.insert(key, peer);
        self.arm_timer(key);
        Some(key)
    }

    pub(super) fn on_connected(&mut self, key: PeerKey, now: Timestamp) {
        let max_frame = self.max_frame();
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.phase != Phase::Connecting {
            return;
        }
        self.half_open -= 1;
        peer.phase = Phase::Handshaking;
        peer.phase_since = now;
        peer.last_recv = now;
        peer.decoder = Some(Decoder::new(max_frame));
        let handshake = Handshake::new(self.info_hash, self.config.peer_id);
        peer.write(now, &mut self.flush, |out| handshake.encode(out));
    }

    /// Forgets a peer: its requests go back to the picker, its address is scheduled for a
    /// reconnect with backoff (unless banned), and the slot is reported gone.
    pub(super) fn remove_peer(&mut self, key: PeerKey, reason: DisconnectReason, tell_driver: bool, now: Timestamp) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        if peer.phase == Phase::Connecting {
            self.half_open -= 1;
        }
        if let Some(t) = peer.timer {
            self.timers.remove(&(t, key));
        }
        let had_requests = !peer.requests.is_empty();
        for p in &peer.requests {
            self.picker.request_dropped(p.block, key);
        }
        let released = self.picker.peer_stopped(key);
        if peer.has.count_ones() > 0 {
            self.picker.peer_lost_bitfield(&peer.has);
        }
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
        if self.picker.contributed(key) {
            self.departed.insert(key, (peer.addr, peer.peer_id));
        }
        if !self.buffers.is_empty() && peer.is_active() {
            self.lost_source();
        }
        if tell_driver {
            self.outputs.push_back(Output::Disconnect { peer: key, reason: reason.clone() });
        }
        let both_seeds = reason == DisconnectReason::NotUseful && peer.has.is_full();
        let replaced = reason == DisconnectReason::Replaced;
        self.emit(Event::PeerDisconnected { peer: key, reason });

        if let Some(entry) = self.addrs.get_mut(&peer.addr)
            && entry.peer == Some(key)
        {
            entry.peer = None;
            entry.seed |= both_seeds;
            entry.delivered |= peer.delivered > 0;
            if !replaced && peer.is_active() && now.saturating_since(peer.active_since) >= HEALTHY_AFTER {
                entry.failures = 0;
            }
            entry.failures += 1;
            let shift = (entry.failures - 1).min(16);
            let delay = (BACKOFF_BASE * (1u32 << shift)).min(BACKOFF_MAX);
            if !self.shut_down && !entry.is_self && !self.banned.contains(&peer.addr) {
                let at = now + delay;
                entry.queued = Some(at);
                self.connect_queue.insert((at, peer.addr));
            }
        }
        if had_requests || released {
            self.refill_all = true;
        }
        if !peer.am_choking && peer.peer_interested {
            self.unchoke_free_slots(now);
        }
        self.try_connect(now);
    }

    pub(super) fn protocol_error(&mut self, key: PeerKey, reason: impl Into<String>, now: Timestamp) {
        self.remove_peer(key, DisconnectReason::Protocol(reason.into()), true, now);
    }

    /// A connected peer's id is ours: never dial that address again.
    pub(super) fn mark_self(&mut self, addr: SocketAddr) {
        if let Some(entry) = self.addrs.get_mut(&addr) {
            entry.is_self = true;
        }
    }

    /// The address and id of a connected peer, or of one that left while pieces were in flight.
    pub(super) fn identity(&self, key: PeerKey) -> Option<(SocketAddr, Option<PeerId>)> {
        match self.peers.get(&key) {
            Some(p) => Some((p.addr, p.peer_id)),
            None => self.departed.get(&key).copied(),
        }
    }

    /// `addr` alone sent a piece that failed: banned at the `max_hash_failures`th time.
    pub(super) fn charge_sole_failure(&mut self, addr: SocketAddr, id: Option<PeerId>, now: Timestamp) {
        let count = self.offenders.entry(addr).or_default();
        *count += 1;
        if *count >= self.config.max_hash_failures.max(1) {
            self.ban(addr, id, now);
        }
    }

    /// Never talks to `addr` (or the peer id) again; closes its connections if any.
    pub(super) fn ban(&mut self, addr: SocketAddr, id: Option<PeerId>, now: Timestamp) {
        if !self.banned.insert(addr) {
            return;
        }
        if let Some(id) = id {
            self.banned_ids.insert(id);
        }
        if let Some(entry) = self.addrs.get_mut(&addr)
            && let Some(at) = entry.queued.take()
        {
            self.connect_queue.remove(&(at, addr));
        }
        let live: Vec<PeerKey> = self.peers.values().filter(|p| p.addr == addr).map(|p| p.key).collect();
        for key in live {
            self.remove_peer(key, DisconnectReason::Banned, true, now);
        }
        self.emit(Event::PeerBanned { addr });
    }

    /// The earliest timer of one peer.
    pub(super) fn peer_deadline(&self, peer: &Peer) -> Option<Timestamp> {
        let c = &self.config;
        if peer.phase != Phase::Active {
            return Some(peer.phase_since + c.handshake_timeout);
        }
        let mut t = (peer.last_recv + c.idle_timeout).min(peer.last_sent + c.idle_timeout / 3);
        if let Some(r) = peer.request_deadline(c.request_timeout) {
            t = t.min(r);
        }
        if let Some(p) = peer.probation_until {
            t = t.min(p);
        }
        if let Some(r) = peer.rejected_until() {
            t = t.min(r);
        }
        if let Some(p) = peer.pex_next {
            t = t.min(p);
        }
        if !peer.snubbed
            && let Some(w) = peer.waiting_since
        {
            t = t.min(w + c.snub_timeout);
        }
        Some(t)
    }

    /// Handles whatever of one peer's timers is due.
    pub(super) fn peer_timers(&mut self, key: PeerKey, now: Timestamp) {
        let c = &self.config;
        let (idle, handshake, request_timeout, snub) =
            (c.idle_timeout, c.handshake_timeout, c.request_timeout, c.snub_timeout);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.phase != Phase::Active {
            if now >= peer.phase_since + handshake {
                self.remove_peer(key, DisconnectReason::Timeout, true, now);
            }
            return;
        }
        if now >= peer.last_recv + idle {
            self.remove_peer(key, DisconnectReason::Timeout, true, now);
            return;
        }
        if now >= peer.last_sent + idle / 3 {
            peer.send(&Message::KeepAlive, now, &mut self.flush);
        }
        let mut timed_out = 0usize;
        while let Some(front) = peer.requests.front()
            && now >= front.sent + request_timeout
        {
            let block = front.block;
            peer.requests.pop_front();
            peer.mark_stale(block);
            self.picker.request_dropped(block, key);
            timed_out += 1;
        }
        if timed_out > 0 {
            if peer.requests.is_empty() {
                peer.waiting_since = None;
            }
            let min = self.config.min_pipeline.max(1);
            // Back to the floor; each block it delivers raises the cap by one again.
            peer.pipeline_cap = min;
            peer.probation_until = Some(now + request_timeout);
            self.refill_all = true;
        }
        if !peer.snubbed
            && let Some(w) = peer.waiting_since
            && now >= w + snub
        {
            peer.snubbed = true;
        }
        let forgiven = peer.expire_rejections(now);
        let pex_due = peer.pex_next.is_some_and(|t| now >= t);
        if peer.probation_until.is_some_and(|t| now >= t) {
            peer.probation_until = None;
            self.queue_fill(key);
        } else if forgiven {
            self.queue_fill(key);
        }
        if pex_due {
            self.send_pex(key, now);
        }
    }
}
