use std::io;
use std::path::PathBuf;

use sluice_core::{BlockRef, InfoHash, PieceIndex};

use crate::layout::LayoutError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The file is absent or shorter than the range asked for: the data is simply not there.
    #[error("{}: data not present", path.display())]
    Missing { path: PathBuf },
    /// [`crate::MemStore`]'s equivalent of [`StorageError::Missing`].
    #[error("piece {0} is not stored")]
    PieceNotStored(PieceIndex),
    #[error("file path {components:?} is unsafe: {reason}")]
    UnsafePath { components: Vec<String>, reason: &'static str },
    #[error("two files of the torrent share the path {}", path.display())]
    DuplicatePath { path: PathBuf },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("piece {piece} has {expected} bytes, got {got}")]
    WrongPieceLength { piece: PieceIndex, expected: u32, got: usize },
    #[error("read of {block:?} into a {buf}-byte buffer is outside the piece")]
    BadRange { block: BlockRef, buf: usize },
    #[error("piece {piece} has {len} bytes, more than the whole RAM budget of {budget}")]
    OverBudget { piece: PieceIndex, len: u64, budget: u64 },
    #[error("{}: resume file of torrent {found}, expected {expected}", path.display())]
    ForeignResume { path: PathBuf, expected: InfoHash, found: InfoHash },
    #[error("{}: invalid resume file: {reason}", path.display())]
    BadResume { path: PathBuf, reason: &'static str },
}

impl StorageError {
    /// The data is absent (missing or short file, unwritten piece) rather than unreadable.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing { .. } | Self::PieceNotStored(_))
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
