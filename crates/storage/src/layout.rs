//! Mapping between the content stream and the files that hold it. Pure: no I/O.
//!
//! A torrent's pieces are cut from the concatenation of its files, so one piece may span
//! several files and one file several pieces. Zero-length files hold no bytes: they never
//! appear in spans, but [`Layout::piece_files`] lists them with the piece at whose position
//! they sit, so a store can create them when it writes that piece.

use std::ops::Range;

use sluice_core::metainfo::FileEntry;
use sluice_core::{Lengths, PieceIndex};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("torrent has no files")]
    NoFiles,
    #[error("file {file} starts at content offset {offset}, expected {expected}")]
    NotContiguous { file: usize, offset: u64, expected: u64 },
    #[error("files hold {files} bytes but the torrent has {total}")]
    LengthMismatch { files: u64, total: u64 },
}

/// Position of one file in the content stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtent {
    pub offset: u64,
    pub length: u64,
    pub pad: bool,
}

impl FileExtent {
    pub const fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// A contiguous run of content bytes that lies inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into the torrent's file list.
    pub file: usize,
    pub file_offset: u64,
    pub len: u64,
    /// The span lies in a BEP 47 pad file: its bytes are zeros and never touch the disk.
    pub pad: bool,
}

#[derive(Debug, Clone)]
pub struct Layout {
    lengths: Lengths,
    files: Vec<FileExtent>,
}

impl Layout {
    /// Checks that the files tile the content stream exactly, in order.
    pub fn new(files: &[FileEntry], lengths: Lengths) -> Result<Self, LayoutError> {
        if files.is_empty() {
            return Err(LayoutError::NoFiles);
        }
        let mut expected = 0u64;
        let mut extents = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            if f.offset != expected {
                return Err(LayoutError::NotContiguous { file: i, offset: f.offset, expected });
            }
            expected = expected
                .checked_add(f.length)
                .ok_or(LayoutError::LengthMismatch { files: u64::MAX, total: lengths.total_length() })?;
            extents.push(FileExtent { offset: f.offset, length: f.length, pad: f.pad });
        }
        if expected != lengths.total_length() {
            return Err(LayoutError::LengthMismatch { files: expected, total: lengths.total_length() });
        }
        Ok(Self { lengths, files: extents })
    }

    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    pub fn files(&self) -> &[FileExtent] {
        &self.files
    }

    /// The file spans covering `len` bytes of `piece` from `offset_in_piece`, in stream order.
    /// The range is clamped to the piece.
    pub fn spans(&self, piece: PieceIndex, offset_in_piece: u32, len: u32) -> Spans<'_> {
        let plen = self.lengths.piece_len(piece);
        let start = offset_in_piece.min(plen);
        let end = start.saturating_add(len).min(plen);
        let base = self.lengths.piece_start(piece).0;
        self.content_spans(base + u64::from(start), u64::from(end - start))
    }

    /// The file spans covering content bytes `start .. start + len`, clamped to the torrent.
    pub fn content_spans(&self, start: u64, len: u64) -> Spans<'_> {
        let total = self.lengths.total_length();
        let pos = start.min(total);
        let end = pos.saturating_add(len).min(total);
        let file = self.files.partition_point(|f| f.end() <= pos);
        Spans { files: &self.files, file, pos, end }
    }

    /// Files with bytes in `piece`, plus zero-length files positioned inside it (those at the
    /// very end of the torrent belong to the last piece).
    pub fn piece_files(&self, piece: PieceIndex) -> Range<usize> {
        let start = self.lengths.piece_start(piece).0;
        let end = start + u64::from(self.lengths.piece_len(piece));
        let first = self.files.partition_point(|f| if f.length == 0 { f.offset < start } else { f.end() <= start });
        let last = if piece == self.lengths.last_piece() {
            self.files.len()
        } else {
            self.files.partition_point(|f| f.offset < end)
        };
        first..last
    }

    /// Pieces holding bytes of `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        let f = self.files[file];
        let plen = u64::from(self.lengths.piece_length());
        let first = (f.offset / plen).min(u64::from(self.lengths.num_pieces())) as u32;
        if f.length == 0 {
            return first..first;
        }
        first..((f.end() - 1) / plen) as u32 + 1
    }
}

/// Iterator returned by [`Layout::spans`]; borrows the layout, allocates nothing.
#[derive(Debug, Clone)]
pub struct Spans<'a> {
    files: &'a [FileExtent],
    file: usize,
    pos: u64,
    end: u64,
}

