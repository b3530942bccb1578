//! One engine against hand-driven remote peers: the test writes the remotes' wire messages
//! byte for byte and reads what the engine sends back, playing the driver (storage always
//! verifies a complete piece).

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{Bitfield, InfoHash, Lengths, PeerId, PieceIndex, Timestamp};
use sluice_wire::{
    Decoder, ExtendedHandshake, Handshake, Message, MetadataMsg, PexMessage, PexPeer, pex_flags, reserved,
};

use super::*;

const INFO_HASH: InfoHash = InfoHash([7; 20]);

fn secs(s: u64) -> Timestamp {
    Timestamp::ZERO + Duration::from_secs(s)
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7000))
}

/// A request as the remote decoded it: (index, begin, length).
type Req = (u32, u32, u32);

struct Remote {
    key: PeerKey,
    decoder: Decoder,
    handshaken: bool,
    /// Every request received, in order.
    requests: Vec<Req>,
    /// Requests received and not yet answered by `serve`.
    pending: Vec<Req>,
    cancels: Vec<Req>,
    /// Extended messages received: (id, payload).
    extended: Vec<(u8, Vec<u8>)>,
}

struct Wire {
    t: Torrent,
    now: Timestamp,
    remotes: Vec<Remote>,
    verified: Vec<PieceIndex>,
    disconnects: Vec<(PeerKey, DisconnectReason)>,
    /// Every `Connect` asked for.
    dials: Vec<(PeerKey, SocketAddr)>,
}

impl Remote {
    fn new(key: PeerKey) -> Self {
        Self {
            key,
            decoder: Decoder::new(1 << 20),
            handshaken: false,
            requests: Vec::new(),
            pending: Vec::new(),
            cancels: Vec::new(),
            extended: Vec::new(),
        }
    }
}

impl Wire {
    fn new(total: u64, piece_len: u64, config: Config) -> Self {
        let n = total.div_ceil(piece_len);
        let lengths = Lengths::new(total, piece_len, n).unwrap();
        let t = Torrent::new(INFO_HASH, lengths, Bitfield::new(n as u32), config, Timestamp::ZERO);
        Self {
            t,
            now: Timestamp::ZERO,
            remotes: Vec::new(),
            verified: Vec::new(),
            disconnects: Vec::new(),
            dials: Vec::new(),
        }
    }

    /// An inbound remote with address `i`; `fast`: it negotiates the fast extension.
    fn connect(&mut self, i: u8, fast: bool) -> usize {
        let key = self.t.accept(addr(i), self.now).expect("accepted");
        let mut hs = Handshake::new(INFO_HASH, PeerId([i; 20]));
        if !fast {
            hs.reserved = [0; 8];
            hs.reserved[reserved::EXTENSION_PROTOCOL.0] |= reserved::EXTENSION_PROTOCOL.1;
        }
        let mut bytes = Vec::new();
        hs.encode(&mut bytes);
        self.remotes.push(Remote::new(key));
        let r = self.remotes.len() - 1;
        self.data(r, &bytes);
        r
    }

    /// An outbound remote: the engine is told of `addr(i)`, dials it, and the remote answers
    /// the handshake (extension protocol only).
    fn dial(&mut self, i: u8) -> usize {
        self.t.add_peer(addr(i), self.now);
        self.drain();
        let key = self.dials.iter().rev().find(|(_, a)| *a == addr(i)).expect("dialled").0;
        self.t.handle_input(Input::Connected { peer: key }, self.now);
        self.remotes.push(Remote::new(key));
        self.drain();
        let mut hs = Handshake::new(INFO_HASH, PeerId([i; 20]));
        hs.reserved = [0; 8];
        hs.reserved[reserved::EXTENSION_PROTOCOL.0] |= reserved::EXTENSION_PROTOCOL.1;
        let mut bytes = Vec::new();
        hs.encode(&mut bytes);
        let r = self.remotes.len() - 1;
        self.data(r, &bytes);
        r
    }

