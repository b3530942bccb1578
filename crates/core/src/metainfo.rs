//! Metainfo (.torrent) parsing: v1, and hybrid v1+v2 through its v1 part.
//!
//! The info-hash is the SHA-1 of the `info` dictionary's bytes exactly as they appear in the
//! file; the bencode decoder keeps that span, so non-canonical torrents (unsorted keys, leading
//! zeros) still hash to the swarm everyone else joins. Hybrid torrents (`meta version` 2 with
//! v1 `pieces`) are read through their v1 view, which BEP 52 makes complete on its own; v2-only
//! torrents are rejected with [`MetainfoError::V2OnlyUnsupported`] until v2 hashing exists.
//!
//! # Path safety: sanitise, don't reject
//!
//! File names come from strangers, and storage joins them under an output folder. Rejecting
//! every torrent with an odd name would refuse many real ones (names with `:` or `?` are common
//! and harmless on Linux), so names are *rewritten* into a form that is safe on Linux, macOS and
//! Windows, and only structurally broken input is an error. Each path component is:
//!
//! - dropped when empty or `.` (a path left with no component is an error);
//! - stripped of separators and hazards: `/`, `\`, NUL and other control characters and the
//!   Windows-reserved `< > : " | ? *` each become `_`, so a component can never be absolute
//!   or climb out (`..` becomes `__`: trailing dots and spaces also become `_`, because
//!   Windows silently drops them);
//! - prefixed with `_` when its stem is a Windows device name (`CON`, `nul.txt`, `COM1`, ...);
//! - cut to 255 bytes on a character boundary, keeping a short extension (`.mkv` matters to a
//!   media server).
//!
//! The torrent `name` gets the same treatment (an unusable name becomes the info-hash in hex).
//! After that, paths that would collide on a case-insensitive filesystem, or a file whose name
//! an earlier file uses as a folder, get a ` (2)`, ` (3)`, ... suffix, first come first served,
//! so no two files of a torrent ever share storage. Pad files are never written and are left
//! out of that check. `name.utf-8` / `path.utf-8` are preferred when present and valid;
//! otherwise non-UTF-8 bytes are replaced with U+FFFD.

mod builder;
mod path;

use sha1::{Digest, Sha1};
use sluice_bencode::Value;

use crate::{InfoHash, Lengths, LengthsError};

pub use builder::TorrentBuilder;

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

impl FileEntry {
    /// One past the file's last byte in the content stream.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
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

/// Why a `.torrent` was refused; the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("not bencode: {0}")]
    Bencode(#[from] sluice_bencode::Error),
    #[error("{0} is missing")]
    Missing(String),
    #[error("{field} should be {expected}, found {found}")]
    WrongType { field: String, expected: &'static str, found: &'static str },
    #[error("{field} {problem}")]
    Invalid { field: String, problem: String },
    #[error("v2-only torrents (meta version 2 without v1 pieces) are not supported yet")]
    V2OnlyUnsupported,
    #[error("info: {0}")]
    Lengths(#[from] LengthsError),
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> MetainfoError {
    MetainfoError::Invalid { field: field.into(), problem: problem.into() }
}

fn wrong_type(field: impl Into<String>, expected: &'static str, found: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType { field: field.into(), expected, found: found.kind() }
}

impl Metainfo {
    /// Parses and validates a `.torrent` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let root = sluice_bencode::decode(bytes)?;
        if root.as_dict().is_none() {
            return Err(wrong_type("torrent", "a dictionary", &root));
        }
        let info = root.get(b"info").ok_or_else(|| MetainfoError::Missing("info".into()))?;
        let info_bytes = info.raw().ok_or_else(|| wrong_type("info", "a dictionary", info))?;
        let info_hash = InfoHash(Sha1::digest(info_bytes).into());

        let pieces = match info.get(b"pieces") {
            Some(p) => p.as_bytes().ok_or_else(|| wrong_type("info.pieces", "a byte string", p))?,
            None if info.get(b"meta version").and_then(Value::as_int) == Some(2) => {
                return Err(MetainfoError::V2OnlyUnsupported);
            }
            None => return Err(MetainfoError::Missing("info.pieces".into())),
        };
        if pieces.len() % 20 != 0 {
            return Err(invalid("info.pieces", format!("length {} is not a multiple of 20", pieces.len())));
        }
        let piece_length = non_negative(info, "info", "piece length")?;

        let name = match text(info, "info", "name")? {
            Some(raw) => path::sanitise_component(&raw),
            None => return Err(MetainfoError::Missing("info.name".into())),
        }
        .unwrap_or_else(|| info_hash.to_hex());

        let files = match (info.get(b"files"), info.get(b"length")) {
            (Some(_), Some(_)) => return Err(invalid("info", "has both length and files")),
            (None, None) => return Err(invalid("info", "has neither length nor files")),
            (None, Some(_)) => {
                let length = non_negative(info, "info", "length")?;
                vec![FileEntry { path: vec![name.clone()], length, offset: 0, pad: false }]
            }
            (Some(list), None) => multi_files(list, &name)?,
        };
        let total = files.last().map_or(0, FileEntry::end);
        let lengths = Lengths::new(total, piece_length, (pieces.len() / 20) as u64)?;
        let piece_hashes = pieces.as_chunks::<20>().0.to_vec();

        Ok(Metainfo {
            info_hash,
            name,
            lengths,
            piece_hashes,
            files,
            private: info.get(b"private").and_then(Value::as_int).is_some_and(|p| p != 0),
            trackers: trackers(&root),
            info_bytes: info_bytes.to_vec(),
        })
    }
}

impl Metainfo {
    /// A torrent from a bare `info` dictionary, as fetched from peers for a magnet link
    /// (BEP 9), with trackers from the link (one tier each). The info-hash is computed from
    /// `info` here; the caller compares it with the one it asked for.
    pub fn from_info(info: &[u8], trackers: &[String]) -> Result<Metainfo, MetainfoError> {
        let mut torrent = Vec::with_capacity(info.len() + 8);
        torrent.extend_from_slice(b"d4:info");
        torrent.extend_from_slice(info);
        torrent.push(b'e');
        let mut meta = Self::from_bytes(&torrent)?;
        meta.trackers = trackers.iter().map(|t| vec![t.clone()]).collect();
        Ok(meta)
    }
}

impl Metainfo {
    /// A `.torrent` file of this torrent: its trackers (`announce`, the first; `announce-list`,
    /// every tier) and the `info` dictionary byte for byte, so it hashes to the same info-hash.
    pub fn torrent_file(&self) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &[u8]) {
            out.extend_from_slice(s.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(s);
        }
        let mut out = Vec::with_capacity(self.info_bytes.len() + 256);
        out.push(b'd');
        if let Some(first) = self.trackers.iter().flatten().next() {
            string(&mut out, b"announce");
            string(&mut out, first.as_bytes());
            string(&mut out, b"announce-list");
            out.push(b'l');
            for tier in self.trackers.iter().filter(|t| !t.is_empty()) {
                out.push(b'l');
                tier.iter().for_each(|url| string(&mut out, url.as_bytes()));
                out.push(b'e');
            }
            out.push(b'e');
        }
        string(&mut out, b"info");
        out.extend_from_slice(&self.info_bytes);
        out.push(b'e');
        out
    }
}

/// `dict[key]` as an integer that must not be negative.
fn non_negative(dict: &Value<'_>, at: &str, key: &str) -> Result<u64, MetainfoError> {
    let v = dict.get(key.as_bytes()).ok_or_else(|| MetainfoError::Missing(format!("{at}.{key}")))?;
    let i = v.as_int().ok_or_else(|| wrong_type(format!("{at}.{key}"), "an integer", v))?;
    u64::try_from(i).map_err(|_| invalid(format!("{at}.{key}"), format!("{i} is negative")))
}

/// A text field, preferring a valid `<key>.utf-8` twin; `None` when absent.
fn text(dict: &Value<'_>, at: &str, key: &str) -> Result<Option<String>, MetainfoError> {
    if let Some(s) = dict.get(format!("{key}.utf-8").as_bytes()).and_then(Value::as_str) {
        return Ok(Some(s.to_owned()));
    }
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(v) => {
            let b = v.as_bytes().ok_or_else(|| wrong_type(format!("{at}.{key}"), "a byte string", v))?;
            Ok(Some(String::from_utf8_lossy(b).into_owned()))
        }
    }
}

