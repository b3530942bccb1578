//! Sluice's embedded database: the torrents a user added (metainfo or magnet plus the
//! client's title, poster, category and free-form data), settings documents, viewed marks
//! with time codes, and per-torrent resume data. It is what lets `sluice serve` come back
//! after a restart, or a `kill -9`, knowing everything it knew.
//!
//! SQLite (bundled, so every platform runs the same version) in WAL mode: readers never
//! block the writer, and a commit is one append to the log. Each public write is one
//! transaction, so nothing is ever half saved.
//!
//! [`Db::open`] refuses, with a typed error and without writing a byte, a file that is not a
//! database or fails `quick_check` ([`DbError::Corrupt`]), one written by a newer Sluice
//! ([`DbError::NewerSchema`]) and one another program owns ([`DbError::Foreign`]): the user's
//! data must never be silently replaced by an empty database.
//!
//! The API is synchronous. SQLite calls block on disk, so async callers run them on the
//! blocking pool (`tokio::task::spawn_blocking`), typically holding the one [`Db`] in an
//! `Arc<Mutex<Db>>`. [`Db`] is `Send` but not `Sync`: one connection serves one thread at a
//! time, which is all SQLite allows a connection anyway.

mod error;
mod model;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use sluice_core::InfoHash;

pub use error::{DbError, Result};
pub use model::{FileId, TorrentRecord, TorrentSource, UnixTime, ViewedMark};
pub use schema::SCHEMA_VERSION;

/// How long a statement waits for a lock another connection (say, a backup tool) holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open Sluice database. See the crate docs for threading.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
}

const TORRENT_COLUMNS: &str = "info_hash, metainfo, magnet, title, poster, category, data, added_at, updated_at";

