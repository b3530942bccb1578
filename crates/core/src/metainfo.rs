//! Metainfo (.torrent) parsing: v1, and hybrid v1+v2 through its v1 part.
//!
//! STUB: the types below are the contract other crates code against; parsing is being written.

use crate::{InfoHash, Lengths};

/// One file of the torrent, in the order of the content stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Sanitised relative path components: never empty, never `.`/`..`, no separators,
    /// no NUL, safe on common filesystems. Joining them under the output folder can never
    /// leave it.
    pub path: Vec<String>,
    pub length: u64,
    /// Offset of the file's first byte in the content stream.
    pub offset: u64,
    /// BEP 47 pad file (attr contains `p`): bytes are known zeros, never written to disk.
    pub pad: bool,
}

#[derive(Debug, Clone)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    /// Display name (sanitised `name`).
    pub name: String,
    pub lengths: Lengths,
    /// SHA-1 of each piece.
    pub piece_hashes: Vec<[u8; 20]>,
    /// Files in stream order, pad files included. A single-file torrent has one entry whose
    /// path is `[name]`; a multi-file torrent's paths start with the sanitised `name` folder.
    pub files: Vec<FileEntry>,
    pub private: bool,
    /// BEP 12 tiers; a plain `announce` becomes a single tier.
    pub trackers: Vec<Vec<String>>,
    /// The raw bencoded `info` dictionary exactly as received.
    pub info_bytes: Vec<u8>,
}
