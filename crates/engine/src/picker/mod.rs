//! Piece and block picker: decides which blocks to request from which peer.
//!
//! Order of preference: tier by tier, highest first. Within a tier, pieces already in progress
//! come first (finish what is started, which keeps the buffer budget moving), then new pieces
//! by earliest deadline, then rarest first, ties broken by a per-piece random key derived from
//! the seed. So a piece in progress never delays a new piece of a higher tier (the playhead's).
//!
//! # Rules
//!
//! - A piece is `Have` (verified), `Buffered` (every block received, awaiting the driver's
//!   check), `InProgress` (started: some blocks requested or received) or `Free`. A block of
//!   a started piece is `Missing`, `Requested` by 1..=[`MAX_REQUESTERS`] distinct peers, or
//!   `Received` from one peer (remembered to blame it if the hash fails).
//! - Free pieces whose tier is not `Skip` ("wanted") are kept in an ordered index keyed by
//!   (tier desc, deadline asc with none last, availability asc, random key, index), split in
//!   two sets: pieces some non-seed peer has, and pieces only seeds could serve. Every change
//!   of tier, deadline, availability or state removes and re-inserts the key: O(log n).
//! - Availability is a per-piece count of non-seed peers plus one global seed count, so a seed
//!   arriving or leaving costs O(1). A peer counts as a seed when it was reported with a full
//!   bitfield ([`Picker::peer_has_bitfield`] detects it, or [`Picker::peer_has_all`]) or
//!   promoted with [`Picker::peer_became_seed`]; removing it with a full bitfield (or
//!   [`Picker::peer_lost_all`]) undoes exactly that. A peer whose bitfield fills up through
//!   HAVE messages must therefore be promoted before it is removed with its full bitfield.
//! - [`Picker::pick_shared`] only starts pieces whose availability already counts the asking peer.
//!   Outside endgame a block is handed to one peer at a time. Endgame is: some piece is in
//!   progress, no in-progress piece has a `Missing` block, and no wanted Free piece is
//!   available from any peer (and endgame is allowed: see [`Picker::set_endgame_allowed`]).
//!   In endgame a block may be in flight at up to [`MAX_REQUESTERS`] distinct peers; blocks
//!   with the fewest requesters go first. Outside endgame only [`Picker::race`] (a late block
//!   under a playhead) puts a block in flight at a second or third peer.
//! - [`Picker::pick_shared`] lets one peer have at most a share of each `Now`/`Next` piece in
//!   flight, so the pieces under playheads come from several peers at once.
//! - Setting a started piece to `Skip` lets it finish: its blocks keep being handed out (after
//!   every other piece, new ones included: `Skip` is the lowest tier) and it is verified as usual. Only Free pieces leave the
//!   index.
//! - A piece in progress with no block in flight may be abandoned ([`Picker::abandon`]): it
//!   is `Free` again and its received blocks are forgotten. The engine does this only to
//!   free buffer budget held by pieces nobody can serve.
//! - A block that arrives is accepted if it is in flight at anyone (the sender or not; the
//!   other requesters are returned to be cancelled). The last block makes the piece
//!   `Buffered`; [`Picker::piece_checked`] then makes it `Have`, or `Free` again with every
//!   block `Missing`, returning the peers that sent its blocks.
//! - A piece that failed its check is on *parole* until verified: it is fetched from one peer
//!   at a time, so the next failure has a single culprit and a success proves its sender
//!   honest. The first peer handed a block of it becomes its owner; outside endgame its
//!   `Missing` blocks go to the owner only. The owner is released when it drops its last
//!   request for the piece ([`Picker::request_dropped`]) or stops serving
//!   ([`Picker::peer_stopped`]); the next peer to pick it takes over. In endgame its blocks
//!   are shared like any other's.
//! - No randomness besides the seeded per-piece key; no iteration order depends on hashing.

mod blocks;
mod invariants;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Bound, Range};

use sluice_core::{Bitfield, BlockIndex, BlockRef, Lengths, PieceIndex, Timestamp};

use crate::PeerKey;
use blocks::{Block, Partial};

pub use blocks::{MAX_REQUESTERS, Requesters};

/// Priority tiers. `Skip` pieces are never started. The streaming scheduler maps a reader's
/// playhead onto `Now`/`Next`/`Readahead`/`High`; everything else wanted is `Normal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    Skip = 0,
    #[default]
    Normal = 1,
    High = 2,
    Readahead = 3,
    Next = 4,
    Now = 5,
}

/// What became of a block that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// We never asked anyone for this block (or the piece is not in progress): a protocol
    /// violation if this peer was not asked either.
    NotRequested,
    /// Already received from someone else (endgame race); drop the data.
    Duplicate,
    /// Stored. `cancel`: other peers with the same block in flight (endgame) to send CANCEL to.
    /// `piece_complete`: every block of the piece has now arrived.
    Accepted { piece_complete: bool, cancel: Requesters },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    InProgress,
    Buffered,
    Have,
}

