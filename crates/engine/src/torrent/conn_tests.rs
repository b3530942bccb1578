//! Dialling policy, driven by hand: backoff per failing address, preference for addresses that
//! delivered, and replacing an idle peer at the limit. Time comes only from the inputs.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{Bitfield, InfoHash, Lengths, PeerId, Timestamp};
use sluice_wire::{Handshake, Message};

use super::*;

const INFO_HASH: InfoHash = InfoHash([5; 20]);
const PIECE: u64 = 1 << 15;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 6881))
}

fn at(secs: u64) -> Timestamp {
    Timestamp::ZERO + Duration::from_secs(secs)
}

struct Harness {
    t: Torrent,
    connects: Vec<(Timestamp, SocketAddr, PeerKey)>,
    disconnects: Vec<(PeerKey, DisconnectReason)>,
    /// Blocks the engine asked of each peer: (index, begin, length).
    requests: BTreeMap<PeerKey, Vec<(u32, u32, u32)>>,
    /// What each peer reads of our bytes.
    decoders: BTreeMap<PeerKey, sluice_wire::Decoder>,
}

impl Harness {
    fn new(config: Config) -> Self {
        let lengths = Lengths::new(4 * PIECE, PIECE, 4).unwrap();
        let t = Torrent::new(INFO_HASH, lengths, Bitfield::new(4), config, Timestamp::ZERO);
        Self { t, connects: Vec::new(), disconnects: Vec::new(), requests: BTreeMap::new(), decoders: BTreeMap::new() }
    }