impl Db {
    /// Opens the database at `path`, creating it if missing, and brings its schema up to
    /// [`SCHEMA_VERSION`].
    ///
    /// Durability: `journal_mode=WAL` with `synchronous=FULL`. Surviving `kill -9` alone
    /// would only need NORMAL, since a commit's WAL frames are in the OS page cache once the
    /// commit returns and the kernel writes them out whatever happens to the process. But
    /// NORMAL lets the last commits vanish on a power cut or kernel crash, and Sluice runs on
    /// TV boxes and NASes that get unplugged. FULL adds one fsync of the WAL per commit, so a
    /// commit that returned is on disk; writes here are rare (an add, a settings change, a
    /// viewed mark every few seconds, resume snapshots), so that fsync costs nothing that
    /// matters.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        let path = path.as_ref();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| refusal(path, e))?;
        // Until the file has passed every check, closing must not checkpoint a WAL into it.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        check(&conn, path)?;

        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::NoWal(mode));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let mut db = Db { conn };
        db.migrate()?;
        db.conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        let version = user_version(&self.conn)?;
        for (done, step) in (0_i64..).zip(schema::MIGRATIONS).skip(usize::try_from(version).unwrap_or(0)) {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", done + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Stores a torrent, replacing every field of a known one except `added_at`. Viewed
    /// marks and resume data of a known torrent are kept.
    pub fn upsert_torrent(&mut self, t: &TorrentRecord) -> Result<()> {
        let (metainfo, magnet) = match &t.source {
            TorrentSource::Metainfo(bytes) => (Some(bytes.as_slice()), None),
            TorrentSource::Magnet(uri) => (None, Some(uri.as_str())),
        };
        self.conn.execute(
            "INSERT INTO torrents (info_hash, metainfo, magnet, title, poster, category, data,
                                   added_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (info_hash) DO UPDATE SET
                 metainfo = excluded.metainfo, magnet = excluded.magnet,
                 title = excluded.title, poster = excluded.poster,
                 category = excluded.category, data = excluded.data,
                 updated_at = excluded.updated_at",
            params![
                t.info_hash.0,
                metainfo,
                magnet,
                t.title,
                t.poster,
                t.category,
                t.data,
                t.added_at.0,
                t.updated_at.0
            ],
        )?;
        Ok(())
    }

    pub fn torrent(&self, hash: InfoHash) -> Result<Option<TorrentRecord>> {
        let sql = format!("SELECT {TORRENT_COLUMNS} FROM torrents WHERE info_hash = ?1");
        Ok(self.conn.query_row(&sql, [hash.0], torrent_row).optional()?)
    }

    /// Every stored torrent, newest `added_at` first (ties by info-hash).
    pub fn torrents(&self) -> Result<Vec<TorrentRecord>> {
        let sql = format!("SELECT {TORRENT_COLUMNS} FROM torrents ORDER BY added_at DESC, info_hash");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], torrent_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a torrent and every trace of it (viewed marks, resume data), in one
    /// transaction. Returns whether it was stored.
    pub fn remove_torrent(&mut self, hash: InfoHash) -> Result<bool> {
        // The foreign keys cascade; deleting the children explicitly as well keeps the
        // promise even on a connection where someone turned foreign keys off.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM viewed WHERE info_hash = ?1", [hash.0])?;
        tx.execute("DELETE FROM resume WHERE info_hash = ?1", [hash.0])?;
        let removed = tx.execute("DELETE FROM torrents WHERE info_hash = ?1", [hash.0])? > 0;
        tx.commit()?;
        Ok(removed)
    }

    /// Stores a mark, replacing the time code of an existing one for the same file.
    pub fn set_viewed(&mut self, mark: &ViewedMark) -> Result<()> {
        let ms = i64::try_from(mark.timecode.as_millis()).map_err(|_| DbError::OutOfRange("time code"))?;
        self.conn
            .execute(
                "INSERT INTO viewed (info_hash, file_id, timecode_ms, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (info_hash, file_id) DO UPDATE SET
                     timecode_ms = excluded.timecode_ms, updated_at = excluded.updated_at",
                params![mark.info_hash.0, mark.file.0, ms, mark.updated_at.0],
            )
            .map_err(|e| unknown_torrent(e, mark.info_hash))?;
        Ok(())
    }

    /// Marks a file viewed without touching an existing time code (a stream started);
    /// a new mark starts at zero.
    pub fn touch_viewed(&mut self, hash: InfoHash, file: FileId, now: UnixTime) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO viewed (info_hash, file_id, timecode_ms, updated_at)
                 VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (info_hash, file_id) DO UPDATE SET updated_at = excluded.updated_at",
                params![hash.0, file.0, now.0],
            )
            .map_err(|e| unknown_torrent(e, hash))?;
        Ok(())
    }

    /// Removes one file's mark, or all of the torrent's marks with `None`. Returns how many
    /// were removed.
    pub fn remove_viewed(&mut self, hash: InfoHash, file: Option<FileId>) -> Result<usize> {
        Ok(match file {
            Some(f) => {
                self.conn.execute("DELETE FROM viewed WHERE info_hash = ?1 AND file_id = ?2", params![hash.0, f.0])?
            }
            None => self.conn.execute("DELETE FROM viewed WHERE info_hash = ?1", [hash.0])?,
        })
    }

    /// The torrent's marks by file id.
    pub fn viewed(&self, hash: InfoHash) -> Result<Vec<ViewedMark>> {
        let mut stmt = self.conn.prepare(
            "SELECT info_hash, file_id, timecode_ms, updated_at FROM viewed
             WHERE info_hash = ?1 ORDER BY file_id",
        )?;
        let rows = stmt.query_map([hash.0], viewed_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every mark, by info-hash then file id.
    pub fn all_viewed(&self) -> Result<Vec<ViewedMark>> {
        let mut stmt = self.conn.prepare(
            "SELECT info_hash, file_id, timecode_ms, updated_at FROM viewed
             ORDER BY info_hash, file_id",
        )?;
        let rows = stmt.query_map([], viewed_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces the torrent's resume data (e.g. its verified-pieces bitfield).
    pub fn put_resume(&mut self, hash: InfoHash, data: &[u8]) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO resume (info_hash, data) VALUES (?1, ?2)
                 ON CONFLICT (info_hash) DO UPDATE SET data = excluded.data",
                params![hash.0, data],
            )
            .map_err(|e| unknown_torrent(e, hash))?;
        Ok(())
    }

    pub fn resume(&self, hash: InfoHash) -> Result<Option<Vec<u8>>> {
        Ok(self.conn.query_row("SELECT data FROM resume WHERE info_hash = ?1", [hash.0], |r| r.get(0)).optional()?)
    }

    /// The settings document stored under `key`.
    pub fn settings(&self, key: &str) -> Result<Option<serde_json::Value>> {
        let text: Option<String> =
            self.conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    /// Replaces the whole settings document stored under `key`.
    pub fn set_settings(&mut self, key: &str, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string(value)?;
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, text],
        )?;
        Ok(())
    }
}