/// `(no deadline, deadline)`: pieces with a deadline sort first, earliest first.
type DeadlineKey = (bool, Timestamp);

fn deadline_key(d: Option<Timestamp>) -> DeadlineKey {
    (d.is_none(), d.unwrap_or_default())
}

/// Position of a Free wanted piece in the index. Field order is the sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FreeKey {
    tier: Reverse<Priority>,
    deadline: DeadlineKey,
    avail: u32,
    tiebreak: u64,
    piece: PieceIndex,
}

/// Position of an in-progress piece among the pieces to finish first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ActiveKey {
    tier: Reverse<Priority>,
    deadline: DeadlineKey,
    piece: PieceIndex,
}

/// Pieces the index walk of a pick may skip at least, however few pieces the peer has.
const MIN_WALK: usize = 64;

/// The tiers in the order a pick serves them.
const TIERS_DOWN: [Priority; 6] =
    [Priority::Now, Priority::Next, Priority::Readahead, Priority::High, Priority::Normal, Priority::Skip];

/// The least key of `tier` in the free index.
fn free_floor(tier: Priority) -> FreeKey {
    FreeKey {
        tier: Reverse(tier),
        deadline: (false, Timestamp::ZERO),
        avail: 0,
        tiebreak: 0,
        piece: PieceIndex::new_unchecked(0),
    }
}

/// The least key of `tier` among the pieces in progress.
fn active_floor(tier: Priority) -> ActiveKey {
    ActiveKey { tier: Reverse(tier), deadline: (false, Timestamp::ZERO), piece: PieceIndex::new_unchecked(0) }
}

/// Result of one step of the index walk in `pick`.
enum Walk {
    Found(FreeKey),
    /// No further piece the peer has.
    End,
    /// Too many pieces the peer lacks: scanning its bitfield is cheaper.
    GaveUp,
}

pub struct Picker {
    lengths: Lengths,
    seed: u64,
    have: Bitfield,
    state: Vec<State>,
    priority: Vec<Priority>,
    deadlines: BTreeMap<PieceIndex, Timestamp>,
    /// Non-seed peers having each piece; add `seeds` for the availability.
    avail: Vec<u32>,
    seeds: u32,
    /// Free wanted pieces with `avail > 0`.
    free: BTreeSet<FreeKey>,
    /// Free wanted pieces with `avail == 0` (only seeds can serve them).
    unseen: BTreeSet<FreeKey>,
    /// InProgress pieces (not Buffered).
    active: BTreeSet<ActiveKey>,
    /// InProgress and Buffered pieces.
    partials: BTreeMap<PieceIndex, Partial>,
    /// Pieces that failed their check and have not been verified since (see the rules).
    parole: BTreeSet<PieceIndex>,
    /// Sum of `missing` over `partials`.
    missing_total: u64,
    /// Pieces neither `Have` nor `Skip`.
    wanted_left: u32,
    /// Block vectors of finished pieces, reused for the next started ones.
    spare: Vec<Vec<Block>>,
    /// Reused candidate buffer of the sparse pick path.
    scratch: Vec<FreeKey>,
    endgame_allowed: bool,
}

impl fmt::Debug for Picker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("pieces", &self.lengths.num_pieces())
            .field("have", &self.have.count_ones())
            .field("free_available", &self.free.len())
            .field("free_unseen", &self.unseen.len())
            .field("in_progress", &self.active.len())
            .field("in_flight", &self.partials.len())
            .field("parole", &self.parole.len())
            .field("seeds", &self.seeds)
            .field("endgame", &self.in_endgame())
            .finish()
    }
}

/// SplitMix64 output number `piece` of the stream seeded with `seed`.
fn tiebreak(seed: u64, piece: PieceIndex) -> u64 {
    let mut z = seed.wrapping_add((u64::from(piece.get()) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Indices of the set bits of a wire-order bitfield, skipping zero bytes.
fn ones(bitfield: &Bitfield) -> impl Iterator<Item = PieceIndex> + '_ {
    bitfield.as_bytes().iter().enumerate().flat_map(|(i, &byte)| {
        let mut rest = byte;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let bit = rest.leading_zeros();
                rest &= !(0x80 >> bit);
                PieceIndex::new_unchecked(i as u32 * 8 + bit)
            })
        })
    })
}

