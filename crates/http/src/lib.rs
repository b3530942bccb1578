//! HTTP byte serving of torrent files while they download.
//!
//! Media players (VLC, mpv, Kodi, ffmpeg, smart TVs) open a URL, probe it with `Range`
//! requests, and seek by issuing new ones. This crate answers those requests and nothing
//! else; it knows nothing of pieces or peers.
//!
//! - [`source`]: the seam to the rest of Sluice. A [`StreamSource`] describes files and opens
//!   readers; a reader is an `AsyncRead` that stays pending until the next bytes exist (the
//!   node will hand out verified bytes only). Tests drive the server with an in-memory fake.
//! - [`range`]: pure `Range`/`If-Range` evaluation, property-tested and fuzzed
//!   (`fuzz/fuzz_targets/http_range_parse.rs`). The RFC 9110 choices are listed there.
//! - [`meta`]: the strong `ETag` (info-hash, index and length identify immutable bytes),
//!   `Content-Type` by extension, DLNA header values.
//! - `body`: streams the reader chunk by chunk. A source that stalls past the read timeout
//!   aborts the connection before `Content-Length` is reached: a player that sees a truncated
//!   response retries, while a "complete" short file would be silently corrupt.
//! - [`router`]: the stream routes, errors as `{"error":{"code","message"}}` JSON;
//!   [`api_router`] adds the rest of Sluice's own `/api/v1` ([`api`]: torrents, settings,
//!   events, playlists, its OpenAPI document).
//! - `m3u`: playlist entries with VLC `input-slave` lines, shared by both APIs.
//! - [`torrserver`]: the TorrServer-compatible API ([`torrserver_router`]) for the apps that
//!   speak it, behind the [`TorrServerBackend`] seam.
//! - [`access`]: IP allow/deny lists and HTTP basic auth in front of every route ([`protect`]);
//!   players' links of known torrents stay open without credentials, as TorrServer's clients
//!   expect. The `Authorization` parser is fuzzed (`fuzz/fuzz_targets/http_basic_auth.rs`).
//!
//! Every response carries one `Content-Length` (never chunked encoding), so a client can
//! always tell a cut-off stream from a finished one.

pub mod access;
pub mod api;
mod body;
mod m3u;
pub mod meta;
pub mod range;
mod server;
pub mod source;
pub mod torrserver;

pub use access::{AccessPolicy, Accounts, IpFilter, IpNet, protect};
pub use api::{Added, Library, LibraryError, Torrent, TorrentDetail, TorrentFile, TorrentState, api_router};
pub use server::{HttpConfig, error, router};
pub use source::{FileIndex, FileInfo, FileReader, SourceError, StreamSource};
pub use torrserver::{TorrServerBackend, torrserver_router};
