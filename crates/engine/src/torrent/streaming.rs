//! The streaming scheduler's effect on the download (the readers themselves are in
//! `crate::stream`): readers' demands applied to the picker piece by piece, requests a jump
//! made useless cancelled, and late blocks under a playhead raced at a faster peer.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use sluice_core::{BlockRef, PieceIndex, Timestamp};
use sluice_wire::Message;

use super::peer::{Peer, Pending};
use super::requests::MEASURE_TIME;
use super::{PeerKey, Torrent};
use crate::picker::MAX_REQUESTERS;
use crate::stream::{Change, ReaderId, ReaderWindow};

/// Period of the check for late urgent blocks while a window's `Now`/`Next` pieces are missing.
pub(super) const STREAM_TICK: Duration = Duration::from_millis(100);
/// Lowest rate assumed for a peer that sent blocks.
const RATE_FLOOR: u64 = 16 * 1024;
/// Rate assumed for a peer that never sent a block when no peer did.
const PRIOR_RATE: u64 = 1024 * 1024;
/// A peer's average rate since its first block is taken over this much time at least.
const MIN_SPAN: Duration = Duration::from_millis(100);
/// Round trip assumed when no peer's is known.
const DEFAULT_RTT: Duration = Duration::from_millis(300);
/// A peer that has not unchoked us this long after we became interested is not counted on for
/// a share of the pieces under playheads.
const UNCHOKE_GRACE: Duration = Duration::from_secs(2);
/// Pipelines stay as short as while streaming for this long after the last reader activity.
const STREAM_LINGER: Duration = Duration::from_secs(30);
/// A block is late once in flight this much longer than twice its expected time.
const LATE_SLACK: Duration = Duration::from_millis(50);

/// What re-applying effective priorities changed.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Refreshed {
    pub tiers: bool,
    pub wanted: bool,
}

impl Torrent {
    /// Opens a streaming reader of the content bytes `file` (a file's range in the torrent's
    /// content stream), its playhead at `offset` into the file. See the crate docs.
    pub fn open_reader(&mut self, file: Range<u64>, offset: u64, now: Timestamp) -> ReaderId {
        self.now = now;
        let (id, mut change) = self.streams.open(file, offset, now);
        change.touched.extend(self.streams.hold_if_verified(id, self.picker.have(), now).touched);
        self.apply_stream_change(change, now);
        self.settle(now);
        id
    }

    /// The reader's playhead is at `offset` into its file. Call it on every read position
    /// change: within a piece it costs O(readers), a move by k pieces O(k).
    pub fn reader_seek(&mut self, id: ReaderId, offset: u64, now: Timestamp) {
        self.now = now;
        let mut change = self.streams.seek(id, offset, now);
        if change.jumped {
            change.touched.extend(self.streams.hold_if_verified(id, self.picker.have(), now).touched);
        }
        self.apply_stream_change(change, now);
        self.settle(now);
    }

    /// The media bitrate of the reader's file in bytes per second (size over duration, from
    /// the container); 0 forgets it. Sizes the window together with the measured rate.
    pub fn set_bitrate(&mut self, id: ReaderId, bytes_per_sec: u64, now: Timestamp) {
        self.now = now;
        let change = self.streams.set_bitrate(id, bytes_per_sec, now);
        self.apply_stream_change(change, now);
        self.settle(now);
    }

    /// Byte ranges of the reader's file (relative to it) that must be fetched early and kept
    /// at `High` or above while the reader is open (container index, head, tags). Replaces
    /// the reader's earlier ranges.
    pub fn protect(&mut self, id: ReaderId, ranges: &[Range<u64>], now: Timestamp) {
        self.now = now;
        let change = self.streams.protect(id, ranges);
        self.apply_stream_change(change, now);
        self.settle(now);
    }

