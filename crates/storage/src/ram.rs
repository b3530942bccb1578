//! RAM-only storage: verified pieces of every torrent live in one memory cache with one byte
//! budget (TorrServer's default mode, for TV boxes and routers without a disk to spare).
//!
//! # Why one budget
//!
//! A box with 1 GiB of memory cannot give each torrent its own cache: the user picks one
//! figure and the process must stay under it whatever is open. So [`RamCache`] is shared, and
//! each torrent gets a [`RamStore`] slot in it.
//!
//! # What is evicted
//!
//! Each slot carries *retention ranks* from its torrent's streaming state (see
//! [`RamStore::set_retained`]): pieces under readers' windows and protected container regions
//! rank above 0 (more urgent, higher), everything else ranks 0. When a new piece does not fit,
//! the cache evicts the piece with the lowest rank, least recently used first, but never one
//! that ranks above the new piece and never one a reader is copying out of (a reader holds the
//! piece's `Arc` while it copies, so eviction cannot pull bytes from under it). When nothing
//! may go, the new piece itself is dropped. Every eviction and every stored piece is reported
//! to the slot's [`CacheEvents`] while the cache lock is held, so whoever mirrors "is this
//! piece readable" (the node's reader bitfield) never disagrees with the cache for longer than
//! one callback.
//!
//! # Cost
//!
//! A read is a lookup, an atomic increment and a copy outside the lock: no allocation. An
//! insertion that must evict scans the cache's entries (a few hundred at most: budget over
//! piece length), once per verified piece.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sluice_core::{Bitfield, BlockRef, Lengths, PieceIndex};

use crate::error::{Result, StorageError};
use crate::store::{PieceStore, check_piece, check_range};

/// Told, under the cache's lock, when a piece of a slot becomes readable or stops being so.
/// Implementations must be quick and never block (set a bit, push to a channel).
pub trait CacheEvents: Send + Sync {
    fn stored(&self, piece: PieceIndex);
    fn evicted(&self, piece: PieceIndex);
}

/// The memory cache shared by every torrent's [`RamStore`].
pub struct RamCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    budget: u64,
    used: u64,
    peak: u64,
    evictions: u64,
    /// Logical clock for least-recently-used order.
    tick: u64,
    next_slot: u64,
    slots: HashMap<u64, Slot>,
}

struct Slot {
    pieces: HashMap<u32, Entry>,
    /// Piece ranges with their rank (higher is kept longer); a piece in several takes the max.
    retained: Vec<(Range<u32>, u8)>,
    events: Arc<dyn CacheEvents>,
}

struct Entry {
    data: Arc<[u8]>,
    used_at: u64,
}

impl Slot {
    fn rank(&self, piece: u32) -> u8 {
        self.retained.iter().filter(|(r, _)| r.contains(&piece)).map(|(_, k)| *k).max().unwrap_or(0)
    }
}

/// What a cache holds, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub budget: u64,
    pub used: u64,
    /// Most bytes ever held at once.
    pub peak: u64,
    pub pieces: usize,
    pub evictions: u64,
}

