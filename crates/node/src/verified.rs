//! Which pieces are verified and written, readable from any thread without a lock. Readers
//! wait on it; the torrent task sets a piece only after its bytes were hashed, written and
//! journaled, so a reader that sees the bit can read the piece from storage.
//!
//! In RAM mode the cache sets and clears the bits itself, under its lock, as pieces come and
//! are evicted; a reader that sees a bit may still find the piece evicted by the time it
//! copies, and then simply waits again ([`read_verified`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::{Bitfield, BlockRef, PieceIndex};
use sluice_storage::PieceStore;
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Verified {
    words: Vec<AtomicU64>,
    notify: Notify,
}

impl Verified {
    pub(crate) fn new(have: &Bitfield) -> Self {
        let words = (0..have.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let v = Self { words, notify: Notify::new() };
        for p in have.iter_ones() {
            v.mark(p);
        }
        v
    }

    fn mark(&self, piece: PieceIndex) {
        let i = piece.as_usize();
        if let Some(w) = self.words.get(i / 64) {
            w.fetch_or(1 << (i % 64), Ordering::Release);
        }
    }

    /// Marks `piece` readable and wakes every waiting reader.
    pub(crate) fn set(&self, piece: PieceIndex) {
        self.mark(piece);
        self.notify.notify_waiters();
    }

    /// The piece is no longer readable (evicted from a RAM cache).
    pub(crate) fn clear(&self, piece: PieceIndex) {
        let i = piece.as_usize();
        if let Some(w) = self.words.get(i / 64) {
            w.fetch_and(!(1 << (i % 64)), Ordering::Release);
        }
    }

    pub(crate) fn has(&self, piece: PieceIndex) -> bool {
        let i = piece.as_usize();
        self.words.get(i / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// The readable pieces now, as a bitfield of `len` pieces.
    pub(crate) fn snapshot(&self, len: u32) -> Bitfield {
        let mut out = Bitfield::new(len);
        for p in (0..len).map(PieceIndex::new_unchecked).filter(|&p| self.has(p)) {
            out.set(p);
        }
        out
    }

    /// Returns once `piece` is verified. Woken by piece completion only, never by a timer.
    pub(crate) async fn wait_for(&self, piece: PieceIndex) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a `set` between the check and the await is not lost.
            notified.as_mut().enable();
            if self.has(piece) {
                return;
            }
            notified.await;
        }
    }
}

/// Waits until `block`'s piece is verified, then reads the block into `buf[..block.len]` (on
/// the blocking pool if the store's reads may block); the buffer comes back either way. A piece evicted between the wait and
/// the read (its bit is cleared first) is waited for again.
pub(crate) async fn read_verified(
    verified: &Verified,
    store: &Arc<dyn PieceStore>,
    block: BlockRef,
    mut buf: Vec<u8>,
) -> (Vec<u8>, io::Result<()>) {
    loop {
        verified.wait_for(block.piece).await;
        let read = if store.reads_block() {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                let r = store.read(block, &mut buf[..block.len as usize]);
                (buf, r)
            })
            .await
        } else {
            let r = store.read(block, &mut buf[..block.len as usize]);
            Ok((buf, r))
        };
        match read {
            Ok((b, Err(e))) if e.is_missing() && !verified.has(block.piece) => buf = b,
            Ok((b, r)) => return (b, r.map_err(io::Error::other)),
            Err(e) => return (Vec::new(), Err(io::Error::other(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_wake_on_the_piece_they_wait_for() {
        let mut have = Bitfield::new(100);
        have.set(PieceIndex::new_unchecked(3));
        let v = Arc::new(Verified::new(&have));
        assert!(v.has(PieceIndex::new_unchecked(3)));
        assert!(!v.has(PieceIndex::new_unchecked(70)));
        let w = v.clone();
        let waiter = tokio::spawn(async move { w.wait_for(PieceIndex::new_unchecked(70)).await });
        tokio::task::yield_now().await;
        v.set(PieceIndex::new_unchecked(69));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        v.set(PieceIndex::new_unchecked(70));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
