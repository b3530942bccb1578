//! The checks behind `Torrent::check_invariants`; STATE.md states them in prose.

use std::collections::{BTreeMap, BTreeSet};

use super::peer::Phase;
use super::{PeerKey, Torrent};

/// Above this many pieces the O(pieces × peers) interest recount is skipped.
const RECOUNT_MAX_PIECES: u32 = 4096;

impl Torrent {
    pub(super) fn verify_invariants(&self) {
        self.picker.check_invariants();
        self.suspects.check_invariants();

        // Memory: reserved bytes are exactly the buffers being filled or verified.
        let mut reserved = 0u64;
        for (&piece, buf) in &self.buffers {
            assert_eq!(buf.len(), self.lengths.piece_len(piece) as usize, "buffer of {piece:?} has the wrong length");
            assert!(!self.verifying.contains(&piece), "{piece:?} both filling and verifying");
            reserved += buf.len() as u64;
        }
        for &piece in &self.verifying {
            reserved += u64::from(self.lengths.piece_len(piece));
        }
        assert_eq!(reserved, self.reserved, "reserved bytes disagree with the piece buffers");
        let in_flight = self.buffers.len() + self.verifying.len();
        assert_eq!(in_flight, self.picker.pieces_in_flight(), "pieces in flight disagree with the picker");
        assert!(
            self.reserved <= self.config.buffer_budget || in_flight == 1,
            "buffer budget exceeded: {} > {} with {in_flight} pieces",
            self.reserved,
            self.config.buffer_budget
        );
        assert!(self.reserved_peak >= self.reserved);

        // Rate limits: a place among a shared limit's waiters only with that limit, and only
        // while blocked on it (a turn replaces the place; an upload turn lasts one pass).
        for (waiting, limit, turn, blocked) in [
            (
                self.down_waiting.is_some(),
                self.config.shared_download_limit.is_some(),
                self.down_turn,
                self.down_blocked,
            ),
            (self.up_waiting.is_some(), self.config.shared_upload_limit.is_some(), self.up_turn, self.up_blocked),
        ] {
            assert!(!waiting || limit, "waiting on a shared limit the torrent does not have");
            assert!(!waiting || blocked, "a place among a shared limit's waiters without being blocked");
            assert!(!(waiting && turn), "both waiting and holding a turn at a shared limit");
        }
        assert!(!self.up_turn, "an upload turn outlived its pass");

        // Metadata: no connection was sent more pieces than its allowance.
        let allowance = self.metadata_allowance();
        assert!(self.peers.values().all(|p| p.metadata_served <= allowance), "metadata served past the allowance");

        // Peer exchange: bounded learning, nothing at all for a private torrent, a PEX timer only
        // for handshaken peers that take PEX, and what a peer was told bounded by the peers.
        assert!(self.pex_learned <= super::pex::PEX_BOOK_MAX, "PEX grew the address book past its cap");
        assert!(self.pex_learned <= self.addrs.len(), "more PEX-learned addresses than addresses");
        assert!(!self.config.private || self.pex_learned == 0, "a private torrent learned from PEX");
        for p in self.peers.values() {
            assert!(!self.config.private || (p.ut_pex.is_none() && p.pex_told.is_empty()), "PEX in a private torrent");
            assert!(p.pex_next.is_none() || (p.ut_pex.is_some() && p.is_active()), "PEX timer of {:?}", p.key);
            assert!(p.pex_told.len() <= self.config.max_peers, "PEX told {:?} more than our peers", p.key);
            assert!(!p.outbound || p.listen_addr == Some(p.addr), "dialled {:?} listens elsewhere", p.key);
        }

        // Departed peers: gone, and only kept while blocks they sent are in flight.
        if !self.departed.is_empty() {
            let contributors = self.picker.contributors_in_flight();
            for key in self.departed.keys() {
                assert!(!self.peers.contains_key(key), "{key:?} is both live and departed");
                assert!(contributors.contains(key), "departed {key:?} kept with no block in flight");
            }
        }

        // Peers and connection bookkeeping.
        let half_open = self.peers.values().filter(|p| p.phase == Phase::Connecting).count();
        assert_eq!(half_open, self.half_open, "half-open count");
        assert!(half_open <= self.config.max_half_open);
        assert!(self.peers.len() <= self.config.max_peers || self.shut_down);
        assert!(self.next_key > self.peers.keys().next_back().map_or(0, |k| k.0) || self.peers.is_empty());
        for (addr, entry) in &self.addrs {
            if let Some(key) = entry.peer {
                let peer = self.peers.get(&key).expect("address points to a gone peer");
                assert_eq!(peer.addr, *addr);
            }
            if let Some(at) = entry.queued {
                assert!(self.connect_queue.contains(&(at, *addr)), "queued address missing from the queue");
                assert!(entry.peer.is_none());
                assert!(!self.banned.contains(addr), "banned {addr} queued for dialing");
                assert!(!entry.is_self, "our own address {addr} queued for dialing");
            } else if entry.peer.is_none() {
                assert!(
                    self.shut_down || entry.is_self || entry.seed || self.banned.contains(addr),
                    "idle address {addr} neither queued nor excluded"
                );
            }
        }
        assert!(self.connect_queue.iter().all(|(at, a)| self.addrs.get(a).is_some_and(|e| e.queued == Some(*at))));

        // Each (block, peer) the picker has in flight is pending at that peer: with the check
        // per pending request above, the two are the same set.
        let pending: usize = self.peers.values().map(|p| p.requests.len()).sum();
        assert_eq!(pending, self.picker.requests_in_flight(), "picker requests disagree with the pipelines");

        let recount = self.lengths.num_pieces() <= RECOUNT_MAX_PIECES;
        // Streaming: the picker holds each piece's base priority raised by the readers'
        // demands, and its earliest deadline; endgame is off while a reader has a window.
        self.streams.check_invariants();
        if recount {
            for piece in self.lengths.pieces() {
                let (tier, deadline) = self.streams.effective(piece);
                assert_eq!(self.picker.priority(piece), tier, "tier of {piece:?} is not max(base, readers)");
                assert_eq!(self.picker.deadline(piece), deadline, "deadline of {piece:?} is not the earliest");
            }
        }
        assert!(!self.streams.any_awake() || !self.picker.in_endgame(), "endgame while a reader has a window");
        if self.next_stream_tick.is_none() {
            let have = self.picker.have();
            assert!(
                self.streams.urgent().all(|r| r.clone().all(|i| have.get(sluice_core::PieceIndex::new_unchecked(i)))),
                "an urgent piece is missing and no stream tick is armed"
            );
        }
        if recount {
            let wanted_total = self.lengths.pieces().filter(|&p| self.is_wanted(p)).count() as u32;
            assert_eq!(wanted_total, self.wanted_pieces, "wanted piece count");
        }
        // Timers and outboxes: one timer entry per peer, never later than its real deadline;
        // every non-empty outbox queued for the drain exactly once.
        assert!(self.timers_dirty.is_empty(), "timers left to re-arm after a mutation");
        assert_eq!(self.timers.len(), self.peers.len(), "timer entries disagree with the peers");
        let mut flush: BTreeMap<PeerKey, usize> = BTreeMap::new();
        for &key in &self.flush {
            *flush.entry(key).or_default() += 1;
        }
        for (&key, peer) in &self.peers {
            peer.check_invariants();
            let timer = peer.timer.expect("every peer has a timer");
            assert!(self.timers.contains(&(timer, key)), "timer of {key:?} missing from the set");
            if let Some(real) = self.peer_deadline(peer) {
                assert!(timer <= real, "timer of {key:?} at {timer:?} later than its deadline {real:?}");
            }
            let queued = flush.get(&key).copied().unwrap_or(0);
            assert_eq!(queued, usize::from(!peer.outbox.is_empty()), "outbox of {key:?} queued {queued} times");
        }

        for (&key, peer) in &self.peers {
            assert_eq!(peer.key, key);
            if peer.outbound && peer.phase != Phase::Connecting {
                assert!(peer.decoder.is_some(), "connected peer without a decoder");
            }
            if let Some(entry) = self.addrs.get(&peer.addr)
                && peer.outbound
            {
                assert_eq!(entry.peer, Some(key), "outbound peer not registered at its address");
            }
            let mut seen = BTreeSet::new();
            for p in &peer.requests {
                assert!(seen.insert(p.block), "{:?} requested twice from {key:?}", p.block);
                assert!(
                    self.picker.requesters(p.block).contains(&key),
                    "{:?} pending at {key:?} but not in flight there for the picker",
                    p.block
                );
                assert!(self.buffers.contains_key(&p.block.piece), "request {:?} outside a piece in progress", p.block);
                assert!(peer.has.get(p.block.piece), "requested {:?} from a peer without it", p.block);
            }
            assert!(peer.requests.iter().zip(peer.requests.iter().skip(1)).all(|(a, b)| a.sent <= b.sent));
            assert_eq!(peer.reading_bytes, peer.reading.iter().map(|b| u64::from(b.len)).sum::<u64>());
            assert!(peer.requests.is_empty() || peer.is_active());
            assert_eq!(peer.waiting_since.is_some(), !peer.requests.is_empty(), "snub clock of {key:?}");
            if recount {
                let wanted = peer.has.iter_ones().filter(|&p| self.is_wanted(p)).count() as u32;
                assert_eq!(wanted, peer.wanted, "wanted count of {key:?}");
                if peer.is_active() {
                    let presumed = !peer.has_known && self.wanted_pieces > 0;
                    assert_eq!(peer.am_interested, wanted > 0 || presumed, "interest in {key:?}");
                }
            }
        }
    }
}
