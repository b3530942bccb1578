use std::time::Instant;

use sluice_core::Timestamp;

/// Maps tokio/std instants onto the engine's [`Timestamp`] at the edge.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }

    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    pub fn at(&self, instant: Instant) -> Timestamp {
        let us = instant.saturating_duration_since(self.origin).as_micros();
        Timestamp::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    /// The instant of `t`; far-future timestamps saturate at about a century from the origin.
    pub fn instant(&self, t: Timestamp) -> Instant {
        const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        let d = std::time::Duration::from_micros(t.as_micros()).min(CENTURY);
        self.origin.checked_add(d).unwrap_or(self.origin)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
