//! Creating v1 torrents, for tests, simulations and tools.

use std::fmt;

use sha1::{Digest, Sha1};
use sluice_bencode::{Dict, OwnedValue};

/// Fills `buf` with a file's bytes starting at `offset` within that file.
type Fill = Box<dyn Fn(u64, &mut [u8]) + Send + Sync>;

enum Source {
    Bytes(Vec<u8>),
    Generated { len: u64, fill: Fill },
    Zeros(u64),
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::Generated { len, .. } | Source::Zeros(len) => *len,
        }
    }

    /// Calls `sink` with the content in order, in chunks of at most 64 KiB.
    fn stream(&self, mut sink: impl FnMut(&[u8])) {
        const CHUNK: u64 = 64 * 1024;
        match self {
            Source::Bytes(b) => b.chunks(CHUNK as usize).for_each(sink),
            Source::Generated { len, fill } => {
                let mut buf = vec![0; CHUNK.min(*len) as usize];
                for at in (0..*len).step_by(CHUNK as usize) {
                    let chunk = &mut buf[..CHUNK.min(len - at) as usize];
                    fill(at, chunk);
                    sink(chunk);
                }
            }
            Source::Zeros(len) => {
                let zeros = vec![0; CHUNK.min(*len) as usize];
                for at in (0..*len).step_by(CHUNK as usize) {
                    sink(&zeros[..CHUNK.min(len - at) as usize]);
                }
            }
        }
    }
}

struct File {
    path: Vec<String>,
    source: Source,
}

/// Builds the bytes of a v1 `.torrent`, deterministically (no clock, no `creation date`).
///
/// ```
/// use sluice_core::metainfo::{Metainfo, TorrentBuilder};
///
/// let torrent = TorrentBuilder::new("album", 16384)
///     .file(&["cd1", "01.flac"], vec![1u8; 40_000])
///     .file_with(&["cover.jpg"], 5_000, |offset, buf| buf.fill(offset as u8))
///     .align_files()
///     .tracker("http://127.0.0.1:6969/announce")
///     .private(true)
///     .build();
/// let meta = Metainfo::from_bytes(&torrent).unwrap();
/// assert_eq!(meta.files.len(), 3); // a pad file aligns cover.jpg to a piece boundary
///
/// let single = TorrentBuilder::single_file("movie.mkv", 32768, vec![7u8; 100_000]).build();
/// assert_eq!(Metainfo::from_bytes(&single).unwrap().files[0].path, ["movie.mkv"]);
/// ```
///
/// Misuse (adding a file to a single-file builder, a zero piece length) panics: this is a
/// helper for code we write, not a parser of input.
pub struct TorrentBuilder {
    name: String,
    piece_length: u32,
    single: bool,
    files: Vec<File>,
    align: bool,
    private: bool,
    tiers: Vec<Vec<String>>,
}

impl fmt::Debug for TorrentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TorrentBuilder")
            .field("name", &self.name)
            .field("piece_length", &self.piece_length)
            .field("single", &self.single)
            .field("files", &self.files.iter().map(|x| (&x.path, x.source.len())).collect::<Vec<_>>())
            .field("align", &self.align)
            .field("private", &self.private)
            .field("tiers", &self.tiers)
            .finish()
    }
}

impl TorrentBuilder {
    /// A multi-file torrent whose folder is `name`; add files with [`file`](Self::file).
    pub fn new(name: impl Into<String>, piece_length: u32) -> Self {
        assert!(piece_length > 0, "piece length must be positive");
        Self {
            name: name.into(),
            piece_length,
            single: false,
            files: Vec::new(),
            align: false,
            private: false,
            tiers: Vec::new(),
        }
    }

    /// A single-file torrent: the file is called `name`.
    pub fn single_file(name: impl Into<String>, piece_length: u32, data: impl Into<Vec<u8>>) -> Self {
        Self::new(name, piece_length).single_source(Source::Bytes(data.into()))
    }

    /// A single-file torrent of `len` bytes produced by `fill(offset, buf)`.
    pub fn single_file_with(
        name: impl Into<String>,
        piece_length: u32,
        len: u64,
        fill: impl Fn(u64, &mut [u8]) + Send + Sync + 'static,
    ) -> Self {
        Self::new(name, piece_length).single_source(Source::Generated { len, fill: Box::new(fill) })
    }

    fn single_source(mut self, source: Source) -> Self {
        self.single = true;
        self.files.push(File { path: vec![self.name.clone()], source });
        self
    }