    /// Closes the reader: its window and protected ranges are released at once.
    pub fn close_reader(&mut self, id: ReaderId, now: Timestamp) {
        self.now = now;
        let change = self.streams.close(id);
        self.apply_stream_change(change, now);
        self.settle(now);
    }

    /// The pieces the reader currently demands, by tier (`None` for an unknown reader).
    pub fn reader_window(&self, id: ReaderId) -> Option<ReaderWindow> {
        self.streams.window(id)
    }

    /// Applies a change of readers or base priorities (the caller settles).
    pub(super) fn apply_stream_change(&mut self, change: Change, now: Timestamp) {
        self.reader_seen_at = Some(now);
        let refreshed = self.refresh_pieces(&change.touched);
        // With nobody streaming, requests are not in anyone's way.
        if change.jumped && self.streams.any_awake() {
            self.cancel_unneeded(now);
        }
        self.streams.refresh_idle_at(self.picker.have());
        self.after_priorities(refreshed, now);
    }

    /// Gives each piece of `ranges` its effective tier and deadline. O(pieces × readers).
    pub(super) fn refresh_pieces(&mut self, ranges: &[Range<u32>]) -> Refreshed {
        let mut out = Refreshed::default();
        let n = self.lengths.num_pieces();
        for range in ranges {
            let span = range.start.min(n)..range.end.min(n);
            self.reprioritised += u64::from(span.end - span.start);
            for i in span {
                let piece = PieceIndex::new_unchecked(i);
                let (tier, deadline) = self.streams.effective(piece);
                if self.picker.priority(piece) != tier {
                    let was = self.is_wanted(piece);
                    self.picker.set_priority(i..i + 1, tier);
                    let wanted = self.is_wanted(piece);
                    if was != wanted {
                        self.wanted_changed(piece, wanted);
                        out.wanted = true;
                    }
                    out.tiers = true;
                }
                if self.picker.deadline(piece) != deadline {
                    self.picker.set_deadline(piece, deadline);
                }
            }
        }
        out
    }

    /// What follows changed priorities: interest, completion, endgame, refills.
    pub(super) fn after_priorities(&mut self, refreshed: Refreshed, now: Timestamp) {
        if refreshed.wanted {
            let mut next = self.next_peer(None);
            while let Some(key) = next {
                self.update_interest(key, now);
                next = self.next_peer(Some(key));
            }
            self.check_complete(now);
            self.try_connect(now);
        }
        if refreshed.tiers {
            self.lost_source();
        }
        let awake = self.streams.any_awake();
        self.picker.set_endgame_allowed(!awake);
        if self.next_stream_tick.is_none() && self.urgent_missing() {
            self.next_stream_tick = Some(now + STREAM_TICK);
        }
    }

    /// A reader is awake, or one was seen lately: players close and reopen their connection to
    /// seek, and requests queued deep in the gap would delay the pieces they ask for next.
    pub(super) fn streaming_lately(&self, now: Timestamp) -> bool {
        self.streams.any_awake() || self.reader_seen_at.is_some_and(|t| now.saturating_since(t) < STREAM_LINGER)
    }

    /// Some window's `Now` or `Next` piece is not verified.
    fn urgent_missing(&self) -> bool {
        let have = self.picker.have();
        self.streams.urgent().any(|r| r.clone().any(|i| !have.get(PieceIndex::new_unchecked(i))))
    }

    /// Time-driven streaming work, from `handle_timeout`: dormancy, boosts ending, racing.
    pub(super) fn stream_timers(&mut self, now: Timestamp) {
        let tick_due = self.next_stream_tick.is_some_and(|t| now >= t);
        let idle_due = self.streams.idle_at().is_some_and(|t| now >= t);
        if !tick_due && !idle_due {
            return;
        }
        let change = self.streams.tick(now, self.picker.have());
        self.apply_stream_change(change, now);
        if tick_due {
            self.next_stream_tick = None;
            self.race_late_blocks(now);
            if self.urgent_missing() {
                self.next_stream_tick = Some(now + STREAM_TICK);
            }
        }
    }

