//! Peer wire protocol. CONTRACT STUB: types are fixed, codecs are being written.

use sluice_core::{InfoHash, PeerId};

/// The 68-byte opening of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

/// One peer message (BEP 3, BEP 6 fast extension, BEP 10 extension protocol, BEP 5 port).
/// Payloads borrow from the decoder's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request { index: u32, begin: u32, length: u32 },
    Piece { index: u32, begin: u32, data: &'a [u8] },
    Cancel { index: u32, begin: u32, length: u32 },
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject { index: u32, begin: u32, length: u32 },
    AllowedFast(u32),
    Extended { id: u8, payload: &'a [u8] },
    /// An id we do not know; skipped, not an error.
    Unknown { id: u8, payload: &'a [u8] },
}
