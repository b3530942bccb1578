use std::path::PathBuf;

use sluice_core::InfoHash;

/// Everything the database can report. The three refusal variants ([`DbError::Corrupt`],
/// [`DbError::NewerSchema`], [`DbError::Foreign`]) only come from [`crate::Db::open`], and
/// in each of them the file was left exactly as it was found.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Not an SQLite file, or one that fails SQLite's `quick_check`.
    #[error("database {path} is damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// Written by a newer Sluice: this build cannot know what the extra versions mean.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    NewerSchema { found: i64, supported: i64 },
    /// A valid SQLite database that some other program owns.
    #[error("database {path} belongs to another application: {detail}")]
    Foreign { path: PathBuf, detail: String },
    /// Viewed marks and resume data belong to a stored torrent.
    #[error("torrent {0} is not in the database")]
    UnknownTorrent(InfoHash),
    /// A value this crate cannot store (e.g. a time code beyond `i64` milliseconds).
    #[error("value out of range: {0}")]
    OutOfRange(&'static str),
    /// The file system would not take a write-ahead log (e.g. some network mounts).
    #[error("cannot use WAL mode: journal mode stays {0}")]
    NoWal(String),
    #[error("settings JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;
