//! `kill -9` in the middle of a stream of commits loses none of the commits that returned.
//!
//! The test binary re-executes itself as the writer ([`child_writer`], inert unless the
//! environment names a database): it commits rows in a loop and prints each index once its
//! commits returned; the parent SIGKILLs it mid-loop, reads everything it printed, then checks
//! every printed row is in the reopened database and the file passes `integrity_check`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_core::InfoHash;
use sluice_db::{Db, FileId, TorrentRecord, TorrentSource, UnixTime, ViewedMark};

const DB_ENV: &str = "SLUICE_DB_KILL9_PATH";
const START_ENV: &str = "SLUICE_DB_KILL9_START";
const SIGKILL: i32 = 9;

fn hash(i: u32) -> InfoHash {
    let mut h = [0x5a; 20];
    h[..4].copy_from_slice(&i.to_be_bytes());
    InfoHash(h)
}

fn record(i: u32) -> TorrentRecord {
    TorrentRecord {
        info_hash: hash(i),
        source: TorrentSource::Metainfo(vec![(i % 251) as u8; 300 + (i as usize % 700)]),
        title: format!("title {i}"),
        poster: format!("http://127.0.0.1/p{i}.jpg"),
        category: "movie".into(),
        data: format!("{{\"n\":{i}}}"),
        added_at: UnixTime(1_700_000_000 + i64::from(i)),
        updated_at: UnixTime(1_700_000_000 + i64::from(i)),
    }
}

fn mark(i: u32) -> ViewedMark {
    ViewedMark {
        info_hash: hash(i),
        file: FileId(i % 7 + 1),
        timecode: Duration::from_millis(u64::from(i) * 1001),
        updated_at: UnixTime(1_700_000_000 + i64::from(i)),
    }
}

fn resume(i: u32) -> Vec<u8> {
    i.to_le_bytes().repeat(16)
}

#[test]
fn child_writer() {
    let Ok(path) = std::env::var(DB_ENV) else { return };
    let start: u32 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let mut db = Db::open(&path).unwrap();
    let mut out = std::io::stdout().lock();
    for i in start.. {
        db.upsert_torrent(&record(i)).unwrap();
        db.set_viewed(&mark(i)).unwrap();
        db.put_resume(hash(i), &resume(i)).unwrap();
        writeln!(out, "committed {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill9_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let mut committed = BTreeSet::new();
    for round in 0..3u32 {
        let start = committed.last().map_or(0, |&i: &u32| i + 1);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(DB_ENV, &path)
            .env(START_ENV, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = 40 + 23 * round as usize;
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("writer ended early").unwrap();
            if let Some(n) = line.strip_prefix("committed ") {
                committed.insert(n.parse::<u32>().unwrap());
                seen += 1;
            }
        }
        child.kill().unwrap();
        // Everything the writer printed before the signal counts as committed too.
        for line in lines {
            if let Some(n) = line.unwrap().strip_prefix("committed ") {
                committed.insert(n.parse::<u32>().unwrap());
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(SIGKILL), "round {round}: {status:?}");

        let raw = rusqlite::Connection::open(&path).unwrap();
        let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "round {round}");
        drop(raw);

        let db = Db::open(&path).unwrap();
        for &i in &committed {
            assert_eq!(db.torrent(hash(i)).unwrap(), Some(record(i)), "round {round}, row {i}");
            assert_eq!(db.viewed(hash(i)).unwrap(), vec![mark(i)], "round {round}, row {i}");
            assert_eq!(db.resume(hash(i)).unwrap(), Some(resume(i)), "round {round}, row {i}");
        }
        assert!(db.torrents().unwrap().len() >= committed.len());
    }
    assert!(committed.len() >= 40 + 63 + 86, "{}", committed.len());
}