    /// The remote's extended handshake: its listen port, and its id for `ut_pex` if it takes it.
    fn ext_handshake(&mut self, r: usize, port: Option<u16>, pex: Option<u8>) {
        let ext = ExtendedHandshake {
            extensions: pex.map(|id| ("ut_pex".to_owned(), id)).into_iter().collect(),
            listen_port: port,
            ..ExtendedHandshake::default()
        };
        let mut payload = Vec::new();
        ext.encode(&mut payload);
        self.send(r, Message::Extended { id: 0, payload: &payload });
    }

    /// The PEX messages remote `r` received, sent to it as extended id `id`.
    fn pex_received(&self, r: usize, id: u8) -> Vec<PexMessage> {
        self.remotes[r].extended.iter().filter(|(i, _)| *i == id).map(|(_, p)| PexMessage::decode(p).unwrap()).collect()
    }

    fn send(&mut self, r: usize, msg: Message<'_>) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        self.data(r, &bytes);
    }

    fn data(&mut self, r: usize, bytes: &[u8]) {
        let peer = self.remotes[r].key;
        self.t.handle_input(Input::Data { peer, bytes }, self.now);
        self.t.check_invariants();
        self.drain();
    }

    fn close(&mut self, r: usize) {
        let peer = self.remotes[r].key;
        self.t.handle_input(Input::Closed { peer }, self.now);
        self.t.check_invariants();
        self.drain();
    }

    fn connected(&self, r: usize) -> bool {
        let key = self.remotes[r].key;
        !self.disconnects.iter().any(|(k, _)| *k == key)
    }

    fn drain(&mut self) {
        while let Some(out) = self.t.poll_output() {
            match out {
                Output::Transmit { peer, data } => {
                    self.t.handle_input(Input::Sent { peer, bytes: data.len() }, self.now);
                    let Some(remote) = self.remotes.iter_mut().find(|r| r.key == peer) else {
                        continue;
                    };
                    remote.decoder.push(&data);
                    if !remote.handshaken {
                        remote.handshaken = remote.decoder.next_handshake().expect("handshake").is_some();
                    }
                    while let Some(msg) = remote.decoder.next_message().expect("engine sends valid messages") {
                        match msg {
                            Message::Request { index, begin, length } => {
                                remote.requests.push((index, begin, length));
                                remote.pending.push((index, begin, length));
                            }
                            Message::Cancel { index, begin, length } => remote.cancels.push((index, begin, length)),
                            Message::Extended { id, payload } => remote.extended.push((id, payload.to_vec())),
                            _ => {}
                        }
                    }
                }
                Output::VerifyPiece { piece, data } => {
                    self.verified.push(piece);
                    self.t.handle_input(Input::PieceChecked { piece, ok: true, buffer: data }, self.now);
                }
                Output::Disconnect { peer, reason } => self.disconnects.push((peer, reason)),
                Output::Connect { peer, addr } => self.dials.push((peer, addr)),
                Output::Event(Event::PeerDisconnected { peer, reason }) if reason == DisconnectReason::Closed => {
                    self.disconnects.push((peer, reason));
                }
                _ => {}
            }
            self.t.check_invariants();
        }
    }

    /// Fires every timer due up to `until`, then sets the clock to it.
    fn advance_to(&mut self, until: Timestamp) {
        while let Some(next) = self.t.poll_timeout().filter(|&t| t <= until) {
            self.now = self.now.max(next);
            self.t.handle_timeout(self.now);
            self.t.check_invariants();
            self.drain();
        }
        self.now = self.now.max(until);
    }

    /// The remote answers every request it has not answered yet.
    fn serve(&mut self, r: usize) {
        for (index, begin, length) in std::mem::take(&mut self.remotes[r].pending) {
            let data = vec![index as u8; length as usize];
            self.send(r, Message::Piece { index, begin, data: &data });
            if !self.connected(r) {
                return;
            }
        }
    }
}

