use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sluice_core::{BLOCK_SIZE, Bitfield, BlockRef, Lengths, PieceIndex, Timestamp};

use super::{Block, BlockOutcome, MAX_REQUESTERS, Picker, Priority, Requesters, State};
use crate::PeerKey;

fn p(i: u32) -> PieceIndex {
    PieceIndex::new_unchecked(i)
}

/// `pieces` pieces of `blocks` blocks each; the very last block is short.
fn lengths(pieces: u32, blocks: u32) -> Lengths {
    let piece_len = u64::from(blocks * BLOCK_SIZE);
    let total = piece_len * u64::from(pieces) - 100;
    Lengths::new(total, piece_len, u64::from(pieces)).unwrap()
}

fn bitfield(n: u32, has: impl Fn(u32) -> bool) -> Bitfield {
    let mut b = Bitfield::new(n);
    for i in (0..n).filter(|&i| has(i)) {
        b.set(p(i));
    }
    b
}

const TIERS: [Priority; 6] =
    [Priority::Skip, Priority::Normal, Priority::High, Priority::Readahead, Priority::Next, Priority::Now];

/// A picker driven like the engine would, with an independent model of what is in flight.
struct Sim {
    picker: Picker,
    lengths: Lengths,
    peers: Vec<Bitfield>,
    seed_counted: Vec<bool>,
    inflight: BTreeMap<BlockRef, Vec<PeerKey>>,
    received: BTreeMap<BlockRef, PeerKey>,
    /// Pieces the last pick started, in order.
    started: Vec<PieceIndex>,
    /// Pieces that failed and were not verified since, and the peer fresh blocks of each went to.
    parole: BTreeSet<PieceIndex>,
    holder: BTreeMap<PieceIndex, PeerKey>,
}

impl Sim {
    fn new(lengths: Lengths, seed: u64, peers: Vec<Bitfield>) -> Self {
        let mut picker = Picker::new(lengths, seed);
        let seed_counted = peers.iter().map(Bitfield::is_full).collect();
        for b in &peers {
            picker.peer_has_bitfield(b);
        }
        Self {
            picker,
            lengths,
            peers,
            seed_counted,
            inflight: BTreeMap::new(),
            received: BTreeMap::new(),
            started: vec![],
            parole: BTreeSet::new(),
            holder: BTreeMap::new(),
        }
    }

    fn piece_received(&self, piece: PieceIndex) -> bool {
        self.lengths.blocks(piece).all(|b| self.received.contains_key(&b))
    }

    /// Picks for `peer` and checks every rule a single pick must obey; returns the blocks.
    fn pick(&mut self, peer: usize, max: usize, budget: u32) -> Vec<BlockRef> {
        let key = PeerKey(peer as u64);
        let started_before: BTreeSet<PieceIndex> = self.picker.partials.keys().copied().collect();
        let mut left = budget;
        let mut out = vec![BlockRef { piece: p(0), offset: 0, len: 0 }];
        self.picker.pick(key, &self.peers[peer], max, &mut left, &mut out);
        let out = out.split_off(1);
        assert!(out.len() <= max, "more blocks than asked for");
        let endgame = self.picker.in_endgame();
        if !endgame {
            // Tier by tier, highest first; within a tier, pieces in progress before new ones.
            let rank = |b: &BlockRef| (Reverse(self.picker.priority(b.piece)), !started_before.contains(&b.piece));
            for w in out.windows(2) {
                assert!(rank(&w[0]) <= rank(&w[1]), "{:?} picked before {:?}", w[0], w[1]);
            }
        }
        self.started.clear();
        for b in &out {
            assert!(self.peers[peer].get(b.piece), "picked {b:?} which the peer lacks");
            assert!(!self.picker.have().get(b.piece), "picked {b:?} which we have");
            assert!(!self.received.contains_key(b), "picked {b:?} which was received");
            if !started_before.contains(&b.piece) {
                assert_ne!(self.picker.priority(b.piece), Priority::Skip, "started Skip piece {:?}", b.piece);
                if !self.started.contains(&b.piece) {
                    self.started.push(b.piece);
                }
            }
            let rs = self.inflight.entry(*b).or_default();
            assert!(!rs.contains(&key), "{b:?} requested twice from {key:?}");
            if !endgame {
                assert!(rs.is_empty(), "{b:?} handed out twice outside endgame");
            }
            if rs.is_empty() && self.parole.contains(&b.piece) {
                let holder = *self.holder.entry(b.piece).or_insert(key);
                assert_eq!(holder, key, "{b:?} of a piece on parole handed to a second peer outside endgame");
            }
            assert!(rs.len() < MAX_REQUESTERS, "{b:?} given to too many peers");
            rs.push(key);
        }
        assert_eq!(self.started.len() as u32, budget - left, "budget spent is not the number of pieces started");
        out
    }

