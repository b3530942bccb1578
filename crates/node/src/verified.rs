//! Which pieces are verified and written, readable from any thread without a lock. Readers
//! wait on it; the torrent task sets a piece only after its bytes were hashed, written and
//! journaled, so a reader that sees the bit can read the piece from storage.

use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::{Bitfield, PieceIndex};
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

    pub(crate) fn has(&self, piece: PieceIndex) -> bool {
        let i = piece.as_usize();
        self.words.get(i / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
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
