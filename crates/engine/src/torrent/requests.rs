//! Our download: request pipelines, block arrival into piece buffers, the memory budget and
//! piece verification results.

use std::time::Duration;

use std::net::SocketAddr;

use sluice_core::{BLOCK_SIZE, BlockIndex, Lengths, PeerId, PieceIndex, Timestamp};
use sluice_wire::Message;

use super::peer::{Peer, Pending};
use super::{Event, FREE_BUFFERS_MAX, Output, PeerKey, Torrent, blame};
use crate::picker::BlockOutcome;

/// Queue time targeted per peer: a second of its rate, or two RTTs if that is longer.
const QUEUE_TIME: Duration = Duration::from_secs(1);
/// The same while a reader streams (or did lately): an urgent request joins the back of each
/// peer's queue, so the queue is kept short (still at least two RTTs).
const STREAMING_QUEUE_TIME: Duration = Duration::from_millis(250);
/// Initial pipeline depth at most while a reader streams, until the rate is measured.
const STREAMING_INITIAL_PIPELINE: usize = 16;
/// Rate measured over this much time replaces the initial pipeline depth.
pub(super) const MEASURE_TIME: Duration = Duration::from_secs(2);
/// Request queue assumed for peers that do not advertise `reqq`.
const DEFAULT_REQQ: u32 = 250;
/// Requests a snubbed peer keeps in flight outside endgame: enough to notice it recovering.
const SNUBBED_PIPELINE: usize = 1;

/// The bytes of block `i` of `piece` in a buffer the driver handed back, if it is whole.
fn block_bytes<'b>(lengths: &Lengths, piece: PieceIndex, i: u32, buffer: &'b [u8]) -> Option<&'b [u8]> {
    let b = lengths.block(piece, BlockIndex::new_unchecked(i))?;
    buffer.get(b.offset as usize..(b.offset + b.len) as usize)
}

/// Unrequested blocks a peer may send before it is disconnected, beyond one per
/// `UNREQUESTED_RATIO` blocks it delivered as asked: real clients keep answering requests we
/// cancelled (seeks cancel hundreds at once), a peer pushing data nobody asked for does not
/// deliver anything else.
pub(super) const UNREQUESTED_MAX: u32 = 16;
const UNREQUESTED_RATIO: u32 = 8;

impl Torrent {
    /// Requests we want in flight to `peer`: its bandwidth-delay product, bounded by the
    /// configured floor and ceiling, its `reqq` and the AIMD cap that timeouts lower.
    fn pipeline_target(&self, peer: &Peer, now: Timestamp) -> usize {
        let min = self.config.min_pipeline.max(1);
        let max = self.config.max_pipeline.max(min);
        let streaming = self.streaming_lately(now);
        let floor = if streaming { STREAMING_QUEUE_TIME } else { QUEUE_TIME };
        let queue = peer.rtt_min.map_or(floor, |rtt| (rtt * 2).max(floor));
        let rate = peer.down.rate(now) as f64;
        let mut target = (rate * queue.as_secs_f64() / f64::from(BLOCK_SIZE)).ceil() as usize;
        let measured = peer.first_block_at.is_some_and(|t| now.saturating_since(t) >= MEASURE_TIME);
        if !measured {
            let initial = self.initial_pipeline();
            target = target.max(if streaming { initial.min(STREAMING_INITIAL_PIPELINE) } else { initial });
        }
        let reqq = peer.reqq.unwrap_or(DEFAULT_REQQ).max(1) as usize;
        target.min(peer.pipeline_cap).clamp(min, max).min(reqq)
    }

    /// Pieces that may still be started: what fits in the budget, and always one when none
    /// is in flight so that a piece larger than the budget still downloads.
    fn new_piece_allowance(&self) -> u32 {
        let fit = self.config.buffer_budget.saturating_sub(self.reserved) / u64::from(self.lengths.piece_length());
        let fit = u32::try_from(fit).unwrap_or(u32::MAX);
        if self.buffers.is_empty() && self.verifying.is_empty() { fit.max(1) } else { fit }
    }

