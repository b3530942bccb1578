//! The bytes fed so far: disjoint, non-adjacent chunks keyed by file offset.

use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Debug, Default)]
pub(crate) struct Store {
    chunks: BTreeMap<u64, Vec<u8>>,
}

impl Store {
    /// Adds `data` at `start`, merging with every chunk it overlaps or touches. Overlapping
    /// bytes are taken to be equal (a file's bytes do not change), so either copy may be kept.
    /// The chunk the data extends grows in place: a range fed piece by piece costs linear time.
    pub(crate) fn insert(&mut self, start: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = start + data.len() as u64;
        let mut touching: Vec<u64> = self
            .chunks
            .range(..=end)
            .rev()
            .take_while(|(k, v)| **k + v.len() as u64 >= start)
            .map(|(k, _)| *k)
            .collect();
        touching.reverse();
        let (lo, mut merged) = match touching.first() {
            Some(&k) if k <= start => (k, self.chunks.remove(&k).unwrap_or_default()),
            _ => (start, Vec::new()),
        };
        let append = |merged: &mut Vec<u8>, at: u64, bytes: &[u8]| {
            let held_end = lo + merged.len() as u64;
            if at + bytes.len() as u64 > held_end {
                merged.extend_from_slice(&bytes[(held_end - at) as usize..]);
            }
        };
        append(&mut merged, start, data);
        for k in touching.into_iter().filter(|k| *k > start) {
            let old = self.chunks.remove(&k).unwrap_or_default();
            append(&mut merged, k, &old);
        }
        self.chunks.insert(lo, merged);
    }

    /// The bytes of `r` if one chunk holds all of them.
    pub(crate) fn get(&self, r: &Range<u64>) -> Option<&[u8]> {
        let (k, v) = self.chunks.range(..=r.start).next_back()?;
        let end = *k + v.len() as u64;
        (r.end <= end).then(|| &v[(r.start - k) as usize..(r.end - k) as usize])
    }

    /// The first offset at or after `at` that no chunk holds, for chunks that contain `at`.
    pub(crate) fn held_until(&self, at: u64) -> u64 {
        match self.chunks.range(..=at).next_back() {
            Some((k, v)) if *k + v.len() as u64 > at => *k + v.len() as u64,
            _ => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(r: Range<u64>) -> Vec<u8> {
        r.map(|i| (i * 7) as u8).collect()
    }

    #[test]
    fn merges_overlapping_and_adjacent_chunks() {
        let mut s = Store::default();
        for r in [10..13, 20..21, 13..15, 30..31, 25..35] {
            s.insert(r.start, &file(r));
        }
        assert_eq!(s.get(&(10..15)), Some(&file(10..15)[..]));
        assert_eq!(s.get(&(10..16)), None);
        assert_eq!(s.get(&(25..35)), Some(&file(25..35)[..]));
        assert_eq!(s.chunks.len(), 3);
        s.insert(8, &file(8..26));
        assert_eq!(s.get(&(8..35)), Some(&file(8..35)[..]));
        assert_eq!((s.held_until(9), s.held_until(35), s.held_until(3)), (35, 35, 3));
        assert_eq!(s.chunks.len(), 1);
    }

    #[test]
    fn piecewise_feeding_appends() {
        let mut s = Store::default();
        for i in 0..1000u64 {
            s.insert(i * 10, &[i as u8; 10]);
        }
        assert_eq!(s.chunks.len(), 1);
        assert_eq!(s.get(&(9990..10000)), Some(&[231; 10][..]));
    }
}
