//! Piece and block picker. CONTRACT STUB: signatures are fixed, bodies are being written.
//!
//! Order of preference: pieces already in progress (finish what is started, which keeps the
//! buffer budget moving), then by priority tier (higher first), then earliest deadline, then
//! rarest first, ties broken by a per-piece random key drawn from the seeded PRNG.

use std::ops::Range;

use sluice_core::{Bitfield, BlockRef, Lengths, PieceIndex, Timestamp};

use crate::PeerKey;

/// Priority tiers. `Skip` pieces are never requested. The streaming scheduler maps a reader's
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
    Accepted { piece_complete: bool, cancel: Vec<PeerKey> },
}

#[derive(Debug)]
pub struct Picker {
    _private: (),
}

#[allow(unused_variables)]
impl Picker {
    pub fn new(lengths: Lengths, rng_seed: u64) -> Self {
        unimplemented!()
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        unimplemented!()
    }

    /// Marks a piece verified (resume data, or after a successful check).
    pub fn mark_have(&mut self, piece: PieceIndex) {
        unimplemented!()
    }

    // ---- availability ----

    pub fn peer_has_piece(&mut self, piece: PieceIndex) {
        unimplemented!()
    }
    /// A peer's bitfield arrived (or HaveAll as a full bitfield).
    pub fn peer_has_bitfield(&mut self, bitfield: &Bitfield) {
        unimplemented!()
    }
    /// A peer with this bitfield left.
    pub fn peer_lost_bitfield(&mut self, bitfield: &Bitfield) {
        unimplemented!()
    }
    pub fn availability(&self, piece: PieceIndex) -> u32 {
        unimplemented!()
    }

    // ---- priorities and deadlines ----

    /// Cost proportional to the length of `pieces` (times log n).
    pub fn set_priority(&mut self, pieces: Range<u32>, priority: Priority) {
        unimplemented!()
    }
    pub fn priority(&self, piece: PieceIndex) -> Priority {
        unimplemented!()
    }
    pub fn set_deadline(&mut self, piece: PieceIndex, deadline: Option<Timestamp>) {
        unimplemented!()
    }

    // ---- requests ----

    /// Appends up to `max` blocks for `peer` (which has `peer_has`) to `out`. Starting a
    /// piece that is not yet in progress consumes one unit of `new_pieces`; none are started
    /// when it is zero. Outside endgame, no block is handed out while it is in flight
    /// elsewhere; in endgame a block may be in flight at up to a few peers, never twice at one.
    pub fn pick(&mut self, peer: PeerKey, peer_has: &Bitfield, max: usize, new_pieces: &mut u32, out: &mut Vec<BlockRef>) {
        unimplemented!()
    }

    /// A block arrived from `from`.
    pub fn block_received(&mut self, block: BlockRef, from: PeerKey) -> BlockOutcome {
        unimplemented!()
    }

    /// `peer` will not deliver `block` (timeout, reject, choke, disconnect): the block can be
    /// handed to someone else.
    pub fn request_dropped(&mut self, block: BlockRef, peer: PeerKey) {
        unimplemented!()
    }

    /// Result of checking a complete piece. On failure the piece starts over and the peers
    /// that contributed blocks are returned (each once).
    pub fn piece_checked(&mut self, piece: PieceIndex, ok: bool) -> Vec<PeerKey> {
        unimplemented!()
    }

    /// Pieces started and not yet checked (in progress or fully buffered).
    pub fn pieces_in_flight(&self) -> usize {
        unimplemented!()
    }

    pub fn in_endgame(&self) -> bool {
        unimplemented!()
    }

    /// Every piece not `Skip` is verified.
    pub fn is_complete(&self) -> bool {
        unimplemented!()
    }

    pub fn check_invariants(&self) {
        unimplemented!()
    }
}
