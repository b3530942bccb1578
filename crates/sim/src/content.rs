//! The torrent payload every node of a simulation shares: random bytes, their geometry and
//! the expected SHA-1 of each piece (all the engine needs from a metainfo).

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sha1::{Digest, Sha1};
use sluice_core::{BlockRef, InfoHash, Lengths, PieceIndex};

#[derive(Debug)]
pub struct Content {
    pub info_hash: InfoHash,
    pub lengths: Lengths,
    pub data: Vec<u8>,
    pub hashes: Vec<[u8; 20]>,
}

impl Content {
    /// `total_length` random bytes drawn from `seed`, cut into pieces of `piece_length`.
    pub fn random(total_length: u64, piece_length: u32, seed: u64) -> Self {
        let mut data = vec![0u8; usize::try_from(total_length).expect("content fits in memory")];
        SmallRng::seed_from_u64(seed ^ 0xc0ff_ee00_d15c_0bad).fill_bytes(&mut data);
        Self::from_data(data, piece_length)
    }

    pub fn from_data(data: Vec<u8>, piece_length: u32) -> Self {
        let total = data.len() as u64;
        let num_pieces = total.div_ceil(u64::from(piece_length));
        let lengths = Lengths::new(total, u64::from(piece_length), num_pieces).expect("valid geometry");
        let hashes: Vec<[u8; 20]> = data.chunks(piece_length as usize).map(sha1).collect();
        let mut h = Sha1::new();
        h.update(total.to_be_bytes());
        h.update(piece_length.to_be_bytes());
        for piece in &hashes {
            h.update(piece);
        }
        let info_hash = InfoHash(h.finalize().into());
        Self { info_hash, lengths, data, hashes }
    }

    pub fn piece(&self, piece: PieceIndex) -> &[u8] {
        let start = self.lengths.piece_start(piece).0 as usize;
        &self.data[start..start + self.lengths.piece_len(piece) as usize]
    }

    pub fn block(&self, block: BlockRef) -> &[u8] {
        let start = self.lengths.piece_start(block.piece).0 as usize + block.offset as usize;
        &self.data[start..start + block.len as usize]
    }

    /// Whether `data` hashes to `piece`'s expected SHA-1.
    pub fn verify(&self, piece: PieceIndex, data: &[u8]) -> bool {
        self.hashes.get(piece.as_usize()).is_some_and(|h| *h == sha1(data))
    }
}

fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}
