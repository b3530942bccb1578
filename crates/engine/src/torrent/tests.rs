//! Two or more engines wired back to back through an in-memory "network", with a test loop
//! playing the driver: bytes move instantly, storage is a content buffer, hashing is real.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};
use sluice_core::{Bitfield, InfoHash, Lengths, PeerId, PieceIndex, Timestamp};
use sluice_wire::{Handshake, Message};

use super::*;

const INFO_HASH: InfoHash = InfoHash([7; 20]);

fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut out = [0; 20];
    out.copy_from_slice(&Sha1::digest(data));
    out
}

fn config(id: u8) -> Config {
    Config { peer_id: PeerId::sluice([id; 12]), rng_seed: u64::from(id), ..Config::default() }
}

fn addr_of(node: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6881 + node as u16))
}

struct Node {
    t: Torrent,
    /// Verified content as this node's storage holds it.
    data: Vec<u8>,
    /// Blocks served by this node are corrupted in these pieces.
    corrupt: Vec<PieceIndex>,
    /// Never answer ReadBlock: a peer that accepts requests and sends nothing.
    mute: bool,
    /// Hold VerifyPiece answers instead of answering at once.
    withhold: bool,
    held: Vec<(PieceIndex, Vec<u8>)>,
    events: Vec<Event>,
    disconnects: Vec<(PeerKey, DisconnectReason)>,
}

struct Net {
    lengths: Lengths,
    hashes: Vec<[u8; 20]>,
    nodes: Vec<Node>,
    links: BTreeMap<(usize, PeerKey), (usize, PeerKey)>,
    now: Timestamp,
    /// Bytes delivered per step and direction at most (a crude link rate), `None` = all.
    chunk: Option<usize>,
    in_transit: VecDeque<(usize, PeerKey, Vec<u8>)>,
    /// Run `check_invariants` after every input.
    checks: bool,
}

impl Net {
    fn new(total: usize, piece_len: u64) -> (Self, Vec<u8>) {
        let body = content(total, 1);
        let n = (total as u64).div_ceil(piece_len);
        let lengths = Lengths::new(total as u64, piece_len, n).unwrap();
        let hashes = lengths
            .pieces()
            .map(|p| {
                let s = lengths.piece_start(p).0 as usize;
                sha1(&body[s..s + lengths.piece_len(p) as usize])
            })
            .collect();
        let net = Self {
            lengths,
            hashes,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            now: Timestamp::ZERO,
            chunk: None,
            in_transit: VecDeque::new(),
            checks: true,
        };
        (net, body)
    }