#[test]
fn a_silent_then_healthy_only_source_is_asked_again_and_completes_the_download() {
    let config =
        Config { request_timeout: Duration::from_secs(20), snub_timeout: Duration::from_secs(10), ..Config::default() };
    let mut w = Wire::new(4 << 16, 1 << 16, config);
    let r = w.connect(1, false);
    w.send(r, Message::Bitfield(&[0xf0]));
    w.send(r, Message::Unchoke);
    let first = w.remotes[r].requests.len();
    assert!(first > 0);
    // Silent (keep-alives only) for ten minutes: snubbed, its requests time out.
    for s in (30..=600).step_by(30) {
        w.advance_to(secs(s));
        w.send(r, Message::KeepAlive);
    }
    let probes = w.remotes[r].requests.len() - first;
    // Each round: a request timeout, then one timeout of probation, then one probe request.
    assert!((1..=600 / 40 + 1).contains(&probes), "{probes} requests to a snubbed peer");
    w.remotes[r].pending.clear();
    // Healthy again: it answers whatever it is asked.
    for s in 601..=900 {
        if w.t.is_complete() {
            break;
        }
        w.advance_to(secs(s));
        w.serve(r);
    }
    assert!(w.t.is_complete(), "the only source recovered but the download did not: {:?}", w.t.stats());
    // Hung up only because both sides are seeds now.
    assert!(w.disconnects.iter().all(|(_, why)| *why == DisconnectReason::NotUseful), "{:?}", w.disconnects);
}

#[test]
fn a_budget_full_of_a_piece_whose_source_left_is_freed_for_a_peer_with_other_pieces() {
    let config = Config { buffer_budget: 1 << 15, ..Config::default() };
    let mut w = Wire::new(2 << 15, 1 << 15, config);
    let a = w.connect(1, false);
    w.send(a, Message::Bitfield(&[0x80]));
    w.send(a, Message::Unchoke);
    assert_eq!(w.remotes[a].requests, vec![(0, 0, 16384), (0, 16384, 16384)]);
    // A sends one of the two blocks of piece 0 and leaves: nobody else has piece 0.
    w.send(a, Message::Piece { index: 0, begin: 0, data: &[1; 16384] });
    w.close(a);
    assert_eq!(w.t.stats().buffered_bytes, 1 << 15);
    let b = w.connect(2, false);
    w.send(b, Message::Bitfield(&[0x40]));
    w.send(b, Message::Unchoke);
    assert_eq!(w.remotes[b].requests, vec![(1, 0, 16384), (1, 16384, 16384)], "B could serve piece 1");
    w.serve(b);
    assert_eq!(w.verified, vec![PieceIndex::new_unchecked(1)]);
    assert!(w.t.stats().buffered_bytes_peak <= 1 << 15);
    // A comes back: piece 0 starts over and completes.
    let a = w.connect(3, false);
    w.send(a, Message::Bitfield(&[0x80]));
    w.send(a, Message::Unchoke);
    w.serve(a);
    assert!(w.t.is_complete());
}

#[test]
fn a_piece_whose_source_left_is_kept_while_no_other_peer_needs_the_budget() {
    let config = Config { buffer_budget: 1 << 15, ..Config::default() };
    let mut w = Wire::new(2 << 15, 1 << 15, config);
    let a = w.connect(1, false);
    w.send(a, Message::Bitfield(&[0x80]));
    w.send(a, Message::Unchoke);
    w.send(a, Message::Piece { index: 0, begin: 0, data: &[1; 16384] });
    w.close(a);
    // B has only the piece in progress: nothing to abandon it for.
    let b = w.connect(2, false);
    w.send(b, Message::Bitfield(&[0x80]));
    w.send(b, Message::Unchoke);
    assert_eq!(w.remotes[b].requests, vec![(0, 16384, 16384)], "only the missing block");
    w.serve(b);
    assert_eq!(w.verified, vec![PieceIndex::new_unchecked(0)]);
}

