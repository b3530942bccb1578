//! What a run measured: per-node samples of the engine's stats, verification timings and
//! counts of the wire messages each engine sent (decoded by the simulator's sniffer).

use std::ops::AddAssign;
use std::time::Duration;

use sluice_core::{PieceIndex, Timestamp};
use sluice_wire::Message;

/// Wire messages one engine sent over some connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub keep_alive: u64,
    pub choke: u64,
    pub unchoke: u64,
    pub interested: u64,
    pub not_interested: u64,
    pub have: u64,
    pub bitfield: u64,
    pub request: u64,
    pub piece: u64,
    pub piece_bytes: u64,
    pub cancel: u64,
    pub reject: u64,
    pub other: u64,
}

impl MessageCounts {
    pub(crate) fn count(&mut self, msg: &Message<'_>) {
        match msg {
            Message::KeepAlive => self.keep_alive += 1,
            Message::Choke => self.choke += 1,
            Message::Unchoke => self.unchoke += 1,
            Message::Interested => self.interested += 1,
            Message::NotInterested => self.not_interested += 1,
            Message::Have(_) => self.have += 1,
            Message::Bitfield(_) | Message::HaveAll | Message::HaveNone => self.bitfield += 1,
            Message::Request { .. } => self.request += 1,
            Message::Piece { data, .. } => {
                self.piece += 1;
                self.piece_bytes += data.len() as u64;
            }
            Message::Cancel { .. } => self.cancel += 1,
            Message::Reject { .. } => self.reject += 1,
            _ => self.other += 1,
        }
    }
}

impl AddAssign for MessageCounts {
    fn add_assign(&mut self, o: Self) {
        self.keep_alive += o.keep_alive;
        self.choke += o.choke;
        self.unchoke += o.unchoke;
        self.interested += o.interested;
        self.not_interested += o.not_interested;
        self.have += o.have;
        self.bitfield += o.bitfield;
        self.request += o.request;
        self.piece += o.piece;
        self.piece_bytes += o.piece_bytes;
        self.cancel += o.cancel;
        self.reject += o.reject;
        self.other += o.other;
    }
}

/// Observations about one engine node.
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    /// Largest `Stats::buffered_bytes` seen after any mutation.
    pub max_buffered_bytes: u64,
    /// Bytes handed over in `VerifyPiece` and not yet answered, now and at most.
    pub verify_outstanding_bytes: u64,
    pub max_verify_outstanding_bytes: u64,
    /// Whether `Stats::endgame` was ever seen set.
    pub endgame_seen: bool,
    /// RAM mode: most bytes the node's cache held after any mutation (the whole cache's use,
    /// if shared), and pieces evicted from its slot.
    pub max_cache_bytes: u64,
    pub evicted: u64,
    /// Pieces in the order the engine reported them verified, with the time.
    pub verified: Vec<(PieceIndex, Timestamp)>,
    /// When the engine reported `Event::Complete`.
    pub completed_at: Option<Timestamp>,
    /// Most bytes the engine had transmitted on one connection that had not left the
    /// uplink yet (its send queue).
    pub max_send_queue: u64,
    /// Outbound connection attempts the engine made.
    pub connects: u64,
    /// Pieces the driver hashed, and how many of them failed.
    pub pieces_checked: u64,
    pub pieces_failed: u64,
}

impl NodeMetrics {
    /// Time from the start of the simulation to `Event::Complete`.
    pub fn completion_time(&self) -> Option<Duration> {
        self.completed_at.map(|t| t.saturating_since(Timestamp::ZERO))
    }
}
