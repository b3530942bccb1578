//! The [`PieceStore`] trait and its in-memory implementation.

use std::fmt;
use std::sync::{PoisonError, RwLock};

use sluice_core::{Bitfield, BlockRef, Lengths, PieceIndex};

use crate::error::{Result, StorageError};

/// Where verified pieces live. Methods take `&self` so the driver can share one store between
/// blocking threads (`Arc<dyn PieceStore>`); implementations synchronise internally and never
/// hold a lock across a disk read or write.
pub trait PieceStore: Send + Sync + fmt::Debug {
    fn lengths(&self) -> &Lengths;

    /// Persists a whole piece whose hash has been checked; `data` is exactly the piece's length.
    fn write_piece(&self, piece: PieceIndex, data: &[u8]) -> Result<()>;

    /// Fills `buf` (exactly `block.len` bytes) with the range `block` names, which may be any
    /// range inside one piece. Absent data is an error for which [`StorageError::is_missing`]
    /// holds.
    fn read(&self, block: BlockRef, buf: &mut [u8]) -> Result<()>;

    /// Reads a whole piece into `buf`, which must be exactly the piece's length.
    fn read_piece(&self, piece: PieceIndex, buf: &mut [u8]) -> Result<()> {
        let len = self.lengths().piece_len(piece);
        self.read(BlockRef { piece, offset: 0, len }, buf)
    }

    /// Makes everything written so far durable (fdatasync of the touched files).
    fn flush(&self) -> Result<()>;

    /// Clears from `have` the pieces whose data is certainly absent (missing or short files).
    /// Cheap: no data is read or hashed, so a set bit remains a claim, not a proof.
    fn retain_present(&self, have: &mut Bitfield);

    /// Whether a read may wait on a disk: then callers on an async runtime read on a blocking
    /// thread. Memory stores copy and say no.
    fn reads_block(&self) -> bool {
        true
    }

    /// Whether `piece`, once written, is still stored. Only stores that drop pieces (the RAM
    /// cache evicts) ever say no.
    fn holds(&self, _piece: PieceIndex) -> bool {
        true
    }
}

pub(crate) fn check_piece(lengths: &Lengths, piece: PieceIndex, got: usize) -> Result<()> {
    let expected = lengths.piece(piece.get()).map_or(0, |p| lengths.piece_len(p));
    if expected == 0 || got != expected as usize {
        return Err(StorageError::WrongPieceLength { piece, expected, got });
    }
    Ok(())
}

pub(crate) fn check_range(lengths: &Lengths, block: BlockRef, buf: usize) -> Result<()> {
    let fits = lengths
        .piece(block.piece.get())
        .is_some_and(|p| block.offset.checked_add(block.len).is_some_and(|end| end <= lengths.piece_len(p)));
    if !fits || buf != block.len as usize {
        return Err(StorageError::BadRange { block, buf });
    }
    Ok(())
}

/// Keeps pieces in memory, for tests and the simulator. Unwritten pieces read as
/// [`StorageError::PieceNotStored`].
pub struct MemStore {
    lengths: Lengths,
    pieces: Vec<RwLock<Option<Box<[u8]>>>>,
}

impl MemStore {
    pub fn new(lengths: Lengths) -> Self {
        Self { lengths, pieces: (0..lengths.num_pieces()).map(|_| RwLock::new(None)).collect() }
    }

    /// Overwrites part of a stored piece, to simulate corruption in tests.
    pub fn corrupt(&self, piece: PieceIndex, offset: usize, byte: u8) {
        if let Some(data) = self.pieces[piece.as_usize()].write().unwrap_or_else(PoisonError::into_inner).as_mut()
            && let Some(b) = data.get_mut(offset)
        {
            *b = byte;
        }
    }
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStore").field("lengths", &self.lengths).finish_non_exhaustive()
    }
}

impl PieceStore for MemStore {
    fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    fn write_piece(&self, piece: PieceIndex, data: &[u8]) -> Result<()> {
        check_piece(&self.lengths, piece, data.len())?;
        *self.pieces[piece.as_usize()].write().unwrap_or_else(PoisonError::into_inner) = Some(data.into());
        Ok(())
    }

    fn read(&self, block: BlockRef, buf: &mut [u8]) -> Result<()> {
        check_range(&self.lengths, block, buf.len())?;
        let slot = self.pieces[block.piece.as_usize()].read().unwrap_or_else(PoisonError::into_inner);
        let data = slot.as_ref().ok_or(StorageError::PieceNotStored(block.piece))?;
        let start = block.offset as usize;
        buf.copy_from_slice(&data[start..start + buf.len()]);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn reads_block(&self) -> bool {
        false
    }

    fn retain_present(&self, have: &mut Bitfield) {
        let absent: Vec<PieceIndex> = have
            .iter_ones()
            .filter(|p| {
                self.pieces.get(p.as_usize()).is_none_or(|s| s.read().unwrap_or_else(PoisonError::into_inner).is_none())
            })
            .collect();
        for p in absent {
            have.clear(p);
        }
    }
}
