//! Per-block bookkeeping of a started piece.

use crate::PeerKey;

/// Peers one block may be in flight at once (only ever more than one in endgame).
pub const MAX_REQUESTERS: usize = 3;

/// Distinct peers (at most [`MAX_REQUESTERS`]), inline (no allocation), in request order:
/// those a block is in flight at, or those to cancel it at.
#[derive(Clone, Copy, Debug)]
pub struct Requesters {
    peers: [PeerKey; MAX_REQUESTERS],
    len: u8,
}

impl Default for Requesters {
    fn default() -> Self {
        Self { peers: [PeerKey(0); MAX_REQUESTERS], len: 0 }
    }
}

impl PartialEq for Requesters {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Requesters {}

impl FromIterator<PeerKey> for Requesters {
    /// Panics past [`MAX_REQUESTERS`] peers or on a repeated one.
    fn from_iter<I: IntoIterator<Item = PeerKey>>(iter: I) -> Self {
        let mut rs = Self::default();
        for peer in iter {
            assert!(rs.len() < MAX_REQUESTERS && !rs.contains(peer), "picker: too many or repeated requesters");
            rs.push(peer);
        }
        rs
    }
}

impl Requesters {
    pub(super) fn one(peer: PeerKey) -> Self {
        Self { peers: [peer; MAX_REQUESTERS], len: 1 }
    }

    pub fn as_slice(&self) -> &[PeerKey] {
        &self.peers[..usize::from(self.len)]
    }

    pub(super) fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub(super) fn contains(&self, peer: PeerKey) -> bool {
        self.as_slice().contains(&peer)
    }

    /// Adds `peer`; the caller checked it is absent and there is room.
    pub(super) fn push(&mut self, peer: PeerKey) {
        debug_assert!(self.len() < MAX_REQUESTERS && !self.contains(peer));
        self.peers[self.len()] = peer;
        self.len += 1;
    }

    /// Removes `peer`; returns whether it was there.
    pub(super) fn remove(&mut self, peer: PeerKey) -> bool {
        let Some(i) = self.as_slice().iter().position(|&p| p == peer) else {
            return false;
        };
        let n = self.len();
        self.peers.copy_within(i + 1..n, i);
        self.len -= 1;
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Block {
    Missing,
    /// In flight at these peers (never empty).
    Requested(Requesters),
    /// Arrived from this peer (kept for hash-failure attribution).
    Received(PeerKey),
}

/// A piece that is in progress or buffered. `missing` and `received` count the blocks in
/// those states, so "anything left to request" and "complete" are O(1).
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) blocks: Vec<Block>,
    pub(super) missing: u32,
    pub(super) received: u32,
    /// Started while on parole (see the picker's rules).
    pub(super) parole: bool,
    /// Of a piece on parole: the one peer its missing blocks go to (outside endgame).
    pub(super) owner: Option<PeerKey>,
}

impl Partial {
    pub(super) fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }

    /// Blocks of this piece in flight at `peer`.
    pub(super) fn in_flight_at(&self, peer: PeerKey) -> usize {
        self.blocks.iter().filter(|b| matches!(b, Block::Requested(rs) if rs.contains(peer))).count()
    }

    /// Whether `peer` has any block of this piece in flight.
    pub(super) fn requested_from(&self, peer: PeerKey) -> bool {
        self.blocks.iter().any(|b| matches!(b, Block::Requested(rs) if rs.contains(peer)))
    }

    /// Distinct peers that sent blocks, sorted.
    pub(super) fn contributors(&self) -> Vec<PeerKey> {
        let mut peers: Vec<PeerKey> = self
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Received(p) => Some(*p),
                _ => None,
            })
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}
