//! Rate measurement and rate limiting, both driven lazily by the timestamps of inputs.

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
}
