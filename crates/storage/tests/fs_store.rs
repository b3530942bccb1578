use std::path::Path;

use sha1::{Digest, Sha1};
use sluice_core::metainfo::FileEntry;
use sluice_core::{BlockRef, Lengths, PieceIndex};
use sluice_storage::{FsStore, MemStore, PieceStore, StorageError, recheck};

const PIECE: u64 = 16;

/// Piece 0 spans `one`, the empty file, `two` and a pad file; pieces 1 and 2 lie in `three`.
fn files() -> Vec<FileEntry> {
    let spec: [(&[&str], u64, bool); 5] = [
        (&["t", "a", "one"], 10, false),
        (&["t", "a", "empty"], 0, false),
        (&["t", "two"], 3, false),
        (&["t", ".pad", "3"], 3, true),
        (&["t", "three"], 20, false),
    ];
    let mut offset = 0;
    spec.iter()
        .map(|&(path, length, pad)| {
            let e = FileEntry { path: path.iter().map(|s| s.to_string()).collect(), length, offset, pad };
            offset += length;
            e
        })
        .collect()
}

fn lengths() -> Lengths {
    Lengths::new(36, PIECE, 3).unwrap()
}

fn content() -> Vec<u8> {
    let mut c: Vec<u8> = (0..36u8).map(|i| i.wrapping_mul(7).wrapping_add(1)).collect();
    c[13..16].fill(0);
    c
}

fn piece(c: &[u8], p: u32) -> &[u8] {
    let start = (u64::from(p) * PIECE) as usize;
    &c[start..(start + PIECE as usize).min(c.len())]
}

fn hashes(c: &[u8]) -> Vec<[u8; 20]> {
    c.chunks(PIECE as usize).map(|p| Sha1::digest(p).into()).collect()
}

fn store(root: &Path) -> FsStore {
    FsStore::from_files(root, &files(), lengths()).unwrap()
}

fn pieces(set: &sluice_core::Bitfield) -> Vec<u32> {
    set.iter_ones().map(PieceIndex::get).collect()
}

#[test]
fn write_read_across_file_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).with_max_open_files(1);
    let c = content();
    for p in [0, 2] {
        s.write_piece(PieceIndex::new_unchecked(p), piece(&c, p)).unwrap();
    }
    s.flush().unwrap();

    let root = dir.path().join("t");
    assert_eq!(std::fs::read(root.join("a/one")).unwrap(), &c[..10]);
    assert_eq!(std::fs::metadata(root.join("a/empty")).unwrap().len(), 0);
    assert_eq!(std::fs::read(root.join("two")).unwrap(), &c[10..13]);
    assert!(!root.join(".pad").exists());
    assert_eq!(std::fs::metadata(root.join("three")).unwrap().len(), 20);

    for p in [0u32, 2] {
        let plen = piece(&c, p).len() as u32;
        for offset in 0..plen {
            for len in 1..=plen - offset {
                let mut buf = vec![0xff; len as usize];
                s.read(BlockRef { piece: PieceIndex::new_unchecked(p), offset, len }, &mut buf).unwrap();
                assert_eq!(buf, &piece(&c, p)[offset as usize..(offset + len) as usize], "p{p}+{offset}({len})");
            }
        }
    }
    let mut whole = vec![0; 16];
    s.read_piece(PieceIndex::new_unchecked(0), &mut whole).unwrap();
    assert_eq!(whole, piece(&c, 0));
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let p2 = PieceIndex::new_unchecked(2);
    assert!(matches!(s.write_piece(p2, &[0; 16]), Err(StorageError::WrongPieceLength { .. })));
    let mut buf = [0; 5];
    let past_end = BlockRef { piece: p2, offset: 0, len: 5 };
    assert!(matches!(s.read(past_end, &mut buf), Err(StorageError::BadRange { .. })));
    let mut buf = [0; 4];
    let err = s.read(BlockRef { piece: p2, offset: 0, len: 4 }, &mut buf).unwrap_err();
    assert!(err.is_missing(), "{err}");
}

#[test]
fn hostile_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [&["t", ".."][..], &["..", "x"], &["/etc"], &["a/b"], &["a\\b"], &[""], &["."], &["x\0"], &[]] {
        let mut f = files();
        f[0].path = bad.iter().map(|s| s.to_string()).collect();
        let err = FsStore::from_files(dir.path(), &f, lengths()).unwrap_err();
        assert!(matches!(err, StorageError::UnsafePath { .. }), "{bad:?}: {err}");
    }
    let mut f = files();
    f[2].path = f[0].path.clone();
    let err = FsStore::from_files(dir.path(), &f, lengths()).unwrap_err();
    assert!(matches!(err, StorageError::DuplicatePath { .. }));
}