    fn receive(&mut self, block: BlockRef, from: PeerKey) {
        let expected = match self.inflight.remove(&block) {
            Some(rs) => {
                self.received.insert(block, from);
                BlockOutcome::Accepted {
                    piece_complete: self.piece_received(block.piece),
                    cancel: rs.into_iter().filter(|&r| r != from).collect(),
                }
            }
            None if self.received.contains_key(&block) => BlockOutcome::Duplicate,
            None => BlockOutcome::NotRequested,
        };
        assert_eq!(self.picker.block_received(block, from), expected, "receiving {block:?} from {from:?}");
    }

    fn drop_request(&mut self, block: BlockRef, peer: PeerKey) {
        if let Some(rs) = self.inflight.get_mut(&block) {
            rs.retain(|&r| r != peer);
            if rs.is_empty() {
                self.inflight.remove(&block);
            }
        }
        if self.holder.get(&block.piece) == Some(&peer)
            && !self.inflight.iter().any(|(b, rs)| b.piece == block.piece && rs.contains(&peer))
        {
            self.holder.remove(&block.piece);
        }
        self.picker.request_dropped(block, peer);
    }

    /// The peer chokes us: its requests are dropped and it owns nothing any more.
    fn stop(&mut self, peer: usize) {
        let key = PeerKey(peer as u64);
        let mine: Vec<BlockRef> = self.inflight.iter().filter(|(_, rs)| rs.contains(&key)).map(|(b, _)| *b).collect();
        for b in mine {
            self.drop_request(b, key);
        }
        self.holder.retain(|_, h| *h != key);
        self.picker.peer_stopped(key);
    }

    fn check(&mut self, piece: PieceIndex, ok: bool) {
        let contributors: BTreeSet<PeerKey> =
            self.lengths.blocks(piece).filter_map(|b| self.received.get(&b).copied()).collect();
        let expected = if ok { vec![] } else { contributors.into_iter().collect() };
        let senders: Vec<PeerKey> = self.lengths.blocks(piece).map(|b| self.received[&b]).collect();
        assert_eq!(self.picker.block_senders(piece), senders, "senders of {piece:?}");
        for b in self.lengths.blocks(piece) {
            self.received.remove(&b);
        }
        assert_eq!(self.picker.piece_checked(piece, ok), expected, "checking {piece:?}");
        assert_eq!(self.picker.have().get(piece), ok);
        self.holder.remove(&piece);
        if ok {
            self.parole.remove(&piece);
        } else {
            self.parole.insert(piece);
        }
        assert_eq!(self.picker.on_parole(piece), !ok);
    }

    fn buffered(&self) -> Vec<PieceIndex> {
        self.picker.partials.keys().copied().filter(|&q| self.picker.state[q.as_usize()] == State::Buffered).collect()
    }

    fn peer_gets(&mut self, peer: usize, piece: PieceIndex) {
        if self.peers[peer].set(piece) {
            self.picker.peer_has_piece(piece);
            if self.peers[peer].is_full() && !self.seed_counted[peer] {
                self.picker.peer_became_seed();
                self.seed_counted[peer] = true;
            }
        }
    }

    /// The peer disconnects (its requests are dropped) and connects again.
    fn reconnect(&mut self, peer: usize) {
        self.stop(peer);
        self.picker.peer_lost_bitfield(&self.peers[peer]);
        self.picker.peer_has_bitfield(&self.peers[peer]);
        self.seed_counted[peer] = self.peers[peer].is_full();
    }

    /// The picker's block states agree with the model, and its own invariants hold.
    fn assert_consistent(&self) {
        self.picker.check_invariants();
        assert_eq!(self.picker.parole, self.parole, "pieces on parole");
        for (piece, part) in &self.picker.partials {
            assert_eq!(part.owner, self.holder.get(piece).copied(), "owner of {piece:?}");
            for (b, state) in self.lengths.blocks(*piece).zip(&part.blocks) {
                match state {
                    Block::Missing => {
                        assert!(!self.inflight.contains_key(&b) && !self.received.contains_key(&b), "{b:?}")
                    }
                    Block::Requested(rs) => assert_eq!(Some(rs.as_slice()), self.inflight.get(&b).map(Vec::as_slice)),
                    Block::Received(from) => assert_eq!(Some(from), self.received.get(&b)),
                }
            }
        }
        for b in self.inflight.keys().chain(self.received.keys()) {
            assert!(self.picker.partials.contains_key(&b.piece), "model has {b:?} of a piece not started");
        }
    }
}

