//! A TorrServer-compatible API on the same port as Sluice's own, so the apps that speak
//! TorrServer (Lampa, Kodi's jacktorr, TorrServe, TV apps) work unchanged.
//!
//! - [`types`]: the JSON shapes, key for key (snake_case status and viewed marks, PascalCase
//!   settings and cache state, Go's `omitempty`);
//! - [`files`]: TorrServer's 1-based file ids in natural path order;
//! - [`backend`]: the [`TorrServerBackend`] seam the routes call;
//! - `routes`: [`torrserver_router`], status codes and empty error bodies as TorrServer's
//!   handlers answer them; byte serving is the crate's own (`Range`, `HEAD`, DLNA) plus the
//!   `Server` header Kodi checks;
//! - `m3u`: playlists with VLC `input-slave` lines for external tracks;
//! - [`multipart`]: the `/torrent/upload` body parser (untrusted input, fuzzed).
//!
//! The router is meant to be merged with Sluice's `/api/v1` one: the paths do not overlap.
//! Authentication and IP filtering are layers the server puts around it ([`crate::access`]).

pub mod backend;
pub mod files;
mod m3u;
pub mod multipart;
mod routes;
pub mod types;

/// What `/echo` answers. Clients that check the version look for TorrServer's `MatriX.<n>`
/// form; this is the release the compatibility was written against.
pub const VERSION: &str = "MatriX.143";

pub(crate) use routes::Query;
pub use routes::torrserver_router;

pub use backend::{AddRequest, AddSource, Link, LinkError, TorrServerBackend, TorrentMeta, TsError};
pub use files::{TorrentFiles, TsFile, natural_cmp};
pub use types::{
    BTSets, CacheState, FileStat, FileStats, PieceState, ReaderState, TmdbSettings, TorrentStat, TorrentStatus,
    TorznabConfig, Viewed,
};