    fn add(&mut self, cfg: Config, full: Option<&[u8]>) -> usize {
        let n = self.lengths.num_pieces();
        let (have, data) = match full {
            Some(body) => (Bitfield::full(n), body.to_vec()),
            None => (Bitfield::new(n), vec![0; self.lengths.total_length() as usize]),
        };
        let t = Torrent::new(INFO_HASH, self.lengths, have, cfg, self.now);
        self.nodes.push(Node {
            t,
            data,
            corrupt: Vec::new(),
            mute: false,
            withhold: false,
            held: Vec::new(),
            events: Vec::new(),
            disconnects: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn input(&mut self, node: usize, input: Input<'_>) {
        let now = self.now;
        self.nodes[node].t.handle_input(input, now);
        if self.checks {
            self.nodes[node].t.check_invariants();
        }
    }

    /// Drains every node's outputs once, acting on them. Returns whether anything happened.
    fn drain(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.nodes.len() {
            while let Some(out) = self.nodes[i].t.poll_output() {
                any = true;
                self.act(i, out);
            }
        }
        any
    }

    fn act(&mut self, i: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Connect { peer, addr } => {
                let j = (addr.port() - 6881) as usize;
                let from = SocketAddr::from(([127, 0, 0, 2], 10_000 + i as u16));
                match self.nodes.get_mut(j).and_then(|n| n.t.accept(from, now)) {
                    Some(theirs) => {
                        self.links.insert((i, peer), (j, theirs));
                        self.links.insert((j, theirs), (i, peer));
                        self.input(i, Input::Connected { peer });
                    }
                    None => self.input(i, Input::Closed { peer }),
                }
            }
            Output::Transmit { peer, data } => {
                let n = data.len();
                if let Some(&(j, theirs)) = self.links.get(&(i, peer)) {
                    self.in_transit.push_back((j, theirs, data));
                }
                self.input(i, Input::Sent { peer, bytes: n });
            }
            Output::Disconnect { peer, reason } => {
                self.nodes[i].disconnects.push((peer, reason));
                if let Some((j, theirs)) = self.links.remove(&(i, peer)) {
                    self.links.remove(&(j, theirs));
                    self.input(j, Input::Closed { peer: theirs });
                }
            }
            Output::VerifyPiece { piece, data } => {
                if self.nodes[i].withhold {
                    self.nodes[i].held.push((piece, data));
                } else {
                    self.check(i, piece, data);
                }
            }
            Output::ReadBlock { .. } if self.nodes[i].mute => {}
            Output::ReadBlock { peer, block } => {
                let start = (self.lengths.piece_start(block.piece).0 + u64::from(block.offset)) as usize;
                let mut bytes = self.nodes[i].data[start..start + block.len as usize].to_vec();
                if self.nodes[i].corrupt.contains(&block.piece) {
                    bytes[0] ^= 0xff;
                }
                self.input(i, Input::BlockRead { peer, block, data: Some(&bytes) });
            }
            Output::Event(e) => self.nodes[i].events.push(e),
        }
    }

    fn check(&mut self, i: usize, piece: PieceIndex, data: Vec<u8>) {
        let ok = sha1(&data) == self.hashes[piece.as_usize()];
        if ok {
            let s = self.lengths.piece_start(piece).0 as usize;
            self.nodes[i].data[s..s + data.len()].copy_from_slice(&data);
        }
        self.input(i, Input::PieceChecked { piece, ok, buffer: data });
    }

    fn release_held(&mut self, i: usize) {
        for (piece, data) in std::mem::take(&mut self.nodes[i].held) {
            self.check(i, piece, data);
        }
    }

    /// One step: deliver bytes in transit, drain, advance time by 1 ms, fire due timers.
    fn step(&mut self) {
        let mut budget = self.chunk.unwrap_or(usize::MAX);
        while budget > 0
            && let Some((j, key, mut data)) = self.in_transit.pop_front()
        {
            if data.len() > budget {
                let rest = data.split_off(budget);
                self.in_transit.push_front((j, key, rest));
            }
            budget -= data.len();
            if self.links.contains_key(&(j, key)) {
                self.input(j, Input::Data { peer: key, bytes: &data });
            }
        }
        while self.drain() {}
        self.now = self.now + Duration::from_millis(1);
        for i in 0..self.nodes.len() {
            if self.nodes[i].t.poll_timeout().is_some_and(|t| t <= self.now) {
                let now = self.now;
                self.nodes[i].t.handle_timeout(now);
                self.nodes[i].t.check_invariants();
            }
        }
        while self.drain() {}
    }

    fn run_until(&mut self, max_steps: usize, mut done: impl FnMut(&Net) -> bool) -> usize {
        for step in 0..max_steps {
            if done(self) {
                return step;
            }
            self.step();
        }
        panic!("not done after {max_steps} steps");
    }
}

#[test]
fn leecher_completes_from_a_seeder() {
    let (mut net, body) = Net::new(1_000_000 + 1234, 65536);
    let seed = net.add(config(1), Some(&body));
    let leech = net.add(config(2), None);
    net.nodes[leech].t.add_peer(addr_of(seed), net.now);
    net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].data, body);
    let ev = &net.nodes[leech].events;
    assert!(ev.contains(&Event::Complete));
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::PieceVerified(_))).count(), 16);
    let stats = net.nodes[leech].t.stats();
    assert_eq!(stats.pieces_have, 16);
    assert_eq!(stats.bytes_wanted_left, 0);
    assert_eq!(stats.buffered_bytes, 0);
    assert!(stats.downloaded >= body.len() as u64);
    assert!(net.nodes[seed].t.stats().uploaded >= body.len() as u64);
    // Two seeds now: the leecher-turned-seed hangs up.
    net.run_until(100, |n| n.links.is_empty());
}

