//! Which pieces are verified on disk, remembered across restarts and `kill -9`.
//!
//! One journal per torrent, `<state_dir>/<info-hash-hex>.resume`:
//!
//! ```text
//! header    magic "SLUICERJ" | version u32 LE | piece count u32 LE | info-hash (20 bytes)
//! snapshot  bitfield, wire order, ceil(pieces / 8) bytes
//! check     SHA-1 of header + snapshot
//! records   (piece u32 LE | tag u32 LE)*, tag = first 4 bytes of SHA-1(info-hash | piece LE)
//! ```
//!
//! The header and snapshot are only ever written whole, to a temporary file that is synced and
//! renamed over the journal ([`Resume::open`] on a new torrent, [`Resume::compact`]). Records
//! are appended without fsync; a process killed mid-append leaves at most a torn last record,
//! which fails its length or tag check and is cut off on the next load, together with anything
//! after it. Loading never trusts more than was completely written.
//!
//! Ordering rule: a piece is recorded only after [`crate::PieceStore::write_piece`] for it has
//! returned, so a record never precedes the data it vouches for in the page cache, which is
//! what survives a killed process. Surviving power loss as well takes the driver batching
//! records: [`crate::PieceStore::flush`] first, then [`Resume::record`] the pieces written
//! before it. On load, [`Resume::drop_absent`] removes pieces whose files are missing or short.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use sluice_core::{Bitfield, InfoHash, PieceIndex};

use crate::error::{Result, StorageError};
use crate::store::PieceStore;

const MAGIC: &[u8; 8] = b"SLUICERJ";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 20;
const CHECK_LEN: usize = 20;
const RECORD_LEN: usize = 8;

#[derive(Debug)]
pub struct Resume {
    path: PathBuf,
    file: File,
    info_hash: InfoHash,
    have: Bitfield,
    /// Bytes of valid journal; the file is cut back here if an append fails.
    len: u64,
    records: u64,
}

impl Resume {
    /// The journal's path for a torrent.
    pub fn path_for(state_dir: &Path, info_hash: &InfoHash) -> PathBuf {
        state_dir.join(format!("{}.resume", info_hash.to_hex()))
    }

    /// Loads the journal at `path`, creating it (and its folder) if missing. Returns the pieces
    /// it records as verified; a journal of another torrent, or one whose header or snapshot is
    /// damaged, is an error.
    pub fn open(path: &Path, info_hash: InfoHash, num_pieces: u32) -> Result<(Self, Bitfield)> {
        let io = StorageError::io(path);
        let mut file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
                }
                let have = Bitfield::new(num_pieces);
                write_snapshot(path, &info_hash, &have)?;
                let file = OpenOptions::new().read(true).append(true).open(path).map_err(io)?;
                let len = snapshot_len(num_pieces);
                let r = Self { path: path.to_path_buf(), file, info_hash, have: have.clone(), len, records: 0 };
                return Ok((r, have));
            }
            Err(e) => return Err(io(e)),
        };

        let (have, len, records) = load(&mut file, path, &info_hash, num_pieces)?;
        if file.metadata().map_err(StorageError::io(path))?.len() > len {
            file.set_len(len).map_err(StorageError::io(path))?;
        }
        let r = Self { path: path.to_path_buf(), file, info_hash, have: have.clone(), len, records };
        Ok((r, have))
    }

    /// The pieces the journal at `path` vouches for, read without changing the file (a torn
    /// last record is skipped, not cut off); `None` if there is no journal. For showing what
    /// a closed torrent holds: it does not check that the data files are still there.
    pub fn peek(path: &Path, info_hash: InfoHash, num_pieces: u32) -> Result<Option<Bitfield>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path)(e)),
        };
        load(&mut file, path, &info_hash, num_pieces).map(|(have, _, _)| Some(have))
    }

    /// The pieces recorded as verified.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Records appended since the last snapshot; the driver compacts when this grows.
    pub fn records_since_compact(&self) -> u64 {
        self.records
    }

    /// Appends `piece` as verified (no fsync). Call only after its data write returned.
    pub fn record(&mut self, piece: PieceIndex) -> Result<()> {
        if piece.get() >= self.have.len() || self.have.get(piece) {
            return Ok(());
        }
        self.append(piece)?;
        self.have.set(piece);
        Ok(())
    }

    /// Writes `piece`'s record at the end of the file.
    fn append(&mut self, piece: PieceIndex) -> Result<()> {
        let mut rec = [0u8; RECORD_LEN];
        rec[..4].copy_from_slice(&piece.get().to_le_bytes());
        rec[4..].copy_from_slice(&record_tag(&self.info_hash, piece.get()));
        if let Err(e) = self.file.write_all(&rec) {
            // Cut a partial record off so later appends stay aligned.
            let _ = self.file.set_len(self.len);
            return Err(StorageError::Io { path: self.path.clone(), source: e });
        }
        self.len += RECORD_LEN as u64;
        self.records += 1;
        Ok(())
    }

    /// Makes the records appended so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(StorageError::io(&self.path))
    }

    /// Rewrites the journal atomically as a single snapshot of [`Resume::have`].
    pub fn compact(&mut self) -> Result<()> {
        let all = self.have.clone();
        self.compact_to(&all)
    }

    /// Rewrites the journal atomically as a snapshot of the pieces of `durable` it still
    /// holds, then appends records again for the pieces recorded but not in `durable`. A
    /// checkpoint takes `have` as `durable`, flushes the data without holding the journal
    /// (verifications keep recording meanwhile), then compacts to it: the snapshot vouches
    /// only for data flushed before it was written.
    pub fn compact_to(&mut self, durable: &Bitfield) -> Result<()> {
        let mut snapshot = Bitfield::new(self.have.len());
        for piece in durable.iter_ones().filter(|&p| self.have.get(p)) {
            snapshot.set(piece);
        }
        write_snapshot(&self.path, &self.info_hash, &snapshot)?;
        self.file =
            OpenOptions::new().read(true).append(true).open(&self.path).map_err(StorageError::io(&self.path))?;
        self.len = snapshot_len(self.have.len());
        self.records = 0;
        let later: Vec<PieceIndex> = self.have.iter_ones().filter(|&p| !snapshot.get(p)).collect();
        for piece in later {
            self.append(piece)?;
        }
        Ok(())
    }

    /// Replaces what the journal vouches for with `have` (the result of a full recheck) and
    /// compacts. `have` must be for the same number of pieces.
    pub fn replace(&mut self, have: Bitfield) -> Result<()> {
        assert_eq!(have.len(), self.have.len(), "bitfield for another torrent");
        self.have = have;
        self.compact()
    }

    /// Forgets pieces whose backing data `store` reports absent (cheap: no hashing), compacting
    /// if any was dropped so the journal stops claiming them. Returns the remaining pieces.
    pub fn drop_absent<S: PieceStore + ?Sized>(&mut self, store: &S) -> Result<Bitfield> {
        let before = self.have.count_ones();
        store.retain_present(&mut self.have);
        if self.have.count_ones() != before {
            self.compact()?;
        }
        Ok(self.have.clone())
    }
}

