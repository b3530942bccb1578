//! Round trips, restarts, refusals and cascades on real SQLite files.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluice_core::InfoHash;
use sluice_db::{Db, DbError, FileId, SCHEMA_VERSION, TorrentRecord, TorrentSource, UnixTime, ViewedMark};

fn hash(n: u8) -> InfoHash {
    InfoHash([n; 20])
}

fn record(n: u8, source: TorrentSource) -> TorrentRecord {
    TorrentRecord {
        info_hash: hash(n),
        source,
        title: format!("Title {n} — «unicode»"),
        poster: format!("http://127.0.0.1/{n}.jpg"),
        category: "tv".into(),
        data: r#"{"TorrServer":{"Files":[{"id":1,"path":"a/b.mkv","length":5}]}}"#.into(),
        added_at: UnixTime(1_000 + i64::from(n)),
        updated_at: UnixTime(1_000 + i64::from(n)),
    }
}

fn magnet(n: u8) -> TorrentSource {
    TorrentSource::Magnet(format!("magnet:?xt=urn:btih:{}&dn=x", hash(n)))
}

fn mark(n: u8, file: u32, ms: u64) -> ViewedMark {
    ViewedMark {
        info_hash: hash(n),
        file: FileId(file),
        timecode: Duration::from_millis(ms),
        updated_at: UnixTime(2_000),
    }
}

fn fill(db: &mut Db) {
    db.upsert_torrent(&record(1, TorrentSource::Metainfo(vec![0, 1, 2, 255]))).unwrap();
    db.upsert_torrent(&record(2, magnet(2))).unwrap();
    db.set_viewed(&mark(1, 1, 0)).unwrap();
    db.set_viewed(&mark(1, 3, 61_500)).unwrap();
    db.set_viewed(&mark(2, 1, 7)).unwrap();
    db.put_resume(hash(1), &[0b1010_0000, 0xff]).unwrap();
    db.set_settings("BitTorr", &json!({"CacheSize": 67108864, "PreloadCache": 50})).unwrap();
}

fn check_filled(db: &Db) {
    assert_eq!(db.torrent(hash(1)).unwrap(), Some(record(1, TorrentSource::Metainfo(vec![0, 1, 2, 255]))));
    assert_eq!(db.torrent(hash(2)).unwrap(), Some(record(2, magnet(2))));
    assert_eq!(db.torrent(hash(3)).unwrap(), None);
    let listed: Vec<_> = db.torrents().unwrap().into_iter().map(|t| t.info_hash).collect();
    assert_eq!(listed, [hash(2), hash(1)], "newest first");
    assert_eq!(db.viewed(hash(1)).unwrap(), [mark(1, 1, 0), mark(1, 3, 61_500)]);
    assert_eq!(db.all_viewed().unwrap(), [mark(1, 1, 0), mark(1, 3, 61_500), mark(2, 1, 7)]);
    assert_eq!(db.resume(hash(1)).unwrap(), Some(vec![0b1010_0000, 0xff]));
    assert_eq!(db.resume(hash(2)).unwrap(), None);
    assert_eq!(db.settings("BitTorr").unwrap(), Some(json!({"CacheSize": 67108864, "PreloadCache": 50})));
    assert_eq!(db.settings("other").unwrap(), None);
}

#[test]
fn round_trip_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let mut db = Db::open(&path).unwrap();
    fill(&mut db);
    check_filled(&db);
    drop(db);
    for _ in 0..2 {
        check_filled(&Db::open(&path).unwrap());
    }
}

#[test]
fn pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sluice.db");
    let _db = Db::open(&db_path).unwrap();
    let raw = rusqlite::Connection::open(&db_path).unwrap();
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn upsert_keeps_added_at_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path().join("sluice.db")).unwrap();
    fill(&mut db);
    let mut changed = record(2, TorrentSource::Metainfo(b"d4:infod...ee".to_vec()));
    changed.title = "metadata arrived".into();
    changed.poster.clear();
    changed.added_at = UnixTime(9_999);
    changed.updated_at = UnixTime(5_000);
    db.upsert_torrent(&changed).unwrap();
    let stored = db.torrent(hash(2)).unwrap().unwrap();
    assert_eq!(stored, TorrentRecord { added_at: UnixTime(1_002), ..changed });
    assert_eq!(db.viewed(hash(2)).unwrap(), [mark(2, 1, 7)]);
}

#[test]
fn viewed_marks() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path().join("sluice.db")).unwrap();
    fill(&mut db);
    // A started stream marks the file but keeps its time code; a new mark starts at zero.
    db.touch_viewed(hash(1), FileId(3), UnixTime(3_000)).unwrap();
    db.touch_viewed(hash(1), FileId(4), UnixTime(3_000)).unwrap();
    let marks = db.viewed(hash(1)).unwrap();
    assert_eq!(marks[1], ViewedMark { updated_at: UnixTime(3_000), ..mark(1, 3, 61_500) });
    assert_eq!(marks[2], ViewedMark { updated_at: UnixTime(3_000), ..mark(1, 4, 0) });
    db.set_viewed(&mark(1, 3, 90_000)).unwrap();
    assert_eq!(db.viewed(hash(1)).unwrap()[1], mark(1, 3, 90_000));
    assert_eq!(db.remove_viewed(hash(1), Some(FileId(4))).unwrap(), 1);
    assert_eq!(db.remove_viewed(hash(1), Some(FileId(4))).unwrap(), 0);
    assert_eq!(db.remove_viewed(hash(1), None).unwrap(), 2);
    assert_eq!(db.all_viewed().unwrap(), [mark(2, 1, 7)]);
}

