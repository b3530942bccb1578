//! Piece verification and the full recheck of existing data.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use sha1::{Digest, Sha1};
use sluice_core::{Bitfield, PieceIndex};

use crate::error::{Result, StorageError};
use crate::store::PieceStore;

/// Whether `data` hashes to `expected` (SHA-1; the `sha1` crate uses SHA-NI when present).
pub fn piece_matches(data: &[u8], expected: &[u8; 20]) -> bool {
    Sha1::digest(data).as_slice() == expected
}

/// Hashes every piece the store holds, on `threads` threads (at least one), and returns the
/// pieces that match `hashes` (one per piece, in order). Absent data (missing or short files)
/// just leaves a piece unset; any other I/O error aborts the recheck.
pub fn recheck<S: PieceStore + ?Sized>(store: &S, hashes: &[[u8; 20]], threads: usize) -> Result<Bitfield> {
    let lengths = *store.lengths();
    let mut candidates = Bitfield::full(lengths.num_pieces());
    store.retain_present(&mut candidates);
    let next = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<StorageError>> = Mutex::new(None);
    let found: Mutex<Vec<PieceIndex>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; lengths.piece_length() as usize];
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Some(piece) = lengths.piece(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if !candidates.get(piece) {
                        continue;
                    }
                    let buf = &mut buf[..lengths.piece_len(piece) as usize];
                    match store.read_piece(piece, buf) {
                        Ok(()) => {
                            if hashes.get(piece.as_usize()).is_some_and(|h| piece_matches(buf, h)) {
                                mine.push(piece);
                            }
                        }
                        Err(e) if e.is_missing() => {}
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        }
                    }
                }
                found.lock().unwrap_or_else(|p| p.into_inner()).append(&mut mine);
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut have = Bitfield::new(lengths.num_pieces());
    for p in found.into_inner().unwrap_or_else(|p| p.into_inner()) {
        have.set(p);
    }
    Ok(have)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        let abc = [
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0,
            0xd8, 0x9d,
        ];
        assert!(piece_matches(b"abc", &abc));
        assert!(!piece_matches(b"abd", &abc));
    }
}