/// Reads a journal from its start: the pieces it vouches for, the length of its valid part
/// and the records after the snapshot. A torn or foreign record ends it.
fn load(file: &mut File, path: &Path, info_hash: &InfoHash, num_pieces: u32) -> Result<(Bitfield, u64, u64)> {
    let bad = |reason| StorageError::BadResume { path: path.to_path_buf(), reason };
    let mut head = vec![0u8; snapshot_len(num_pieces) as usize];
    let got = read_full(file, &mut head[..HEADER_LEN]).map_err(StorageError::io(path))?;
    if got < HEADER_LEN || head[..8] != MAGIC[..] {
        return Err(bad("not a Sluice resume file"));
    }
    if u32_at(&head, 8) != VERSION {
        return Err(bad("unsupported version"));
    }
    let found = InfoHash(head[16..36].try_into().expect("20 bytes"));
    if found != *info_hash {
        return Err(StorageError::ForeignResume { path: path.to_path_buf(), expected: *info_hash, found });
    }
    if u32_at(&head, 12) != num_pieces {
        return Err(bad("piece count differs from the torrent's"));
    }
    let got = read_full(file, &mut head[HEADER_LEN..]).map_err(StorageError::io(path))?;
    let (body, check) = head.split_at(head.len() - CHECK_LEN);
    if HEADER_LEN + got < head.len() || Sha1::digest(body).as_slice() != check {
        return Err(bad("damaged snapshot"));
    }
    let mut have =
        Bitfield::from_wire(&body[HEADER_LEN..], num_pieces).map_err(|_| bad("snapshot has spare bits set"))?;

    let mut len = head.len() as u64;
    let mut records = 0;
    let mut reader = std::io::BufReader::new(file);
    let mut rec = [0u8; RECORD_LEN];
    while read_full(&mut reader, &mut rec).map_err(StorageError::io(path))? == RECORD_LEN {
        let piece = u32_at(&rec, 0);
        if piece >= num_pieces || rec[4..] != record_tag(info_hash, piece) {
            break;
        }
        have.set(PieceIndex::new_unchecked(piece));
        len += RECORD_LEN as u64;
        records += 1;
    }
    Ok((have, len, records))
}

fn snapshot_len(num_pieces: u32) -> u64 {
    (HEADER_LEN + (num_pieces as usize).div_ceil(8) + CHECK_LEN) as u64
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn record_tag(info_hash: &InfoHash, piece: u32) -> [u8; 4] {
    let d = Sha1::new().chain_update(info_hash.0).chain_update(piece.to_le_bytes()).finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes header + snapshot to a temporary file, syncs it, renames it over `path` and syncs
/// the folder, so `path` always holds either the old journal or the complete new one.
fn write_snapshot(path: &Path, info_hash: &InfoHash, have: &Bitfield) -> Result<()> {
    let mut bytes = Vec::with_capacity(snapshot_len(have.len()) as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&have.len().to_le_bytes());
    bytes.extend_from_slice(&info_hash.0);
    bytes.extend_from_slice(have.as_bytes());
    let check = Sha1::digest(&bytes);
    bytes.extend_from_slice(&check);

    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(StorageError::io(&tmp))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(StorageError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(StorageError::io(path))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io(dir))
}
