//! Rate measurement and rate limiting, both driven lazily by the timestamps of inputs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_core::Timestamp;

/// Time constant of the smoothed rates: a change of rate shows after a few seconds.
const TAU_SECS: f64 = 2.0;

/// An exponentially decaying byte counter. Between updates nothing runs; the decay is applied
/// from the elapsed time when bytes are added or the rate is read. Early on the estimate is
/// corrected for the short history (a debiased average), so a new peer's rate is usable after
/// a fraction of a second instead of ramping up over `TAU_SECS`.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    started: Timestamp,
    last: Timestamp,
    /// Decayed byte sum at `last`.
    acc: f64,
    total: u64,
}

impl Meter {
    pub(crate) fn new(now: Timestamp) -> Self {
        Self { started: now, last: now, acc: 0.0, total: 0 }
    }

    pub(crate) fn add(&mut self, bytes: u64, now: Timestamp) {
        self.acc = self.decayed(now) + bytes as f64;
        self.last = self.last.max(now);
        self.total += bytes;
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn decayed(&self, now: Timestamp) -> f64 {
        let dt = now.saturating_since(self.last).as_secs_f64();
        self.acc * (-dt / TAU_SECS).exp()
    }

    /// Bytes per second.
    pub(crate) fn rate(&self, now: Timestamp) -> u64 {
        // Below this age a single burst would read as an absurd rate.
        let age = now.saturating_since(self.started).as_secs_f64().max(0.1);
        let weight = TAU_SECS * (1.0 - (-age / TAU_SECS).exp());
        (self.decayed(now) / weight) as u64
    }
}

/// A token bucket holding at most half a second of the limit (and at least two blocks), so
/// short bursts pass while the average stays at the limit. Tokens may go negative by one
/// grant: a block larger than the balance is still allowed once the balance is positive.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: u64,
    capacity: i64,
    tokens: i64,
    last: Timestamp,
}

impl TokenBucket {
    pub(crate) fn new(rate: u64, now: Timestamp) -> Self {
        let rate = rate.max(1);
        let capacity = (rate / 2).max(2 * u64::from(sluice_core::BLOCK_SIZE)) as i64;
        Self { rate, capacity, tokens: capacity, last: now }
    }

    fn refill(&mut self, now: Timestamp) {
        let us = now.saturating_since(self.last).as_micros() as u64;
        let add = (u128::from(us) * u128::from(self.rate) / 1_000_000) as i64;
        if add > 0 {
            // The fraction of a token lost here is below one byte per refill.
            self.tokens = (self.tokens + add).min(self.capacity);
            self.last = now;
        }
    }

    /// Takes `n` tokens if the balance is positive.
    pub(crate) fn try_take(&mut self, n: u64, now: Timestamp) -> bool {
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= n as i64;
            true
        } else {
            false
        }
    }

    /// The positive balance, after refilling.
    pub(crate) fn available(&mut self, now: Timestamp) -> u64 {
        self.refill(now);
        self.tokens.max(0) as u64
    }

    /// Takes `n` tokens granted after `available` showed a positive balance.
    pub(crate) fn take(&mut self, n: u64) {
        self.tokens -= n as i64;
    }

    /// Changes the rate from `now` on, keeping the balance (cut to the new capacity).
    fn set_rate(&mut self, rate: u64, now: Timestamp) {
        self.refill(now);
        self.last = self.last.max(now);
        let fresh = Self::new(rate, now);
        self.rate = fresh.rate;
        self.capacity = fresh.capacity;
        self.tokens = self.tokens.min(self.capacity);
    }

    /// When the balance turns positive again.
    pub(crate) fn ready_at(&self) -> Timestamp {
        if self.tokens > 0 {
            return self.last;
        }
        let need = (1 - self.tokens) as u128;
        let us = need * 1_000_000 / u128::from(self.rate) + 1;
        self.last + Duration::from_micros(us as u64)
    }
}

/// A download or upload limit that several torrents draw from (a session's), so that
/// together they stay under it; each torrent's own limit and cap apply as well. Cloning
/// shares it. The lock is only held for the arithmetic.
///
/// Turns: a torrent that finds the balance spent waits ([`Waiting`]) until it turns positive
/// plus a random jitter of up to one block's time (drawn again whenever another torrent's
/// turn came first), and while anyone waits, a torrent that is not waiting queues up too
/// instead of taking. So contenders take turns in random order, rather than the one whose
/// blocks arrive most often taking every token.
#[derive(Clone, Debug, Default)]
pub struct SharedLimit(Arc<Mutex<Shared>>);

#[derive(Debug, Default)]
struct Shared {
    bucket: Option<TokenBucket>,
    waiting: u32,
}

/// A torrent's place among those waiting on a [`SharedLimit`]; dropping it leaves.
#[derive(Debug)]
pub(crate) struct Waiting(SharedLimit);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.waiting = s.waiting.saturating_sub(1);
    }
}

impl SharedLimit {
    /// `None`: unlimited.
    pub fn new(rate: Option<u64>, now: Timestamp) -> Self {
        let bucket = rate.map(|r| TokenBucket::new(r, now));
        Self(Arc::new(Mutex::new(Shared { bucket, waiting: 0 })))
    }