    /// Tops up `key`'s request pipeline from the picker.
    pub(super) fn fill_requests(&mut self, key: PeerKey, now: Timestamp) {
        let endgame = self.picker.in_endgame();
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let probation = peer.probation_until.is_some() && !endgame;
        if !peer.is_active() || !peer.am_interested || peer.peer_choking || probation {
            return;
        }
        let mut target = self.pipeline_target(peer, now);
        if peer.snubbed && !endgame {
            target = target.min(SNUBBED_PIPELINE);
        }
        let in_flight = peer.requests.len();
        let share = self.urgent_share(peer, now);
        if share != usize::MAX && !peer.snubbed {
            // Every missing block of a piece under a playhead goes out at once, spread over
            // the peers by their shares, however short their queues are kept otherwise.
            let reqq = peer.reqq.unwrap_or(DEFAULT_REQQ).max(1) as usize;
            let urgent = self.picker.urgent_room(key, &peer.has, share);
            target = target.max((in_flight + urgent).min(reqq).min(self.config.max_pipeline));
        }
        if in_flight >= target {
            return;
        }
        let mut want = target - in_flight;
        // Refill in batches: one picker call per few arrivals, not per block.
        if in_flight > 0 && want < (target / 8).max(1) {
            return;
        }
        if let Some(bucket) = &mut self.down_bucket {
            let tokens = bucket.available(now);
            if tokens == 0 {
                self.down_blocked = true;
                return;
            }
            want = want.min((tokens.div_ceil(u64::from(BLOCK_SIZE))) as usize);
        }
        if let Some(limit) = &self.config.shared_download_limit {
            let turn = std::mem::take(&mut self.down_turn);
            match limit.grant(now, turn) {
                Some(0) => {
                    let limit = limit.clone();
                    self.down_blocked = true;
                    self.down_waiting = Some(limit.wait());
                    self.down_retry = self.retry_time(&limit, now);
                    return;
                }
                Some(tokens) => want = want.min((tokens.div_ceil(u64::from(BLOCK_SIZE))) as usize),
                None => {}
            }
        }
        let allowance = self.new_piece_allowance();
        let mut new_pieces = allowance;
        let mut picked = std::mem::take(&mut self.scratch);
        picked.clear();
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let avoid = |b| peer.avoids(b);
        self.picker.pick_shared(key, &peer.has, want, &mut new_pieces, &avoid, share, &mut picked);
        if allowance == 0 && picked.len() < want && self.orphans_possible && self.picker.can_start(&peer.has) {
            self.budget_stuck = true;
        }
        if picked.is_empty() {
            self.scratch = picked;
            return;
        }
        if peer.waiting_since.is_none() {
            peer.waiting_since = Some(now);
        }
        self.timers_dirty.insert(key);
        for &block in &picked {
            peer.requests.push_back(Pending { block, sent: now });
            peer.send(
                &Message::Request { index: block.piece.get(), begin: block.offset, length: block.len },
                now,
                &mut self.flush,
            );
            if let Some(bucket) = &mut self.down_bucket {
                bucket.take(u64::from(block.len));
            }
            if !self.buffers.contains_key(&block.piece) {
                let len = self.lengths.piece_len(block.piece) as usize;
                let mut buf = match self.free_buffers.iter().position(|b| b.capacity() >= len) {
                    Some(i) => self.free_buffers.swap_remove(i),
                    None => Vec::with_capacity(len),
                };
                buf.clear();
                buf.resize(len, 0);
                self.buffers.insert(block.piece, buf);
                self.reserved += len as u64;
                self.reserved_peak = self.reserved_peak.max(self.reserved);
            }
        }
        if let Some(limit) = &self.config.shared_download_limit {
            limit.take(picked.iter().map(|b| u64::from(b.len)).sum());
        }
        self.scratch = picked;
    }

    /// Keeps only the departed peers whose blocks are still in flight.
    pub(super) fn forget_departed(&mut self) {
        if !self.departed.is_empty() {
            let keep = self.picker.contributors_in_flight();
            self.departed.retain(|k, _| keep.contains(k));
        }
    }

