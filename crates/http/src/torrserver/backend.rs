//! What the TorrServer routes need from the rest of Sluice.

use std::sync::Arc;

use bytes::Bytes;
use sluice_core::InfoHash;

use crate::api::BoxFuture;
use crate::{FileIndex, StreamSource};

use super::files::TorrentFiles;
use super::types::{BTSets, CacheState, TorrentStatus, Viewed};

/// A `link` as TorrServer's clients send it, classified; the backend resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// A `magnet:` URI, unparsed.
    Magnet(String),
    /// A bare 40-digit hex info-hash.
    Hash(InfoHash),
    /// An `http(s)://` URL of a `.torrent` (the backend fetches it under its own address rules;
    /// a redirect to a magnet is the backend's to follow).
    Url(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is empty")]
    Empty,
    /// `file://`, `torrs://` and anything else Sluice does not take.
    #[error("unsupported link: {0}")]
    Unsupported(String),
}

impl Link {
    /// Classifies a link. `&amp;` is turned into `&` first, as TorrServer does for pasted
    /// HTML-escaped magnets.
    pub fn parse(link: &str) -> Result<Self, LinkError> {
        let link = link.trim();
        if link.is_empty() {
            return Err(LinkError::Empty);
        }
        let link = link.replace("&amp;", "&");
        let scheme = link.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("magnet") => Ok(Self::Magnet(link)),
            Some("http" | "https") => Ok(Self::Url(link)),
            _ => match InfoHash::from_hex(&link) {
                Some(h) if link.len() == 40 => Ok(Self::Hash(h)),
                _ => Err(LinkError::Unsupported(link.chars().take(64).collect())),
            },
        }
    }
}

