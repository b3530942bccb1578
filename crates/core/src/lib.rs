//! Pure BitTorrent domain types shared by every Sluice crate.
//!
//! Nothing here does I/O, reads a clock or draws random numbers. Indices and units are
//! newtypes whose constructors check their range against a torrent's [`Lengths`], so a
//! value that reached the engine from a peer has already been validated once, at the edge.

mod bitfield;
pub mod blocklist;
mod geometry;
mod ids;
pub mod magnet;
pub mod metainfo;
mod time;

pub use bitfield::{Bitfield, BitfieldError};
pub use geometry::{BLOCK_SIZE, BlockIndex, BlockRef, ByteOffset, Lengths, LengthsError, PieceIndex};
pub use ids::{InfoHash, PeerId};
pub use time::Timestamp;