    /// The budget is full and a peer could start a new piece: abandons pieces in progress
    /// that nobody can serve now (no block in flight, no connected peer that unchokes us and
    /// interests us has them), fewest received blocks first, until a new piece fits. Returns
    /// whether any was abandoned.
    pub(super) fn release_orphans(&mut self) -> bool {
        let peers = &self.peers;
        let mut orphans: Vec<(u32, PieceIndex)> = self
            .picker
            .idle_pieces()
            .filter(|&(piece, _)| {
                !peers.values().any(|p| p.is_active() && !p.peer_choking && p.am_interested && p.has.get(piece))
            })
            .map(|(piece, received)| (received, piece))
            .collect();
        orphans.sort_unstable();
        let mut released = 0;
        for &(_, piece) in &orphans {
            if self.new_piece_allowance() > 0 {
                break;
            }
            if self.picker.abandon(piece) && self.release_buffer(piece) {
                released += 1;
            }
        }
        // Orphans kept for now may be wanted gone by the next peer that cannot start a piece.
        self.orphans_possible = released < orphans.len();
        if released > 0 {
            self.forget_departed();
        }
        released > 0
    }

    /// Frees the buffer of a piece given up; returns whether it had one.
    pub(super) fn release_buffer(&mut self, piece: PieceIndex) -> bool {
        let Some(buf) = self.buffers.remove(&piece) else {
            return false;
        };
        self.reserved -= buf.len() as u64;
        if self.free_buffers.len() < FREE_BUFFERS_MAX {
            self.free_buffers.push(buf);
        }
        true
    }

    pub(super) fn on_piece(&mut self, key: PeerKey, index: u32, begin: u32, data: &[u8], now: Timestamp) {
        let Some(block) = self.lengths.block_from_wire(index, begin, data.len() as u32) else {
            return self.protocol_error(key, format!("piece {index}+{begin} ({}) is not a block", data.len()), now);
        };
        let min = self.config.min_pipeline.max(1);
        let max = self.config.max_pipeline.max(min);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let sent = peer.take_request(block);
        let late = sent.is_none();
        if late && !peer.take_stale(block) {
            // Real clients answer requests we already cancelled (and duplicate requests) now and
            // then; a few such blocks are dropped, a peer that keeps sending them is cut off.
            peer.unrequested += 1;
            if peer.unrequested > UNREQUESTED_MAX + peer.delivered / UNREQUESTED_RATIO {
                let (n, of) = (peer.unrequested, peer.delivered);
                return self.protocol_error(key, format!("unrequested block {block:?} ({n}, {of} delivered)"), now);
            }
            return;
        }
        peer.delivered = peer.delivered.saturating_add(1);
        let len = u64::from(block.len);
        peer.down.add(len, now);
        self.down.add(len, now);
        if let Some(sent) = sent {
            let rtt = now.saturating_since(sent);
            peer.rtt_min = Some(peer.rtt_min.map_or(rtt, |r| r.min(rtt)));
        }
        peer.first_block_at.get_or_insert(now);
        peer.last_block_at = Some(now);
        peer.pipeline_cap = (peer.pipeline_cap + 1).clamp(min, max);
        peer.snubbed = false;
        peer.probation_until = None;
        peer.waiting_since = if peer.requests.is_empty() { None } else { Some(now) };
        self.queue_fill(key);

        let outcome =
            if late { self.picker.late_block_received(block, key) } else { self.picker.block_received(block, key) };
        let BlockOutcome::Accepted { piece_complete, cancel } = outcome else {
            return;
        };
        let Some(buf) = self.buffers.get_mut(&block.piece) else {
            debug_assert!(false, "accepted block {block:?} without a piece buffer");
            return;
        };
        let start = block.offset as usize;
        buf[start..start + data.len()].copy_from_slice(data);
        for &other in cancel.as_slice() {
            if other == key {
                continue;
            }
            if let Some(p) = self.peers.get_mut(&other)
                && p.take_request(block).is_some()
            {
                p.mark_stale(block);
                p.send(&Message::Cancel { index, begin, length: block.len }, now, &mut self.flush);
                if p.requests.is_empty() {
                    p.waiting_since = None;
                }
                self.queue_fill(other);
            }
        }
        if piece_complete && let Some(data) = self.buffers.remove(&block.piece) {
            self.verifying.insert(block.piece);
            self.outputs.push_back(Output::VerifyPiece { piece: block.piece, data });
        }
    }