#[test]
fn a_rejected_block_is_not_asked_again_of_the_same_peer_until_a_request_timeout_passed() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config::default());
    let r = w.connect(1, true);
    w.send(r, Message::HaveAll);
    w.send(r, Message::Unchoke);
    assert_eq!(w.remotes[r].requests.len(), 16);
    let mut rejects = 0;
    while let Some((index, begin, length)) = w.remotes[r].pending.pop() {
        w.send(r, Message::Reject { index, begin, length });
        rejects += 1;
        assert!(rejects <= 1000, "rejected blocks keep coming back to the peer that rejected them");
    }
    assert_eq!(rejects, 16);
    assert_eq!(w.remotes[r].requests.len(), 16, "each block asked once");
    w.advance_to(w.now + Duration::from_secs(19));
    assert_eq!(w.remotes[r].requests.len(), 16);
    w.advance_to(w.now + Duration::from_secs(2));
    assert!(w.remotes[r].requests.len() > 16, "never asked again after the rejections expired");
    assert!(w.connected(r));
}

#[test]
fn a_rejected_block_goes_to_another_peer_that_has_it() {
    // Room for four of the eight pieces: no endgame, B gets nothing while A holds them.
    let mut w = Wire::new(8 << 16, 1 << 16, Config { buffer_budget: 4 << 16, ..Config::default() });
    let a = w.connect(1, true);
    w.send(a, Message::HaveAll);
    w.send(a, Message::Unchoke);
    let b = w.connect(2, true);
    w.send(b, Message::HaveAll);
    w.send(b, Message::Unchoke);
    assert!(w.remotes[b].requests.is_empty(), "A holds every block");
    let (index, begin, length) = w.remotes[a].pending[5];
    w.send(a, Message::Reject { index, begin, length });
    assert_eq!(w.remotes[b].requests, vec![(index, begin, length)]);
    assert_eq!(w.remotes[a].requests.len(), 16);
}

#[test]
fn fast_extension_messages_from_a_peer_without_it_disconnect() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config::default());
    let messages = [
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject { index: 0, begin: 0, length: 16384 },
        Message::AllowedFast(0),
        Message::Suggest(0),
    ];
    for (i, msg) in messages.into_iter().enumerate() {
        let r = w.connect(i as u8 + 1, false);
        w.send(r, Message::Bitfield(&[0xf0]));
        w.send(r, Message::Unchoke);
        assert!(!w.remotes[r].requests.is_empty());
        let shown = format!("{msg:?}");
        w.send(r, msg);
        let key = w.remotes[r].key;
        assert!(
            w.disconnects.iter().any(|(k, why)| *k == key && matches!(why, DisconnectReason::Protocol(_))),
            "{shown} from a peer without the fast extension was accepted"
        );
    }
    // With the extension negotiated they are fine.
    let r = w.connect(10, true);
    w.send(r, Message::HaveAll);
    w.send(r, Message::Suggest(1));
    w.send(r, Message::AllowedFast(2));
    w.send(r, Message::Unchoke);
    let (index, begin, length) = w.remotes[r].pending[0];
    w.send(r, Message::Reject { index, begin, length });
    assert!(w.connected(r));
}

#[test]
fn departed_peers_are_remembered_only_while_their_blocks_are_in_flight() {
    let mut w = Wire::new(4 << 15, 1 << 15, Config::default());
    let a = w.connect(1, false);
    w.send(a, Message::Bitfield(&[0xf0]));
    w.send(a, Message::Unchoke);
    // Peers that come and go while A's pieces are in flight, having sent nothing.
    for i in 2..50 {
        let r = w.connect(i, false);
        w.send(r, Message::Bitfield(&[0x80]));
        w.close(r);
    }
    assert!(w.t.departed.is_empty(), "{} departed peers that sent no block", w.t.departed.len());
    // A sends one block of piece 0 and leaves: remembered while piece 0 is in flight.
    w.send(a, Message::Piece { index: 0, begin: 0, data: &[0; 16384] });
    w.close(a);
    assert_eq!(w.t.departed.len(), 1);
    let b = w.connect(60, false);
    w.send(b, Message::Bitfield(&[0xf0]));
    w.send(b, Message::Unchoke);
    w.serve(b);
    assert!(w.t.is_complete());
    assert!(w.t.departed.is_empty());
}

