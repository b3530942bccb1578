//! Who sent the bad block of a piece that failed its hash ("smart ban").
//!
//! A failed piece fetched from several peers says only that one of them lied, and banning
//! every contributor bans honest peers along with the liar. Instead the engine remembers a
//! digest of each block of a failed piece together with the address that sent it. The piece
//! is then fetched again from one peer at a time (parole, see the picker); once it verifies,
//! each remembered block is compared with the good one: a different digest proves that
//! address sent bad data, an equal one clears it for that block. Records are kept by address
//! rather than connection because the liar may have left meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use sha1::{Digest as _, Sha1};
use sluice_core::{PeerId, PieceIndex};

/// Failed pieces remembered at most; the oldest is forgotten first.
const SUSPECT_PIECES: usize = 64;

pub(super) type Digest = [u8; 20];

pub(super) fn digest(data: &[u8]) -> Digest {
    Sha1::digest(data).into()
}

/// A block of a failed piece as one address sent it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: Option<PeerId>,
    digest: Digest,
}

#[derive(Debug, Default)]
pub(super) struct Suspects {
    /// Per failed piece: (block index, sender) → what it sent.
    pieces: BTreeMap<PieceIndex, BTreeMap<(u32, SocketAddr), Sent>>,
    /// The keys of `pieces`, oldest first.
    order: VecDeque<PieceIndex>,
}

impl Suspects {
    /// Remembers that `addr` sent block `block` of the failed `piece` with this digest.
    /// Returns whether the same address sent different bytes for that block before: at most
    /// one of the two can be right, so it is proven to have sent bad data.
    pub(super) fn record(
        &mut self,
        piece: PieceIndex,
        block: u32,
        addr: SocketAddr,
        id: Option<PeerId>,
        digest: Digest,
    ) -> bool {
        if !self.pieces.contains_key(&piece) {
            if self.order.len() >= SUSPECT_PIECES
                && let Some(old) = self.order.pop_front()
            {
                self.pieces.remove(&old);
            }
            self.order.push_back(piece);
        }
        let blocks = self.pieces.entry(piece).or_default();
        match blocks.get(&(block, addr)) {
            Some(before) => before.digest != digest,
            None => {
                blocks.insert((block, addr), Sent { id, digest });
                false
            }
        }
    }

    /// `piece` verified and `good(block)` is the digest of each good block (`None` if not
    /// known): forgets the piece and returns the addresses that had sent a different block.
    pub(super) fn verdict(
        &mut self,
        piece: PieceIndex,
        mut good: impl FnMut(u32) -> Option<Digest>,
    ) -> Vec<(SocketAddr, Option<PeerId>)> {
        let Some(blocks) = self.pieces.remove(&piece) else {
            return Vec::new();
        };
        self.order.retain(|&p| p != piece);
        let mut guilty: Vec<(SocketAddr, Option<PeerId>)> = Vec::new();
        let mut last = None;
        let mut good_digest = None;
        for ((block, addr), sent) in blocks {
            if last != Some(block) {
                good_digest = good(block);
                last = Some(block);
            }
            if good_digest.is_some_and(|d| d != sent.digest) && !guilty.iter().any(|(a, _)| *a == addr) {
                guilty.push((addr, sent.id));
            }
        }
        guilty
    }

    pub(super) fn check_invariants(&self) {
        assert!(self.order.len() <= SUSPECT_PIECES, "more failed pieces remembered than the bound");
        assert_eq!(self.order.len(), self.pieces.len(), "failed pieces remembered twice or not in order");
        assert!(self.order.iter().all(|p| self.pieces.contains_key(p)), "failed pieces out of order");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i], 1000))
    }

    fn p(i: u32) -> PieceIndex {
        PieceIndex::new_unchecked(i)
    }

    #[test]
    fn a_different_block_convicts_and_an_equal_one_clears() {
        let mut s = Suspects::default();
        let good = digest(b"good");
        assert!(!s.record(p(1), 0, addr(1), None, good));
        assert!(!s.record(p(1), 1, addr(2), None, digest(b"bad")));
        assert!(!s.record(p(1), 2, addr(2), None, good));
        assert!(!s.record(p(1), 1, addr(2), None, digest(b"bad")), "the same bytes again prove nothing");
        assert!(s.record(p(1), 1, addr(2), None, digest(b"other")), "two versions of one block");
        assert_eq!(s.verdict(p(1), |_| Some(good)), vec![(addr(2), None)]);
        assert!(s.pieces.is_empty());
        s.check_invariants();
        assert_eq!(s.verdict(p(1), |_| Some(good)), vec![]);
    }

    #[test]
    fn the_oldest_piece_is_forgotten_past_the_bound() {
        let mut s = Suspects::default();
        let bad = digest(b"bad");
        for i in 0..=SUSPECT_PIECES as u32 {
            s.record(p(i), 0, addr(1), None, bad);
            s.record(p(i), 1, addr(1), None, bad);
        }
        assert_eq!(s.pieces.len(), SUSPECT_PIECES);
        s.check_invariants();
        assert_eq!(s.verdict(p(0), |_| Some([0; 20])), vec![]);
        assert_eq!(s.verdict(p(1), |_| None), vec![], "unknown good bytes convict nobody");
        assert_eq!(s.verdict(p(2), |_| Some([0; 20])), vec![(addr(1), None)]);
    }
}