/// Read-only checks run before anything is written. The file has not been touched if any
/// of them fails.
fn check(conn: &Connection, path: &Path) -> Result<()> {
    let version = user_version(conn).map_err(|e| refusal(path, e))?;
    let mut stmt = conn.prepare("PRAGMA quick_check(8)").map_err(|e| refusal(path, e))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
        .map_err(|e| refusal(path, e))?;
    if problems.len() != 1 || problems[0] != "ok" {
        return Err(DbError::Corrupt { path: path.into(), detail: problems.join("; ").replace('\n', " ") });
    }

    let app_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    let foreign = |detail: String| DbError::Foreign { path: path.into(), detail };
    if app_id != schema::APPLICATION_ID && (app_id != 0 || version != 0 || objects != 0) {
        return Err(foreign(format!("application_id {app_id:#x}, schema version {version}, {objects} schema objects")));
    }
    if version > SCHEMA_VERSION {
        return Err(DbError::NewerSchema { found: version, supported: SCHEMA_VERSION });
    }
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// SQLite's "this is not a database" and "this database is damaged" become
/// [`DbError::Corrupt`]; anything else stays an SQLite error.
fn refusal(path: &Path, e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            DbError::Corrupt { path: PathBuf::from(path), detail: e.to_string() }
        }
        _ => DbError::Sqlite(e),
    }
}

fn unknown_torrent(e: rusqlite::Error, hash: InfoHash) -> DbError {
    match e.sqlite_error() {
        Some(err) if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => DbError::UnknownTorrent(hash),
        _ => DbError::Sqlite(e),
    }
}

fn torrent_row(r: &Row<'_>) -> rusqlite::Result<TorrentRecord> {
    let metainfo: Option<Vec<u8>> = r.get(1)?;
    let magnet: Option<String> = r.get(2)?;
    let source = match (metainfo, magnet) {
        (Some(bytes), _) => TorrentSource::Metainfo(bytes),
        (None, Some(uri)) => TorrentSource::Magnet(uri),
        // The table's CHECK makes exactly one of them non-null.
        (None, None) => {
            return Err(rusqlite::Error::InvalidColumnType(1, "metainfo".into(), rusqlite::types::Type::Null));
        }
    };
    Ok(TorrentRecord {
        info_hash: InfoHash(r.get(0)?),
        source,
        title: r.get(3)?,
        poster: r.get(4)?,
        category: r.get(5)?,
        data: r.get(6)?,
        added_at: UnixTime(r.get(7)?),
        updated_at: UnixTime(r.get(8)?),
    })
}

fn viewed_row(r: &Row<'_>) -> rusqlite::Result<ViewedMark> {
    let ms: i64 = r.get(2)?;
    Ok(ViewedMark {
        info_hash: InfoHash(r.get(0)?),
        file: FileId(r.get(1)?),
        timecode: Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        updated_at: UnixTime(r.get(3)?),
    })
}
