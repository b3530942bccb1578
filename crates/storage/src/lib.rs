//! Where a torrent's verified bytes live, and how we know which ones are there.
//!
//! This crate owns:
//! - [`Layout`]: the pure mapping between pieces and the files that hold them;
//! - [`PieceStore`]: persisting verified pieces and reading blocks back, with [`FsStore`]
//!   (the torrent's files under a folder), [`RamStore`] (RAM-only mode: one [`RamCache`] with one
//!   budget for every torrent) and [`MemStore`] (tests and the simulator);
//! - hashing: [`piece_matches`] and [`recheck`], which rebuilds the have-bitfield of an
//!   existing data folder;
//! - [`Resume`]: a crash-safe journal of verified pieces, so a restart neither re-downloads
//!   nor trusts anything it did not verify.
//!
//! Everything here is synchronous. Disk I/O blocks, and async file APIs only move it to a
//! thread pool anyway, so the async driver calls this crate from its blocking threads; that
//! keeps the code simple, testable without a runtime, and lets the stores use positional
//! I/O from several threads at once.

mod error;
mod fs;
mod hash;
pub mod layout;
mod ram;
mod resume;
mod store;

pub use error::{Result, StorageError};
pub use fs::{DEFAULT_MAX_OPEN_FILES, FsStore};
pub use hash::{piece_matches, recheck};
pub use layout::{FileSpan, Layout, LayoutError};
pub use ram::{CacheEvents, CacheStats, RamCache, RamStore};
pub use resume::Resume;
pub use store::{MemStore, PieceStore};
