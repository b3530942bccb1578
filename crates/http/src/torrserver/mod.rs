//! A TorrServer-compatible API on the same port as Sluice's own, so the apps that speak
//! TorrServer (Lampa, Kodi's jacktorr, TorrServe, TV apps) work unchanged.
//!
//! - [`types`]: the JSON shapes, key for key (snake_case status and viewed marks, PascalCase
//!   settings and cache state, Go's `omitempty`);
//! - [`files`]: TorrServer's 1-based file ids in natural path order;
//! - [`backend`]: the [`TorrServerBackend`] seam the routes call.

pub mod backend;
pub mod files;
pub mod types;

pub use backend::{AddRequest, AddSource, Link, LinkError, TorrServerBackend, TorrentMeta, TsError};
pub use files::{TorrentFiles, TsFile, natural_cmp};
pub use types::{
    BTSets, CacheState, FileStat, PieceState, ReaderState, TmdbSettings, TorrentStat, TorrentStatus, TorznabConfig,
    Viewed,
};
