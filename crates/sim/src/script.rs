//! Scripted peers: hand-written wire-protocol behaviours (hostile or broken) that engines
//! meet in the swarm. They only listen; engines connect to them.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore};
use sluice_core::{Bitfield, BlockRef, PeerId, PieceIndex, Timestamp};
use sluice_wire::{Decoder, Handshake, Message};

use crate::Content;

/// Identity of one simulated connection, unique within a [`crate::Sim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A peer whose behaviour is code rather than an engine.
pub trait Script: Any + fmt::Debug {
    /// A connection to this peer was opened.
    fn on_open(&mut self, _io: &mut ScriptIo<'_>, _conn: ConnId) {}
    fn on_data(&mut self, io: &mut ScriptIo<'_>, conn: ConnId, bytes: &[u8]);
    /// The other side closed, or the link dropped.
    fn on_closed(&mut self, _io: &mut ScriptIo<'_>, _conn: ConnId) {}
    /// A timer armed with [`ScriptIo::timer`] fired.
    fn on_timer(&mut self, _io: &mut ScriptIo<'_>, _conn: ConnId) {}
}

#[derive(Debug)]
pub(crate) enum ScriptAction {
    Send(ConnId, Vec<u8>),
    Close(ConnId),
    Timer(ConnId, Duration),
}

/// What a script may do: send, close, arm a timer, draw random numbers.
#[derive(Debug)]
pub struct ScriptIo<'a> {
    pub now: Timestamp,
    pub rng: &'a mut SmallRng,
    pub(crate) actions: &'a mut Vec<ScriptAction>,
}

impl ScriptIo<'_> {
    pub fn send(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.actions.push(ScriptAction::Send(conn, bytes));
    }
    pub fn close(&mut self, conn: ConnId) {
        self.actions.push(ScriptAction::Close(conn));
    }
    pub fn timer(&mut self, conn: ConnId, after: Duration) {
        self.actions.push(ScriptAction::Timer(conn, after));
    }
}

/// Which pieces a [`Behaviour::BadData`] peer corrupts.
#[derive(Debug, Clone)]
pub enum Corruption {
    All,
    /// Pieces whose index is a multiple of `n`.
    EveryNth(u32),
}

impl Corruption {
    fn hits(&self, piece: u32) -> bool {
        match self {
            Corruption::All => true,
            Corruption::EveryNth(n) => piece.is_multiple_of((*n).max(1)),
        }
    }
}

/// The built-in behaviours of a [`WirePeer`].
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Handshake and a full bitfield, then never unchokes; keep-alives keep it from idling out.
    ChokingForever,
    /// Unchokes and answers every request, with one byte flipped in each corrupted piece's blocks.
    BadData(Corruption),
    /// Random bytes after the handshake.
    Garbage,
    /// Unchokes and accepts requests but never answers them; keep-alives only.
    Silent,
    /// Claims every piece, serves only those in the bitfield, ignores the other requests.
    LyingBitfield(Bitfield),
}

#[derive(Debug)]
struct PeerConn {
    decoder: Decoder,
    handshaken: bool,
}

const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);

/// A scripted peer speaking the wire protocol through `sluice-wire`.
#[derive(Debug)]
pub struct WirePeer {
    content: Rc<Content>,
    behaviour: Behaviour,
    peer_id: PeerId,
    conns: BTreeMap<ConnId, PeerConn>,
    /// Every valid request this peer received, served or not, with its arrival time.
    pub requests: Vec<(Timestamp, BlockRef)>,
}

impl WirePeer {
    pub fn new(content: Rc<Content>, behaviour: Behaviour, id: u8) -> Self {
        Self { content, behaviour, peer_id: PeerId([id; 20]), conns: BTreeMap::new(), requests: Vec::new() }
    }

    fn greet(&self, io: &mut ScriptIo<'_>, conn: ConnId) {
        let mut out = Vec::new();
        Handshake::new(self.content.info_hash, self.peer_id).encode(&mut out);
        let pieces = self.content.lengths.num_pieces();
        Message::Bitfield(Bitfield::full(pieces).as_bytes()).encode(&mut out);
        match &self.behaviour {
            Behaviour::Garbage => {
                let mut junk = vec![0u8; io.rng.random_range(64..4096)];
                io.rng.fill_bytes(&mut junk);
                out.extend_from_slice(&junk);
            }
            Behaviour::ChokingForever | Behaviour::Silent => io.timer(conn, KEEPALIVE_EVERY),
            Behaviour::BadData(_) | Behaviour::LyingBitfield(_) => {}
        }
        io.send(conn, out);
    }
}

impl Script for WirePeer {
    fn on_open(&mut self, _io: &mut ScriptIo<'_>, conn: ConnId) {
        self.conns.insert(conn, PeerConn { decoder: Decoder::new(1 << 20), handshaken: false });
    }

    fn on_data(&mut self, io: &mut ScriptIo<'_>, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.decoder.push(bytes);
        if !c.handshaken {
            match c.decoder.next_handshake() {
                Ok(None) => return,
                Ok(Some(hs)) if hs.info_hash == self.content.info_hash => c.handshaken = true,
                _ => {
                    self.conns.remove(&conn);
                    io.close(conn);
                    return;
                }
            }
            self.greet(io, conn);
        }
        let c = self.conns.get_mut(&conn).expect("open connection");
        let lengths = self.content.lengths;
        let mut out = Vec::new();
        let mut close = false;
        loop {
            let msg = match c.decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => {
                    close = true;
                    break;
                }
            };
            match (&self.behaviour, msg) {
                (Behaviour::BadData(_) | Behaviour::Silent | Behaviour::LyingBitfield(_), Message::Interested) => {
                    Message::Unchoke.encode(&mut out);
                }
                (behaviour, Message::Request { index, begin, length }) => {
                    let Some(block) = lengths.request_from_wire(index, begin, length, 1 << 17) else {
                        close = true;
                        break;
                    };
                    self.requests.push((io.now, block));
                    let serve = match behaviour {
                        Behaviour::BadData(_) => true,
                        Behaviour::LyingBitfield(has) => has.get(block.piece),
                        _ => false,
                    };
                    if serve {
                        let mut data = self.content.block(block).to_vec();
                        if let Behaviour::BadData(corruption) = behaviour
                            && corruption.hits(index)
                        {
                            data[0] ^= 0x5a;
                        }
                        Message::Piece { index, begin, data: &data }.encode(&mut out);
                    }
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            io.send(conn, out);
        }
        if close {
            self.conns.remove(&conn);
            io.close(conn);
        }
    }

    fn on_closed(&mut self, _io: &mut ScriptIo<'_>, conn: ConnId) {
        self.conns.remove(&conn);
    }

    fn on_timer(&mut self, io: &mut ScriptIo<'_>, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            let mut out = Vec::new();
            Message::KeepAlive.encode(&mut out);
            io.send(conn, out);
            io.timer(conn, KEEPALIVE_EVERY);
        }
    }
}

/// A full bitfield for `pieces` except the listed ones.
pub fn bitfield_without(pieces: u32, missing: impl IntoIterator<Item = u32>) -> Bitfield {
    let mut b = Bitfield::full(pieces);
    for p in missing {
        b.clear(PieceIndex::new_unchecked(p));
    }
    b
}