#[test]
fn three_leechers_share_and_finish() {
    let (mut net, body) = Net::new(3 << 20, 1 << 18);
    net.chunk = Some(256 * 1024);
    let seed = net.add(config(1), Some(&body));
    let leechers: Vec<usize> = (2..5).map(|i| net.add(config(i), None)).collect();
    for &l in &leechers {
        net.nodes[l].t.add_peer(addr_of(seed), net.now);
        for &m in &leechers {
            if m != l {
                net.nodes[l].t.add_peer(addr_of(m), net.now);
            }
        }
    }
    net.run_until(100_000, |n| leechers.iter().all(|&l| n.nodes[l].t.is_complete()));
    for &l in &leechers {
        assert_eq!(net.nodes[l].data, body);
    }
}

#[test]
fn backpressure_keeps_buffers_within_budget() {
    let (mut net, body) = Net::new(2 << 20, 1 << 16);
    let seed = net.add(config(1), Some(&body));
    let budget = 4 * 65536;
    let leech = net.add(Config { buffer_budget: budget, ..config(2) }, None);
    net.nodes[leech].withhold = true;
    net.nodes[leech].t.add_peer(addr_of(seed), net.now);
    for _ in 0..500 {
        net.step();
        assert!(net.nodes[leech].t.stats().buffered_bytes <= budget);
    }
    // Stalled on the full budget, not finished.
    assert_eq!(net.nodes[leech].held.len(), 4);
    assert!(!net.nodes[leech].t.is_complete());
    net.nodes[leech].withhold = false;
    net.release_held(leech);
    net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].data, body);
    assert!(net.nodes[leech].t.stats().buffered_bytes_peak <= budget);
}

#[test]
fn piece_larger_than_budget_still_downloads() {
    let (mut net, body) = Net::new(1 << 20, 1 << 18);
    let seed = net.add(config(1), Some(&body));
    let leech = net.add(Config { buffer_budget: 100_000, ..config(2) }, None);
    net.nodes[leech].t.add_peer(addr_of(seed), net.now);
    net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].t.stats().buffered_bytes_peak, 1 << 18);
}

#[test]
fn corrupt_seeder_is_banned() {
    let (mut net, body) = Net::new(1 << 20, 1 << 16);
    let bad = net.add(config(1), Some(&body));
    net.nodes[bad].corrupt = vec![PieceIndex::new_unchecked(3)];
    let leech = net.add(config(2), None);
    net.nodes[leech].t.add_peer(addr_of(bad), net.now);
    net.run_until(10_000, |n| n.nodes[leech].events.iter().any(|e| matches!(e, Event::PeerBanned { .. })));
    let ev = &net.nodes[leech].events;
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::HashFailed { .. })).count(), 2);
    assert!(net.nodes[leech].disconnects.iter().any(|(_, r)| *r == DisconnectReason::Banned));
    // Never dialed again.
    let before = net.links.len();
    for _ in 0..2000 {
        net.step();
    }
    assert_eq!(net.links.len(), before);
    assert_eq!(net.nodes[leech].t.stats().pieces_have, 15);
}