#[test]
fn a_late_block_of_a_request_that_timed_out_is_kept() {
    let mut w = Wire::new(1 << 15, 1 << 15, Config::default());
    let r = w.connect(1, false);
    w.send(r, Message::Bitfield(&[0x80]));
    w.send(r, Message::Unchoke);
    assert_eq!(w.remotes[r].requests, vec![(0, 0, 16384), (0, 16384, 16384)]);
    // Both requests time out; the blocks are nobody's now.
    w.advance_to(secs(21));
    assert_eq!(w.remotes[r].requests.len(), 2, "on probation: not asked again yet");
    // Then they arrive after all: kept, not thrown away and fetched again.
    let mut bytes = Vec::new();
    for begin in [0, 16384] {
        Message::Piece { index: 0, begin, data: &[0; 16384] }.encode(&mut bytes);
    }
    w.data(r, &bytes);
    assert_eq!(w.verified, vec![PieceIndex::new_unchecked(0)]);
    assert_eq!(w.remotes[r].requests.len(), 2);
    assert_eq!(w.t.stats().downloaded, 1 << 15);
}

#[test]
fn each_peer_with_bytes_to_send_gets_one_transmit_per_drain() {
    let mut w = Wire::new(2 << 15, 1 << 15, Config { max_peers: 50, ..Config::default() });
    let seed = w.connect(1, false);
    w.send(seed, Message::Bitfield(&[0x80]));
    let others: Vec<usize> = (2..40).map(|i| w.connect(i, false)).collect();
    w.send(seed, Message::Unchoke);
    let (index, begin, length) = w.remotes[seed].pending[0];
    assert_eq!((index, length), (0, 16384));
    let mut bytes = Vec::new();
    for b in [begin, begin + 16384] {
        Message::Piece { index: 0, begin: b, data: &[0; 16384] }.encode(&mut bytes);
    }
    let key = w.remotes[seed].key;
    w.t.handle_input(Input::Data { peer: key, bytes: &bytes }, w.now);
    let Some(Output::VerifyPiece { piece, data }) = w.t.poll_output() else { panic!("piece 0 complete") };
    w.t.handle_input(Input::PieceChecked { piece, ok: true, buffer: data }, w.now);
    // Piece 0 verified: a Have for each of the 38 other peers, each in one Transmit.
    let mut transmits = Vec::new();
    while let Some(out) = w.t.poll_output() {
        if let Output::Transmit { peer, data } = out {
            transmits.push((peer, data));
        }
    }
    let mut keys: Vec<PeerKey> = transmits.iter().map(|(k, _)| *k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), transmits.len(), "a peer's bytes split over several transmits");
    for r in others {
        let (_, data) = transmits.iter().find(|(k, _)| *k == w.remotes[r].key).expect("a Have for every other peer");
        let mut have = Vec::new();
        Message::Have(0).encode(&mut have);
        assert_eq!(data, &have);
    }
    w.t.check_invariants();
}

/// libtorrent answers a request we dropped with a Reject and still sends the block whose read
/// was under way: the block is kept and the peer is not taken for one sending unrequested data.
#[test]
fn a_block_arriving_after_the_reject_of_a_dropped_request_is_kept() {
    let mut w = Wire::new(1 << 15, 1 << 15, Config::default());
    let r = w.connect(1, true);
    w.send(r, Message::Bitfield(&[0x80]));
    w.send(r, Message::Unchoke);
    assert_eq!(w.remotes[r].requests, vec![(0, 0, 16384), (0, 16384, 16384)]);
    w.advance_to(secs(21));
    let mut bytes = Vec::new();
    for begin in [0, 16384] {
        Message::Reject { index: 0, begin, length: 16384 }.encode(&mut bytes);
        Message::Piece { index: 0, begin, data: &[0; 16384] }.encode(&mut bytes);
    }
    w.data(r, &bytes);
    assert_eq!(w.verified, vec![PieceIndex::new_unchecked(0)]);
    // Complete now, and the peer is a seed: closed as not useful, not for a protocol error.
    assert!(!w.disconnects.iter().any(|(_, why)| matches!(why, DisconnectReason::Protocol(_))), "{:?}", w.disconnects);
}

