//! Full consistency check of the picker's redundant state, for tests and the simulator.

use std::collections::BTreeSet;

use super::{Block, MAX_REQUESTERS, Picker, Priority, State};

impl Picker {
    /// Recomputes every derived structure from the per-piece state and panics with a clear
    /// message on the first disagreement. O(n log n); not for the hot path.
    pub fn check_invariants(&self) {
        let n = self.lengths.num_pieces() as usize;
        assert_eq!(self.state.len(), n, "picker: state vector length");
        assert_eq!(self.priority.len(), n, "picker: priority vector length");
        assert_eq!(self.avail.len(), n, "picker: availability vector length");
        assert!(self.deadlines.keys().all(|p| p.as_usize() < n), "picker: deadline set for a piece out of range");

        let mut free = BTreeSet::new();
        let mut unseen = BTreeSet::new();
        let mut active = BTreeSet::new();
        let mut started = 0;
        let mut wanted_left = 0;
        let mut missing_total = 0u64;
        for piece in self.lengths.pieces() {
            let i = piece.as_usize();
            let state = self.state[i];
            assert_eq!(
                self.have.get(piece),
                state == State::Have,
                "picker: have bitfield disagrees with the state of {piece:?}"
            );
            if state != State::Have && self.priority[i] != Priority::Skip {
                wanted_left += 1;
            }
            if self.indexed(piece) {
                let key = self.free_key(piece);
                if key.avail == 0 {
                    unseen.insert(key)
                } else {
                    free.insert(key)
                };
            }
            match state {
                State::Free | State::Have => {
                    assert!(
                        !self.partials.contains_key(&piece),
                        "picker: {state:?} piece {piece:?} still has block state"
                    );
                }
                State::InProgress | State::Buffered => {
                    started += 1;
                    let part = self
                        .partials
                        .get(&piece)
                        .unwrap_or_else(|| panic!("picker: {state:?} piece {piece:?} has no block state"));
                    assert_eq!(
                        part.blocks.len(),
                        self.lengths.blocks_in_piece(piece) as usize,
                        "picker: block count of {piece:?}"
                    );
                    let missing = part.blocks.iter().filter(|b| **b == Block::Missing).count();
                    let received = part.blocks.iter().filter(|b| matches!(b, Block::Received(_))).count();
                    assert_eq!(part.missing as usize, missing, "picker: missing count of {piece:?}");
                    assert_eq!(part.received as usize, received, "picker: received count of {piece:?}");
                    missing_total += missing as u64;
                    assert_eq!(
                        part.parole,
                        self.parole.contains(&piece),
                        "picker: {piece:?} started on parole disagrees with the parole set"
                    );
                    assert!(part.parole || part.owner.is_none(), "picker: {piece:?} not on parole has an owner");
                    for b in &part.blocks {
                        if let Block::Requested(rs) = b {
                            let peers = rs.as_slice();
                            assert!(
                                (1..=MAX_REQUESTERS).contains(&peers.len()),
                                "picker: block of {piece:?} requested by {} peers",
                                peers.len()
                            );
                            let distinct: BTreeSet<_> = peers.iter().collect();
                            assert_eq!(
                                distinct.len(),
                                peers.len(),
                                "picker: a block of {piece:?} is requested twice from one peer"
                            );
                        }
                    }
                    if state == State::Buffered {
                        assert!(part.is_complete(), "picker: buffered piece {piece:?} has blocks not received");
                    } else {
                        assert!(!part.is_complete(), "picker: piece {piece:?} has every block but is not buffered");
                        active.insert(self.active_key(piece));
                    }
                }
            }
        }
        assert!(
            self.parole.iter().all(|p| p.as_usize() < n && self.state[p.as_usize()] != State::Have),
            "picker: a verified piece is on parole"
        );
        assert_eq!(self.partials.len(), started, "picker: block state kept for pieces that are not started");
        assert!(
            self.free == free,
            "picker: free index disagrees with the pieces' state, tier, deadline or availability"
        );
        assert!(
            self.unseen == unseen,
            "picker: unseen index disagrees with the pieces' state, tier, deadline or availability"
        );
        assert!(self.active == active, "picker: in-progress set disagrees with the pieces' state, tier or deadline");
        assert_eq!(self.missing_total, missing_total, "picker: total of missing blocks");
        assert_eq!(self.wanted_left, wanted_left, "picker: count of wanted pieces not had");
    }
}
