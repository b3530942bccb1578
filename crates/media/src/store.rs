//! The bytes fed so far: disjoint, non-adjacent chunks keyed by file offset.

use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Debug, Default)]
pub(crate) struct Store {
    chunks: BTreeMap<u64, Vec<u8>>,
}

impl Store {
    /// Adds `data` at `start`, merging with every chunk it overlaps or touches. Bytes already
    /// held win over new ones: the file does not change under us.
    pub(crate) fn insert(&mut self, start: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = start + data.len() as u64;
        let touching: Vec<u64> = self
            .chunks
            .range(..=end)
            .rev()
            .take_while(|(k, v)| **k + v.len() as u64 >= start)
            .map(|(k, _)| *k)
            .collect();
        let mut lo = start;
        let mut hi = end;
        for k in &touching {
            lo = lo.min(*k);
            hi = hi.max(*k + self.chunks[k].len() as u64);
        }
        let mut merged = vec![0; (hi - lo) as usize];
        let at = (start - lo) as usize;
        merged[at..at + data.len()].copy_from_slice(data);
        for k in touching {
            let old = self.chunks.remove(&k).unwrap_or_default();
            let at = (k - lo) as usize;
            merged[at..at + old.len()].copy_from_slice(&old);
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

    #[test]
    fn merges_overlapping_and_adjacent_chunks() {
        let mut s = Store::default();
        s.insert(10, &[1, 2, 3]);
        s.insert(20, &[9]);
        s.insert(13, &[4, 5]);
        assert_eq!(s.get(&(10..15)), Some(&[1, 2, 3, 4, 5][..]));
        assert_eq!(s.get(&(10..16)), None);
        s.insert(8, &[7, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(s.get(&(8..21)), Some(&[7, 7, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 9][..]));
        assert_eq!(s.held_until(9), 21);
        assert_eq!(s.held_until(21), 21);
        assert_eq!(s.chunks.len(), 1);
    }
}
