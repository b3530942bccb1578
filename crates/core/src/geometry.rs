//! Piece and block geometry with checked constructors.
//!
//! A torrent's content is one byte stream of `total_length` bytes cut into pieces of
//! `piece_length` bytes (the last one shorter) and each piece into 16 KiB blocks (the last one
//! shorter). [`Lengths`] owns that arithmetic; [`PieceIndex`] and [`BlockRef`] values that come
//! from untrusted input must go through [`Lengths::piece`] / [`Lengths::block_from_wire`].

use std::fmt;

/// Request granularity every client uses (BEP 3 recommends 2^14).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// Index of a piece within a torrent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// Unchecked: only for indices produced by iterating a known [`Lengths`].
    pub const fn new_unchecked(i: u32) -> Self {
        Self(i)
    }
    pub const fn get(self) -> u32 {
        self.0
    }
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of a 16 KiB block within its piece.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct BlockIndex(u32);

impl BlockIndex {
    pub const fn new_unchecked(i: u32) -> Self {
        Self(i)
    }
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A byte position within the torrent's whole content stream.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ByteOffset(pub u64);

/// One block: its piece, its byte offset inside the piece and its length. Only [`Lengths`]
/// builds these, so `offset` is block-aligned and `offset + len` stays inside the piece.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    pub piece: PieceIndex,
    pub offset: u32,
    pub len: u32,
}

impl BlockRef {
    pub const fn index(self) -> BlockIndex {
        BlockIndex(self.offset / BLOCK_SIZE)
    }
}

impl fmt::Debug for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}+{}({})", self.piece, self.offset, self.len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LengthsError {
    #[error("piece length {0} is outside 1 byte ..= 128 MiB")]
    BadPieceLength(u64),
    #[error("total length is zero")]
    Empty,
    #[error("{pieces} piece hashes given, but {total} bytes at piece length {piece_length} need {expected}")]
    PieceCountMismatch { pieces: u64, total: u64, piece_length: u32, expected: u64 },
    #[error("torrent has more pieces than supported ({0})")]
    TooManyPieces(u64),
}

/// Geometry of a torrent's content.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Lengths {
    total_length: u64,
    piece_length: u32,
    num_pieces: u32,
}

impl Lengths {
    /// Largest piece length accepted (libtorrent's limit is 128 MiB as well).
    pub const MAX_PIECE_LENGTH: u32 = 128 * 1024 * 1024;

    /// Checks that `piece_length` is usable and that `num_pieces` hashes cover `total_length`.
    pub fn new(total_length: u64, piece_length: u64, num_pieces: u64) -> Result<Self, LengthsError> {
        if piece_length == 0 || piece_length > u64::from(Self::MAX_PIECE_LENGTH) {
            return Err(LengthsError::BadPieceLength(piece_length));
        }
        if total_length == 0 {
            return Err(LengthsError::Empty);
        }
        let expected = total_length.div_ceil(piece_length);
        if expected != num_pieces {
            return Err(LengthsError::PieceCountMismatch {
                pieces: num_pieces,
                total: total_length,
                piece_length: piece_length as u32,
                expected,
            });
        }
        let num_pieces = u32::try_from(num_pieces).map_err(|_| LengthsError::TooManyPieces(num_pieces))?;
        Ok(Self { total_length, piece_length: piece_length as u32, num_pieces })
    }

    pub const fn total_length(&self) -> u64 {
        self.total_length
    }
    pub const fn piece_length(&self) -> u32 {
        self.piece_length
    }
    pub const fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Validates an index received from outside.
    pub fn piece(&self, index: u32) -> Option<PieceIndex> {
        (index < self.num_pieces).then_some(PieceIndex(index))
    }

    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> + use<> {
        (0..self.num_pieces).map(PieceIndex)
    }

    pub fn last_piece(&self) -> PieceIndex {
        PieceIndex(self.num_pieces - 1)
    }

    /// Byte length of `piece` (the last piece may be shorter).
    pub fn piece_len(&self, piece: PieceIndex) -> u32 {
        let start = self.piece_start(piece).0;
        let end = (start + u64::from(self.piece_length)).min(self.total_length);
        (end - start) as u32
    }

    /// Offset of the piece's first byte in the content stream.
    pub fn piece_start(&self, piece: PieceIndex) -> ByteOffset {
        ByteOffset(u64::from(piece.0) * u64::from(self.piece_length))
    }

    /// The piece holding content byte `offset`, if inside the torrent.
    pub fn piece_at(&self, offset: ByteOffset) -> Option<PieceIndex> {
        (offset.0 < self.total_length).then(|| PieceIndex((offset.0 / u64::from(self.piece_length)) as u32))
    }

    pub fn blocks_in_piece(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// Upper bound of blocks in any piece.
    pub fn max_blocks_per_piece(&self) -> u32 {
        self.piece_length.div_ceil(BLOCK_SIZE)
    }

    /// The `block`-th block of `piece`, if it exists.
    pub fn block(&self, piece: PieceIndex, block: BlockIndex) -> Option<BlockRef> {
        let plen = self.piece_len(piece);
        let offset = block.0.checked_mul(BLOCK_SIZE)?;
        (offset < plen).then(|| BlockRef { piece, offset, len: (plen - offset).min(BLOCK_SIZE) })
    }

    pub fn blocks(&self, piece: PieceIndex) -> impl Iterator<Item = BlockRef> + use<> {
        let this = *self;
        (0..self.blocks_in_piece(piece)).filter_map(move |b| this.block(piece, BlockIndex(b)))
    }

    /// Validates a (piece, begin, length) triple from the wire as exactly one of our blocks.
    pub fn block_from_wire(&self, index: u32, begin: u32, length: u32) -> Option<BlockRef> {
        let piece = self.piece(index)?;
        if !begin.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        let b = self.block(piece, BlockIndex(begin / BLOCK_SIZE))?;
        (b.len == length).then_some(b)
    }

    /// Validates an upload request: any in-bounds range of at most `max_len` bytes.
    pub fn request_from_wire(&self, index: u32, begin: u32, length: u32, max_len: u32) -> Option<BlockRef> {
        let piece = self.piece(index)?;
        let end = begin.checked_add(length)?;
        (length > 0 && length <= max_len && end <= self.piece_len(piece)).then_some(BlockRef {
            piece,
            offset: begin,
            len: length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_and_block_are_short() {
        let l = Lengths::new(100_000, 32768, 4).unwrap();
        let last = l.last_piece();
        assert_eq!(l.piece_len(last), 100_000 - 3 * 32768);
        assert_eq!(l.blocks_in_piece(last), 1);
        assert_eq!(l.block(last, BlockIndex(0)).unwrap().len, 1696);
        assert!(l.block(last, BlockIndex(1)).is_none());
        assert_eq!(l.block_from_wire(3, 0, 1696), l.block(last, BlockIndex(0)));
        assert_eq!(l.block_from_wire(3, 0, 16384), None);
        assert_eq!(l.block_from_wire(4, 0, 1696), None);
    }

    #[test]
    fn piece_count_is_checked() {
        assert!(matches!(Lengths::new(100, 16384, 2), Err(LengthsError::PieceCountMismatch { .. })));
        assert!(Lengths::new(0, 16384, 0).is_err());
        assert!(Lengths::new(1, 0, 1).is_err());
    }
}
