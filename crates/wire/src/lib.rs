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

/// Reserved bits we set and test.
pub mod reserved {
    /// BEP 10 extension protocol: byte 5, bit 0x10.
    pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// BEP 6 fast extension: byte 7, bit 0x04.
    pub const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5 DHT: byte 7, bit 0x01.
    pub const DHT: (usize, u8) = (7, 0x01);
    /// What Sluice sends: extension protocol + fast extension.
    pub const SLUICE: [u8; 8] = [0, 0, 0, 0, 0, 0x10, 0, 0x04];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad handshake: {0}")]
    BadHandshake(&'static str),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u32, max: u32 },
    #[error("message id {id} has a payload of {len} bytes, which is invalid for it")]
    BadLength { id: u8, len: u32 },
    #[error("bad extended handshake: {0}")]
    BadExtendedHandshake(String),
}

#[allow(unused_variables)]
impl Handshake {
    pub const LEN: usize = 68;

    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Self { reserved: reserved::SLUICE, info_hash, peer_id }
    }
    pub fn encode(&self, out: &mut Vec<u8>) {
        unimplemented!()
    }
    /// Parses exactly [`Handshake::LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        unimplemented!()
    }
    pub fn supports(&self, bit: (usize, u8)) -> bool {
        self.reserved[bit.0] & bit.1 != 0
    }
}

#[allow(unused_variables)]
impl Message<'_> {
    /// Appends the framed message (length prefix included).
    pub fn encode(&self, out: &mut Vec<u8>) {
        unimplemented!()
    }
}

/// Incremental decoder for one connection: the handshake first, then length-prefixed frames.
/// Bytes may be pushed split at any point.
#[derive(Debug)]
pub struct Decoder {
    _private: (),
}

#[allow(unused_variables)]
impl Decoder {
    /// `max_frame`: the largest frame payload accepted; larger frames are an error.
    pub fn new(max_frame: u32) -> Self {
        unimplemented!()
    }
    pub fn push(&mut self, bytes: &[u8]) {
        unimplemented!()
    }
    /// The handshake, once its 68 bytes are in. Call until it returns `Some` before
    /// asking for messages.
    pub fn next_handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        unimplemented!()
    }
    /// The next complete message, `None` if more bytes are needed. After an error the
    /// connection must be dropped.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, WireError> {
        unimplemented!()
    }
    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        unimplemented!()
    }
}

/// BEP 10 extended handshake (extended message id 0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake {
    /// Extension name → the id the sender wants to receive it as (0 = disabled).
    pub extensions: Vec<(String, u8)>,
    /// `p`: the sender's listen port.
    pub listen_port: Option<u16>,
    /// `v`: client name and version.
    pub client: Option<String>,
    /// `reqq`: requests the sender queues at most.
    pub reqq: Option<u32>,
    /// `metadata_size` (BEP 9).
    pub metadata_size: Option<u64>,
    /// `yourip`: our address as the sender sees it (4 or 16 bytes).
    pub your_ip: Option<Vec<u8>>,
}

#[allow(unused_variables)]
impl ExtendedHandshake {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        unimplemented!()
    }
    /// Appends the bencoded dictionary (no framing).
    pub fn encode(&self, out: &mut Vec<u8>) {
        unimplemented!()
    }
}