    /// When `stream_timers` has work next.
    pub(super) fn stream_deadline(&self) -> Option<Timestamp> {
        match (self.next_stream_tick, self.streams.idle_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// After a jump: requests for pieces no reader needs are cancelled, unless the piece is
    /// three quarters received; of those pieces, the least received are given up (their
    /// buffers freed) while the budget has no room for the urgent pieces not started yet.
    fn cancel_unneeded(&mut self, now: Timestamp) {
        let streams = &self.streams;
        let picker = &self.picker;
        let useless: BTreeSet<PieceIndex> = self
            .buffers
            .keys()
            .copied()
            .filter(|&p| !streams.demanded(p) && picker.progress(p).is_some_and(|(got, all)| got * 4 < all * 3))
            .collect();
        if useless.is_empty() {
            return;
        }
        let mut next = self.next_peer(None);
        while let Some(key) = next {
            next = self.next_peer(Some(key));
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if !peer.requests.iter().any(|r| useless.contains(&r.block.piece)) {
                continue;
            }
            let cancelled: Vec<Pending> =
                peer.requests.iter().filter(|r| useless.contains(&r.block.piece)).copied().collect();
            peer.requests.retain(|r| !useless.contains(&r.block.piece));
            for r in cancelled {
                let b = r.block;
                peer.mark_stale(b);
                peer.send(
                    &Message::Cancel { index: b.piece.get(), begin: b.offset, length: b.len },
                    now,
                    &mut self.flush,
                );
                self.picker.request_dropped(b, key);
            }
            if peer.requests.is_empty() {
                peer.waiting_since = None;
            }
            self.timers_dirty.insert(key);
        }
        let have = self.picker.have();
        let urgent: BTreeSet<u32> = self
            .streams
            .urgent()
            .flat_map(|r| r.filter(|&i| !have.get(PieceIndex::new_unchecked(i))))
            .filter(|&i| !self.buffers.contains_key(&PieceIndex::new_unchecked(i)))
            .collect();
        let room = self.lengths.piece_length() as u64 * urgent.len().max(1) as u64;
        let mut victims: Vec<(u32, PieceIndex)> =
            useless.iter().filter_map(|&p| self.picker.progress(p).map(|(got, _)| (got, p))).collect();
        victims.sort_unstable();
        let mut released = false;
        for (_, piece) in victims {
            if self.config.buffer_budget.saturating_sub(self.reserved) >= room {
                break;
            }
            if self.picker.abandon(piece) {
                self.release_buffer(piece);
                released = true;
            }
        }
        if released {
            self.forget_departed();
        }
        self.refill_all = true;
    }

    /// Blocks of `Now`/`Next` pieces in flight for more than twice the time their peer should
    /// take (its round trip plus the queue ahead at its rate: the better of its smoothed rate
    /// and its average since its first block, which a meter idle for a while underestimates)
    /// are asked of the peer that should deliver soonest as well: at most
    /// [`MAX_REQUESTERS`] peers per block.
    /// O(requests in flight + late blocks × peers).
    fn race_late_blocks(&mut self, now: Timestamp) {
        let urgent: Vec<Range<u32>> = self.streams.urgent().collect();
        if urgent.is_empty() {
            return;
        }
        let is_urgent = |p: PieceIndex| urgent.iter().any(|r| r.contains(&p.get()));
        // A peer that never sent a block is assumed as fast and as near as the best one: its
        // silence then shows soon. Racing a block costs little; waiting for a dead peer costs a stall.
        let measured = |p: &Peer| {
            let since = now.saturating_since(p.first_block_at?).max(MIN_SPAN);
            let average = (u128::from(p.down.total()) * 1_000_000 / since.as_micros()) as u64;
            Some(p.down.rate(now).max(average).max(RATE_FLOOR))
        };
        let prior_rate = self.peers.values().filter_map(measured).max().unwrap_or(PRIOR_RATE);
        let prior_rtt = self.peers.values().filter_map(|p| p.rtt_min).min().unwrap_or(DEFAULT_RTT);
        let estimate = |p: &Peer| (measured(p).unwrap_or(prior_rate), p.rtt_min.unwrap_or(prior_rtt));
        let mut late: Vec<BlockRef> = Vec::new();
        let mut slow: BTreeSet<PeerKey> = BTreeSet::new();
        for (&key, peer) in self.peers.iter().filter(|(_, p)| p.is_active()) {
            let (rate, rtt) = estimate(peer);
            let mut ahead = 0u64;
            for r in &peer.requests {
                ahead += u64::from(r.block.len);
                if !is_urgent(r.block.piece) {
                    continue;
                }
                let expected = rtt + Duration::from_micros(ahead * 1_000_000 / rate);
                if now.saturating_since(r.sent) > expected * 2 + LATE_SLACK {
                    late.push(r.block);
                    slow.insert(key);
                }
            }
        }
        late.sort_unstable();
        late.dedup();
        for block in late {
            let holders = self.picker.requesters(block);
            if holders.len() >= MAX_REQUESTERS {
                continue;
            }
            let best = self
                .peers
                .iter()
                // Only a peer known to deliver, and not late itself, gets a raced block.
                .filter(|(k, p)| {
                    p.is_active()
                        && p.first_block_at.is_some()
                        && !slow.contains(k)
                        && !p.peer_choking
                        && p.am_interested
                        && !p.snubbed
                        && p.probation_until.is_none()
                        && p.has.get(block.piece)
                        && !holders.contains(k)
                        && !p.avoids(block)
                        && p.requests.len() < p.reqq.map_or(usize::MAX, |q| q as usize)
                })
                .map(|(&k, p)| {
                    let (rate, rtt) = estimate(p);
                    let queued: u64 = p.requests.iter().map(|r| u64::from(r.block.len)).sum::<u64>();
                    (rtt + Duration::from_micros((queued + u64::from(block.len)) * 1_000_000 / rate), k)
                })
                .min();
            let Some((_, key)) = best else {
                continue;
            };
            if !self.picker.race(block, key) {
                continue;
            }
            let peer = self.peers.get_mut(&key).expect("chosen among live peers");
            peer.requests.push_back(Pending { block, sent: now });
            peer.send(
                &Message::Request { index: block.piece.get(), begin: block.offset, length: block.len },
                now,
                &mut self.flush,
            );
            if peer.waiting_since.is_none() {
                peer.waiting_since = Some(now);
            }
            self.timers_dirty.insert(key);
        }
    }

    /// Blocks of one `Now`/`Next` piece each peer may have in flight while a reader is awake:
    /// its share of the download rate once that is measured, an equal share of the peers
    /// serving us until then (unchoking us, or asked too recently to have). A rate over
    /// its first moments says little: capped seeders send in bursts, and the first to burst
    /// (or to unchoke) would take the whole piece, whose last blocks then wait for its next
    /// burst.
    pub(super) fn urgent_share(&self, peer: &Peer, now: Timestamp) -> usize {
        if !self.streams.any_awake() {
            return usize::MAX;
        }
        let blocks = u64::from(self.lengths.max_blocks_per_piece());
        let total = self.down.rate(now);
        let measured = peer.first_block_at.is_some_and(|t| now.saturating_since(t) >= MEASURE_TIME);
        let share = if measured && total > 0 {
            (blocks * peer.down.rate(now)).div_ceil(total)
        } else {
            let serving = self
                .peers
                .values()
                .filter(|p| p.is_active() && p.am_interested)
                .filter(|p| !p.peer_choking || now.saturating_since(p.interested_since) < UNCHOKE_GRACE)
                .count();
            blocks.div_ceil(serving.max(1) as u64)
        };
        share.clamp(1, blocks) as usize
    }
}