impl RamCache {
    /// A cache holding at most `budget` bytes of piece data.
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { budget, ..State::default() }) })
    }

    /// Changes the budget while torrents use the cache. A smaller one evicts at once, lowest
    /// rank and least recently used first, whatever the rank (readers fetch such pieces
    /// again), but never a piece a reader is copying: those go at the next insertion, so the
    /// cache may stay over the new budget until their copies end. Returns the bytes held after.
    pub fn set_budget(&self, budget: u64) -> u64 {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.budget = budget;
        while s.used > s.budget {
            let Some((vslot, vpiece)) = victim(s, u8::MAX) else { break };
            evict(s, vslot, vpiece);
        }
        s.used
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> CacheStats {
        let s = self.lock();
        CacheStats {
            budget: s.budget,
            used: s.used,
            peak: s.peak,
            pieces: s.slots.values().map(|sl| sl.pieces.len()).sum(),
            evictions: s.evictions,
        }
    }

    /// A new, empty slot for one torrent. Dropping the store frees its pieces.
    pub fn store(self: &Arc<Self>, lengths: Lengths, events: Arc<dyn CacheEvents>) -> RamStore {
        let mut s = self.lock();
        let slot = s.next_slot;
        s.next_slot += 1;
        s.slots.insert(slot, Slot { pieces: HashMap::new(), retained: Vec::new(), events });
        RamStore { cache: self.clone(), slot, lengths }
    }

    fn insert(&self, slot: u64, piece: PieceIndex, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        let mut guard = self.lock();
        let s = &mut *guard;
        if len > s.budget {
            return Err(StorageError::OverBudget { piece, len, budget: s.budget });
        }
        s.tick += 1;
        let tick = s.tick;
        let Some(rank) = s.slots.get(&slot).map(|sl| sl.rank(piece.get())) else {
            return Ok(());
        };
        if let Some(old) = s.slots.get_mut(&slot).and_then(|sl| sl.pieces.remove(&piece.get())) {
            s.used -= old.data.len() as u64;
        }
        while s.used + len > s.budget {
            let Some((vslot, vpiece)) = victim(s, rank) else {
                // Everything left ranks above this piece or is being read: keep what is there.
                if let Some(sl) = s.slots.get(&slot) {
                    sl.events.evicted(piece);
                }
                s.evictions += 1;
                return Ok(());
            };
            evict(s, vslot, vpiece);
        }
        let sl = s.slots.get_mut(&slot).expect("checked above");
        sl.pieces.insert(piece.get(), Entry { data: Arc::from(data), used_at: tick });
        sl.events.stored(piece);
        s.used += len;
        s.peak = s.peak.max(s.used);
        Ok(())
    }

    fn get(&self, slot: u64, piece: PieceIndex) -> Option<Arc<[u8]>> {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.tick += 1;
        let e = s.slots.get_mut(&slot)?.pieces.get_mut(&piece.get())?;
        e.used_at = s.tick;
        Some(e.data.clone())
    }
}

fn evict(s: &mut State, slot: u64, piece: u32) {
    let sl = s.slots.get_mut(&slot).expect("victim's slot exists");
    let gone = sl.pieces.remove(&piece).expect("victim exists");
    sl.events.evicted(PieceIndex::new_unchecked(piece));
    s.used -= gone.data.len() as u64;
    s.evictions += 1;
}

/// The piece to evict to make room for a piece of rank `rank`: the lowest rank (not above
/// `rank`), then the least recently used, skipping pieces a reader is copying.
fn victim(s: &State, rank: u8) -> Option<(u64, u32)> {
    let mut best: Option<((u8, u64), (u64, u32))> = None;
    for (&id, sl) in &s.slots {
        for (&p, e) in &sl.pieces {
            if Arc::strong_count(&e.data) > 1 {
                continue;
            }
            let r = sl.rank(p);
            if r > rank {
                continue;
            }
            let key = (r, e.used_at);
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, (id, p)));
            }
        }
    }
    best.map(|(_, v)| v)
}

impl fmt::Debug for RamCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamCache").field("stats", &self.stats()).finish()
    }
}

/// One torrent's slot in a [`RamCache`].
pub struct RamStore {
    cache: Arc<RamCache>,
    slot: u64,
    lengths: Lengths,
}

impl RamStore {
    /// Replaces this torrent's retention ranks: `(pieces, rank)` with rank 1 or more for
    /// pieces its readers need (higher: needed sooner). Pieces in no range rank 0.
    pub fn set_retained(&self, retained: Vec<(Range<u32>, u8)>) {
        if let Some(sl) = self.cache.lock().slots.get_mut(&self.slot) {
            sl.retained = retained;
        }
    }

    /// Whether `piece` is in the cache now.
    pub fn holds(&self, piece: PieceIndex) -> bool {
        self.cache.lock().slots.get(&self.slot).is_some_and(|sl| sl.pieces.contains_key(&piece.get()))
    }