fn peers_strategy(n: u32) -> impl Strategy<Value = Vec<Bitfield>> {
    prop::collection::vec((0u32..=4, any::<u64>()), 1..6).prop_map(move |specs| {
        specs
            .into_iter()
            .map(|(density, salt)| {
                // density 4 is a seed; otherwise each piece is had with probability density/4.
                bitfield(n, |i| density == 4 || (super::tiebreak(salt, p(i)) % 4) < u64::from(density))
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Op {
    Pick { peer: usize, max: usize, budget: u32 },
    Receive(usize),
    Drop(usize),
    Rogue { peer: usize, piece: u32, block: u32 },
    Check { pick: usize, ok: bool },
    Have { peer: usize, piece: u32 },
    Priority { start: u32, len: u32, tier: usize },
    Deadline { piece: u32, at: Option<u64> },
    Reconnect(usize),
    Choke(usize),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..8, 0usize..12, 0u32..3).prop_map(|(peer, max, budget)| Op::Pick { peer, max, budget }),
        4 => any::<usize>().prop_map(Op::Receive),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => (0usize..8, any::<u32>(), 0u32..5).prop_map(|(peer, piece, block)| Op::Rogue { peer, piece, block }),
        2 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(pick, ok)| Op::Check { pick, ok }),
        1 => (0usize..8, any::<u32>()).prop_map(|(peer, piece)| Op::Have { peer, piece }),
        1 => (any::<u32>(), 0u32..6, 0usize..6).prop_map(|(start, len, tier)| Op::Priority { start, len, tier }),
        1 => (any::<u32>(), prop::option::of(0u64..4)).prop_map(|(piece, at)| Op::Deadline { piece, at }),
        1 => (0usize..8).prop_map(Op::Reconnect),
        1 => (0usize..8).prop_map(Op::Choke),
    ]
}

fn run_ops(sim: &mut Sim, ops: &[Op]) {
    let n = sim.lengths.num_pieces();
    let npeers = sim.peers.len();
    for op in ops {
        match *op {
            Op::Pick { peer, max, budget } => {
                sim.pick(peer % npeers, max, budget);
            }
            Op::Receive(i) | Op::Drop(i) => {
                let pairs: Vec<(BlockRef, PeerKey)> =
                    sim.inflight.iter().flat_map(|(b, rs)| rs.iter().map(move |r| (*b, *r))).collect();
                if let Some(&(b, peer)) = pairs.get(i % pairs.len().max(1)) {
                    if matches!(op, Op::Receive(_)) { sim.receive(b, peer) } else { sim.drop_request(b, peer) }
                }
            }
            Op::Rogue { peer, piece, block } => {
                let piece = p(piece % n);
                if let Some(b) = sim.lengths.block(piece, sluice_core::BlockIndex::new_unchecked(block)) {
                    sim.receive(b, PeerKey(peer as u64));
                }
            }
            Op::Check { pick, ok } => {
                let buffered = sim.buffered();
                if !buffered.is_empty() {
                    sim.check(buffered[pick % buffered.len()], ok);
                }
            }
            Op::Have { peer, piece } => sim.peer_gets(peer % npeers, p(piece % n)),
            Op::Priority { start, len, tier } => {
                let start = start % n;
                sim.picker.set_priority(start..start + len, TIERS[tier]);
            }
            Op::Deadline { piece, at } => {
                sim.picker.set_deadline(p(piece % n), at.map(Timestamp::from_micros));
            }
            Op::Reconnect(peer) => sim.reconnect(peer % npeers),
            Op::Choke(peer) => sim.stop(peer % npeers),
        }
        sim.assert_consistent();
    }
}

/// Drives the simulation to the end: every peer picks, everything in flight arrives, every
/// buffered piece passes. Returns the number of rounds.
fn run_to_completion(sim: &mut Sim, max: usize, budget: u32) -> usize {
    let mut rounds = 0;
    while !sim.picker.is_complete() {
        rounds += 1;
        assert!(rounds < 10_000, "no progress: {:?}", sim.picker);
        for peer in 0..sim.peers.len() {
            sim.pick(peer, max, budget);
        }
        let pairs: Vec<(BlockRef, PeerKey)> = sim.inflight.iter().map(|(b, rs)| (*b, rs[rs.len() - 1])).collect();
        for (b, from) in pairs {
            sim.receive(b, from);
        }
        for piece in sim.buffered() {
            sim.check(piece, true);
        }
    }
    rounds
}

/// Pieces a pick may start, in the order it must start them (brute force over all pieces).
fn reference_order(picker: &Picker, has: &Bitfield) -> Vec<PieceIndex> {
    let mut keys: Vec<_> = (0..picker.lengths.num_pieces())
        .map(p)
        .filter(|&q| picker.indexed(q) && has.get(q) && (has.is_full() || picker.avail[q.as_usize()] > 0))
        .map(|q| picker.free_key(q))
        .collect();
    keys.sort();
    keys.into_iter().map(|k| k.piece).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_never_break_a_rule_or_hand_a_block_out_twice_outside_endgame(
        n in 1u32..24,
        blocks in 1u32..5,
        seed in any::<u64>(),
        peers in peers_strategy(24),
        ops in prop::collection::vec(op_strategy(), 1..200),
    ) {
        let peers = peers.into_iter().map(|b| bitfield(n, |i| b.get(p(i)))).collect();
        let mut sim = Sim::new(lengths(n, blocks), seed, peers);
        sim.assert_consistent();
        run_ops(&mut sim, &ops);
    }

    #[test]
    fn never_picks_a_piece_we_have_the_peer_lacks_or_skip(
        n in 1u32..40,
        seed in any::<u64>(),
        peers in peers_strategy(40),
        have in prop::collection::vec(any::<bool>(), 40),
        skip in prop::collection::vec(any::<bool>(), 40),
    ) {
        let peers = peers.into_iter().map(|b| bitfield(n, |i| b.get(p(i)))).collect();
        let mut sim = Sim::new(lengths(n, 2), seed, peers);
        let mut skip = skip;
        for i in 0..n {
            skip[i as usize] |= !sim.peers.iter().any(|b| b.get(p(i)));
            if have[i as usize] { sim.picker.mark_have(p(i)); }
            if skip[i as usize] { sim.picker.set_priority(i..i + 1, Priority::Skip); }
        }
        // `Sim::pick` asserts had, lacking and Skip pieces are never picked.
        run_to_completion(&mut sim, 3, 2);
        for i in 0..n {
            prop_assert_eq!(sim.picker.have().get(p(i)), have[i as usize] || !skip[i as usize]);
        }
    }

    #[test]
    fn strictly_higher_tiers_are_started_first(
        n in 1u32..64,
        seed in any::<u64>(),
        peers in peers_strategy(64),
        tiers in prop::collection::vec(0usize..6, 64),
        retiers in prop::collection::vec(0usize..6, 64),
        budget in 1u32..6,
        max in 1usize..40,
    ) {
        let peers: Vec<Bitfield> = peers.into_iter().map(|b| bitfield(n, |i| b.get(p(i)))).collect();
        let mut sim = Sim::new(lengths(n, 3), seed, peers);
        for i in 0..n {
            sim.picker.set_priority(i..i + 1, TIERS[tiers[i as usize]]);
        }
        // A first round starts pieces (some left unfinished), then every tier changes: the
        // second round meets pieces in progress of every tier, which must not get ahead of
        // new pieces of a higher tier (`Sim::pick` checks the order of each pick).
        for peer in 0..sim.peers.len() {
            let out = sim.pick(peer, max.min(2), budget);
            for b in out.into_iter().step_by(2) {
                sim.receive(b, PeerKey(peer as u64));
            }
        }
        for i in 0..n {
            sim.picker.set_priority(i..i + 1, TIERS[retiers[i as usize]]);
        }
        for peer in 0..sim.peers.len() {
            sim.pick(peer, max, budget);
            let started = sim.started.clone();
            for w in started.windows(2) {
                prop_assert!(sim.picker.priority(w[0]) >= sim.picker.priority(w[1]), "{:?} started before {:?}", w[0], w[1]);
            }
            let best_left = reference_order(&sim.picker, &sim.peers[peer]).first().map(|&q| sim.picker.priority(q));
            for s in started {
                prop_assert!(best_left.is_none_or(|t| t <= sim.picker.priority(s)), "{:?} started while a higher tier was pickable", s);
            }
            sim.assert_consistent();
        }
    }

    #[test]
    fn new_pieces_follow_index_order_on_dense_and_sparse_peers(
        n in 1u32..300,
        seed in any::<u64>(),
        peers in peers_strategy(300),
        sparse_peer in prop::collection::btree_set(0u32..300, 0..6),
        tiers in prop::collection::vec(0usize..6, 300),
        deadlines in prop::collection::vec(prop::option::weighted(0.1, 0u64..5), 300),
        budget in 1u32..8,
    ) {
        let mut peers: Vec<Bitfield> = peers.into_iter().map(|b| bitfield(n, |i| b.get(p(i)))).collect();
        peers.push(bitfield(n, |i| sparse_peer.contains(&i)));
        let mut sim = Sim::new(lengths(n, 1), seed, peers);
        for i in 0..n {
            sim.picker.set_priority(i..i + 1, TIERS[tiers[i as usize]]);
            sim.picker.set_deadline(p(i), deadlines[i as usize].map(Timestamp::from_micros));
        }
        for peer in (0..sim.peers.len()).rev() {
            let expected: Vec<PieceIndex> =
                reference_order(&sim.picker, &sim.peers[peer]).into_iter().take(budget as usize).collect();
            sim.pick(peer, usize::MAX, budget);
            prop_assert_eq!(&sim.started, &expected);
            sim.assert_consistent();
        }
    }

    #[test]
    fn every_available_piece_is_eventually_picked(
        n in 1u32..64,
        blocks in 1u32..4,
        seed in any::<u64>(),
        peers in peers_strategy(64),
        max in 1usize..10,
        budget in 1u32..4,
    ) {
        let peers: Vec<Bitfield> = peers.into_iter().map(|b| bitfield(n, |i| b.get(p(i)))).collect();
        let available: Vec<bool> = (0..n).map(|i| peers.iter().any(|b| b.get(p(i)))).collect();
        let mut sim = Sim::new(lengths(n, blocks), seed, peers);
        for i in (0..n).filter(|&i| !available[i as usize]) {
            sim.picker.set_priority(i..i + 1, Priority::Skip);
        }
        run_to_completion(&mut sim, max, budget);
        sim.assert_consistent();
        for i in 0..n {
            prop_assert_eq!(sim.picker.have().get(p(i)), available[i as usize]);
        }
        prop_assert_eq!(sim.picker.pieces_in_flight(), 0);
    }

    #[test]
    fn hash_failure_puts_the_piece_back_and_reports_each_contributor_once(
        blocks in 1u32..8,
        senders in prop::collection::vec(0u64..4, 8),
    ) {
        let l = lengths(1, blocks);
        let n_blocks = l.blocks_in_piece(p(0)) as usize;
        let mut picker = Picker::new(l, 7);
        let all = Bitfield::full(1);
        picker.peer_has_bitfield(&all);
        let mut budget = 1;
        for (i, &s) in senders.iter().take(n_blocks).enumerate() {
            let mut out = Vec::new();
            picker.pick(PeerKey(s), &all, 1, &mut budget, &mut out);
            prop_assert_eq!(out.len(), 1);
            let outcome = picker.block_received(out[0], PeerKey(s));
            prop_assert_eq!(outcome, BlockOutcome::Accepted { piece_complete: i + 1 == n_blocks, cancel: Requesters::default() });
        }
        prop_assert_eq!(picker.pieces_in_flight(), 1);
        let expected: Vec<PeerKey> =
            senders.iter().take(n_blocks).copied().collect::<BTreeSet<_>>().into_iter().map(PeerKey).collect();
        prop_assert_eq!(picker.piece_checked(p(0), false), expected);
        picker.check_invariants();
        prop_assert_eq!(picker.pieces_in_flight(), 0);
        prop_assert!(!picker.have().get(p(0)));
        let (mut out, mut budget) = (Vec::new(), 1);
        picker.pick(PeerKey(9), &all, usize::MAX, &mut budget, &mut out);
        prop_assert_eq!(out, l.blocks(p(0)).collect::<Vec<_>>());
        prop_assert_eq!(budget, 0);
    }

    #[test]
    fn rarest_piece_is_started_first(
        avail in prop::collection::btree_set(1u32..50, 2..20),
        seed in any::<u64>(),
    ) {
        // Piece i is had by `avail[i]` peers (in shuffled positions) plus the picking seed.
        let avail: Vec<u32> = avail.into_iter().collect();
        let n = avail.len() as u32;
        let mut picker = Picker::new(lengths(n, 1), seed);
        let order: Vec<u32> = {
            let mut o: Vec<u32> = (0..n).collect();
            o.sort_by_key(|&i| super::tiebreak(seed ^ 1, p(i)));
            o
        };
        for (i, &a) in order.iter().zip(&avail) {
            for _ in 0..a { picker.peer_has_piece(p(*i)); }
        }
        let all = Bitfield::full(n);
        picker.peer_has_bitfield(&all);
        let mut started = Vec::new();
        for _ in 0..n {
            let (mut out, mut budget) = (Vec::new(), 1);
            picker.pick(PeerKey(0), &all, 1, &mut budget, &mut out);
            started.push(out[0].piece.get());
            picker.block_received(out[0], PeerKey(0));
        }
        prop_assert_eq!(started, order);
        picker.check_invariants();
    }

    #[test]
    fn endgame_starts_only_at_the_end_allows_three_distinct_requesters_and_completes(
        n in 1u32..10,
        blocks in 1u32..4,
        seed in any::<u64>(),
        peers in peers_strategy(10),
        schedule in prop::collection::vec((0usize..8, 1usize..6, any::<usize>()), 1..300),
    ) {
        let peers: Vec<Bitfield> = peers.into_iter().map(|b| bitfield(n, |i| b.get(p(i)))).collect();
        let mut sim = Sim::new(lengths(n, blocks), seed, peers);
        for i in (0..n).filter(|&i| !sim.peers.iter().any(|b| b.get(p(i)))) {
            sim.picker.set_priority(i..i + 1, Priority::Skip);
        }
        for (peer, max, receive) in schedule {
            // Picks assert ≤ 3 distinct requesters per block and no duplicate outside endgame.
            sim.pick(peer % sim.peers.len(), max, 1);
            if sim.picker.in_endgame() {
                for i in 0..n {
                    let wanted = sim.picker.priority(p(i)) != Priority::Skip && !sim.picker.have().get(p(i));
                    prop_assert!(!wanted || sim.picker.state[i as usize] != State::Free, "endgame with {i} not started");
                }
                for part in sim.picker.partials.values() {
                    prop_assert!(part.blocks.iter().all(|b| *b != Block::Missing), "endgame with a missing block");
                }
            }
            if receive % 3 == 0 && !sim.inflight.is_empty() {
                let (b, rs) = sim.inflight.iter().nth(receive % sim.inflight.len()).map(|(b, rs)| (*b, rs.clone())).unwrap();
                sim.receive(b, rs[receive % rs.len()]);
                for q in sim.buffered() { sim.check(q, true); }
            }
            sim.assert_consistent();
        }
        run_to_completion(&mut sim, 4, 1);
        sim.assert_consistent();
    }
}

#[test]
fn ties_are_broken_by_the_seed_deterministically() {
    let order = |seed: u64| {
        let mut picker = Picker::new(lengths(64, 1), seed);
        let all = Bitfield::full(64);
        picker.peer_has_bitfield(&all);
        let (mut out, mut budget) = (Vec::new(), 64);
        picker.pick(PeerKey(1), &all, usize::MAX, &mut budget, &mut out);
        out.iter().map(|b| b.piece.get()).collect::<Vec<_>>()
    };
    assert_eq!(order(1), order(1));
    assert_ne!(order(1), order(2));
    let mut sorted = order(1);
    sorted.sort_unstable();
    assert_eq!(sorted, (0..64).collect::<Vec<_>>());
}

#[test]
fn endgame_shares_the_last_blocks_among_at_most_three_peers() {
    let l = lengths(1, 2);
    let mut picker = Picker::new(l, 3);
    let all = Bitfield::full(1);
    for _ in 0..5 {
        picker.peer_has_bitfield(&all);
    }
    let pick = |picker: &mut Picker, peer: u64| {
        let (mut out, mut budget) = (Vec::new(), 1);
        picker.pick(PeerKey(peer), &all, usize::MAX, &mut budget, &mut out);
        out
    };
    let blocks: Vec<BlockRef> = l.blocks(p(0)).collect();
    assert!(!picker.in_endgame());
    assert_eq!(pick(&mut picker, 0), blocks);
    assert!(picker.in_endgame());
    assert_eq!(pick(&mut picker, 0), vec![], "never the same peer twice");
    assert_eq!(pick(&mut picker, 1), blocks);
    assert_eq!(pick(&mut picker, 2), blocks);
    assert_eq!(pick(&mut picker, 3), vec![], "at most three requesters");
    picker.check_invariants();

    assert_eq!(
        picker.block_received(blocks[0], PeerKey(1)),
        BlockOutcome::Accepted { piece_complete: false, cancel: [PeerKey(0), PeerKey(2)].into_iter().collect() }
    );
    assert_eq!(picker.block_received(blocks[0], PeerKey(0)), BlockOutcome::Duplicate);
    // The block with fewer requesters goes first.
    picker.request_dropped(blocks[1], PeerKey(0));
    picker.request_dropped(blocks[1], PeerKey(2));
    assert_eq!(pick(&mut picker, 3), vec![blocks[1]]);
    assert_eq!(
        picker.block_received(blocks[1], PeerKey(3)),
        BlockOutcome::Accepted { piece_complete: true, cancel: [PeerKey(1)].into_iter().collect() }
    );
    assert!(!picker.in_endgame());
    assert_eq!(picker.piece_checked(p(0), true), vec![]);
    assert!(picker.is_complete());
    assert_eq!(picker.block_received(blocks[1], PeerKey(1)), BlockOutcome::NotRequested);
    picker.check_invariants();
}

#[test]
fn in_progress_pieces_come_first_within_their_tier_only_and_count_no_budget() {
    let l = lengths(4, 4);
    let mut picker = Picker::new(l, 0);
    let all = Bitfield::full(4);
    picker.peer_has_bitfield(&all);
    let pieces = |out: &[BlockRef]| out.iter().map(|b| b.piece).collect::<Vec<_>>();
    let (mut out, mut budget) = (Vec::new(), 1);
    picker.pick(PeerKey(1), &all, 1, &mut budget, &mut out);
    let first = out[0].piece;
    assert_eq!(budget, 0);
    // Same tier: the piece in progress goes on, no budget spent.
    let (mut out, mut budget) = (Vec::new(), 1);
    picker.pick(PeerKey(2), &all, 2, &mut budget, &mut out);
    assert_eq!(pieces(&out), vec![first, first]);
    assert_eq!(budget, 1);
    // A new piece of a higher tier comes before the piece in progress of a lower one.
    picker.set_priority(0..4, Priority::Now);
    picker.set_priority(first.get()..first.get() + 1, Priority::Normal);
    let (mut out, mut budget) = (Vec::new(), 1);
    picker.pick(PeerKey(3), &all, 8, &mut budget, &mut out);
    let new = out[0].piece;
    assert_ne!(new, first);
    assert_eq!(pieces(&out), vec![new, new, new, new, first]);
    assert_eq!(budget, 0);
    picker.check_invariants();
}

#[test]
fn skipping_a_started_piece_lets_it_finish() {
    let l = lengths(2, 2);
    let mut picker = Picker::new(l, 0);
    let all = Bitfield::full(2);
    picker.peer_has_bitfield(&all);
    let (mut out, mut budget) = (Vec::new(), 1);
    picker.pick(PeerKey(1), &all, 1, &mut budget, &mut out);
    let piece = out[0].piece;
    picker.set_priority(0..2, Priority::Skip);
    assert!(picker.is_complete());
    let (mut rest, mut budget) = (Vec::new(), 5);
    picker.pick(PeerKey(1), &all, 10, &mut budget, &mut rest);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].piece, piece);
    assert_eq!(budget, 5, "no Skip piece is started");
    for b in out.into_iter().chain(rest) {
        picker.block_received(b, PeerKey(1));
    }
    picker.piece_checked(piece, true);
    assert!(picker.have().get(piece));
    picker.check_invariants();
}