#[test]
fn only_the_liar_is_banned_when_pieces_are_shared_with_honest_peers() {
    let (mut net, body) = Net::new(2 << 20, 1 << 18);
    net.chunk = Some(64 * 1024);
    let honest: Vec<usize> = (1..3).map(|i| net.add(config(i), Some(&body))).collect();
    let liar = net.add(config(3), Some(&body));
    net.nodes[liar].corrupt = net.lengths.pieces().filter(|p| p.get() % 2 == 0).collect();
    // Pipelines shorter than a piece: every piece is shared by several peers.
    let cfg = Config { min_pipeline: 2, initial_pipeline: 4, max_pipeline: 4, ..config(4) };
    let leech = net.add(cfg, None);
    for &s in honest.iter().chain([&liar]) {
        net.nodes[leech].t.add_peer(addr_of(s), net.now);
    }
    net.run_until(100_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].data, body);
    let ev = &net.nodes[leech].events;
    let shared_failures = ev.iter().filter(|e| matches!(e, Event::HashFailed { peers, .. } if peers.len() > 1)).count();
    assert!(shared_failures > 0, "no failed piece had several contributors: {ev:?}");
    let bans: Vec<SocketAddr> = ev
        .iter()
        .filter_map(|e| match e {
            Event::PeerBanned { addr } => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(bans, vec![addr_of(liar)]);
}

#[test]
fn a_liar_that_left_is_banned_once_its_blocks_are_proven_bad() {
    let (mut net, body) = Net::new(1 << 20, 1 << 18);
    net.chunk = Some(64 * 1024);
    let honest = net.add(config(1), Some(&body));
    let liar = net.add(config(2), Some(&body));
    net.nodes[liar].corrupt = net.lengths.pieces().collect();
    let cfg = Config { min_pipeline: 2, initial_pipeline: 4, max_pipeline: 4, ..config(3) };
    let leech = net.add(cfg, None);
    net.nodes[leech].t.add_peer(addr_of(honest), net.now);
    net.nodes[leech].t.add_peer(addr_of(liar), net.now);
    net.run_until(10_000, |n| n.nodes[leech].events.iter().any(|e| matches!(e, Event::HashFailed { .. })));
    assert!(!net.nodes[leech].events.iter().any(|e| matches!(e, Event::PeerBanned { .. })));
    // The liar hangs up before anything is proven.
    let (&(_, key), &(_, theirs)) = net.links.iter().find(|(a, b)| a.0 == leech && b.0 == liar).unwrap();
    net.links.remove(&(leech, key));
    net.links.remove(&(liar, theirs));
    net.input(leech, Input::Closed { peer: key });
    net.input(liar, Input::Closed { peer: theirs });
    net.run_until(4_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].data, body);
    let bans: Vec<&Event> = net.nodes[leech].events.iter().filter(|e| matches!(e, Event::PeerBanned { .. })).collect();
    assert_eq!(bans, vec![&Event::PeerBanned { addr: addr_of(liar) }]);
    assert!(!net.nodes[leech].disconnects.iter().any(|(_, r)| *r == DisconnectReason::Banned), "it was not connected");
}

#[test]
fn stalled_peer_times_out_and_blocks_move_elsewhere() {
    let (mut net, body) = Net::new(4 << 20, 1 << 16);
    let mute = net.add(config(1), Some(&body));
    let good = net.add(config(2), Some(&body));
    net.nodes[mute].mute = true;
    let cfg = Config {
        request_timeout: Duration::from_secs(2),
        snub_timeout: Duration::from_secs(3),
        // Full with the mute peer's pieces: only timeouts free its blocks.
        buffer_budget: 4 << 16,
        ..config(3)
    };
    let leech = net.add(cfg, None);
    net.nodes[leech].t.add_peer(addr_of(mute), net.now);
    net.run_until(100, |n| n.links.len() == 2);
    // The mute seed got the first requests; the good one joins later.
    net.nodes[leech].t.add_peer(addr_of(good), net.now);
    let steps = net.run_until(20_000, |n| n.nodes[leech].t.is_complete());
    assert!(steps >= 1900, "{steps}");
    assert_eq!(net.nodes[leech].data, body);
    assert!(net.nodes[good].t.stats().uploaded >= body.len() as u64);
}

#[test]
fn rate_limit_slows_the_download() {
    let (mut net, body) = Net::new(1 << 20, 1 << 16);
    let seed = net.add(Config { upload_rate_limit: Some(1 << 20), ..config(1) }, Some(&body));
    let leech = net.add(config(2), None);
    net.nodes[leech].t.add_peer(addr_of(seed), net.now);
    let steps = net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    // 1 MiB at 1 MiB/s after a half-second burst: at least ~0.4 s of 1 ms steps.
    assert!(steps >= 400, "{steps}");
}

#[test]
fn a_download_cap_holds_the_download_until_lifted() {
    let (mut net, body) = Net::new(1 << 20, 1 << 16);
    let seed = net.add(config(1), Some(&body));
    let leech = net.add(config(2), None);
    let now = net.now;
    net.nodes[leech].t.cap_download(Some(0), now);
    net.nodes[leech].t.add_peer(addr_of(seed), now);
    for _ in 0..2_000 {
        net.step();
    }
    // The bucket's two blocks and one grant past its balance, then nothing.
    assert!(net.nodes[leech].t.stats().downloaded <= 3 * 16384, "{:?}", net.nodes[leech].t.stats());
    let now = net.now;
    net.nodes[leech].t.cap_download(None, now);
    net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].data, body);
}