/// A remote that fetches our metadata (BEP 9): it finds the extension and the size in our
/// extended handshake, gets each piece, a reject past the end, and rejects once it has asked
/// for more than its allowance.
#[test]
fn metadata_is_served_in_pieces_and_flooding_is_refused() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config::default());
    let info: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    w.t.set_metadata(info.clone());
    let r = w.connect(1, false);
    let (id, payload) = w.remotes[r].extended.first().cloned().expect("extended handshake");
    assert_eq!(id, 0);
    let ours = ExtendedHandshake::decode(&payload).unwrap();
    assert_eq!(ours.metadata_size, Some(40_000));
    let their_id = ours.extension_id("ut_metadata").expect("ut_metadata advertised");

    // Unanswerable until the remote says which id it takes the extension as.
    let ask = |w: &mut Wire, piece: u32| {
        let mut p = Vec::new();
        MetadataMsg::Request { piece }.encode(&mut p);
        w.send(r, Message::Extended { id: their_id, payload: &p });
    };
    ask(&mut w, 0);
    assert_eq!(w.remotes[r].extended.len(), 1);
    let mut hs = Vec::new();
    ExtendedHandshake { extensions: vec![("ut_metadata".into(), 9)], ..Default::default() }.encode(&mut hs);
    w.send(r, Message::Extended { id: 0, payload: &hs });

    for piece in 0..4 {
        ask(&mut w, piece);
    }
    let replies: Vec<MetadataMsg<'_>> = w.remotes[r].extended[1..]
        .iter()
        .map(|(id, p)| {
            assert_eq!(*id, 9);
            MetadataMsg::decode(p).unwrap()
        })
        .collect();
    assert_eq!(
        replies,
        [
            MetadataMsg::Data { piece: 0, total_size: 40_000, data: &info[..16384] },
            MetadataMsg::Data { piece: 1, total_size: 40_000, data: &info[16384..32768] },
            MetadataMsg::Data { piece: 2, total_size: 40_000, data: &info[32768..] },
            MetadataMsg::Reject { piece: 3 },
        ]
    );
    // Three pieces: six served plus eight more, then rejects only.
    for _ in 0..20 {
        ask(&mut w, 0);
    }
    let data =
        w.remotes[r].extended.iter().filter(|(_, p)| matches!(MetadataMsg::decode(p), Ok(MetadataMsg::Data { .. })));
    assert_eq!(data.count(), 3 * 2 + 8);
    assert!(w.connected(r));
    // A malformed message disconnects.
    w.send(r, Message::Extended { id: their_id, payload: b"d8:msg_typei0ee" });
    assert!(!w.connected(r));
}

#[test]
fn without_metadata_nothing_is_advertised() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config::default());
    let r = w.connect(1, false);
    let (_, payload) = w.remotes[r].extended.first().cloned().expect("extended handshake");
    let ours = ExtendedHandshake::decode(&payload).unwrap();
    assert_eq!((ours.metadata_size, ours.extension_id("ut_metadata")), (None, None));
}

fn listen(i: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], port))
}

/// Silence is no reason to drop a remote in the PEX tests, which wait minutes.
fn patient() -> Config {
    Config { idle_timeout: Duration::from_secs(3600), ..Config::default() }
}