#[test]
fn recheck_finds_exactly_the_written_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let c = content();
    let h = hashes(&c);
    assert_eq!(recheck(&store(dir.path()), &h, 2).unwrap().count_ones(), 0);

    let s = store(dir.path());
    for p in [0, 2] {
        s.write_piece(PieceIndex::new_unchecked(p), piece(&c, p)).unwrap();
    }
    s.flush().unwrap();
    drop(s);
    let fresh = store(dir.path());
    for threads in [1, 3] {
        assert_eq!(pieces(&recheck(&fresh, &h, threads).unwrap()), [0, 2]);
    }

    let two = dir.path().join("t/two");
    let mut bytes = std::fs::read(&two).unwrap();
    bytes[1] ^= 1;
    std::fs::write(&two, bytes).unwrap();
    assert_eq!(pieces(&recheck(&store(dir.path()), &h, 2).unwrap()), [2]);
}

#[test]
fn short_and_missing_files_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let c = content();
    let s = store(dir.path());
    for p in 0..3 {
        s.write_piece(PieceIndex::new_unchecked(p), piece(&c, p)).unwrap();
    }
    let h = hashes(&c);
    assert_eq!(pieces(&recheck(&s, &h, 2).unwrap()), [0, 1, 2]);

    std::fs::OpenOptions::new().write(true).open(dir.path().join("t/three")).unwrap().set_len(17).unwrap();
    std::fs::remove_file(dir.path().join("t/two")).unwrap();
    let s = store(dir.path());
    let mut have = sluice_core::Bitfield::full(3);
    s.retain_present(&mut have);
    assert_eq!(pieces(&have), [1]);
    assert_eq!(pieces(&recheck(&s, &h, 2).unwrap()), [1]);
}

#[test]
fn mem_store_round_trip_and_recheck() {
    let c = content();
    let h = hashes(&c);
    let s = MemStore::new(lengths());
    s.write_piece(PieceIndex::new_unchecked(1), piece(&c, 1)).unwrap();
    s.write_piece(PieceIndex::new_unchecked(2), piece(&c, 2)).unwrap();
    let mut buf = [0; 3];
    s.read(BlockRef { piece: PieceIndex::new_unchecked(1), offset: 5, len: 3 }, &mut buf).unwrap();
    assert_eq!(buf, c[21..24]);
    let err = s.read(BlockRef { piece: PieceIndex::new_unchecked(0), offset: 0, len: 3 }, &mut buf).unwrap_err();
    assert!(err.is_missing());
    assert_eq!(pieces(&recheck(&s, &h, 2).unwrap()), [1, 2]);
    s.corrupt(PieceIndex::new_unchecked(2), 0, 0xee);
    assert_eq!(pieces(&recheck(&s, &h, 2).unwrap()), [1]);
}

#[test]
fn concurrent_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = content();
    let s = store(dir.path()).with_max_open_files(2);
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let (s, c) = (&s, &c);
            scope.spawn(move || {
                for round in 0..50u32 {
                    let p = (t + round) % 3;
                    s.write_piece(PieceIndex::new_unchecked(p), piece(c, p)).unwrap();
                    let mut buf = vec![0; piece(c, p).len()];
                    s.read_piece(PieceIndex::new_unchecked(p), &mut buf).unwrap();
                    assert_eq!(buf, piece(c, p));
                }
            });
        }
    });
    s.flush().unwrap();
}

/// A symlink planted inside the download folder (as a folder or as a file) never redirects a
/// write outside it.
#[test]
fn symlinks_inside_the_folder_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let c = content();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("t/a")).unwrap();
    let err = store(dir.path()).write_piece(PieceIndex::new_unchecked(0), piece(&c, 0)).unwrap_err();
    assert!(matches!(err, StorageError::UnsafePath { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("victim"), dir.path().join("t/three")).unwrap();
    let err = store(dir.path()).write_piece(PieceIndex::new_unchecked(1), piece(&c, 1)).unwrap_err();
    assert!(matches!(err, StorageError::UnsafePath { .. }), "{err}");

    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
}