fn multi_files(list: &Value<'_>, name: &str) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = list.as_list().ok_or_else(|| wrong_type("info.files", "a list", list))?;
    if list.is_empty() {
        return Err(invalid("info.files", "is empty"));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut claimed = path::PathSet::default();
    let mut offset: u64 = 0;
    for (i, f) in list.iter().enumerate() {
        let at = format!("info.files[{i}]");
        if f.as_dict().is_none() {
            return Err(wrong_type(at, "a dictionary", f));
        }
        let length = non_negative(f, &at, "length")?;
        let pad = f.get(b"attr").and_then(Value::as_bytes).is_some_and(|a| a.contains(&b'p'));
        let mut path = vec![name.to_owned()];
        path.extend(file_path(f, &at)?.iter().filter_map(|c| path::sanitise_component(c)));
        if path.len() == 1 {
            return Err(invalid(format!("{at}.path"), "is empty"));
        }
        if !pad {
            claimed.claim(&mut path);
        }
        files.push(FileEntry { path, length, offset, pad });
        offset = offset.checked_add(length).ok_or_else(|| invalid(at, "makes the total length overflow"))?;
    }
    Ok(files)
}

/// The raw components of `files[i]`, from `path.utf-8` when every component there is UTF-8.
fn file_path(f: &Value<'_>, at: &str) -> Result<Vec<String>, MetainfoError> {
    let utf8 = f
        .get(b"path.utf-8")
        .and_then(Value::as_list)
        .and_then(|l| l.iter().map(|c| c.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>());
    if let Some(p) = utf8 {
        return Ok(p);
    }
    let p = f.get(b"path").ok_or_else(|| MetainfoError::Missing(format!("{at}.path")))?;
    let list = p.as_list().ok_or_else(|| wrong_type(format!("{at}.path"), "a list", p))?;
    list.iter()
        .enumerate()
        .map(|(j, c)| {
            let b = c.as_bytes().ok_or_else(|| wrong_type(format!("{at}.path[{j}]"), "a byte string", c))?;
            Ok(String::from_utf8_lossy(b).into_owned())
        })
        .collect()
}

/// BEP 12: a usable `announce-list` replaces `announce`. Malformed entries are skipped rather
/// than failing the torrent: trackers are optional (DHT, PEX, magnet peers).
fn trackers(root: &Value<'_>) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let tiers: Vec<Vec<String>> = root
        .get(b"announce-list")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_list)
        .map(|tier| {
            tier.iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|url| !url.is_empty() && seen.insert(*url))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect();
    if !tiers.is_empty() {
        return tiers;
    }
    match root.get(b"announce").and_then(Value::as_str).map(str::trim) {
        Some(url) if !url.is_empty() => vec![vec![url.to_owned()]],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