    /// Adds a file with the given path below the torrent folder and contents.
    pub fn file(self, path: &[&str], data: impl Into<Vec<u8>>) -> Self {
        self.push(path, Source::Bytes(data.into()))
    }

    /// Adds a file of `len` bytes whose contents `fill(offset_in_file, buf)` produces, for
    /// content too large to keep in memory. `fill` must be deterministic.
    pub fn file_with(self, path: &[&str], len: u64, fill: impl Fn(u64, &mut [u8]) + Send + Sync + 'static) -> Self {
        self.push(path, Source::Generated { len, fill: Box::new(fill) })
    }

    fn push(mut self, path: &[&str], source: Source) -> Self {
        assert!(!self.single, "a single-file torrent has no further files");
        self.files.push(File { path: path.iter().map(|c| c.to_string()).collect(), source });
        self
    }

    /// Inserts BEP 47 pad files (`.pad/<len>`, attr `p`) so every file starts on a piece
    /// boundary, as hybrid torrents do.
    pub fn align_files(mut self) -> Self {
        self.align = true;
        self
    }

    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Adds a tier holding one tracker.
    pub fn tracker(self, url: impl Into<String>) -> Self {
        self.tier([url])
    }

    /// Adds a BEP 12 tier of trackers.
    pub fn tier(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tiers.push(urls.into_iter().map(Into::into).collect());
        self
    }

    /// The content stream in order, as the listed files plus any pad files.
    fn layout(&self) -> Vec<(Option<&File>, u64)> {
        let piece = u64::from(self.piece_length);
        let mut out = Vec::new();
        let mut offset = 0u64;
        for (i, file) in self.files.iter().enumerate() {
            let gap = (piece - offset % piece) % piece;
            if self.align && i > 0 && gap > 0 {
                out.push((None, gap));
                offset += gap;
            }
            out.push((Some(file), file.source.len()));
            offset += file.source.len();
        }
        out
    }

    fn stream(&self, mut sink: impl FnMut(&[u8])) {
        for (file, len) in self.layout() {
            match file {
                Some(f) => f.source.stream(&mut sink),
                None => Source::Zeros(len).stream(&mut sink),
            }
        }
    }

    /// The whole content stream, pad zeros included (what a seeder's storage holds).
    pub fn content(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.stream(|chunk| out.extend_from_slice(chunk));
        out
    }

    /// The `.torrent` bytes.
    pub fn build(&self) -> Vec<u8> {
        let piece = self.piece_length as usize;
        let mut pieces = Vec::new();
        let mut hasher = Sha1::new();
        let mut filled = 0;
        self.stream(|mut chunk| {
            while !chunk.is_empty() {
                let take = (piece - filled).min(chunk.len());
                hasher.update(&chunk[..take]);
                filled += take;
                chunk = &chunk[take..];
                if filled == piece {
                    pieces.extend_from_slice(&hasher.finalize_reset());
                    filled = 0;
                }
            }
        });
        if filled > 0 {
            pieces.extend_from_slice(&hasher.finalize());
        }

        let mut info =
            Dict::new().with("name", self.name.as_str()).with("piece length", self.piece_length).with("pieces", pieces);
        if self.private {
            info.insert("private", 1);
        }
        if self.single {
            info.insert("length", int(self.files.iter().map(|f| f.source.len()).sum()));
        } else {
            let files = self.layout().into_iter().map(|(file, len)| {
                let entry = Dict::new().with("length", int(len));
                OwnedValue::from(match file {
                    Some(f) => entry.with("path", strings(&f.path)),
                    None => entry.with("attr", "p").with("path", strings(&[".pad".into(), len.to_string()])),
                })
            });
            info.insert("files", files.collect::<Vec<_>>());
        }

        let mut torrent = Dict::new().with("info", info);
        if let Some(first) = self.tiers.iter().flatten().next() {
            torrent.insert("announce", first.as_str());
        }
        if self.tiers.iter().flatten().count() > 1 {
            torrent.insert("announce-list", self.tiers.iter().map(|t| strings(t)).collect::<Vec<_>>());
        }
        torrent.encode()
    }
}

fn int(n: u64) -> OwnedValue {
    OwnedValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn strings(items: &[String]) -> OwnedValue {
    OwnedValue::List(items.iter().map(|s| OwnedValue::from(s.as_str())).collect())
}