/// The first PEX message lists the listen addresses of the handshaken peers (dialled: the
/// address dialled; inbound: the port given as `p`), never the recipient itself, inbound
/// peers without a port, nor dials pending or failed; later ones list what changed, and
/// nothing is sent when nothing did.
#[test]
fn pex_lists_the_other_peers_listen_addresses_then_changes() {
    let mut w = Wire::new(4 << 16, 1 << 16, patient());
    let r1 = w.connect(1, false);
    let ours = ExtendedHandshake::decode(&w.remotes[r1].extended[0].1).unwrap();
    assert_eq!(ours.extension_id("ut_pex"), Some(pex::OUR_UT_PEX));
    w.ext_handshake(r1, Some(6001), Some(5));
    let r2 = w.connect(2, false);
    w.ext_handshake(r2, Some(6002), None);
    let r3 = w.connect(3, false);
    w.ext_handshake(r3, None, Some(5));
    let _o4 = w.dial(4);
    w.t.add_peer(addr(8), w.now);
    w.drain();
    let failed = w.dials.last().unwrap().0;
    w.t.handle_input(Input::Closed { peer: failed }, w.now);
    w.drain();
    w.t.add_peer(addr(9), w.now);
    w.drain();

    w.advance_to(secs(2));
    assert!(w.pex_received(r1, 5).is_empty(), "sent before the first delay");
    w.advance_to(secs(3));
    let first = w.pex_received(r1, 5);
    assert_eq!(
        first,
        [PexMessage {
            added: vec![
                PexPeer { addr: listen(2, 6002), flags: 0 },
                PexPeer { addr: addr(4), flags: pex_flags::REACHABLE },
            ],
            dropped: vec![],
        }]
    );
    // r3 takes PEX too and hears of r1's listen address; r2 never offered it.
    assert_eq!(
        w.pex_received(r3, 5)[0].added.iter().map(|p| p.addr).collect::<Vec<_>>(),
        [listen(1, 6001), listen(2, 6002), addr(4)]
    );
    assert!(w.remotes[r2].extended.iter().all(|(id, _)| *id == 0));

    w.close(r2);
    let r5 = w.connect(5, false);
    w.ext_handshake(r5, Some(6005), None);
    w.advance_to(secs(62));
    assert_eq!(w.pex_received(r1, 5).len(), 1, "a second message within the minute");
    w.advance_to(secs(63));
    let second = w.pex_received(r1, 5);
    assert_eq!(
        second[1..],
        [PexMessage { added: vec![PexPeer { addr: listen(5, 6005), flags: 0 }], dropped: vec![listen(2, 6002)] }]
    );
    w.advance_to(secs(200));
    assert_eq!(w.pex_received(r1, 5).len(), 2, "a message without changes");
    assert!(w.connected(r1));
}

/// A message adds at most 50 peers; the rest follow a minute later.
#[test]
fn pex_adds_at_most_fifty_peers_per_message() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config { max_peers: 100, ..patient() });
    let r0 = w.connect(200, false);
    w.ext_handshake(r0, Some(6000), Some(7));
    for i in 1..=60 {
        let r = w.connect(i, false);
        w.ext_handshake(r, Some(6000), None);
    }
    w.advance_to(secs(3));
    w.advance_to(secs(63));
    let sent = w.pex_received(r0, 7);
    assert_eq!(sent.iter().map(|m| m.added.len()).collect::<Vec<_>>(), [50, 10]);
    let mut all: Vec<SocketAddr> = sent.iter().flat_map(|m| m.added.iter().map(|p| p.addr)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60);
}

fn pex_payload(added: impl IntoIterator<Item = SocketAddr>) -> Vec<u8> {
    let added = added.into_iter().map(|addr| PexPeer { addr, flags: 0 }).collect();
    let mut out = Vec::new();
    PexMessage { added, dropped: Vec::new() }.encode(&mut out);
    out
}

fn far(i: u32) -> SocketAddr {
    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6881))
}

