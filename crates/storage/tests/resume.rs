use std::fs::OpenOptions;
use std::path::Path;

use sluice_core::{Bitfield, InfoHash, Lengths, PieceIndex};
use sluice_storage::{MemStore, PieceStore, Resume, StorageError};

const HASH: InfoHash = InfoHash([7; 20]);
const PIECES: u32 = 21;

fn ones(b: &Bitfield) -> Vec<u32> {
    b.iter_ones().map(PieceIndex::get).collect()
}

fn p(i: u32) -> PieceIndex {
    PieceIndex::new_unchecked(i)
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = Resume::path_for(&dir.path().join("state"), &HASH);
    let (mut r, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(have.count_ones(), 0);
    for i in [3, 0, 20, 3] {
        r.record(p(i)).unwrap();
    }
    assert_eq!(r.records_since_compact(), 3);
    r.sync().unwrap();
    drop(r);
    let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(ones(&have), [0, 3, 20]);
}

#[test]
fn torn_last_record_is_ignored_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    for i in [1, 5, 9] {
        r.record(p(i)).unwrap();
    }
    drop(r);
    let full = std::fs::read(&path).unwrap();
    for cut in full.len() - 8..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (mut r, have) = Resume::open(&path, HASH, PIECES).unwrap();
        assert_eq!(ones(&have), [1, 5], "cut at {cut}");
        r.record(p(12)).unwrap();
        drop(r);
        let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
        assert_eq!(ones(&have), [1, 5, 12], "append after cut at {cut}");
    }
}

#[test]
fn garbage_after_records_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    r.record(p(2)).unwrap();
    drop(r);
    let mut bytes = std::fs::read(&path).unwrap();
    let valid = bytes.len();
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&[4, 0, 0, 0, 1, 2, 3, 4]);
    std::fs::write(&path, bytes).unwrap();
    let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(ones(&have), [2]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), valid as u64);
}

#[test]
fn other_torrents_and_damage_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    r.record(p(4)).unwrap();
    drop(r);
    let other = InfoHash([8; 20]);
    assert!(
        matches!(Resume::open(&path, other, PIECES), Err(StorageError::ForeignResume { found, .. }) if found == HASH)
    );
    assert!(matches!(Resume::open(&path, HASH, PIECES + 1), Err(StorageError::BadResume { .. })));

    let full = std::fs::read(&path).unwrap();
    let snapshot = full.len() - 8;
    for cut in 0..snapshot {
        std::fs::write(&path, &full[..cut]).unwrap();
        assert!(matches!(Resume::open(&path, HASH, PIECES), Err(StorageError::BadResume { .. })), "cut at {cut}");
    }
    let mut flipped = full.clone();
    flipped[40] ^= 0x80;
    std::fs::write(&path, flipped).unwrap();
    assert!(matches!(Resume::open(&path, HASH, PIECES), Err(StorageError::BadResume { .. })));
    std::fs::write(&path, b"not a journal at all, just some text").unwrap();
    assert!(matches!(Resume::open(&path, HASH, PIECES), Err(StorageError::BadResume { .. })));
}

#[test]
fn compaction_keeps_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    let empty_len = std::fs::metadata(&path).unwrap().len();
    for i in (0..PIECES).step_by(2) {
        r.record(p(i)).unwrap();
    }
    r.compact().unwrap();
    assert_eq!(r.records_since_compact(), 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), empty_len);
    r.record(p(1)).unwrap();
    drop(r);
    let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
    let mut want: Vec<u32> = (0..PIECES).step_by(2).collect();
    want.insert(1, 1);
    assert_eq!(ones(&have), want);
    truncate(&path, empty_len + 3);
    let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(have.count_ones(), want.len() as u32 - 1);
}

/// A checkpoint snapshots `have`, flushes without the journal, then compacts to the snapshot:
/// pieces recorded meanwhile stay as records after it, and a piece forgotten meanwhile is not
/// vouched for.
#[test]
fn compacting_to_an_earlier_set_keeps_later_records_as_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    let empty_len = std::fs::metadata(&path).unwrap().len();
    for i in [2, 4, 6] {
        r.record(p(i)).unwrap();
    }
    let durable = r.have().clone();
    r.record(p(9)).unwrap();
    r.record(p(1)).unwrap();
    r.compact_to(&durable).unwrap();
    assert_eq!(r.records_since_compact(), 2, "the two later pieces are records again");
    assert_eq!(ones(r.have()), [1, 2, 4, 6, 9]);
    drop(r);
    let (mut r, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(ones(&have), [1, 2, 4, 6, 9]);
    // Cut both records off: the snapshot alone holds exactly the durable set.
    truncate(&path, empty_len);
    let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(ones(&have), [2, 4, 6]);

    // A piece in the durable set that the journal no longer holds is left out.
    let mut stale = Bitfield::new(PIECES);
    stale.set(p(13));
    r.compact_to(&stale).unwrap();
    drop(r);
    truncate(&path, empty_len);
    let (_, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(have.count_ones(), 0);
}

#[test]
fn absent_data_is_dropped_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    let lengths = Lengths::new(u64::from(PIECES) * 4, 4, u64::from(PIECES)).unwrap();
    let store = MemStore::new(lengths);
    store.write_piece(p(6), &[1; 4]).unwrap();
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    r.record(p(6)).unwrap();
    r.record(p(7)).unwrap();
    assert_eq!(ones(&r.drop_absent(&store).unwrap()), [6]);
    drop(r);
    let (mut r, have) = Resume::open(&path, HASH, PIECES).unwrap();
    assert_eq!(ones(&have), [6]);
    r.record(p(7)).unwrap();
    assert_eq!(ones(r.have()), [6, 7]);
}

#[test]
fn peek_reads_what_open_would_without_touching_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.resume");
    assert!(Resume::peek(&path, HASH, PIECES).unwrap().is_none());
    assert!(!path.exists(), "peek must not create a journal");
    let (mut r, _) = Resume::open(&path, HASH, PIECES).unwrap();
    for i in [4, 0, 17] {
        r.record(p(i)).unwrap();
    }
    drop(r);
    let full = std::fs::read(&path).unwrap();
    assert_eq!(ones(&Resume::peek(&path, HASH, PIECES).unwrap().unwrap()), [0, 4, 17]);
    // A torn last record is skipped but left in place (the torrent's own open cuts it).
    std::fs::write(&path, &full[..full.len() - 3]).unwrap();
    assert_eq!(ones(&Resume::peek(&path, HASH, PIECES).unwrap().unwrap()), [0, 4]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), full.len() as u64 - 3);
    assert!(matches!(Resume::peek(&path, InfoHash([8; 20]), PIECES), Err(StorageError::ForeignResume { .. })));
    assert!(matches!(Resume::peek(&path, HASH, PIECES + 1), Err(StorageError::BadResume { .. })));
}
