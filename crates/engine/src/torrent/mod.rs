//! The per-torrent state machine. CONTRACT STUB: signatures are fixed, bodies are being written.

use std::net::SocketAddr;
use std::ops::Range;

use sluice_core::{Bitfield, BlockRef, InfoHash, Lengths, PieceIndex, Timestamp};

use crate::{Config, Priority};

/// A connection slot, chosen by the engine: by [`Output::Connect`] for outbound connections
/// and by [`Torrent::accept`] for inbound ones. Never reused within one `Torrent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub u64);

/// What the driver feeds the engine, always with the current time.
#[derive(Debug)]
pub enum Input<'a> {
    /// The outbound connection asked for by [`Output::Connect`] is established.
    Connected { peer: PeerKey },
    /// The connection failed to open, was closed by the peer, or hit an I/O error.
    Closed { peer: PeerKey },
    /// Bytes read from the peer's socket, split anywhere.
    Data { peer: PeerKey, bytes: &'a [u8] },
    /// The driver wrote this many bytes of earlier [`Output::Transmit`]s to the socket.
    Sent { peer: PeerKey, bytes: usize },
    /// Answer to [`Output::VerifyPiece`]: `ok` means the SHA-1 matched and the piece was
    /// written to storage; otherwise it was discarded. The buffer comes back for reuse.
    PieceChecked { piece: PieceIndex, ok: bool, buffer: Vec<u8> },
    /// Answer to [`Output::ReadBlock`]: the block's verified bytes, or `None` if the read failed.
    BlockRead { peer: PeerKey, block: BlockRef, data: Option<&'a [u8]> },
}

/// Why the engine closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Broken framing, bad handshake, out-of-range index, unrequested data, ...
    Protocol(String),
    WrongInfoHash,
    /// Connected to ourselves.
    SelfConnection,
    /// Already connected to this peer id.
    Duplicate,
    Banned,
    Timeout,
    /// Both sides are seeds, or the connection limit was reached.
    NotUseful,
    Shutdown,
}

/// What the engine asks the driver to do.
#[derive(Debug)]
pub enum Output {
    /// Open a TCP connection; answer with [`Input::Connected`] or [`Input::Closed`].
    Connect { peer: PeerKey, addr: SocketAddr },
    /// Write these bytes to the peer, after everything transmitted before; report progress
    /// with [`Input::Sent`].
    Transmit { peer: PeerKey, data: Vec<u8> },
    /// Close the connection. The engine has forgotten the peer; no [`Input::Closed`] is needed.
    Disconnect { peer: PeerKey, reason: DisconnectReason },
    /// All blocks of `piece` are in `data` (exactly the piece's length): hash it against the
    /// metainfo, persist it if it matches, and answer with [`Input::PieceChecked`].
    VerifyPiece { piece: PieceIndex, data: Vec<u8> },
    /// Read a block of verified data to upload; answer with [`Input::BlockRead`].
    ReadBlock { peer: PeerKey, block: BlockRef },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PieceVerified(PieceIndex),
    /// A piece failed its hash; these peers sent blocks of it.
    HashFailed { piece: PieceIndex, peers: Vec<PeerKey> },
    PeerConnected { peer: PeerKey, addr: SocketAddr },
    PeerDisconnected { peer: PeerKey, reason: DisconnectReason },
    PeerBanned { addr: SocketAddr },
    /// Every wanted piece is verified.
    Complete,
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub bytes_have: u64,
    pub bytes_wanted_left: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Payload bytes per second, smoothed.
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers_connected: usize,
    pub peers_known: usize,
    /// Bytes reserved by piece buffers now, and the most ever reserved.
    pub buffered_bytes: u64,
    pub buffered_bytes_peak: u64,
    pub endgame: bool,
}

/// One torrent's engine.
#[derive(Debug)]
pub struct Torrent {
    _private: (),
}

#[allow(unused_variables)]
impl Torrent {
    /// `have` are the pieces already verified in storage (from resume data).
    pub fn new(info_hash: InfoHash, lengths: Lengths, have: Bitfield, config: Config, now: Timestamp) -> Self {
        unimplemented!()
    }

    pub fn info_hash(&self) -> InfoHash {
        unimplemented!()
    }
    pub fn lengths(&self) -> &Lengths {
        unimplemented!()
    }
    pub fn have(&self) -> &Bitfield {
        unimplemented!()
    }
    /// Every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        unimplemented!()
    }
    pub fn stats(&self) -> Stats {
        unimplemented!()
    }

    /// A peer address learned from the command line, a tracker, DHT or PEX. The engine
    /// connects when it has room (limits, backoff, bans).
    pub fn add_peer(&mut self, addr: SocketAddr, now: Timestamp) {
        unimplemented!()
    }

    /// An inbound connection whose handshake names this torrent. `None`: refuse it (banned,
    /// full). The driver then feeds every byte it read, the handshake included.
    pub fn accept(&mut self, addr: SocketAddr, now: Timestamp) -> Option<PeerKey> {
        unimplemented!()
    }

    pub fn handle_input(&mut self, input: Input<'_>, now: Timestamp) {
        unimplemented!()
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        unimplemented!()
    }

    /// Next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        unimplemented!()
    }

    /// When [`Torrent::handle_timeout`] must be called next. Changes only after a mutation.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        unimplemented!()
    }

    /// Sets the priority tier of a range of pieces. Cost is proportional to the range.
    pub fn set_priority(&mut self, pieces: Range<u32>, priority: Priority, now: Timestamp) {
        unimplemented!()
    }

    /// Sets (or clears) the time by which a piece should be verified.
    pub fn set_deadline(&mut self, piece: PieceIndex, deadline: Option<Timestamp>, now: Timestamp) {
        unimplemented!()
    }

    /// Closes every connection; outputs the disconnects.
    pub fn shutdown(&mut self, now: Timestamp) {
        unimplemented!()
    }

    /// Panics if an internal invariant is broken (see STATE.md).
    pub fn check_invariants(&self) {
        unimplemented!()
    }
}
