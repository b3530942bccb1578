//! The fetcher against scripted remotes; the test plays the driver (and hashes).

use std::net::SocketAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};
use sluice_core::{InfoHash, PeerId, Timestamp};
use sluice_wire::{Decoder, ExtendedHandshake, Handshake, Message, MetadataMsg, metadata_piece_range};

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Honest,
    /// Serves flipped bytes.
    Liar,
    /// Never answers requests.
    Silent,
    /// Advertises this size instead of the real one.
    Claims(u64),
}

struct Remote {
    addr: SocketAddr,
    kind: Kind,
    key: Option<PeerKey>,
    decoder: Decoder,
    requests: u32,
    /// It dialled the fetcher and sent its handshake first.
    inbound: bool,
}

struct Net {
    f: MetadataFetcher,
    info: Vec<u8>,
    now: Timestamp,
    remotes: Vec<Remote>,
    got: Option<Vec<u8>>,
    banned: Vec<SocketAddr>,
    disconnects: Vec<(SocketAddr, DisconnectReason)>,
    verifications: u32,
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 6000))
}

fn info_dict(len: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
    let mut out = format!("d4:name{}:", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out.push(b'e');
    out
}

impl Net {
    fn new(info_len: usize, kinds: &[Kind]) -> Self {
        let info = info_dict(info_len);
        let hash = InfoHash(Sha1::digest(&info).into());
        let f = MetadataFetcher::new(hash, FetchConfig::default());
        let remotes = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| Remote {
                addr: addr(i as u8 + 1),
                kind,
                key: None,
                decoder: Decoder::new(1 << 20),
                requests: 0,
                inbound: false,
            })
            .collect();
        let mut net = Net {
            f,
            info,
            now: Timestamp::ZERO,
            remotes,
            got: None,
            banned: Vec::new(),
            disconnects: Vec::new(),
            verifications: 0,
        };
        for i in 0..kinds.len() {
            let a = net.remotes[i].addr;
            net.f.add_peer(a, net.now);
        }
        net.run();
        net
    }

    fn remote(&mut self, key: PeerKey) -> Option<usize> {
        self.remotes.iter().position(|r| r.key == Some(key))
    }

    /// Carries out outputs (and the remotes' answers) until nothing moves.
    fn run(&mut self) {
        while let Some(out) = self.f.poll_output() {
            self.f.check_invariants();
            match out {
                FetchOutput::Connect { peer, addr } => {
                    let r = self.remotes.iter().position(|r| r.addr == addr).expect("known remote");
                    self.remotes[r].key = Some(peer);
                    self.remotes[r].decoder = Decoder::new(1 << 20);
                    self.f.handle_input(FetchInput::Connected { peer }, self.now);
                }
                FetchOutput::Transmit { peer, data } => self.remote_reads(peer, &data),
                FetchOutput::Disconnect { peer, reason } => {
                    if let Some(r) = self.remote(peer) {
                        self.disconnects.push((self.remotes[r].addr, reason));
                        self.remotes[r].key = None;
                    }
                }
                FetchOutput::VerifyMetadata { data } => {
                    self.verifications += 1;
                    let ok = Sha1::digest(&data).as_slice() == self.f.info_hash().0;
                    if ok {
                        self.got = Some(data);
                    }
                    self.f.handle_input(FetchInput::MetadataChecked { ok }, self.now);
                }
                FetchOutput::Banned { addr } => self.banned.push(addr),
            }
        }
        self.f.check_invariants();
    }

    fn remote_reads(&mut self, peer: PeerKey, data: &[u8]) {
        let Some(r) = self.remote(peer) else {
            return;
        };
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let remote = &mut self.remotes[r];
        remote.decoder.push(data);
        let size = self.info.len() as u64;
        if let Ok(Some(hs)) = remote.decoder.next_handshake() {
            assert!(hs.supports(sluice_wire::reserved::EXTENSION_PROTOCOL));
            let mut out = Vec::new();
            if !remote.inbound {
                Handshake::new(hs.info_hash, PeerId([r as u8 + 1; 20])).encode(&mut out);
            }
            Message::Bitfield(&[0xff]).encode(&mut out);
            let claimed = if let Kind::Claims(s) = remote.kind { s } else { size };
            let ext = ExtendedHandshake {
                extensions: vec![("ut_metadata".into(), 2)],
                metadata_size: Some(claimed),
                listen_port: remote.inbound.then_some(7777),
                ..Default::default()
            };
            let mut p = Vec::new();
            ext.encode(&mut p);
            Message::Extended { id: 0, payload: &p }.encode(&mut out);
            replies.push(out);
        }
        while let Ok(Some(msg)) = remote.decoder.next_message() {
            let Message::Extended { id: 2, payload } = msg else {
                continue;
            };
            let Ok(MetadataMsg::Request { piece }) = MetadataMsg::decode(payload) else {
                panic!("the fetcher only sends requests");
            };
            remote.requests += 1;
            if remote.kind == Kind::Silent {
                continue;
            }
            let Some(range) = metadata_piece_range(size as u32, piece) else {
                continue;
            };
            let mut bytes = self.info[range].to_vec();
            if remote.kind == Kind::Liar {
                bytes.iter_mut().for_each(|b| *b ^= 0x55);
            }
            let mut p = Vec::new();
            MetadataMsg::Data { piece, total_size: size, data: &bytes }.encode(&mut p);
            let mut out = Vec::new();
            Message::Extended { id: OUR_UT_METADATA, payload: &p }.encode(&mut out);
            replies.push(out);
        }
        for bytes in replies {
            // Split oddly, as sockets do.
            for chunk in bytes.chunks(1000) {
                self.f.handle_input(FetchInput::Data { peer, bytes: chunk }, self.now);
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.f.poll_timeout().filter(|&t| t <= until) {
            self.now = self.now.max(t);
            self.f.handle_timeout(self.now);
            self.run();
        }
        self.now = until;
    }
}

#[test]
fn several_peers_fill_one_dictionary_in_parallel() {
    let net = Net::new(200_000, &[Kind::Honest, Kind::Honest, Kind::Honest]);
    assert_eq!(net.got.as_deref(), Some(net.info.as_slice()));
    assert_eq!(net.verifications, 1);
    let asked: Vec<u32> = net.remotes.iter().map(|r| r.requests).collect();
    assert_eq!(asked.iter().sum::<u32>(), 13, "{asked:?}");
    assert!(asked.iter().filter(|&&n| n > 0).count() >= 2, "one peer did everything: {asked:?}");
    assert!(net.f.is_done() && net.f.connections() == 0 && net.f.poll_timeout().is_none());
    assert_eq!(net.f.peers().len(), 3);
}

#[test]
fn a_lone_liar_is_banned_and_its_dictionary_discarded() {
    let mut net = Net::new(50_000, &[Kind::Liar]);
    assert_eq!(net.got, None);
    assert_eq!(net.banned, [addr(1)]);
    assert!(net.disconnects.contains(&(addr(1), DisconnectReason::Banned)));
    // Never dialled again, even when added again; an honest peer then delivers.
    net.f.add_peer(addr(1), net.now);
    net.remotes.push(Remote {
        addr: addr(2),
        kind: Kind::Honest,
        key: None,
        decoder: Decoder::new(1 << 20),
        requests: 0,
        inbound: false,
    });
    net.f.add_peer(addr(2), net.now);
    net.run();
    net.advance(Duration::from_secs(120));
    assert_eq!(net.got.as_deref(), Some(net.info.as_slice()));
    assert_eq!(net.remotes[0].requests, 4, "the liar was asked again");
    assert_eq!(net.verifications, 2);
}

#[test]
fn a_liar_among_honest_peers_is_found_by_asking_one_peer_at_a_time() {
    // The liar is dialled first, so it owns the single-source retry and is caught by it.
    let mut net = Net::new(100_000, &[Kind::Liar, Kind::Honest, Kind::Honest]);
    net.advance(Duration::from_secs(30));
    assert_eq!(net.got.as_deref(), Some(net.info.as_slice()));
    assert_eq!(net.banned, [addr(1)], "only the liar is banned");
    assert_eq!(net.verifications, 3, "mixed failure, liar alone, then an honest peer alone");
}

#[test]
fn oversized_or_inconsistent_sizes_are_refused_without_allocating() {
    let net = Net::new(30_000, &[Kind::Claims(17 << 20), Kind::Claims(0)]);
    assert!(net.f.assembly.is_none());
    assert!(matches!(net.disconnects.as_slice(), [(a, DisconnectReason::Protocol(_))] if *a == addr(1)));
    assert_eq!(net.f.progress(), (0, None));
    // A peer claiming a size that its pieces do not match is dropped at the first piece.
    let mut net = Net::new(30_000, &[Kind::Claims(40_000)]);
    assert!(
        matches!(net.disconnects.as_slice(), [(_, DisconnectReason::Protocol(why))] if why.contains("does not fit"))
    );
    assert_eq!(net.got, None);
    net.advance(Duration::from_secs(1));
}

#[test]
fn a_silent_peer_times_out_and_its_pieces_go_to_another() {
    let mut net = Net::new(100_000, &[Kind::Silent]);
    net.remotes.push(Remote {
        addr: addr(2),
        kind: Kind::Honest,
        key: None,
        decoder: Decoder::new(1 << 20),
        requests: 0,
        inbound: false,
    });
    net.f.add_peer(addr(2), net.now);
    net.run();
    assert_eq!(net.got, None, "the silent peer's pieces are still out");
    net.advance(Duration::from_secs(20));
    assert_eq!(net.got.as_deref(), Some(net.info.as_slice()));
    assert!(net.disconnects.contains(&(addr(1), DisconnectReason::Timeout)));
}

#[test]
fn closed_connections_are_dialled_again_later() {
    let mut net = Net::new(20_000, &[Kind::Silent]);
    let key = net.remotes[0].key.expect("connected");
    net.f.handle_input(FetchInput::Closed { peer: key }, net.now);
    net.remotes[0].key = None;
    net.run();
    assert_eq!(net.f.connections(), 0);
    net.remotes[0].kind = Kind::Honest;
    net.advance(Duration::from_secs(5));
    assert_eq!(net.got.as_deref(), Some(net.info.as_slice()));
}

#[test]
fn an_inbound_peer_serves_the_dictionary_and_its_port_is_not_handed_on() {
    let mut net = Net::new(40_000, &[]);
    let a = addr(9);
    let key = net.f.accept(a, net.now).expect("a free slot");
    assert_eq!(net.f.accept(a, net.now), None, "the same address twice");
    let remote = Remote {
        addr: a,
        kind: Kind::Honest,
        key: Some(key),
        decoder: Decoder::new(1 << 20),
        requests: 0,
        inbound: true,
    };
    net.remotes.push(remote);
    let mut hs = Handshake::new(net.f.info_hash(), PeerId([9; 20]));
    hs.reserved[reserved::EXTENSION_PROTOCOL.0] |= reserved::EXTENSION_PROTOCOL.1;
    let mut head = Vec::new();
    hs.encode(&mut head);
    net.f.handle_input(FetchInput::Data { peer: key, bytes: &head }, net.now);
    net.run();
    assert_eq!(net.got.as_deref(), Some(net.info.as_slice()));
    let listening = SocketAddr::new(a.ip(), 7777);
    assert_eq!(net.f.peers(), [listening], "an inbound peer is known by the port it listens on");
    assert_eq!(net.f.accept(addr(10), net.now), None, "done: nothing more is accepted");
}

#[test]
fn inbound_connections_are_refused_when_every_slot_is_taken() {
    let kinds = vec![Kind::Silent; FetchConfig::default().max_peers];
    let mut net = Net::new(40_000, &kinds);
    assert_eq!(net.f.connections(), kinds.len());
    assert_eq!(net.f.accept(addr(100), net.now), None);
}