impl Picker {
    pub fn new(lengths: Lengths, rng_seed: u64) -> Self {
        let n = lengths.num_pieces();
        let mut picker = Self {
            lengths,
            seed: rng_seed,
            have: Bitfield::new(n),
            state: vec![State::Free; n as usize],
            priority: vec![Priority::Normal; n as usize],
            deadlines: BTreeMap::new(),
            avail: vec![0; n as usize],
            seeds: 0,
            free: BTreeSet::new(),
            unseen: BTreeSet::new(),
            active: BTreeSet::new(),
            partials: BTreeMap::new(),
            parole: BTreeSet::new(),
            missing_total: 0,
            wanted_left: n,
            spare: Vec::new(),
            scratch: Vec::new(),
            endgame_allowed: true,
        };
        picker.unseen = lengths.pieces().map(|p| picker.free_key(p)).collect();
        picker
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Marks a piece verified (resume data, or after a successful check). A piece in progress
    /// is dropped with its blocks: late blocks for it are then `NotRequested`.
    pub fn mark_have(&mut self, piece: PieceIndex) {
        let Some(state) = self.state.get(piece.as_usize()).copied() else {
            return;
        };
        match state {
            State::Have => return,
            State::Free => self.index_remove(piece),
            State::InProgress | State::Buffered => {
                self.active_remove(piece);
                self.drop_partial(piece);
            }
        }
        self.state[piece.as_usize()] = State::Have;
        self.have.set(piece);
        self.parole.remove(&piece);
        if self.priority[piece.as_usize()] != Priority::Skip {
            self.wanted_left -= 1;
        }
    }

    /// A verified piece is gone from storage (a RAM cache evicted it): it is `Free` again,
    /// to be fetched when wanted. Nothing for a piece we do not have.
    pub fn mark_missing(&mut self, piece: PieceIndex) {
        if self.state.get(piece.as_usize()) != Some(&State::Have) {
            return;
        }
        self.state[piece.as_usize()] = State::Free;
        self.have.clear(piece);
        if self.priority[piece.as_usize()] != Priority::Skip {
            self.wanted_left += 1;
        }
        self.index_insert(piece);
    }

    // ---- availability ----

    pub fn peer_has_piece(&mut self, piece: PieceIndex) {
        if piece.get() < self.lengths.num_pieces() {
            self.change_avail(piece, |a| a.checked_add(1));
        }
    }

    /// A peer's bitfield arrived (or HaveAll as a full bitfield). A full bitfield counts the
    /// peer as a seed in O(1).
    pub fn peer_has_bitfield(&mut self, bitfield: &Bitfield) {
        self.check_len(bitfield);
        if bitfield.is_full() {
            self.peer_has_all();
        } else {
            for p in ones(bitfield) {
                self.peer_has_piece(p);
            }
        }
    }

    /// A peer with this bitfield left. A full bitfield removes a seed (see the module rules).
    pub fn peer_lost_bitfield(&mut self, bitfield: &Bitfield) {
        self.check_len(bitfield);
        if bitfield.is_full() {
            self.peer_lost_all();
        } else {
            for p in ones(bitfield) {
                self.change_avail(p, |a| a.checked_sub(1));
            }
        }
    }

    /// A seed (HaveAll, or a full bitfield) joined: O(1).
    pub fn peer_has_all(&mut self) {
        self.seeds += 1;
    }

    /// A seed counted by [`Self::peer_has_all`] or [`Self::peer_became_seed`] left: O(1).
    pub fn peer_lost_all(&mut self) {
        self.seeds = self.seeds.checked_sub(1).expect("picker: a seed left that was never counted");
    }

    /// A peer counted piece by piece now has every piece: move it to the seed count, so it
    /// can later leave in O(1). O(n log n), once per peer that completes while connected.
    pub fn peer_became_seed(&mut self) {
        for p in self.lengths.pieces() {
            self.change_avail(p, |a| a.checked_sub(1));
        }
        self.seeds += 1;
    }

    pub fn availability(&self, piece: PieceIndex) -> u32 {
        self.avail.get(piece.as_usize()).map_or(0, |a| a + self.seeds)
    }

    // ---- priorities and deadlines ----

    /// Cost proportional to the length of `pieces` (times log n).
    pub fn set_priority(&mut self, pieces: Range<u32>, priority: Priority) {
        let end = pieces.end.min(self.lengths.num_pieces());
        for i in pieces.start..end {
            let piece = PieceIndex::new_unchecked(i);
            let old = self.priority[piece.as_usize()];
            if old == priority {
                continue;
            }
            if self.state[piece.as_usize()] != State::Have {
                match (old == Priority::Skip, priority == Priority::Skip) {
                    (true, false) => self.wanted_left += 1,
                    (false, true) => self.wanted_left -= 1,
                    _ => {}
                }
            }
            self.rekey(piece, |s| s.priority[piece.as_usize()] = priority);
        }
    }

    pub fn priority(&self, piece: PieceIndex) -> Priority {
        self.priority.get(piece.as_usize()).copied().unwrap_or(Priority::Skip)
    }

    pub fn set_deadline(&mut self, piece: PieceIndex, deadline: Option<Timestamp>) {
        if piece.get() >= self.lengths.num_pieces() || self.deadlines.get(&piece).copied() == deadline {
            return;
        }
        self.rekey(piece, |s| match deadline {
            Some(d) => {
                s.deadlines.insert(piece, d);
            }
            None => {
                s.deadlines.remove(&piece);
            }
        });
    }

    pub fn deadline(&self, piece: PieceIndex) -> Option<Timestamp> {
        self.deadlines.get(&piece).copied()
    }

    // ---- requests ----

    /// Test shorthand for [`Self::pick_shared`] with nothing avoided and no urgent share.
    ///
    /// Appends up to `max` blocks for `peer` (which has `peer_has`) to `out`. Starting a
    /// piece that is not yet in progress consumes one unit of `new_pieces`; none are started
    /// when it is zero. Outside endgame, no block is handed out while it is in flight
    /// elsewhere; in endgame a block may be in flight at up to a few peers, never twice at one.
    #[cfg(test)]
    pub fn pick(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        max: usize,
        new_pieces: &mut u32,
        out: &mut Vec<BlockRef>,
    ) {
        self.pick_avoiding(peer, peer_has, max, new_pieces, &|_| false, out);
    }

    /// Test shorthand: `pick`, except that blocks of pieces already started for which `avoid` is true
    /// are not handed to this peer (e.g. it rejected them lately).
    #[cfg(test)]
    pub fn pick_avoiding(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        max: usize,
        new_pieces: &mut u32,
        avoid: &dyn Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        self.pick_shared(peer, peer_has, max, new_pieces, avoid, usize::MAX, out);
    }

    /// Appends up to `max` blocks for `peer` (which has `peer_has`) to `out`, highest tier
    /// first (see the module docs). Starting a piece consumes one unit of `new_pieces`; blocks
    /// of started pieces for which `avoid` is true (e.g. the peer rejected them lately) are not
    /// handed to this peer; at most `urgent_share` blocks of each `Now` or `Next` piece are in
    /// flight at it, so that the pieces under playheads are spread over several peers.
    #[allow(clippy::too_many_arguments)]
    pub fn pick_shared(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        max: usize,
        new_pieces: &mut u32,
        avoid: &dyn Fn(BlockRef) -> bool,
        urgent_share: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let mut room = max;
        for tier in TIERS_DOWN {
            if room == 0 {
                break;
            }
            let limit = if tier >= Priority::Next { urgent_share.max(1) } else { usize::MAX };
            self.pick_in_progress(peer, peer_has, tier, &mut room, limit, avoid, out);
            if room > 0 && *new_pieces > 0 && tier != Priority::Skip {
                self.pick_new(peer, peer_has, tier, &mut room, limit, new_pieces, out);
            }
            if tier == Priority::Now && room > 0 && urgent_share != usize::MAX {
                self.pick_now_duplicates(peer, peer_has, &mut room, urgent_share.max(1), avoid, out);
            }
        }
        if room > 0 && self.in_endgame() {
            self.pick_endgame(peer, peer_has, &mut room, avoid, out);
        }
    }

    /// A block arrived from `from`.
    pub fn block_received(&mut self, block: BlockRef, from: PeerKey) -> BlockOutcome {
        let Some(i) = self.started_block(block) else {
            return BlockOutcome::NotRequested;
        };
        let part = self.partials.get_mut(&block.piece).expect("picker: started piece without blocks");
        let cancel = match part.blocks[i] {
            Block::Missing => return BlockOutcome::NotRequested,
            Block::Received(_) => return BlockOutcome::Duplicate,
            Block::Requested(mut rs) => {
                rs.remove(from);
                rs
            }
        };
        part.blocks[i] = Block::Received(from);
        part.received += 1;
        let piece_complete = part.is_complete();
        if piece_complete {
            self.active_remove(block.piece);
            self.state[block.piece.as_usize()] = State::Buffered;
        }
        BlockOutcome::Accepted { piece_complete, cancel }
    }

    /// A block arrived from `from` after we had stopped waiting for it there (timeout, choke,
    /// reject). Like [`Self::block_received`], and also accepted while the block is `Missing`
    /// again, unless its piece is on parole and `from` is not the owner. The caller checked
    /// that `from` was asked for exactly this block.
    pub fn late_block_received(&mut self, block: BlockRef, from: PeerKey) -> BlockOutcome {
        if let Some(i) = self.started_block(block)
            && self.state[block.piece.as_usize()] == State::InProgress
        {
            let part = self.partials.get_mut(&block.piece).expect("picker: started piece without blocks");
            if part.blocks[i] == Block::Missing && (!part.parole || part.owner == Some(from)) {
                part.blocks[i] = Block::Requested(Requesters::one(from));
                part.missing -= 1;
                self.missing_total -= 1;
            }
        }
        self.block_received(block, from)
    }

    /// Also asks `peer` for `block`, already in flight elsewhere (a late urgent block is raced):
    /// never past [`MAX_REQUESTERS`], never twice at one peer, never for a piece on parole.
    /// Returns whether `peer` was added.
    pub fn race(&mut self, block: BlockRef, peer: PeerKey) -> bool {
        let Some(i) = self.started_block(block) else {
            return false;
        };
        let part = self.partials.get_mut(&block.piece).expect("picker: started piece without blocks");
        if part.parole {
            return false;
        }
        match &mut part.blocks[i] {
            Block::Requested(rs) if rs.len() < MAX_REQUESTERS && !rs.contains(peer) => {
                rs.push(peer);
                true
            }
            _ => false,
        }
    }

    /// Of a piece in progress: its blocks received, and all its blocks.
    pub fn progress(&self, piece: PieceIndex) -> Option<(u32, u32)> {
        self.partials.get(&piece).map(|p| (p.received, p.blocks.len() as u32))
    }

    /// Endgame (duplicate requests for the last blocks) may start; on by default. The engine
    /// turns it off while streaming readers are awake: a window being fully requested is not
    /// the end of anything, and late urgent blocks are raced instead.
    pub fn set_endgame_allowed(&mut self, allowed: bool) {
        self.endgame_allowed = allowed;
    }

    /// The peers `block` is in flight at (empty if it is not requested).
    pub fn requesters(&self, block: BlockRef) -> &[PeerKey] {
        match self.started_block(block).map(|i| &self.partials[&block.piece].blocks[i]) {
            Some(Block::Requested(rs)) => rs.as_slice(),
            _ => &[],
        }
    }

    /// Σ over blocks in flight of their requesters. O(blocks in flight).
    pub fn requests_in_flight(&self) -> usize {
        self.partials
            .values()
            .flat_map(|p| p.blocks.iter())
            .map(|b| match b {
                Block::Requested(rs) => rs.len(),
                _ => 0,
            })
            .sum()
    }

    /// Whether `peer` sent a block of a piece still in flight. O(blocks in flight).
    pub fn contributed(&self, peer: PeerKey) -> bool {
        self.partials.values().any(|p| p.blocks.contains(&Block::Received(peer)))
    }

    /// Every peer that sent a block of a piece still in flight. O(blocks in flight).
    pub fn contributors_in_flight(&self) -> BTreeSet<PeerKey> {
        self.partials
            .values()
            .flat_map(|p| p.blocks.iter())
            .filter_map(|b| match b {
                Block::Received(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    /// `peer` will not deliver `block` (timeout, reject, choke, disconnect): the block can be
    /// handed to someone else. Ignored unless the block is in flight at `peer`.
    pub fn request_dropped(&mut self, block: BlockRef, peer: PeerKey) {
        let Some(i) = self.started_block(block) else {
            return;
        };
        let part = self.partials.get_mut(&block.piece).expect("picker: started piece without blocks");
        let Block::Requested(rs) = &mut part.blocks[i] else {
            return;
        };
        if !rs.remove(peer) {
            return;
        }
        if rs.len() == 0 {
            part.blocks[i] = Block::Missing;
            part.missing += 1;
            self.missing_total += 1;
        }
        if part.owner == Some(peer) && !part.requested_from(peer) {
            part.owner = None;
        }
    }

    /// `peer` will take no blocks for now (it choked us or left): the pieces on parole it
    /// owns go to whoever picks them next; returns whether it owned any. O(pieces in flight).
    pub fn peer_stopped(&mut self, peer: PeerKey) -> bool {
        let mut released = false;
        for part in self.partials.values_mut().filter(|p| p.owner == Some(peer)) {
            part.owner = None;
            released = true;
        }
        released
    }

    /// Blocks of `Now` pieces `peer` (which has `peer_has`) could take beyond those it has in
    /// flight, at most `share` of each piece at a time: missing blocks of pieces in progress,
    /// and whole pieces not started. O(`Now` pieces × blocks per piece).
    pub fn urgent_room(&self, peer: PeerKey, peer_has: &Bitfield, share: usize) -> usize {
        let started: usize = self
            .active
            .range(active_floor(Priority::Now)..)
            .take_while(|k| k.tier == Reverse(Priority::Now))
            .filter(|k| peer_has.get(k.piece))
            .map(|k| {
                let part = &self.partials[&k.piece];
                if part.parole && part.owner.is_some_and(|o| o != peer) {
                    return 0;
                }
                (part.missing as usize).min(share.saturating_sub(part.in_flight_at(peer)))
            })
            .sum();
        let fresh: usize = [&self.free, &self.unseen]
            .into_iter()
            .flat_map(|set| set.range(free_floor(Priority::Now)..).take_while(|k| k.tier == Reverse(Priority::Now)))
            .filter(|k| peer_has.get(k.piece))
            .map(|k| (self.lengths.blocks_in_piece(k.piece) as usize).min(share))
            .sum();
        started + fresh
    }

    /// Whether `peer_has` includes a wanted piece that is not started: with room in the
    /// budget, a pick for this peer would start a piece. O(free pieces) at worst.
    pub fn can_start(&self, peer_has: &Bitfield) -> bool {
        (peer_has.is_full() && self.free_available()) || self.free.iter().any(|k| peer_has.get(k.piece))
    }

    /// Pieces in progress with no block in flight, each with its count of received blocks.
    /// O(blocks of the pieces in progress).
    pub fn idle_pieces(&self) -> impl Iterator<Item = (PieceIndex, u32)> + '_ {
        self.active.iter().filter_map(|k| {
            let part = &self.partials[&k.piece];
            let idle = !part.blocks.iter().any(|b| matches!(b, Block::Requested(_)));
            idle.then_some((k.piece, part.received))
        })
    }

    /// Gives up a piece in progress with no block in flight: it is `Free` again and its
    /// received blocks are forgotten (late copies of them are then `NotRequested`). Returns
    /// whether it was abandoned.
    pub fn abandon(&mut self, piece: PieceIndex) -> bool {
        if self.state.get(piece.as_usize()) != Some(&State::InProgress)
            || self.partials[&piece].blocks.iter().any(|b| matches!(b, Block::Requested(_)))
        {
            return false;
        }
        self.active_remove(piece);
        self.drop_partial(piece);
        self.state[piece.as_usize()] = State::Free;
        self.index_insert(piece);
        true
    }

    /// Whether `piece` failed its check and has not been verified since.
    #[cfg(test)]
    pub fn on_parole(&self, piece: PieceIndex) -> bool {
        self.parole.contains(&piece)
    }

    /// The peer each block of a buffered piece came from, in block order (empty for a piece
    /// that is not buffered). Call before [`Self::piece_checked`] to attribute the bytes.
    pub fn block_senders(&self, piece: PieceIndex) -> Vec<PeerKey> {
        if self.state.get(piece.as_usize()) != Some(&State::Buffered) {
            return Vec::new();
        }
        self.partials[&piece]
            .blocks
            .iter()
            .map(|b| match b {
                Block::Received(p) => *p,
                _ => unreachable!("picker: buffered piece with a block not received"),
            })
            .collect()
    }

    /// Result of checking a complete piece. On failure the piece starts over, on parole, and
    /// the peers that contributed blocks are returned (each once, sorted). For a piece that is not
    /// buffered, success is [`Self::mark_have`] and failure does nothing.
    pub fn piece_checked(&mut self, piece: PieceIndex, ok: bool) -> Vec<PeerKey> {
        if self.state.get(piece.as_usize()) != Some(&State::Buffered) {
            if ok {
                self.mark_have(piece);
            }
            return Vec::new();
        }
        if ok {
            self.mark_have(piece);
            return Vec::new();
        }
        let peers = self.partials[&piece].contributors();
        self.drop_partial(piece);
        self.state[piece.as_usize()] = State::Free;
        self.parole.insert(piece);
        self.index_insert(piece);
        peers
    }

    /// Pieces started and not yet checked (in progress or fully buffered).
    pub fn pieces_in_flight(&self) -> usize {
        self.partials.len()
    }

    pub fn in_endgame(&self) -> bool {
        self.endgame_allowed && self.missing_total == 0 && !self.active.is_empty() && !self.free_available()
    }

    /// Every piece not `Skip` is verified.
    pub fn is_complete(&self) -> bool {
        self.wanted_left == 0
    }

    // ---- internals ----

    fn check_len(&self, bitfield: &Bitfield) {
        assert_eq!(bitfield.len(), self.lengths.num_pieces(), "picker: bitfield of the wrong length");
    }

    /// Some wanted Free piece is had by at least one peer.
    fn free_available(&self) -> bool {
        !self.free.is_empty() || (self.seeds > 0 && !self.unseen.is_empty())
    }

    fn free_key(&self, piece: PieceIndex) -> FreeKey {
        let i = piece.as_usize();
        FreeKey {
            tier: Reverse(self.priority[i]),
            deadline: deadline_key(self.deadline(piece)),
            avail: self.avail[i],
            tiebreak: tiebreak(self.seed, piece),
            piece,
        }
    }

    fn active_key(&self, piece: PieceIndex) -> ActiveKey {
        ActiveKey {
            tier: Reverse(self.priority[piece.as_usize()]),
            deadline: deadline_key(self.deadline(piece)),
            piece,
        }
    }

    fn indexed(&self, piece: PieceIndex) -> bool {
        let i = piece.as_usize();
        self.state[i] == State::Free && self.priority[i] != Priority::Skip
    }

    fn index_remove(&mut self, piece: PieceIndex) {
        if self.indexed(piece) {
            let key = self.free_key(piece);
            let set = if key.avail == 0 { &mut self.unseen } else { &mut self.free };
            assert!(set.remove(&key), "picker: {piece:?} missing from the free index");
        }
    }

    fn index_insert(&mut self, piece: PieceIndex) {
        if self.indexed(piece) {
            let key = self.free_key(piece);
            let set = if key.avail == 0 { &mut self.unseen } else { &mut self.free };
            set.insert(key);
        }
    }

    fn active_remove(&mut self, piece: PieceIndex) {
        if self.state[piece.as_usize()] == State::InProgress {
            let key = self.active_key(piece);
            assert!(self.active.remove(&key), "picker: {piece:?} missing from the active set");
        }
    }

    fn active_insert(&mut self, piece: PieceIndex) {
        if self.state[piece.as_usize()] == State::InProgress {
            self.active.insert(self.active_key(piece));
        }
    }

    /// Applies a change to what the keys of `piece` are made of, keeping both sets in step.
    fn rekey(&mut self, piece: PieceIndex, change: impl FnOnce(&mut Self)) {
        self.index_remove(piece);
        self.active_remove(piece);
        change(self);
        self.index_insert(piece);
        self.active_insert(piece);
    }

    fn change_avail(&mut self, piece: PieceIndex, f: impl FnOnce(u32) -> Option<u32>) {
        let i = piece.as_usize();
        let new = f(self.avail[i]).expect("picker: availability underflow (a peer removed twice or never added)");
        self.index_remove(piece);
        self.avail[i] = new;
        self.index_insert(piece);
    }

    fn drop_partial(&mut self, piece: PieceIndex) {
        let part = self.partials.remove(&piece).expect("picker: started piece without blocks");
        self.missing_total -= u64::from(part.missing);
        self.spare.push(part.blocks);
    }

    /// Index of `block` in its started piece, if it is exactly one of that piece's blocks.
    fn started_block(&self, block: BlockRef) -> Option<usize> {
        match self.state.get(block.piece.as_usize()) {
            Some(State::InProgress | State::Buffered) => {}
            _ => return None,
        }
        (self.lengths.block(block.piece, block.index()) == Some(block)).then_some(block.index().get() as usize)
    }

    /// Hands out the missing blocks of the pieces of `tier` in progress.
    #[allow(clippy::too_many_arguments)]
    fn pick_in_progress(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        tier: Priority,
        room: &mut usize,
        limit: usize,
        avoid: &dyn Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let Self { active, partials, missing_total, lengths, .. } = self;
        for key in active.range(active_floor(tier)..).take_while(|k| k.tier == Reverse(tier)) {
            if *room == 0 {
                return;
            }
            if !peer_has.get(key.piece) {
                continue;
            }
            let part = partials.get_mut(&key.piece).expect("picker: started piece without blocks");
            let mut r =
                if limit == usize::MAX { *room } else { (*room).min(limit.saturating_sub(part.in_flight_at(peer))) };
            let handed = request_missing(lengths, key.piece, part, peer, &mut r, avoid, out);
            *room -= handed as usize;
            *missing_total -= handed;
        }
    }

    /// Starts new pieces of `tier` in index order. Walking the index costs one step per piece
    /// the peer lacks, scanning the peer's bitfield one step per piece it has; the walk gives
    /// up after as many steps as the peer has pieces and the scan takes over, so a pick costs
    /// about twice the cheaper of the two (per tier with free pieces).
    #[allow(clippy::too_many_arguments)]
    fn pick_new(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        tier: Priority,
        room: &mut usize,
        limit: usize,
        new_pieces: &mut u32,
        out: &mut Vec<BlockRef>,
    ) {
        let mut steps = (peer_has.count_ones() as usize).max(MIN_WALK);
        let mut after = None;
        while *room > 0 && *new_pieces > 0 {
            match self.next_free(peer_has, tier, after, &mut steps) {
                Walk::Found(key) => {
                    after = Some(key);
                    self.start_piece(key.piece, peer, room, limit, out);
                    *new_pieces -= 1;
                }
                Walk::End => return,
                Walk::GaveUp => break,
            }
        }
        if *room == 0 || *new_pieces == 0 {
            return;
        }
        // Every indexed piece of the tier the peer has sorts after `after`: the walk started the
        // others.
        let mut candidates = std::mem::take(&mut self.scratch);
        candidates.clear();
        candidates.extend(
            ones(peer_has)
                .filter(|&p| self.indexed(p) && self.priority[p.as_usize()] == tier && self.avail[p.as_usize()] > 0)
                .map(|p| self.free_key(p)),
        );
        // Each started piece takes at least one block of room.
        let wanted = (*new_pieces as usize).min(*room);
        if candidates.len() > wanted {
            candidates.select_nth_unstable(wanted);
            candidates.truncate(wanted);
        }
        candidates.sort_unstable();
        for key in &candidates {
            if *room == 0 {
                break;
            }
            self.start_piece(key.piece, peer, room, limit, out);
            *new_pieces -= 1;
        }
        self.scratch = candidates;
    }

    /// The first wanted Free piece of `tier` after `after` in index order that the peer has,
    /// unless more than `steps` pieces the peer lacks come first.
    fn next_free(&self, peer_has: &Bitfield, tier: Priority, after: Option<FreeKey>, steps: &mut usize) -> Walk {
        let bounds = (after.map_or(Bound::Included(free_floor(tier)), Bound::Excluded), Bound::Unbounded);
        let mut shared = None;
        for key in self.free.range(bounds).take_while(|k| k.tier == Reverse(tier)) {
            if peer_has.get(key.piece) {
                shared = Some(*key);
                break;
            }
            if *steps == 0 {
                return Walk::GaveUp;
            }
            *steps -= 1;
        }
        // Only a seed has pieces no counted peer has; walking them for anyone else is waste.
        let seed_only = if peer_has.is_full() {
            self.unseen.range(bounds).next().copied().filter(|k| k.tier == Reverse(tier))
        } else {
            None
        };
        match (shared, seed_only) {
            (Some(a), Some(b)) => Walk::Found(a.min(b)),
            (Some(k), None) | (None, Some(k)) => Walk::Found(k),
            (None, None) => Walk::End,
        }
    }

    fn start_piece(
        &mut self,
        piece: PieceIndex,
        peer: PeerKey,
        room: &mut usize,
        limit: usize,
        out: &mut Vec<BlockRef>,
    ) {
        self.index_remove(piece);
        self.state[piece.as_usize()] = State::InProgress;
        self.active_insert(piece);
        let n = self.lengths.blocks_in_piece(piece);
        let mut blocks = self.spare.pop().unwrap_or_default();
        blocks.clear();
        blocks.resize(n as usize, Block::Missing);
        let parole = self.parole.contains(&piece);
        self.partials.insert(piece, Partial { blocks, missing: n, received: 0, parole, owner: None });
        self.missing_total += u64::from(n);
        let part = self.partials.get_mut(&piece).expect("picker: piece just started");
        let mut r = (*room).min(limit);
        let handed = request_missing(&self.lengths, piece, part, peer, &mut r, &|_| false, out);
        *room -= handed as usize;
        self.missing_total -= handed;
    }

    /// Blocks of `Now` pieces in flight at one other peer only, for `peer`, which has room
    /// left after every missing `Now` block it could take: at most `limit` of each piece in
    /// flight at it. A peer that bursts (a capped libtorrent sends on its limiter's ticks) can
    /// hold a piece's last blocks a whole tick after the rest arrived, while another has
    /// quota to spare; whichever copy comes first is kept and the other cancelled.
    fn pick_now_duplicates(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        room: &mut usize,
        limit: usize,
        avoid: &dyn Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let Self { active, partials, lengths, .. } = self;
        for key in active.range(active_floor(Priority::Now)..).take_while(|k| k.tier == Reverse(Priority::Now)) {
            if !peer_has.get(key.piece) {
                continue;
            }
            let part = partials.get_mut(&key.piece).expect("picker: started piece without blocks");
            if part.parole {
                continue;
            }
            let allowed = limit.saturating_sub(part.in_flight_at(peer));
            *room -= request_again(lengths, key.piece, part, peer, 1, (*room).min(allowed), avoid, out);
            if *room == 0 {
                return;
            }
        }
    }

    fn pick_endgame(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        room: &mut usize,
        avoid: &dyn Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let Self { active, partials, lengths, .. } = self;
        for requesters in 1..MAX_REQUESTERS {
            for key in active.iter() {
                if !peer_has.get(key.piece) {
                    continue;
                }
                let part = partials.get_mut(&key.piece).expect("picker: started piece without blocks");
                *room -= request_again(lengths, key.piece, part, peer, requesters, *room, avoid, out);
                if *room == 0 {
                    return;
                }
            }
        }
    }
}

fn block_ref(lengths: &Lengths, piece: PieceIndex, i: usize) -> BlockRef {
    lengths.block(piece, BlockIndex::new_unchecked(i as u32)).expect("picker: block index inside its piece")
}

/// Adds `peer` as a requester of `part`'s blocks in flight at exactly `requesters` other peers
/// (endgame, `Now` blocks doubled), in order, at most `max` of them and none `avoid` excludes;
/// returns how many.
#[allow(clippy::too_many_arguments)]
fn request_again(
    lengths: &Lengths,
    piece: PieceIndex,
    part: &mut Partial,
    peer: PeerKey,
    requesters: usize,
    max: usize,
    avoid: &dyn Fn(BlockRef) -> bool,
    out: &mut Vec<BlockRef>,
) -> usize {
    let mut added = 0;
    for (i, b) in part.blocks.iter_mut().enumerate() {
        if added == max {
            break;
        }
        if let Block::Requested(rs) = b
            && rs.len() == requesters
            && !rs.contains(peer)
        {
            let block = block_ref(lengths, piece, i);
            if avoid(block) {
                continue;
            }
            rs.push(peer);
            out.push(block);
            added += 1;
        }
    }
    added
}

/// Hands the `Missing` blocks of `part` that are not to be avoided to `peer`, in order, while
/// there is room; returns how many. A piece on parole goes only to its owner, and the first
/// peer handed a block of it becomes the owner.
fn request_missing(
    lengths: &Lengths,
    piece: PieceIndex,
    part: &mut Partial,
    peer: PeerKey,
    room: &mut usize,
    avoid: &dyn Fn(BlockRef) -> bool,
    out: &mut Vec<BlockRef>,
) -> u64 {
    let mut handed = 0;
    if part.missing == 0 || *room == 0 || (part.parole && part.owner.is_some_and(|o| o != peer)) {
        return handed;
    }
    for (i, b) in part.blocks.iter_mut().enumerate() {
        if *room == 0 || part.missing == 0 {
            break;
        }
        if *b != Block::Missing {
            continue;
        }
        let block = block_ref(lengths, piece, i);
        if avoid(block) {
            continue;
        }
        *b = Block::Requested(Requesters::one(peer));
        part.missing -= 1;
        *room -= 1;
        handed += 1;
        out.push(block);
        if part.parole {
            part.owner = Some(peer);
        }
    }
    handed
}