#[test]
fn children_need_a_stored_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path().join("sluice.db")).unwrap();
    assert!(matches!(db.set_viewed(&mark(9, 1, 0)), Err(DbError::UnknownTorrent(h)) if h == hash(9)));
    assert!(matches!(db.touch_viewed(hash(9), FileId(1), UnixTime(0)), Err(DbError::UnknownTorrent(_))));
    assert!(matches!(db.put_resume(hash(9), b"x"), Err(DbError::UnknownTorrent(_))));
    let huge = ViewedMark { timecode: Duration::MAX, ..mark(9, 1, 0) };
    assert!(matches!(db.set_viewed(&huge), Err(DbError::OutOfRange(_))));
}

#[test]
fn remove_deletes_every_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let mut db = Db::open(&path).unwrap();
    fill(&mut db);
    assert!(db.remove_torrent(hash(1)).unwrap());
    assert!(!db.remove_torrent(hash(1)).unwrap());
    assert_eq!(db.torrent(hash(1)).unwrap(), None);
    assert_eq!(db.viewed(hash(1)).unwrap(), []);
    assert_eq!(db.resume(hash(1)).unwrap(), None);
    assert_eq!(db.all_viewed().unwrap(), [mark(2, 1, 7)]);
    drop(db);
    let raw = rusqlite::Connection::open(&path).unwrap();
    for table in ["torrents", "viewed", "resume"] {
        let n: i64 = raw
            .query_row(&format!("SELECT count(*) FROM {table} WHERE info_hash = ?1"), [[1u8; 20]], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

#[test]
fn cascade_is_in_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    fill(&mut Db::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "foreign_keys", true).unwrap();
    raw.execute("DELETE FROM torrents WHERE info_hash = ?1", [[1u8; 20]]).unwrap();
    drop(raw);
    let db = Db::open(&path).unwrap();
    assert_eq!(db.viewed(hash(1)).unwrap(), []);
    assert_eq!(db.resume(hash(1)).unwrap(), None);
}

/// Every file SQLite might have touched, so a refusal can be shown to have written nothing.
fn snapshot(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let p = format!("{}{suffix}", path.display());
        if let Ok(bytes) = std::fs::read(&p)
            && (suffix.is_empty() || !bytes.is_empty())
        {
            files.push((p, bytes));
        }
    }
    files
}

fn assert_refused_untouched(path: &Path, check: impl Fn(DbError) -> bool) {
    let before = snapshot(path);
    for _ in 0..2 {
        let err = Db::open(path).expect_err("must refuse");
        let shown = err.to_string();
        assert!(check(err), "wrong error: {shown}");
        assert_eq!(snapshot(path), before);
    }
}

#[test]
fn not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    std::fs::write(&path, "this is a settings file, not a database\n".repeat(200)).unwrap();
    assert_refused_untouched(&path, |e| matches!(e, DbError::Corrupt { .. }));
}

#[test]
fn damaged_header_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    fill(&mut Db::open(&path).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..16].fill(0);
    std::fs::write(&path, bytes).unwrap();
    assert_refused_untouched(&path, |e| matches!(e, DbError::Corrupt { .. }));
}

#[test]
fn damaged_page_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let mut db = Db::open(&path).unwrap();
    for n in 0..200 {
        db.upsert_torrent(&record(n, TorrentSource::Metainfo(vec![n; 2000]))).unwrap();
    }
    drop(db);
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() > 20 * page, "{}", bytes.len());
    // Garbage over a b-tree page in the middle of the torrents table.
    for (i, b) in bytes[10 * page..11 * page].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&path, bytes).unwrap();
    assert_refused_untouched(&path, |e| matches!(e, DbError::Corrupt { .. }));
}

#[test]
fn header_failing_quick_check_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    fill(&mut Db::open(&path).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    // The header's freelist page count says 5 where there are none: every page still reads,
    // only quick_check notices.
    bytes[36..40].copy_from_slice(&5u32.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    assert_refused_untouched(&path, |e| matches!(e, DbError::Corrupt { .. }));
}

#[test]
fn newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    fill(&mut Db::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(raw);
    assert_refused_untouched(&path, |e| {
        matches!(e, DbError::NewerSchema { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
    });
}

#[test]
fn other_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');").unwrap();
    drop(raw);
    assert_refused_untouched(&path, |e| matches!(e, DbError::Foreign { .. }));
}

#[test]
fn empty_file_becomes_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    std::fs::write(&path, b"").unwrap();
    let mut db = Db::open(&path).unwrap();
    fill(&mut db);
    check_filled(&db);
}

#[test]
fn db_is_send_for_spawn_blocking() {
    fn send<T: Send + 'static>() {}
    send::<Db>();
}