#[test]
fn a_new_rate_limit_applies_at_once_and_lifting_it_restores_the_speed() {
    let (mut net, body) = Net::new(1 << 20, 1 << 16);
    let seed = net.add(config(1), Some(&body));
    let leech = net.add(config(2), None);
    let now = net.now;
    net.nodes[leech].t.add_peer(addr_of(seed), now);
    net.nodes[leech].t.set_rate_limits(Some(64 * 1024), None, now);
    for _ in 0..2_000 {
        net.step();
    }
    // Two seconds at 64 KiB/s, plus the bucket's half-second burst and one grant.
    let slow = net.nodes[leech].t.stats().downloaded;
    assert!(slow <= 2 * 64 * 1024 + 32 * 1024 + 3 * 16384, "{slow}");
    let now = net.now;
    net.nodes[leech].t.cap_download(Some(1 << 30), now);
    net.nodes[leech].t.set_rate_limits(None, None, now);
    let steps = net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    assert!(steps < 2_000, "the download did not speed up: {steps} steps");
    assert_eq!(net.nodes[leech].data, body);
    net.nodes[leech].t.check_invariants();
}

/// Two torrents drawing from one shared limit (a session's) download at its rate together,
/// not each; both progress; a new rate reaches both at once and lifting it lets both finish.
#[test]
fn torrents_sharing_a_limit_stay_under_it_together() {
    let (mut net, body) = Net::new(1 << 20, 1 << 16);
    let seed = net.add(config(1), Some(&body));
    let limit = SharedLimit::new(Some(128 * 1024), net.now);
    let shared = |c: Config| Config { shared_download_limit: Some(limit.clone()), ..c };
    let a = net.add(shared(config(2)), None);
    let b = net.add(shared(config(3)), None);
    let now = net.now;
    net.nodes[a].t.add_peer(addr_of(seed), now);
    net.nodes[b].t.add_peer(addr_of(seed), now);
    let got = |net: &Net, n: usize| net.nodes[n].t.stats().downloaded;
    for _ in 0..2_000 {
        net.step();
    }
    let (da, db) = (got(&net, a), got(&net, b));
    // Two seconds at 128 KiB/s, the half-second burst, and one grant past the balance each;
    // and no less than the two seconds.
    assert!(da + db <= 2 * 128 * 1024 + 64 * 1024 + 2 * 16 * 16384, "{da} + {db}");
    assert!(da + db >= 2 * 128 * 1024, "{da} + {db}");
    // Turns in random order: neither takes much more than the other.
    assert!(da.min(db) * 3 >= da + db, "unfair split: {da}, {db}");
    let now = net.now;
    limit.set_rate(Some(32 * 1024), now);
    net.nodes[a].t.shared_limits_changed(now);
    net.nodes[b].t.shared_limits_changed(now);
    let (da, db) = (got(&net, a), got(&net, b));
    for i in 0..2_000 {
        net.step();
        if i % 100 == 0 {
            net.nodes[a].t.check_invariants();
            net.nodes[b].t.check_invariants();
        }
    }
    let more = got(&net, a) - da + got(&net, b) - db;
    assert!(more <= 2 * 32 * 1024 + 2 * 16 * 16384, "{more} at 32 KiB/s");
    let now = net.now;
    limit.set_rate(None, now);
    net.nodes[a].t.shared_limits_changed(now);
    net.nodes[b].t.shared_limits_changed(now);
    let steps = net.run_until(10_000, |n| n.nodes[a].t.is_complete() && n.nodes[b].t.is_complete());
    assert!(steps < 2_000, "not sped up: {steps} steps");
    assert_eq!(net.nodes[a].data, body);
    assert_eq!(net.nodes[b].data, body);
    net.nodes[a].t.check_invariants();
}

