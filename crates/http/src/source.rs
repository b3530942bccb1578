//! What the server streams: the one seam between HTTP and the rest of Sluice.
//!
//! The engine side implements [`StreamSource`]; this crate never sees pieces, peers or disks.
//! A reader is a plain [`AsyncRead`]: it is polled with a caller-owned buffer, so a read costs no
//! allocation, and "the bytes are not downloaded yet" is simply `Poll::Pending` until they are.

use std::ops::Range;
use std::time::SystemTime;

use sluice_core::InfoHash;
use tokio::io::AsyncRead;

/// Position of a file in its torrent's file list (the metainfo order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileIndex(pub usize);

/// What the HTTP layer needs to know about one file before it reads a byte of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Path inside the torrent (`/`-separated); its extension picks the `Content-Type`.
    pub path: String,
    pub length: u64,
    /// Sent as `Last-Modified` and accepted as an `If-Range` date when present. Torrent
    /// content never changes under one info-hash, so any fixed instant (the torrent's creation
    /// date, say) is a valid strong validator.
    pub modified: Option<SystemTime>,
}

/// Streams one byte range of a file, in order.
///
/// A read stays `Pending` until the next bytes are available (for the real node: downloaded
/// and verified) and then fills as much of the buffer as it can. `Ok(0)` before the end of the
/// range asked for is an error the server reports by cutting the response short. The server
/// never asks for bytes past the end of the range it opened.
pub trait FileReader: AsyncRead + Send + Unpin {}

impl<T: AsyncRead + Send + Unpin + ?Sized> FileReader for T {}

/// The files the server can stream. Implementations must be cheap to call from request
/// handlers: `file` and `open` do not block; waiting happens inside the reader.
pub trait StreamSource: Send + Sync + 'static {
    fn file(&self, torrent: InfoHash, index: FileIndex) -> Result<FileInfo, SourceError>;

    /// Opens `range` (non-empty, within the file) for reading from `range.start`. Knowing the
    /// end lets the implementation prioritise exactly the pieces this response needs.
    fn open(&self, torrent: InfoHash, index: FileIndex, range: Range<u64>) -> Result<Box<dyn FileReader>, SourceError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unknown torrent")]
    UnknownTorrent,
    #[error("the torrent has no such file")]
    UnknownFile,
    /// The file exists but cannot be streamed now (torrent stopped, storage failing, ...).
    #[error("file unavailable: {0}")]
    Unavailable(String),
}