    fn state(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes per second, `None` when unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.state().bucket.as_ref().map(|b| b.rate)
    }

    /// A new rate from `now` on; the balance carries over (a limit newly set starts with a
    /// full bucket, as a torrent's own does). Torrents blocked on it must be told
    /// ([`crate::Torrent::shared_limits_changed`]).
    pub fn set_rate(&self, rate: Option<u64>, now: Timestamp) {
        let mut s = self.state();
        match (s.bucket.as_mut(), rate) {
            (Some(b), Some(r)) => b.set_rate(r, now),
            (_, r) => s.bucket = r.map(|r| TokenBucket::new(r, now)),
        }
    }

    /// What a torrent may take now: `None` when unlimited, 0 when it must wait (the balance
    /// is spent, or others wait and `turn` is false: only a torrent whose wait just ended
    /// has its turn).
    pub(crate) fn grant(&self, now: Timestamp, turn: bool) -> Option<u64> {
        let mut s = self.state();
        let waiting = s.waiting;
        let b = s.bucket.as_mut()?;
        let tokens = b.available(now);
        Some(if waiting > 0 && !turn { 0 } else { tokens })
    }

    /// Takes `n` tokens if [`Self::grant`] would give a positive balance, under one lock;
    /// `true` when unlimited.
    pub(crate) fn try_take(&self, n: u64, now: Timestamp, turn: bool) -> bool {
        let mut s = self.state();
        let waiting = s.waiting;
        let Some(b) = s.bucket.as_mut() else { return true };
        (waiting == 0 || turn) && b.try_take(n, now)
    }

    /// Joins those waiting.
    pub(crate) fn wait(&self) -> Waiting {
        self.state().waiting += 1;
        Waiting(self.clone())
    }

    /// Takes `n` tokens after [`Self::grant`] gave a positive balance.
    pub(crate) fn take(&self, n: u64) {
        if let Some(b) = self.state().bucket.as_mut() {
            b.take(n);
        }
    }

    /// Whether the balance is positive at `now` (always when unlimited).
    pub(crate) fn ready(&self, now: Timestamp) -> bool {
        self.state().bucket.as_ref().is_none_or(|b| now >= b.ready_at())
    }

    /// When the balance turns positive again (`None`: unlimited).
    pub(crate) fn ready_at(&self) -> Option<Timestamp> {
        self.state().bucket.as_ref().map(TokenBucket::ready_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn meter_tracks_a_steady_rate() {
        let mut m = Meter::new(t(0));
        for i in 1..=100 {
            m.add(10_000, t(i * 10));
        }
        let r = m.rate(t(1000));
        assert!((900_000..1_100_000).contains(&r), "{r}");
        assert!(m.rate(t(20_000)) < 10_000);
    }

    #[test]
    fn bucket_limits_the_average() {
        let mut b = TokenBucket::new(100_000, t(0));
        let mut granted = 0u64;
        let mut now = t(0);
        while now < t(10_000) {
            if b.try_take(16_384, now) {
                granted += 16_384;
            } else {
                let next = b.ready_at();
                assert!(next > now);
                now = next;
            }
        }
        assert!(granted <= 100_000 * 10 + 100_000, "{granted}");
        assert!(granted >= 100_000 * 9, "{granted}");
    }

    #[test]
    fn a_shared_limit_keeps_its_balance_across_rate_changes() {
        let l = SharedLimit::new(Some(100_000), t(0));
        assert_eq!(l.grant(t(0), false), Some(50_000), "half a second to start with");
        l.take(80_000);
        assert!(!l.ready(t(0)));
        // 300 ms at 100 kB/s, then at 10 kB/s: the debt is not forgiven by the change.
        l.set_rate(Some(10_000), t(300));
        assert_eq!(l.grant(t(300), false), Some(0));
        assert_eq!(l.ready_at(), Some(t(300) + Duration::from_micros(101)));
        assert!(!l.ready(t(300) + Duration::from_micros(100)) && l.ready(t(300) + Duration::from_micros(101)));
        assert_eq!(l.grant(t(1_300), false), Some(10_000));
        assert_eq!(l.grant(t(9_000), false), Some(32_768), "capped at half a second of the rate, two blocks at least");
        l.set_rate(None, t(9_000));
        assert_eq!((l.grant(t(9_000), false), l.rate(), l.ready(t(9_000))), (None, None, true));
        l.set_rate(Some(40_000), t(10_000));
        assert_eq!(l.grant(t(10_000), false), Some(32_768), "a new limit starts full (two blocks at least)");
        let other = l.clone();
        other.take(32_768);
        assert_eq!(l.grant(t(10_000), false), Some(0), "clones share one bucket");
        // While one waits, only a torrent whose turn it is may take.
        let w = l.wait();
        assert_eq!((l.grant(t(11_000), false), l.grant(t(11_000), true)), (Some(0), Some(32_768)));
        assert!(!l.try_take(16_384, t(11_000), false), "not its turn");
        assert!(l.try_take(16_384, t(11_000), true));
        drop(w);
        assert_eq!(l.grant(t(11_000), false), Some(16_384));
        assert!(l.try_take(32_768, t(11_000), false) && !l.try_take(1, t(11_000), false), "spent, one grant past");
    }
}