/// A leecher connected to a scripted peer: returns the torrent, the peer's key, and the
/// bytes the torrent sent so far.
fn scripted_peer() -> (Torrent, PeerKey, Vec<u8>) {
    let body = content(1 << 20, 3);
    let lengths = Lengths::new(body.len() as u64, 1 << 16, 16).unwrap();
    let mut t = Torrent::new(INFO_HASH, lengths, Bitfield::new(16), config(1), Timestamp::ZERO);
    t.add_peer(addr_of(0), Timestamp::ZERO);
    let Some(Output::Connect { peer, .. }) = t.poll_output() else { panic!("no connect") };
    t.handle_input(Input::Connected { peer }, Timestamp::ZERO);
    let mut sent = Vec::new();
    while let Some(out) = t.poll_output() {
        if let Output::Transmit { data, .. } = out {
            sent.extend(data);
        }
    }
    assert_eq!(sent.len(), Handshake::LEN);
    let mut theirs = Vec::new();
    Handshake::new(INFO_HASH, PeerId([9; 20])).encode(&mut theirs);
    t.handle_input(Input::Data { peer, bytes: &theirs }, Timestamp::ZERO);
    t.check_invariants();
    (t, peer, sent)
}

fn disconnect_reason(t: &mut Torrent, key: PeerKey) -> Option<DisconnectReason> {
    let mut reason = None;
    let mut event = false;
    while let Some(out) = t.poll_output() {
        match out {
            Output::Disconnect { peer, reason: r } if peer == key => reason = Some(r),
            Output::Event(Event::PeerDisconnected { peer, .. }) if peer == key => event = true,
            _ => {}
        }
    }
    assert_eq!(reason.is_some(), event);
    reason
}

/// A few unrequested blocks are tolerated (real clients answer cancelled requests); a peer
/// that keeps sending them is disconnected, and none of their data is kept.
#[test]
fn unrequested_pieces_disconnect_past_a_small_allowance() {
    let (mut t, peer, _) = scripted_peer();
    let mut bytes = Vec::new();
    Message::Bitfield(&[0xff, 0xff]).encode(&mut bytes);
    t.handle_input(Input::Data { peer, bytes: &bytes }, Timestamp::ZERO);
    for i in 0..=super::requests::UNREQUESTED_MAX {
        assert_eq!(disconnect_reason(&mut t, peer), None, "cut off after {i} unrequested blocks");
        let mut bytes = Vec::new();
        Message::Piece { index: 0, begin: 0, data: &[0; 16384] }.encode(&mut bytes);
        t.handle_input(Input::Data { peer, bytes: &bytes }, Timestamp::ZERO);
        t.check_invariants();
    }
    assert!(matches!(disconnect_reason(&mut t, peer), Some(DisconnectReason::Protocol(_))));
    assert_eq!(t.stats().peers_connected, 0);
    assert_eq!(t.stats().downloaded, 0);
}

#[test]
fn bad_bitfield_disconnects() {
    let (mut t, peer, _) = scripted_peer();
    let mut bytes = Vec::new();
    Message::Bitfield(&[0xff, 0xff, 0xff]).encode(&mut bytes);
    t.handle_input(Input::Data { peer, bytes: &bytes }, Timestamp::ZERO);
    t.check_invariants();
    assert!(matches!(disconnect_reason(&mut t, peer), Some(DisconnectReason::Protocol(_))));
}

#[test]
fn wrong_info_hash_and_garbage_disconnect() {
    let body = content(1000, 3);
    let lengths = Lengths::new(body.len() as u64, 1 << 16, 1).unwrap();
    let mut t = Torrent::new(INFO_HASH, lengths, Bitfield::new(1), config(1), Timestamp::ZERO);
    let a = t.accept(addr_of(1), Timestamp::ZERO).unwrap();
    let mut hs = Vec::new();
    Handshake::new(InfoHash([1; 20]), PeerId([9; 20])).encode(&mut hs);
    t.handle_input(Input::Data { peer: a, bytes: &hs }, Timestamp::ZERO);
    assert_eq!(disconnect_reason(&mut t, a), Some(DisconnectReason::WrongInfoHash));
    let b = t.accept(addr_of(2), Timestamp::ZERO).unwrap();
    assert_ne!(a, b);
    t.handle_input(Input::Data { peer: b, bytes: &[0xff; 100] }, Timestamp::ZERO);
    assert!(matches!(disconnect_reason(&mut t, b), Some(DisconnectReason::Protocol(_))));
    t.check_invariants();
}