    fn drain(&mut self, now: Timestamp) {
        while let Some(out) = self.t.poll_output() {
            match out {
                Output::Connect { peer, addr } => self.connects.push((now, addr, peer)),
                Output::Disconnect { peer, reason } => self.disconnects.push((peer, reason)),
                Output::Transmit { peer, data } => {
                    let d = self.decoders.entry(peer).or_insert_with(|| sluice_wire::Decoder::new(1 << 20));
                    d.push(&data);
                    let _ = d.next_handshake();
                    while let Ok(Some(m)) = d.next_message() {
                        if let Message::Request { index, begin, length } = m {
                            self.requests.entry(peer).or_default().push((index, begin, length));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs timers up to `until`, one due time after another; stops early at a new dial if
    /// `stop_at_dial`.
    fn run(&mut self, until: Timestamp, stop_at_dial: bool) {
        let dials = self.connects.len();
        while let Some(t) = self.t.poll_timeout()
            && t <= until
            && !(stop_at_dial && self.connects.len() > dials)
        {
            self.t.handle_timeout(t);
            self.drain(t);
        }
    }

    fn run_until(&mut self, until: Timestamp) {
        self.run(until, false);
    }

    fn last_connect(&self) -> (Timestamp, SocketAddr, PeerKey) {
        *self.connects.last().expect("a dial")
    }

    /// Answers the dial of `peer` as a remote that has every piece and unchokes us.
    fn establish(&mut self, peer: PeerKey, id: u8, now: Timestamp) {
        self.t.handle_input(Input::Connected { peer }, now);
        let mut bytes = Vec::new();
        Handshake::new(INFO_HASH, PeerId([id; 20])).encode(&mut bytes);
        Message::HaveAll.encode(&mut bytes);
        Message::Unchoke.encode(&mut bytes);
        self.t.handle_input(Input::Data { peer, bytes: &bytes }, now);
        self.drain(now);
    }

    /// Sends the oldest block `peer` was asked for and has not sent.
    fn deliver(&mut self, peer: PeerKey, now: Timestamp) {
        let (index, begin, length) = self.requests.get_mut(&peer).expect("requests").remove(0);
        let mut bytes = Vec::new();
        Message::Piece { index, begin, data: &vec![0; length as usize] }.encode(&mut bytes);
        self.t.handle_input(Input::Data { peer, bytes: &bytes }, now);
        self.drain(now);
    }

    fn close(&mut self, peer: PeerKey, now: Timestamp) {
        self.t.handle_input(Input::Closed { peer }, now);
        self.drain(now);
    }
}

#[test]
fn a_failing_address_waits_twice_as_long_each_time_up_to_a_cap() {
    let mut h = Harness::new(Config::default());
    h.t.add_peer(addr(1), Timestamp::ZERO);
    h.drain(Timestamp::ZERO);
    let mut gaps = Vec::new();
    for _ in 0..10 {
        let (dialled, _, peer) = h.last_connect();
        h.close(peer, dialled);
        let before = h.connects.len();
        h.run(dialled + Duration::from_secs(3600), true);
        assert_eq!(h.connects.len(), before + 1, "dialled again");
        gaps.push(h.last_connect().0.saturating_since(dialled).as_secs());
    }
    assert_eq!(gaps, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    h.t.check_invariants();
}

#[test]
fn an_address_that_delivered_is_dialled_before_earlier_ones_that_never_did() {
    let config = Config { max_peers: 3, max_half_open: 1, ..Config::default() };
    let mut h = Harness::new(config);
    h.t.add_peer(addr(1), at(0));
    h.drain(at(0));
    let (_, _, good) = h.last_connect();
    h.establish(good, 1, at(0));
    h.deliver(good, at(1));
    // A dial that hangs holds the only half-open slot.
    h.t.add_peer(addr(2), at(1));
    h.drain(at(1));
    let (_, a2, hanging) = h.last_connect();
    assert_eq!(a2, addr(2));
    h.t.add_peer(addr(3), at(2));
    h.drain(at(2));
    h.close(good, at(3));
    // When the hanging dial fails, addr(3) (due since 2 s) and addr(1) (due at 8 s) wait.
    h.run_until(at(9));
    h.close(hanging, at(9));
    assert_eq!(h.last_connect().1, addr(1), "the peer that delivered goes first");
    h.t.check_invariants();
}

#[test]
fn at_the_limit_an_idle_peer_gives_its_slot_to_an_untried_address() {
    let config = Config { max_peers: 1, ..Config::default() };
    let mut h = Harness::new(config);
    h.t.add_peer(addr(1), at(0));
    h.drain(at(0));
    let (_, _, idle) = h.last_connect();
    h.establish(idle, 1, at(0));
    h.t.add_peer(addr(2), at(1));
    h.drain(at(1));
    assert_eq!(h.connects.len(), 1, "full: addr(2) waits");
    h.run_until(at(55));
    assert!(h.disconnects.is_empty(), "not idle long enough yet");
    h.run_until(at(75));
    assert_eq!(h.disconnects[0], (idle, DisconnectReason::Replaced));
    let (when, a, _) = h.connects[1];
    assert_eq!(a, addr(2), "the slot went to the untried address");
    assert!(when >= at(60) && when <= at(71), "replaced at {when:?}");
    h.t.check_invariants();
}

#[test]
fn a_peer_that_delivers_is_not_replaced() {
    let config = Config { max_peers: 1, ..Config::default() };
    let mut h = Harness::new(config);
    h.t.add_peer(addr(1), at(0));
    h.drain(at(0));
    let (_, _, busy) = h.last_connect();
    h.establish(busy, 1, at(0));
    h.t.add_peer(addr(2), at(1));
    h.drain(at(1));
    for s in (10..=100).step_by(10) {
        h.run_until(at(s));
        h.deliver(busy, at(s));
    }
    assert!(h.disconnects.is_empty(), "{:?}", h.disconnects);
    assert_eq!(h.connects.len(), 1);
}

#[test]
fn lowering_the_peer_limit_drops_the_least_useful_peers_and_keeps_the_rest() {
    let config = Config { max_peers: 3, ..Config::default() };
    let mut h = Harness::new(config);
    let mut keys = Vec::new();
    for i in 1..=3 {
        h.t.add_peer(addr(i), at(0));
        h.drain(at(0));
        let (_, _, key) = h.last_connect();
        h.establish(key, i, at(0));
        keys.push(key);
    }
    h.deliver(keys[1], at(1));
    h.t.set_max_peers(1, at(2));
    h.drain(at(2));
    let dropped: Vec<_> = h.disconnects.iter().map(|(k, _)| *k).collect();
    assert_eq!(dropped.len(), 2, "{:?}", h.disconnects);
    assert!(!dropped.contains(&keys[1]), "the peer that delivered stays");
    assert!(h.disconnects.iter().all(|(_, r)| *r == DisconnectReason::NotUseful));
    h.t.check_invariants();
    h.t.set_max_peers(3, at(3));
    h.t.check_invariants();
}
