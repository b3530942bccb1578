//! The BitTorrent peer wire protocol: the 68-byte handshake, BEP 3 messages with the BEP 5
//! port, BEP 6 fast-extension and BEP 10 extension-protocol additions, BEP 9 `ut_metadata`
//! and BEP 11 `ut_pex` messages, and an incremental decoder for one connection.
//!
//! Everything here is sans-IO: the caller pushes whatever bytes its socket produced and pulls
//! decoded values out. Every input is treated as hostile: malformed input becomes a
//! [`WireError`], never a panic, and a frame's declared length is checked against a limit
//! before any of its payload is held, so a peer cannot make us allocate more than that limit.
//! Decoded [`Message`]s borrow their payloads from the decoder's buffer, which keeps the
//! steady-state path free of per-message allocation; a 16 KiB block is copied once, from the
//! socket buffer into the decoder, and from there straight to storage.

mod decoder;
mod extended;
mod handshake;
mod message;
mod metadata;
mod pex;

pub use decoder::Decoder;
pub use extended::ExtendedHandshake;
pub use handshake::Handshake;
pub use message::{Message, encode_piece_header};
pub use metadata::{METADATA_PIECE_LEN, MetadataMsg, UT_METADATA, metadata_piece_range, metadata_pieces};
pub use pex::{PEX_MAX_ENTRIES, PEX_MAX_PAYLOAD, PexError, PexMessage, PexPeer, UT_PEX, pex_flags};

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
    #[error("bad ut_metadata message: {0}")]
    BadMetadataMessage(String),
    #[error(transparent)]
    BadPex(#[from] PexError),
}