#[test]
fn interested_peer_is_unchoked_at_once_and_idle_peer_times_out() {
    let body = content(1 << 16, 3);
    let lengths = Lengths::new(body.len() as u64, 1 << 14, 4).unwrap();
    let mut t = Torrent::new(INFO_HASH, lengths, Bitfield::full(4), config(1), Timestamp::ZERO);
    let peer = t.accept(addr_of(1), Timestamp::ZERO).unwrap();
    let mut bytes = Vec::new();
    Handshake::new(INFO_HASH, PeerId([9; 20])).encode(&mut bytes);
    Message::Interested.encode(&mut bytes);
    Message::Request { index: 1, begin: 0, length: 16384 }.encode(&mut bytes);
    t.handle_input(Input::Data { peer, bytes: &bytes }, Timestamp::ZERO);
    let mut read = None;
    while let Some(out) = t.poll_output() {
        if let Output::ReadBlock { block, .. } = out {
            read = Some(block);
        }
    }
    // Unchoked before its request was parsed: the request is served.
    assert_eq!(read.map(|b| b.piece.get()), Some(1));
    t.check_invariants();
    let mut keepalives = 0;
    let now = loop {
        let now = t.poll_timeout().unwrap();
        assert!(now <= Timestamp::ZERO + Duration::from_secs(121));
        t.handle_timeout(now);
        t.check_invariants();
        let mut gone = false;
        while let Some(out) = t.poll_output() {
            match out {
                Output::Transmit { data, .. } if data == [0, 0, 0, 0] => keepalives += 1,
                Output::Disconnect { reason, .. } => {
                    assert_eq!(reason, DisconnectReason::Timeout);
                    gone = true;
                }
                _ => {}
            }
        }
        if gone {
            break now;
        }
    };
    assert!(keepalives >= 2);
    assert!(now >= Timestamp::ZERO + Duration::from_secs(120));
}

/// Engine cost per byte: `cargo test --release -p sluice-engine throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let total = 128 << 20;
    let (mut net, body) = Net::new(total, 1 << 20);
    let seed = net.add(config(1), Some(&body));
    let leech = net.add(config(2), None);
    net.nodes[leech].t.add_peer(addr_of(seed), net.now);
    net.checks = false;
    #[allow(clippy::disallowed_methods)] // measuring the test itself, not engine time
    let start = std::time::Instant::now();
    let steps = net.run_until(1_000_000, |n| n.nodes[leech].t.is_complete());
    let secs = start.elapsed().as_secs_f64();
    println!("{} MiB in {secs:.2}s = {:.0} MiB/s, {steps} steps", total >> 20, (total >> 20) as f64 / secs);
}

fn arb_message() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let idx = 0u32..20;
    let begin = prop_oneof![Just(0u32), Just(16384), Just(32768), Just(49152), 0u32..70000];
    let len = prop_oneof![Just(16384u32), Just(1u32), 0u32..200_000];
    prop_oneof![
        Just(Message::KeepAlive.clone()),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        idx.clone().prop_map(Message::Have),
        (idx.clone(), begin.clone(), len.clone()).prop_map(|(index, begin, length)| Message::Request {
            index,
            begin,
            length
        }),
        (idx.clone(), begin.clone(), len.clone()).prop_map(|(index, begin, length)| Message::Cancel {
            index,
            begin,
            length
        }),
        (idx.clone(), begin.clone(), len).prop_map(|(index, begin, length)| Message::Reject { index, begin, length }),
    ]
    .prop_map(|m| {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    })
    .boxed()
    .prop_union(
        (idx, begin, any::<bool>())
            .prop_map(|(index, begin, short)| {
                let data = vec![1u8; if short { 100 } else { 16384 }];
                let mut out = Vec::new();
                Message::Piece { index, begin, data: &data }.encode(&mut out);
                out
            })
            .boxed(),
    )
    .or(proptest::collection::vec(any::<u8>(), 0..3)
        .prop_map(|b| {
            let mut out = Vec::new();
            Message::Bitfield(&b).encode(&mut out);
            out
        })
        .boxed())
    .or(proptest::collection::vec(any::<u8>(), 0..40).boxed())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(200))]
    /// Whatever a peer sends, the engine neither panics nor breaks an invariant.
    #[test]
    fn arbitrary_peer_input_is_survived(msgs in proptest::collection::vec(arb_message(), 1..40), seeding: bool) {
        let (mut t, peer, _) = scripted_peer();
        if seeding {
            t = Torrent::new(INFO_HASH, *t.lengths(), Bitfield::full(16), config(1), Timestamp::ZERO);
            let p = t.accept(addr_of(1), Timestamp::ZERO).unwrap();
            let mut hs = Vec::new();
            Handshake::new(INFO_HASH, PeerId([9; 20])).encode(&mut hs);
            t.handle_input(Input::Data { peer: p, bytes: &hs }, Timestamp::ZERO);
        }
        let peer = if seeding { PeerKey(0) } else { peer };
        let mut now = Timestamp::ZERO;
        for m in msgs {
            now = now + Duration::from_millis(300);
            t.handle_input(Input::Data { peer, bytes: &m }, now);
            t.check_invariants();
            while let Some(out) = t.poll_output() {
                if let Output::ReadBlock { peer, block } = out {
                    let data = vec![0u8; block.len as usize];
                    t.handle_input(Input::BlockRead { peer, block, data: Some(&data) }, now);
                    t.check_invariants();
                }
            }
            t.handle_timeout(now);
            t.check_invariants();
        }
    }
}