impl Iterator for Spans<'_> {
    type Item = FileSpan;

    fn next(&mut self) -> Option<FileSpan> {
        while self.pos < self.end {
            let f = self.files.get(self.file)?;
            if f.end() <= self.pos {
                self.file += 1;
                continue;
            }
            let len = f.end().min(self.end) - self.pos;
            let span = FileSpan { file: self.file, file_offset: self.pos - f.offset, len, pad: f.pad };
            self.pos += len;
            return Some(span);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(sizes: &[(u64, bool)]) -> Vec<FileEntry> {
        let mut offset = 0;
        sizes
            .iter()
            .enumerate()
            .map(|(i, &(length, pad))| {
                let e = FileEntry { path: vec![format!("f{i}")], length, offset, pad };
                offset += length;
                e
            })
            .collect()
    }

    fn layout(sizes: &[(u64, bool)], piece_length: u64) -> Layout {
        let total: u64 = sizes.iter().map(|s| s.0).sum();
        let lengths = Lengths::new(total, piece_length, total.div_ceil(piece_length)).unwrap();
        Layout::new(&entries(sizes), lengths).unwrap()
    }

    #[test]
    fn piece_across_three_files() {
        let l = layout(&[(5, false), (0, false), (3, false), (4, true), (8, false)], 10);
        let p0: Vec<_> = l.spans(PieceIndex::new_unchecked(0), 0, 10).collect();
        assert_eq!(
            p0,
            vec![
                FileSpan { file: 0, file_offset: 0, len: 5, pad: false },
                FileSpan { file: 2, file_offset: 0, len: 3, pad: false },
                FileSpan { file: 3, file_offset: 0, len: 2, pad: true },
            ]
        );
        assert_eq!(l.piece_files(PieceIndex::new_unchecked(0)), 0..4);
        assert_eq!(l.piece_files(PieceIndex::new_unchecked(1)), 3..5);
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(4), 1..2);
        let mid: Vec<_> = l.spans(PieceIndex::new_unchecked(1), 1, 100).collect();
        assert_eq!(
            mid,
            vec![
                FileSpan { file: 3, file_offset: 3, len: 1, pad: true },
                FileSpan { file: 4, file_offset: 0, len: 8, pad: false },
            ]
        );
    }

    #[test]
    fn trailing_zero_length_file_belongs_to_last_piece() {
        let l = layout(&[(10, false), (0, false), (0, false)], 5);
        assert_eq!(l.piece_files(PieceIndex::new_unchecked(1)), 0..3);
        assert_eq!(l.piece_files(PieceIndex::new_unchecked(0)), 0..1);
    }

    #[test]
    fn rejects_gaps_and_wrong_totals() {
        let lengths = Lengths::new(10, 4, 3).unwrap();
        let mut e = entries(&[(6, false), (4, false)]);
        assert!(Layout::new(&e, lengths).is_ok());
        e[1].offset = 7;
        assert!(matches!(Layout::new(&e, lengths), Err(LayoutError::NotContiguous { file: 1, .. })));
        let e = entries(&[(6, false), (5, false)]);
        assert!(matches!(Layout::new(&e, lengths), Err(LayoutError::LengthMismatch { .. })));
        assert_eq!(Layout::new(&[], lengths).unwrap_err(), LayoutError::NoFiles);
    }

    fn sizes_strategy() -> impl Strategy<Value = Vec<(u64, bool)>> {
        proptest::collection::vec(
            prop_oneof![Just(0u64), 1u64..40, 1u64..3].prop_flat_map(|n| (Just(n), proptest::bool::weighted(0.2))),
            1..12,
        )
        .prop_filter("non-empty torrent", |v| v.iter().any(|s| s.0 > 0))
    }

    proptest! {
        #[test]
        fn spans_tile_every_piece(sizes in sizes_strategy(), piece_length in 1u64..50) {
            let l = layout(&sizes, piece_length);
            let lengths = *l.lengths();
            let mut covered = 0u64;
            for piece in lengths.pieces() {
                let start = lengths.piece_start(piece).0;
                prop_assert_eq!(start, covered);
                let files = l.piece_files(piece);
                for s in l.spans(piece, 0, u32::MAX) {
                    let f = l.files()[s.file];
                    prop_assert!(s.len > 0);
                    prop_assert!(s.file_offset + s.len <= f.length);
                    prop_assert_eq!(f.offset + s.file_offset, covered);
                    prop_assert_eq!(s.pad, f.pad);
                    prop_assert!(files.contains(&s.file));
                    prop_assert!(l.file_pieces(s.file).contains(&piece.get()));
                    covered += s.len;
                }
                prop_assert_eq!(covered, start + u64::from(lengths.piece_len(piece)));
            }
            prop_assert_eq!(covered, lengths.total_length());
            for (i, f) in l.files().iter().enumerate() {
                for p in l.file_pieces(i) {
                    prop_assert!(l.piece_files(PieceIndex::new_unchecked(p)).contains(&i));
                }
                if f.length == 0 {
                    let owners = lengths.pieces().filter(|&p| l.piece_files(p).contains(&i)).count();
                    prop_assert_eq!(owners, 1);
                }
            }
        }

        #[test]
        fn sub_ranges_map_back(sizes in sizes_strategy(), piece_length in 1u64..50, a in 0u32..60, b in 0u32..60) {
            let l = layout(&sizes, piece_length);
            let lengths = *l.lengths();
            for piece in lengths.pieces() {
                let plen = lengths.piece_len(piece);
                let (off, len) = (a % plen, b % (plen + 1));
                let want = len.min(plen - off);
                let mut pos = lengths.piece_start(piece).0 + u64::from(off);
                let mut got = 0u64;
                for s in l.spans(piece, off, len) {
                    prop_assert_eq!(l.files()[s.file].offset + s.file_offset, pos);
                    pos += s.len;
                    got += s.len;
                }
                prop_assert_eq!(got, u64::from(want));
            }
        }
    }
}