#[test]
fn seeds_are_counted_apart_and_promotion_keeps_counts() {
    let l = lengths(8, 1);
    let mut picker = Picker::new(l, 0);
    let half = bitfield(8, |i| i % 2 == 0);
    picker.peer_has_bitfield(&half);
    picker.peer_has_bitfield(&Bitfield::full(8));
    assert_eq!(picker.availability(p(0)), 2);
    assert_eq!(picker.availability(p(1)), 1);
    for i in (1..8).step_by(2) {
        picker.peer_has_piece(p(i));
    }
    picker.peer_became_seed();
    picker.check_invariants();
    assert_eq!(picker.seeds, 2);
    assert!((0..8).all(|i| picker.availability(p(i)) == 2));
    picker.peer_lost_bitfield(&Bitfield::full(8));
    picker.peer_lost_all();
    assert!((0..8).all(|i| picker.availability(p(i)) == 0));
    picker.check_invariants();
}

#[test]
fn large_swarm_downloads_in_reasonable_time() {
    let n = 4096;
    let peers: Vec<Bitfield> =
        (0..40u64)
            .map(|k| {
                if k % 10 == 0 {
                    Bitfield::full(n)
                } else {
                    bitfield(n, |i| super::tiebreak(k, p(i)).is_multiple_of(3))
                }
            })
            .collect();
    let mut sim = Sim::new(lengths(n, 4), 5, peers);
    sim.picker.set_priority(100..200, Priority::High);
    let rounds = run_to_completion(&mut sim, 16, 2);
    sim.assert_consistent();
    assert!(rounds < 200, "{rounds} rounds");
}

