//! TorrServer's file ids: 1-based positions in "natural" path order.
//!
//! Every id a client sees (status `file_stats`, `index=` in stream links, `/play/{hash}/{id}`,
//! viewed marks, M3U entries) comes from one [`TorrentFiles`], so they always agree; the
//! backend builds it once per torrent from the metainfo's file list.

use std::cmp::Ordering;

use crate::FileIndex;

use super::types::{FileStat, FileStats};

/// One file with its TorrServer id and its metainfo position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsFile {
    /// 1-based, natural path order.
    pub id: u32,
    /// Position in the metainfo's file list: what [`StreamSource`](crate::StreamSource) takes.
    pub index: FileIndex,
    /// Path including the torrent's top folder, `/`-separated.
    pub path: String,
    pub length: u64,
}

impl TsFile {
    /// The last path component.
    pub fn base_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A torrent's files in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TorrentFiles {
    files: Vec<TsFile>,
    /// `file_stats`, rendered once.
    stats: FileStats,
}

impl TorrentFiles {
    /// From the metainfo's `(path, length)` list, in metainfo order.
    pub fn new(files: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self::with_indices(files.into_iter().enumerate().map(|(i, (path, length))| (FileIndex(i), path, length)))
    }

    /// From files that carry their metainfo position (a list with pad files left out).
    pub fn with_indices(files: impl IntoIterator<Item = (FileIndex, String, u64)>) -> Self {
        let mut files: Vec<TsFile> =
            files.into_iter().map(|(index, path, length)| TsFile { id: 0, index, path, length }).collect();
        files.sort_by(|a, b| natural_cmp(&a.path, &b.path).then(a.index.cmp(&b.index)));
        for (i, f) in files.iter_mut().enumerate() {
            f.id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        }
        let stats: Vec<FileStat> =
            files.iter().map(|f| FileStat { id: f.id, path: f.path.clone(), length: f.length }).collect();
        Self { stats: FileStats::new(&stats), files }
    }

    pub fn by_id(&self, id: u32) -> Option<&TsFile> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.files.get(i)
    }

    pub fn by_index(&self, index: FileIndex) -> Option<&TsFile> {
        self.files.iter().find(|f| f.index == index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, TsFile> {
        self.files.iter()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The status object's `file_stats` (shared, rendered when the list was built).
    pub fn stats(&self) -> FileStats {
        self.stats.clone()
    }
}

/// Compares paths so that `ep2` comes before `ep10`: runs of ASCII digits compare by value
/// (then by length, so `01` and `1` stay distinct and ordered), everything else by character.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (na, ra) = split_digits(a);
                let (nb, rb) = split_digits(b);
                let (ta, tb) = (trim_zeros(na), trim_zeros(nb));
                let by_value = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                match by_value.then_with(|| na.len().cmp(&nb.len())) {
                    Ordering::Equal => (a, b) = (ra, rb),
                    other => return other,
                }
            }
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Equal => (a, b) = (&a[1..], &b[1..]),
                other => return other,
            },
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let mut v = vec!["s/ep10.mkv", "s/ep2.mkv", "s/ep1.mkv", "s/Ep3.mkv", "s/ep02.mkv", "s/a.srt", "s"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["s", "s/Ep3.mkv", "s/a.srt", "s/ep1.mkv", "s/ep2.mkv", "s/ep02.mkv", "s/ep10.mkv"]);
        let huge = "9".repeat(100);
        assert_eq!(natural_cmp(&huge, "10"), Ordering::Greater);
    }

    #[test]
    fn ids_are_one_based_in_natural_order() {
        let files =
            TorrentFiles::new([("d/10.mkv".to_owned(), 5), ("d/9.mkv".to_owned(), 6), ("d/9.srt".to_owned(), 1)]);
        let ids: Vec<_> = files.iter().map(|f| (f.id, f.index.0, f.base_name())).collect();
        assert_eq!(ids, [(1, 1, "9.mkv"), (2, 2, "9.srt"), (3, 0, "10.mkv")]);
        assert_eq!(files.by_id(3).map(|f| f.index), Some(FileIndex(0)));
        assert!(files.by_id(0).is_none() && files.by_id(4).is_none());
    }
}