/// Peers from PEX are dialled; one message is taken per 45 s per peer, 50 entries of it, and
/// no more than 500 addresses ever come from PEX. The sender itself, port 0 and unspecified
/// addresses are skipped.
#[test]
fn peers_from_pex_are_dialled_within_flood_limits() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config { max_half_open: 4, ..patient() });
    let r = w.connect(1, false);
    w.ext_handshake(r, Some(6001), None);
    let junk = [listen(1, 6001), listen(1, 7000), listen(5, 0), SocketAddr::from(([0, 0, 0, 0], 1))];
    w.send(
        r,
        Message::Extended { id: pex::OUR_UT_PEX, payload: &pex_payload(junk.into_iter().chain((0..60).map(far))) },
    );
    assert_eq!(w.t.stats().peers_known, 50);
    assert_eq!(w.dials.len(), 4, "dials beyond max_half_open");
    assert!(w.dials.iter().all(|(_, a)| (0..50).map(far).any(|f| f == *a)));

    let mut next = 1000;
    let mut flood = |w: &mut Wire| {
        let batch = pex_payload((next..next + 60).map(far));
        next += 60;
        w.send(r, Message::Extended { id: pex::OUR_UT_PEX, payload: &batch });
    };
    w.advance_to(secs(44));
    flood(&mut w);
    assert_eq!(w.t.stats().peers_known, 50, "a message 44 s after the last was taken");
    for i in 1..=12 {
        w.advance_to(secs(45 * i));
        flood(&mut w);
    }
    assert_eq!(w.t.stats().peers_known, 500);
    // Other sources still add peers.
    w.t.add_peer(far(9999), w.now);
    assert_eq!(w.t.stats().peers_known, 501);
    assert!(w.connected(r));
}

#[test]
fn a_malformed_pex_message_disconnects() {
    let mut w = Wire::new(4 << 16, 1 << 16, patient());
    let r = w.connect(1, false);
    w.send(r, Message::Extended { id: pex::OUR_UT_PEX, payload: b"d5:added5:abcdee" });
    assert!(!w.connected(r));
}

/// A private torrent does not offer PEX, sends none to a peer that offers it, and ignores
/// what a peer sends anyway.
#[test]
fn a_private_torrent_has_no_pex() {
    let mut w = Wire::new(4 << 16, 1 << 16, Config { private: true, ..patient() });
    let r1 = w.connect(1, false);
    let ours = ExtendedHandshake::decode(&w.remotes[r1].extended[0].1).unwrap();
    assert_eq!(ours.extension_id("ut_pex"), None);
    w.ext_handshake(r1, Some(6001), Some(5));
    let r2 = w.connect(2, false);
    w.ext_handshake(r2, Some(6002), Some(5));
    w.send(r1, Message::Extended { id: pex::OUR_UT_PEX, payload: &pex_payload((0..5).map(far)) });
    w.advance_to(secs(200));
    assert!(w.pex_received(r1, 5).is_empty() && w.pex_received(r2, 5).is_empty());
    assert_eq!(w.t.stats().peers_known, 0);
    assert!(w.dials.is_empty());
}

/// Two peers connected both ways (they dialled each other at once, or one dialled the other
/// back after PEX named it) keep the connection the greater peer id opened, as libtorrent
/// does, whichever came first: each dropping its newer one, or the two sides following
/// opposite rules, closed both, again and again.
#[test]
fn connections_both_ways_keep_the_one_the_greater_peer_id_opened() {
    let ours = Config::default().peer_id;
    for i in [1u8, 200] {
        let mut w = Wire::new(4 << 16, 1 << 16, patient());
        let inbound = w.connect(i, false);
        let outbound = w.dial(i);
        let we_opened_it = ours > PeerId([i; 20]);
        assert_eq!((w.connected(inbound), w.connected(outbound)), (!we_opened_it, we_opened_it), "peer id {i}");
        assert!(w.disconnects.iter().all(|(_, why)| *why == DisconnectReason::Duplicate));
        assert_eq!(w.t.stats().peers_connected, 1);

        // The same when our connection has been up a while and the peer dials us back.
        let mut w = Wire::new(4 << 16, 1 << 16, patient());
        let outbound = w.dial(i);
        w.advance_to(secs(30));
        let inbound = w.connect(i, false);
        assert_eq!((w.connected(inbound), w.connected(outbound)), (!we_opened_it, we_opened_it), "peer id {i}, later");
        assert_eq!(w.t.stats().peers_connected, 1);
    }
}