#[test]
fn a_failed_piece_goes_to_one_peer_until_it_lets_go() {
    let l = lengths(1, 4);
    let mut picker = Picker::new(l, 0);
    let all = Bitfield::full(1);
    for _ in 0..3 {
        picker.peer_has_bitfield(&all);
    }
    let pick = |picker: &mut Picker, peer: u64, max: usize| {
        let (mut out, mut budget) = (Vec::new(), 1);
        picker.pick(PeerKey(peer), &all, max, &mut budget, &mut out);
        out
    };
    let blocks: Vec<BlockRef> = l.blocks(p(0)).collect();
    // Two peers share the piece and it fails.
    assert_eq!(pick(&mut picker, 0, 2), blocks[..2]);
    assert_eq!(pick(&mut picker, 1, 2), blocks[2..]);
    for (i, b) in blocks.iter().enumerate() {
        picker.block_received(*b, PeerKey(i as u64 / 2));
    }
    let senders = [0, 0, 1, 1].map(PeerKey);
    assert_eq!(picker.block_senders(p(0)), senders);
    assert_eq!(picker.piece_checked(p(0), false), vec![PeerKey(0), PeerKey(1)]);
    assert!(picker.on_parole(p(0)));
    picker.check_invariants();

    // Peer 2 owns it now: nobody else gets its blocks, though only one is in flight.
    assert_eq!(pick(&mut picker, 2, 1), blocks[..1]);
    assert_eq!(pick(&mut picker, 0, 4), vec![]);
    assert!(!picker.in_endgame());
    picker.block_received(blocks[0], PeerKey(2));
    assert_eq!(pick(&mut picker, 1, 4), vec![], "delivering keeps the ownership");
    assert_eq!(pick(&mut picker, 2, 1), blocks[1..2]);
    // Its request times out: the piece is free for the next peer.
    picker.request_dropped(blocks[1], PeerKey(2));
    assert_eq!(pick(&mut picker, 1, 1), blocks[1..2]);
    assert_eq!(pick(&mut picker, 2, 4), vec![]);
    // Choked by its owner with nothing in flight: released too.
    picker.block_received(blocks[1], PeerKey(1));
    picker.peer_stopped(PeerKey(1));
    assert_eq!(pick(&mut picker, 0, 4), blocks[2..]);
    // Endgame: the last blocks are shared as usual.
    assert!(picker.in_endgame());
    assert_eq!(pick(&mut picker, 2, 4), blocks[2..]);
    picker.check_invariants();
    for b in &blocks[2..] {
        picker.block_received(*b, PeerKey(0));
    }
    assert_eq!(picker.piece_checked(p(0), true), vec![]);
    assert!(!picker.on_parole(p(0)));
    assert!(picker.is_complete());
    picker.check_invariants();
}

