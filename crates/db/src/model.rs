//! The typed records the database stores.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::InfoHash;

/// Wall-clock seconds since the Unix epoch, as TorrServer's `timestamp` field counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// Reads the system clock; before 1970 reads as 0.
    pub fn now() -> Self {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// How a torrent was given to us. A magnet is replaced by the metainfo once it is fetched,
/// so a restart need not fetch it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentSource {
    /// The raw `.torrent` bytes (or at least the bencoded info dictionary the node needs).
    Metainfo(Vec<u8>),
    Magnet(String),
}

/// One stored torrent with the client's own fields (TorrServer's title, poster, category
/// and free-form `data`, which is round-tripped verbatim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentRecord {
    pub info_hash: InfoHash,
    pub source: TorrentSource,
    pub title: String,
    pub poster: String,
    pub category: String,
    pub data: String,
    /// When the torrent was first added. An upsert of a known torrent keeps the stored value.
    pub added_at: UnixTime,
    pub updated_at: UnixTime,
}

/// A file number as the API layer names it (TorrServer's 1-based ids). The database stores
/// it opaquely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// "This file was watched, up to here." Stored with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewedMark {
    pub info_hash: InfoHash,
    pub file: FileId,
    pub timecode: Duration,
    pub updated_at: UnixTime,
}