#[test]
fn a_forgotten_piece_is_fetched_again_even_from_a_seed_we_left() {
    let (mut net, body) = Net::new(1 << 20, 1 << 16);
    let seed = net.add(config(1), Some(&body));
    let leech = net.add(config(2), None);
    net.nodes[leech].t.add_peer(addr_of(seed), net.now);
    net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    net.run_until(100, |n| n.links.is_empty());
    let piece = PieceIndex::new_unchecked(3);
    let now = net.now;
    net.nodes[leech].data[3 << 16..4 << 16].fill(0);
    net.nodes[leech].t.forget_piece(piece, now);
    assert!(!net.nodes[leech].t.is_complete() && !net.nodes[leech].t.have().get(piece));
    assert_eq!(net.nodes[leech].t.stats().bytes_wanted_left, 1 << 16);
    net.run_until(10_000, |n| n.nodes[leech].t.is_complete());
    assert_eq!(net.nodes[leech].data, body);
    let verified = net.nodes[leech].events.iter().filter(|e| **e == Event::PieceVerified(piece)).count();
    assert_eq!(verified, 2);
}

/// Requests sent in the transmitted bytes (whole frames after the handshake).
fn requests_sent(t: &mut Torrent) -> usize {
    let mut sent = Vec::new();
    while let Some(out) = t.poll_output() {
        if let Output::Transmit { data, .. } = out {
            sent.extend(data);
        }
    }
    let (mut n, mut rest) = (0, &sent[..]);
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        n += usize::from(len > 0 && rest.get(4) == Some(&6));
        rest = &rest[(4 + len).min(rest.len())..];
    }
    n
}

/// Players reconnect to seek: for a while after the last reader closed, a peer that unchokes
/// us gets the short streaming pipeline, and the full one only later.
#[test]
fn pipelines_stay_short_for_a_while_after_the_last_reader() {
    let depth_after = |gap: Duration| {
        let (mut t, peer, _) = scripted_peer();
        let file = 0..t.lengths.total_length();
        let id = t.open_reader(file, 0, Timestamp::ZERO);
        t.close_reader(id, Timestamp::ZERO);
        requests_sent(&mut t);
        let mut bytes = Vec::new();
        Message::Bitfield(&[0xff, 0xff]).encode(&mut bytes);
        Message::Unchoke.encode(&mut bytes);
        t.handle_input(Input::Data { peer, bytes: &bytes }, Timestamp::ZERO + gap);
        t.check_invariants();
        requests_sent(&mut t)
    };
    let soon = depth_after(Duration::from_secs(10));
    let later = depth_after(Duration::from_secs(31));
    assert!(soon <= 16, "{soon} requests 10 s after the reader closed");
    assert_eq!(later, 64, "the whole initial pipeline once streaming is long over");
}