#[test]
fn avoided_blocks_are_skipped_and_make_no_parole_owner() {
    let l = lengths(1, 4);
    let mut picker = Picker::new(l, 0);
    let all = Bitfield::full(1);
    picker.peer_has_bitfield(&all);
    let (mut out, mut budget) = (Vec::new(), 1);
    picker.pick(PeerKey(1), &all, 4, &mut budget, &mut out);
    for &b in &out {
        assert!(matches!(picker.block_received(b, PeerKey(1)), BlockOutcome::Accepted { .. }));
    }
    picker.piece_checked(p(0), false);
    let blocks = out;
    // On parole now. Peer 9 takes a block and lets go of it.
    let (mut out, mut budget) = (Vec::new(), 1);
    picker.pick(PeerKey(9), &all, 1, &mut budget, &mut out);
    assert_eq!(out, vec![blocks[0]]);
    picker.request_dropped(blocks[0], PeerKey(9));
    picker.check_invariants();
    // Peer 2 avoids every block: it gets none and does not become the owner.
    let avoid_all = |_| true;
    let mut out = Vec::new();
    picker.pick_avoiding(PeerKey(2), &all, 4, &mut 0, &avoid_all, &mut out);
    assert!(out.is_empty());
    // Peer 3 avoids the first two: it gets the others and owns the piece.
    let avoid_two = |b: BlockRef| b == blocks[0] || b == blocks[1];
    picker.pick_avoiding(PeerKey(3), &all, 4, &mut 0, &avoid_two, &mut out);
    assert_eq!(out, blocks[2..].to_vec());
    let mut rest = Vec::new();
    picker.pick(PeerKey(4), &all, 4, &mut 0, &mut rest);
    assert!(rest.is_empty(), "the owner alone gets a piece on parole");
    picker.pick(PeerKey(3), &all, 4, &mut 0, &mut rest);
    assert_eq!(rest, blocks[..2].to_vec());
    picker.check_invariants();
}