    pub fn cache(&self) -> &Arc<RamCache> {
        &self.cache
    }
}

impl Drop for RamStore {
    fn drop(&mut self) {
        let mut s = self.cache.lock();
        if let Some(sl) = s.slots.remove(&self.slot) {
            s.used -= sl.pieces.values().map(|e| e.data.len() as u64).sum::<u64>();
        }
    }
}

impl fmt::Debug for RamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamStore").field("slot", &self.slot).field("lengths", &self.lengths).finish()
    }
}

impl PieceStore for RamStore {
    fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    fn write_piece(&self, piece: PieceIndex, data: &[u8]) -> Result<()> {
        check_piece(&self.lengths, piece, data.len())?;
        self.cache.insert(self.slot, piece, data)
    }

    fn read(&self, block: BlockRef, buf: &mut [u8]) -> Result<()> {
        check_range(&self.lengths, block, buf.len())?;
        let data = self.cache.get(self.slot, block.piece).ok_or(StorageError::PieceNotStored(block.piece))?;
        let start = block.offset as usize;
        buf.copy_from_slice(&data[start..start + buf.len()]);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn retain_present(&self, have: &mut Bitfield) {
        let absent: Vec<PieceIndex> = have.iter_ones().filter(|&p| !self.holds(p)).collect();
        for p in absent {
            have.clear(p);
        }
    }

    fn holds(&self, piece: PieceIndex) -> bool {
        RamStore::holds(self, piece)
    }

    fn reads_block(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<(u32, bool)>>);

    impl CacheEvents for Log {
        fn stored(&self, piece: PieceIndex) {
            self.0.lock().unwrap().push((piece.get(), true));
        }
        fn evicted(&self, piece: PieceIndex) {
            self.0.lock().unwrap().push((piece.get(), false));
        }
    }

    fn lengths(pieces: u64) -> Lengths {
        Lengths::new(pieces * 1024, 1024, pieces).unwrap()
    }

    fn piece(i: u32) -> PieceIndex {
        PieceIndex::new_unchecked(i)
    }

    fn block(i: u32) -> BlockRef {
        BlockRef { piece: piece(i), offset: 0, len: 1024 }
    }

    #[test]
    fn least_recently_used_unretained_piece_goes_first() {
        let cache = RamCache::new(3 * 1024);
        let log = Arc::new(Log::default());
        let store = cache.store(lengths(10), log.clone());
        for i in 0..3 {
            store.write_piece(piece(i), &[i as u8; 1024]).unwrap();
        }
        let mut buf = [0u8; 1024];
        store.read(block(0), &mut buf).unwrap();
        store.write_piece(piece(3), &[3; 1024]).unwrap();
        assert!(!store.holds(piece(1)), "1 was the least recently used");
        assert!(store.holds(piece(0)) && store.holds(piece(2)) && store.holds(piece(3)));
        assert!(store.read(block(1), &mut buf).unwrap_err().is_missing());
        assert_eq!(log.0.lock().unwrap().last(), Some(&(3, true)));
        assert!(log.0.lock().unwrap().contains(&(1, false)));
        let st = cache.stats();
        assert_eq!((st.used, st.peak, st.pieces, st.evictions), (3072, 3072, 3, 1));
    }

    #[test]
    fn retained_pieces_outlive_older_unretained_ones_and_outrank_newer_lower_ones() {
        let cache = RamCache::new(3 * 1024);
        let store = cache.store(lengths(10), Arc::new(Log::default()));
        store.set_retained(vec![(0..2, 2)]);
        for i in 0..3 {
            store.write_piece(piece(i), &[0; 1024]).unwrap();
        }
        store.write_piece(piece(3), &[0; 1024]).unwrap();
        assert!(store.holds(piece(0)) && store.holds(piece(1)) && !store.holds(piece(2)));
        // A rank-0 piece cannot push out rank-2 pieces: it is dropped itself (after 3 goes).
        store.write_piece(piece(4), &[0; 1024]).unwrap();
        store.write_piece(piece(5), &[0; 1024]).unwrap();
        assert!(store.holds(piece(0)) && store.holds(piece(1)));
        assert_eq!(cache.stats().used, 3 * 1024);
    }

    #[test]
    fn a_smaller_budget_evicts_at_once_but_not_what_a_reader_copies() {
        let cache = RamCache::new(4 * 1024);
        let log = Arc::new(Log::default());
        let store = cache.store(lengths(10), log.clone());
        store.set_retained(vec![(0..1, 3)]);
        for i in 0..4 {
            store.write_piece(piece(i), &[i as u8; 1024]).unwrap();
        }
        let held = cache.get(store.slot, piece(3)).unwrap();
        assert_eq!(cache.set_budget(2 * 1024), 2 * 1024);
        // Rank 0 before rank 3, then least recently used; the piece being read stays.
        assert!(!store.holds(piece(1)) && !store.holds(piece(2)));
        assert!(store.holds(piece(0)) && store.holds(piece(3)));
        assert!(log.0.lock().unwrap().contains(&(2, false)));
        assert_eq!(cache.set_budget(1024), 1024, "the retained piece goes too, the read one stays");
        assert!(!store.holds(piece(0)) && store.holds(piece(3)));
        drop(held);
        store.write_piece(piece(5), &[5; 1024]).unwrap();
        assert!(store.holds(piece(5)) && !store.holds(piece(3)));
        assert_eq!(cache.stats().budget, 1024);
        assert_eq!(cache.set_budget(8 * 1024), 1024, "a larger budget evicts nothing");
        store.write_piece(piece(6), &[6; 1024]).unwrap();
        assert_eq!(cache.stats().used, 2 * 1024);
    }

    #[test]
    fn a_piece_being_read_is_not_evicted() {
        let cache = RamCache::new(2 * 1024);
        let log = Arc::new(Log::default());
        let store = cache.store(lengths(10), log.clone());
        store.write_piece(piece(0), &[0; 1024]).unwrap();
        store.write_piece(piece(1), &[1; 1024]).unwrap();
        let held = cache.get(store.slot, piece(0)).unwrap();
        store.write_piece(piece(2), &[2; 1024]).unwrap();
        assert!(store.holds(piece(0)) && !store.holds(piece(1)) && store.holds(piece(2)));
        drop(held);
        let both_read = (cache.get(store.slot, piece(0)).unwrap(), cache.get(store.slot, piece(2)).unwrap());
        store.write_piece(piece(3), &[3; 1024]).unwrap();
        assert!(!store.holds(piece(3)), "nothing could go: the new piece is dropped");
        assert_eq!(log.0.lock().unwrap().last(), Some(&(3, false)));
        drop(both_read);
    }

    #[test]
    fn one_budget_spans_torrents_and_a_dropped_store_frees_its_share() {
        let cache = RamCache::new(4 * 1024);
        let a = cache.store(lengths(10), Arc::new(Log::default()));
        let b = cache.store(lengths(10), Arc::new(Log::default()));
        for i in 0..3 {
            a.write_piece(piece(i), &[0; 1024]).unwrap();
        }
        b.write_piece(piece(0), &[0; 1024]).unwrap();
        b.write_piece(piece(1), &[0; 1024]).unwrap();
        assert!(!a.holds(piece(0)), "a's oldest piece made room for b");
        assert_eq!(cache.stats().used, 4 * 1024);
        drop(a);
        assert_eq!(cache.stats().used, 2 * 1024);
        assert!(b.holds(piece(0)) && b.holds(piece(1)));
    }

    #[test]
    fn a_piece_larger_than_the_budget_is_an_error() {
        let cache = RamCache::new(512);
        let store = cache.store(lengths(2), Arc::new(Log::default()));
        assert!(matches!(store.write_piece(piece(0), &[0; 1024]), Err(StorageError::OverBudget { .. })));
    }
}
