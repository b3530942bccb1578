//! The catalog's public values: what a caller adds, updates and reads back.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_core::InfoHash;
use sluice_core::metainfo::Metainfo;
use sluice_db::{DbError, UnixTime};

/// What a torrent is added from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The bytes of a `.torrent` file.
    Torrent(Vec<u8>),
    /// A `magnet:?` link or a bare info-hash (40 hex digits or 32 base32 characters): the
    /// metadata is fetched in the background, the entry exists at once. Or an http(s) link
    /// to a `.torrent` file, fetched before `add` returns (at most
    /// [`crate::MAX_TORRENT_FILE`] bytes, within [`crate::FETCH_TIMEOUT`], redirects
    /// followed, a redirect to a magnet link used as the link).
    Link(String),
}

/// The client's own fields of a torrent (TorrServer's `title`, `poster`, `category` and
/// free-form `data`, kept verbatim).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Empty: the magnet's `dn` when added from one, else the torrent's name once known.
    pub title: String,
    pub poster: String,
    pub category: String,
    pub data: String,
}

/// A partial update of [`Meta`]: `None` keeps the stored value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaUpdate {
    pub title: Option<String>,
    pub poster: Option<String>,
    pub category: Option<String>,
    pub data: Option<String>,
}

/// TorrServer's torrent states, by their codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Being started (storage opening).
    Added = 0,
    /// A magnet whose metadata is being fetched.
    GettingInfo = 1,
    /// Not produced by the catalog: the HTTP layer reports it while it preloads.
    Preload = 2,
    /// Running: peers, pieces, readers.
    Working = 3,
    /// Was running in this process and was closed (idle, dropped, or failed); known still.
    Closed = 4,
    /// Known from the database and not started since this process began.
    InDb = 5,
}

impl Stat {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// TorrServer's `stat_string`.
    pub fn text(self) -> &'static str {
        match self {
            Stat::Added => "Torrent added",
            Stat::GettingInfo => "Torrent getting info",
            Stat::Preload => "Torrent preload",
            Stat::Working => "Torrent working",
            Stat::Closed => "Torrent closed",
            Stat::InDb => "Torrent in db",
        }
    }
}

/// One file of a torrent (pad files are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The position in the metainfo's file list: what [`crate::Catalog::open_reader`] takes.
    pub index: usize,
    /// `/`-separated, starting with the torrent's folder for a multi-file torrent.
    pub path: String,
    pub length: u64,
}

/// What the metadata says about a torrent; kept in memory for every known torrent with
/// metadata (the metainfo itself is reloaded from the database when the torrent starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub size: u64,
    pub piece_length: u32,
    pub pieces: u32,
    pub private: bool,
    /// In metainfo order.
    pub files: Vec<FileInfo>,
}

impl Info {
    pub fn of(meta: &Metainfo) -> Self {
        let files = meta
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.pad)
            .map(|(index, f)| FileInfo { index, path: f.path.join("/"), length: f.length })
            .collect();
        Self {
            name: meta.name.clone(),
            size: meta.lengths.total_length(),
            piece_length: meta.lengths.piece_length(),
            pieces: meta.lengths.num_pieces(),
            private: meta.private,
            files,
        }
    }

    pub fn file(&self, index: usize) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.index == index)
    }
}

/// One torrent as status APIs show it, taken at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub info_hash: InfoHash,
    /// The stored title, or the torrent's name when that is empty.
    pub title: String,
    pub poster: String,
    pub category: String,
    pub data: String,
    pub added_at: UnixTime,
    /// `None` until the metadata is known.
    pub info: Option<Arc<Info>>,
    pub stat: Stat,
    /// Why the torrent last stopped or failed to start, if it did.
    pub error: Option<String>,
    /// Open readers (streams), including those waiting for the torrent to start.
    pub readers: usize,
    /// Held back by focus mode while another torrent streams.
    pub capped: bool,
    /// Live figures; zero unless the torrent runs (or, for a magnet, fetches).
    pub peers_connected: usize,
    pub peers_known: usize,
    /// Payload bytes per second, smoothed.
    pub download_rate: u64,
    pub upload_rate: u64,
    /// Bytes of verified pieces held.
    pub bytes_have: u64,
    /// Payload bytes received and sent since the torrent last started.
    pub downloaded: u64,
    pub uploaded: u64,
    pub pieces_have: u32,
    pub complete: bool,
}

/// What [`crate::Catalog::add`] did.
#[derive(Clone, Debug)]
pub struct Added {
    pub snapshot: Snapshot,
    /// False when the torrent was already known.
    pub created: bool,
}

/// Counts over the whole catalog (for tests, metrics and leak checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogStats {
    pub known: usize,
    /// Starting, fetching metadata or running.
    pub active: usize,
    pub readers: usize,
    pub capped: usize,
    /// Node work (starts, shutdowns) still in flight.
    pub pending_tasks: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The `.torrent` or link is unusable; the message says why.
    #[error("{0}")]
    BadTorrent(String),
    #[error("unknown torrent")]
    UnknownTorrent,
    #[error("the torrent has no such file or range")]
    UnknownFile,
    /// `drop` while a stream still reads from the torrent.
    #[error("the torrent is being streamed")]
    Busy,
    /// The torrent could not be started (storage, metadata fetch failed, session stopped).
    #[error("{0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// Peers given through the API, kept (at most this many) so a revived torrent can dial
/// them again.
pub(crate) const MAX_REMEMBERED_PEERS: usize = 200;

pub(crate) fn remember(peers: &mut Vec<SocketAddr>, new: &[SocketAddr]) {
    for p in new {
        if !peers.contains(p) {
            if peers.len() == MAX_REMEMBERED_PEERS {
                peers.remove(0);
            }
            peers.push(*p);
        }
    }
}

/// TorrServer's default title for a magnet: its `dn` without "rutor.info", underscores as
/// spaces.
pub(crate) fn title_from_dn(dn: &str) -> String {
    dn.replace("rutor.info", "").replace('_', " ").trim().to_owned()
}