#[test]
fn a_peer_done_with_its_share_of_a_now_piece_doubles_the_blocks_still_out_elsewhere() {
    let l = lengths(4, 8);
    let mut picker = Picker::new(l, 4);
    let all = Bitfield::full(4);
    for _ in 0..2 {
        picker.peer_has_bitfield(&all);
    }
    picker.set_priority(0..1, Priority::Now);
    picker.set_priority(1..2, Priority::Next);
    let pick = |picker: &mut Picker, peer: u64, max: usize| {
        let (mut out, mut budget) = (Vec::new(), 4);
        picker.pick_shared(PeerKey(peer), &all, max, &mut budget, &|_| false, 4, &mut out);
        out
    };
    let blocks: Vec<BlockRef> = l.blocks(p(0)).collect();
    // Each peer takes its share (4) of piece 0 first.
    assert_eq!(pick(&mut picker, 0, 4), blocks[..4]);
    assert_eq!(pick(&mut picker, 1, 4), blocks[4..]);
    let next: Vec<BlockRef> = l.blocks(p(1)).collect();
    // Peer 1 delivers; peer 0 still holds its four. Peer 1 doubles them before anything else
    // (the `Next` piece included).
    for &b in &blocks[4..] {
        assert!(matches!(picker.block_received(b, PeerKey(1)), BlockOutcome::Accepted { .. }));
    }
    let again = pick(&mut picker, 1, 6);
    assert_eq!(again[..4], blocks[..4]);
    assert_eq!(again[4..], next[..2], "then the `Next` piece");
    assert_eq!(pick(&mut picker, 1, 8).iter().filter(|b| b.piece == p(0)).count(), 0, "never past its share");
    // Whichever copy comes first is kept; the other requester is told to cancel.
    assert_eq!(
        picker.block_received(blocks[0], PeerKey(1)),
        BlockOutcome::Accepted { piece_complete: false, cancel: [PeerKey(0)].into_iter().collect() }
    );
    picker.check_invariants();
}