/// What a client may attach to a torrent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TorrentMeta {
    pub title: String,
    pub poster: String,
    pub category: String,
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddSource {
    Link(Link),
    /// The bytes of a `.torrent` file (`/torrent/upload`).
    Torrent(Bytes),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddRequest {
    pub source: AddSource,
    /// For a torrent already known, the backend keeps its stored title, poster, category and
    /// data when these are empty (`/stream` re-adds on every request).
    pub meta: TorrentMeta,
    /// Persist it (`save_to_db`, `&save`, the upload's `save` field) once its metadata is known.
    pub save: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TsError {
    #[error("unknown torrent")]
    UnknownTorrent,
    /// A link or `.torrent` that cannot be used (bad magnet, fetch failed, not bencoded...).
    #[error("bad link: {0}")]
    BadLink(String),
    /// The metadata did not arrive in time; TorrServer answers 500 "torrent connection timeout".
    #[error("torrent connection timeout")]
    MetadataTimeout,
    /// The backend will not do this now (read-only mode, a drop while a player reads...).
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Everything the TorrServer-compatible routes ask of Sluice. Hashes are checked by the
/// routes; file ids are resolved through the [`TorrentFiles`] the backend returns, so the
/// backend only deals in metainfo positions ([`FileIndex`]).
///
/// Every call that names a torrent counts as activity for its idle timer, and one that
/// needs it loaded (`files`, `get`, `cache`, `preload`, `probe`, reading a stream) revives
/// a torrent that was released or is only in the database.
pub trait TorrServerBackend: StreamSource {
    /// Adds a torrent (or finds it) and returns its status at once, before its metadata.
    fn add(&self, request: AddRequest) -> BoxFuture<'_, Result<TorrentStatus, TsError>>;

    /// The torrent's files, waiting for its metadata as long as the backend allows
    /// (TorrServer: 60 s + `TorrentDisconnectTimeout`, then [`TsError::MetadataTimeout`]).
    fn files(&self, hash: InfoHash) -> BoxFuture<'_, Result<Arc<TorrentFiles>, TsError>>;

    /// A status snapshot; `file_stats` from [`TorrentFiles::stats`] once known.
    fn get(&self, hash: InfoHash) -> BoxFuture<'_, Result<TorrentStatus, TsError>>;

    /// Loaded and database-only torrents (the latter with `stat` 5 and no `file_stats`), in
    /// any order: the route sorts.
    fn list(&self) -> BoxFuture<'_, Vec<TorrentStatus>>;

    /// `/torrents set`: an empty `title` means the torrent's name; `poster` and `category`
    /// are overwritten even when empty; `data` only when non-empty.
    fn set(&self, hash: InfoHash, meta: TorrentMeta) -> BoxFuture<'_, Result<(), TsError>>;

    /// Forgets the torrent everywhere (memory, database, viewed marks, cached pieces).
    fn remove(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>>;

    /// Releases it from memory; a saved torrent stays in the database.
    fn drop_torrent(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>>;

    /// Removes every torrent.
    fn wipe(&self) -> BoxFuture<'_, Result<(), TsError>>;

    /// Persists a loaded torrent (`/stream?save`).
    fn save(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>>;

    /// The piece-cache snapshot; `None` while the torrent has no cache (no metadata yet).
    /// Polled every 100 ms by UIs: must be cheap.
    fn cache(&self, hash: InfoHash) -> BoxFuture<'_, Result<Option<CacheState>, TsError>>;

    /// Fills the cache for `file` (head and tail, `CacheSize × PreloadCache %`) and returns
    /// when done; status snapshots meanwhile show `stat` 2 and `preloaded_bytes` progress.
    fn preload(&self, hash: InfoHash, file: FileIndex) -> BoxFuture<'_, Result<(), TsError>>;

    /// Marks file `id` (1-based) viewed. `timecode: None` keeps an existing mark's time code
    /// (a stream starting); the backend stores 0 unless `TrackTimecode` is on.
    fn viewed_set(&self, hash: InfoHash, id: u32, timecode: Option<f64>) -> BoxFuture<'_, Result<(), TsError>>;

    /// Removes one mark, or all of the torrent's with `id: None`.
    fn viewed_remove(&self, hash: InfoHash, id: Option<u32>) -> BoxFuture<'_, Result<(), TsError>>;

    /// Marks of one torrent, or of all with `None`.
    fn viewed_list(&self, hash: Option<InfoHash>) -> BoxFuture<'_, Vec<Viewed>>;

    fn settings(&self) -> BoxFuture<'_, BTSets>;

    /// Replaces the settings (already [`BTSets::sanitize`]d). Unlike TorrServer, applying
    /// them must not interrupt playing streams.
    fn set_settings(&self, settings: BTSets) -> BoxFuture<'_, Result<(), TsError>>;

    /// ffprobe's JSON (`format`, `streams`) for the file.
    fn probe(&self, hash: InfoHash, file: FileIndex) -> BoxFuture<'_, Result<serde_json::Value, TsError>>;

    /// Starts a graceful shutdown (the answer is sent first); `reason` from
    /// `/shutdown/{reason}`.
    fn shutdown(&self, reason: Option<String>) -> Result<(), TsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        let hex = "ab".repeat(20);
        assert_eq!(Link::parse(&hex), Ok(Link::Hash(InfoHash([0xab; 20]))));
        assert_eq!(Link::parse(&hex.to_uppercase()), Ok(Link::Hash(InfoHash([0xab; 20]))));
        assert_eq!(Link::parse("magnet:?xt=1&amp;dn=x"), Ok(Link::Magnet("magnet:?xt=1&dn=x".into())));
        assert_eq!(Link::parse(" HTTP://h/x.torrent"), Ok(Link::Url("HTTP://h/x.torrent".into())));
        assert_eq!(Link::parse(""), Err(LinkError::Empty));
        assert!(matches!(Link::parse("file:///etc/passwd"), Err(LinkError::Unsupported(_))));
        assert!(matches!(Link::parse(&"a".repeat(41)), Err(LinkError::Unsupported(_))));
    }
}