    pub(super) fn on_reject(&mut self, key: PeerKey, index: u32, begin: u32, length: u32, now: Timestamp) {
        let Some(block) = self.lengths.block_from_wire(index, begin, length) else {
            return self.protocol_error(key, format!("reject of {index}+{begin} ({length}) is not a block"), now);
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.take_request(block).is_some() {
            peer.mark_stale(block);
            peer.rejected(block, now + self.config.request_timeout);
            if peer.requests.is_empty() {
                peer.waiting_since = None;
            }
            self.picker.request_dropped(block, key);
            // The block is free again: only the peers that have its piece can take it.
            for (&other, p) in &self.peers {
                if p.has.get(block.piece) {
                    self.fill_queue.insert(other);
                }
            }
        }
        // A reject of a request we dropped already is fine. Its stale mark stays (it ages out
        // of the bounded set): a client may reject a cancelled request and still send the block
        // whose read was already under way.
    }

    /// The peer choked us: every request to it is void, and it owns no piece on parole.
    pub(super) fn drop_requests(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if self.picker.peer_stopped(key) {
            self.refill_all = true;
        }
        if !self.buffers.is_empty() {
            // As `lost_source`, with `peer` borrowed.
            self.orphans_possible = true;
            self.refill_all = true;
        }
        if peer.requests.is_empty() {
            return;
        }
        while let Some(p) = peer.requests.pop_front() {
            peer.mark_stale(p.block);
            self.picker.request_dropped(p.block, key);
        }
        peer.waiting_since = None;
        self.refill_all = true;
    }

    /// Remembers who sent each block of a failed piece, and what. Returns the senders proven
    /// to have lied by sending two versions of one block.
    fn record_blocks(&mut self, piece: PieceIndex, buffer: &[u8]) -> Vec<(SocketAddr, Option<PeerId>)> {
        let mut proven = Vec::new();
        for (i, key) in self.picker.block_senders(piece).into_iter().enumerate() {
            let i = i as u32;
            let (Some((addr, id)), Some(bytes)) = (self.identity(key), block_bytes(&self.lengths, piece, i, buffer))
            else {
                continue;
            };
            if self.suspects.record(piece, i, addr, id, blame::digest(bytes)) {
                proven.push((addr, id));
            }
        }
        proven
    }

    /// A piece verified: the senders of its earlier failures whose blocks differ lied.
    fn judge_blocks(&mut self, piece: PieceIndex, buffer: &[u8]) -> Vec<(SocketAddr, Option<PeerId>)> {
        let lengths = self.lengths;
        self.suspects.verdict(piece, |i| block_bytes(&lengths, piece, i, buffer).map(blame::digest))
    }

    pub(super) fn on_piece_checked(&mut self, piece: PieceIndex, ok: bool, buffer: Vec<u8>, now: Timestamp) {
        if !self.verifying.remove(&piece) {
            return;
        }
        let len = self.lengths.piece_len(piece);
        self.reserved -= u64::from(len);
        let proven = if ok { self.judge_blocks(piece, &buffer) } else { self.record_blocks(piece, &buffer) };
        if self.free_buffers.len() < FREE_BUFFERS_MAX && buffer.capacity() >= self.lengths.piece_length() as usize {
            self.free_buffers.push(buffer);
        }
        let was_wanted = self.is_wanted(piece);
        let contributors = self.picker.piece_checked(piece, ok);
        if ok {
            self.have_bytes += u64::from(len);
            if was_wanted {
                self.wanted_changed(piece, false);
            }
            let mut next = self.next_peer(None);
            while let Some(key) = next {
                next = self.next_peer(Some(key));
                let Some(peer) = self.peers.get_mut(&key) else {
                    continue;
                };
                if !peer.is_active() {
                    continue;
                }
                if peer.has.get(piece) {
                    if peer.wanted == 0 {
                        self.update_interest(key, now);
                    }
                } else {
                    peer.send(&Message::Have(piece.get()), now, &mut self.flush);
                }
            }
            self.emit(Event::PieceVerified(piece));
            self.check_complete(now);
        } else {
            self.emit(Event::HashFailed { piece, peers: contributors.clone() });
            // Several contributors prove nothing about any one of them: the blocks decide
            // once the piece verifies (see `blame`).
            if let [only] = contributors[..]
                && let Some((addr, id)) = self.identity(only)
            {
                self.charge_sole_failure(addr, id, now);
            }
        }
        for (addr, id) in proven {
            self.ban(addr, id, now);
        }
        self.forget_departed();
        self.refill_all = true;
    }
}
