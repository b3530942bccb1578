//! One torrent's announce schedule, sans-IO: which tracker to ask, when, and with which event.
//!
//! Driven like the engine: call [`Announcer::poll_request`] until `None` and carry out each
//! [`Request`]; report how it went ([`Announcer::announced`], [`Announcer::scraped`],
//! [`Announcer::failed`]); sleep until [`Announcer::poll_timeout`] or the next command.
//!
//! Rules:
//! - BEP 12: trackers are shuffled within their tier once; each announce walks the tiers in
//!   order and uses the first tracker that answers, which moves to the front of its tier. One
//!   regular announce is in flight at a time.
//! - A tracker that fails is skipped until its backoff (doubling from `backoff_base` up to
//!   `backoff_max`) runs out; when every tracker failed, the next try waits for the earliest
//!   backoff to end.
//! - The next regular announce follows the answering tracker's `interval` (clamped);
//!   [`Announcer::need_peers`] brings it forward, but never before the `min interval`.
//! - Events: `started` on a tracker's first announce; `completed` once, as soon as the download
//!   completes (not when the torrent started complete); `stopped`, on [`Announcer::stop`], to
//!   every tracker that knows us. Event announces ignore the interval.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_core::Timestamp;

use crate::url::{TrackerUrl, UrlError};
use crate::{AnnounceReply, Event, ScrapeStats};

#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Tracker intervals are clamped to `[interval_floor, interval_ceiling]`.
    pub interval_floor: Duration,
    pub interval_ceiling: Duration,
    /// Used when a tracker sends no `min interval`.
    pub default_min_interval: Duration,
    /// The first failure's backoff; each further consecutive failure doubles it.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            interval_floor: Duration::from_secs(60),
            interval_ceiling: Duration::from_secs(2 * 3600),
            default_min_interval: Duration::from_secs(60),
            backoff_base: Duration::from_secs(15),
            backoff_max: Duration::from_secs(30 * 60),
        }
    }
}

/// Names one request so its outcome can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Announce(Event),
    Scrape,
}

/// Something to send to a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub tracker: TrackerUrl,
    pub kind: RequestKind,
    /// The `tracker id` this tracker gave us last (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Tracker {
    url: TrackerUrl,
    /// Consecutive failures.
    fails: u32,
    retry_at: Timestamp,
    /// An announce of ours succeeded here (so it must hear `stopped`).
    known: bool,
    tracker_id: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum InFlight {
    Announce { tracker: usize, event: Event },
    Scrape,
    Stop,
}

/// What the trackers last said about the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swarm {
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub scrape: Option<ScrapeStats>,
}

#[derive(Debug)]
pub struct Announcer {
    config: ScheduleConfig,
    trackers: Vec<Tracker>,
    /// Indices into `trackers`, in preference order.
    tiers: Vec<Vec<usize>>,
    skipped: Vec<(String, UrlError)>,
    next_announce: Timestamp,
    last_success: Option<Timestamp>,
    min_interval: Duration,
    /// Trackers that failed during the current announce round.
    tried: Vec<bool>,
    in_flight: Vec<(RequestId, InFlight)>,
    completed_pending: bool,
    stopping: bool,
    stop_queue: VecDeque<usize>,
    scrape_wanted: bool,
    swarm: Swarm,
    next_id: u64,
}

impl Announcer {
    /// The schedule for `tiers` (BEP 12 order; unparseable URLs are left out, see
    /// [`Announcer::skipped`]); the first announce is due at `now`.
    pub fn new(tiers: &[Vec<String>], config: ScheduleConfig, seed: u64, now: Timestamp) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut trackers: Vec<Tracker> = Vec::new();
        let mut order = Vec::new();
        let mut skipped = Vec::new();
        for tier in tiers {
            let mut ids = Vec::new();
            for raw in tier {
                match TrackerUrl::parse(raw) {
                    Ok(url) if !trackers.iter().any(|t| t.url == url) => {
                        ids.push(trackers.len());
                        trackers.push(Tracker { url, fails: 0, retry_at: now, known: false, tracker_id: None });
                    }
                    Ok(_) => {}
                    Err(e) => skipped.push((raw.clone(), e)),
                }
            }
            for i in (1..ids.len()).rev() {
                ids.swap(i, rng.random_range(0..=i));
            }
            if !ids.is_empty() {
                order.push(ids);
            }
        }
        Self {
            tried: vec![false; trackers.len()],
            min_interval: config.default_min_interval,
            config,
            trackers,
            tiers: order,
            skipped,
            next_announce: now,
            last_success: None,
            in_flight: Vec::new(),
            completed_pending: false,
            stopping: false,
            stop_queue: VecDeque::new(),
            scrape_wanted: false,
            swarm: Swarm::default(),
            next_id: 0,
        }
    }

    /// URLs from the tiers that could not be used, and why.
    pub fn skipped(&self) -> &[(String, UrlError)] {
        &self.skipped
    }

    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    /// The tiers in current preference order.
    pub fn tiers(&self) -> Vec<Vec<&TrackerUrl>> {
        self.tiers.iter().map(|t| t.iter().map(|&i| &self.trackers[i].url).collect()).collect()
    }

    pub fn swarm(&self) -> Swarm {
        self.swarm
    }

    /// The download just completed: tell a tracker (`completed`) right away.
    pub fn completed(&mut self, now: Timestamp) {
        if !self.stopping {
            self.completed_pending = true;
            self.next_announce = now;
        }
    }

    /// We want more peers: announce as soon as the min interval allows.
    pub fn need_peers(&mut self, now: Timestamp) {
        let earliest = self.last_success.map_or(now, |t| t + self.min_interval).max(now);
        self.next_announce = self.next_announce.min(earliest);
    }

    /// Ask the preferred tracker for the swarm's counts (see [`Announcer::swarm`]).
    pub fn request_scrape(&mut self) {
        self.scrape_wanted = true;
    }

    /// The torrent is going away: `stopped` to every tracker that knows us; requests in flight
    /// no longer matter.
    pub fn stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.in_flight.clear();
        self.stop_queue = (0..self.trackers.len()).filter(|&i| self.trackers[i].known).collect();
    }

    /// Stopping, and every `stopped` announce was sent and answered (or failed).
    pub fn is_stopped(&self) -> bool {
        self.stopping && self.stop_queue.is_empty() && self.in_flight.is_empty()
    }

    /// When [`Announcer::poll_request`] should be called next if nothing else happens.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.stopping || self.trackers.is_empty() || self.announcing() {
            return None;
        }
        Some(self.next_announce)
    }

    fn announcing(&self) -> bool {
        self.in_flight.iter().any(|(_, f)| matches!(f, InFlight::Announce { .. }))
    }

    pub fn poll_request(&mut self, now: Timestamp) -> Option<Request> {
        if self.stopping {
            let t = self.stop_queue.pop_front()?;
            return Some(self.issue(t, RequestKind::Announce(Event::Stopped), InFlight::Stop));
        }
        if self.scrape_wanted && !self.in_flight.iter().any(|(_, f)| matches!(f, InFlight::Scrape)) {
            self.scrape_wanted = false;
            if let Some(t) = self.candidate(now, false) {
                return Some(self.issue(t, RequestKind::Scrape, InFlight::Scrape));
            }
        }
        if self.announcing() || now < self.next_announce {
            return None;
        }
        match self.candidate(now, true) {
            Some(t) => {
                let event = if !self.trackers[t].known {
                    Event::Started
                } else if self.completed_pending {
                    Event::Completed
                } else {
                    Event::None
                };
                Some(self.issue(t, RequestKind::Announce(event), InFlight::Announce { tracker: t, event }))
            }
            None => {
                // Every tracker failed this round: wait for the first backoff to end.
                self.tried.iter_mut().for_each(|t| *t = false);
                self.next_announce = self.trackers.iter().map(|t| t.retry_at).min().unwrap_or(Timestamp::MAX).max(now);
                if self.next_announce == now {
                    self.next_announce = now + self.config.backoff_base;
                }
                None
            }
        }
    }

    /// The first tracker in tier order not in backoff (and, for an announce round, not yet
    /// tried in it).
    fn candidate(&self, now: Timestamp, round: bool) -> Option<usize> {
        self.tiers.iter().flatten().copied().find(|&i| self.trackers[i].retry_at <= now && !(round && self.tried[i]))
    }

    fn issue(&mut self, tracker: usize, kind: RequestKind, flight: InFlight) -> Request {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.in_flight.push((id, flight));
        let t = &self.trackers[tracker];
        Request { id, tracker: t.url.clone(), kind, tracker_id: t.tracker_id.clone() }
    }

    fn take(&mut self, id: RequestId) -> Option<InFlight> {
        let at = self.in_flight.iter().position(|(i, _)| *i == id)?;
        Some(self.in_flight.swap_remove(at).1)
    }

    /// Request `id` was answered with `reply`.
    pub fn announced(&mut self, id: RequestId, reply: &AnnounceReply, now: Timestamp) {
        let Some(flight) = self.take(id) else {
            return;
        };
        let InFlight::Announce { tracker, event } = flight else {
            return;
        };
        let t = &mut self.trackers[tracker];
        t.fails = 0;
        t.known = true;
        if reply.tracker_id.is_some() {
            t.tracker_id.clone_from(&reply.tracker_id);
        }
        self.promote(tracker);
        self.tried.iter_mut().for_each(|t| *t = false);
        if event == Event::Completed {
            self.completed_pending = false;
        }
        let c = &self.config;
        let interval = reply.interval.clamp(c.interval_floor, c.interval_ceiling);
        self.min_interval = reply.min_interval.unwrap_or(c.default_min_interval).min(interval);
        self.last_success = Some(now);
        // A `completed` still owed (the tracker first had to hear `started`) goes right away.
        self.next_announce = if self.completed_pending { now } else { now + interval };
        self.swarm.seeders = reply.seeders.or(self.swarm.seeders);
        self.swarm.leechers = reply.leechers.or(self.swarm.leechers);
    }

    /// Scrape request `id` was answered.
    pub fn scraped(&mut self, id: RequestId, stats: ScrapeStats) {
        if let Some(InFlight::Scrape) = self.take(id) {
            self.swarm.scrape = Some(stats);
        }
    }

    /// Request `id` failed (no answer, refused, malformed): back off from that tracker and,
    /// for an announce, try the next one now.
    pub fn failed(&mut self, id: RequestId, now: Timestamp) {
        let Some(flight) = self.take(id) else {
            return;
        };
        let tracker = match flight {
            InFlight::Announce { tracker, .. } => tracker,
            // A failed scrape says less about the tracker than a failed announce.
            InFlight::Scrape | InFlight::Stop => return,
        };
        let t = &mut self.trackers[tracker];
        t.fails = t.fails.saturating_add(1);
        let backoff = self.config.backoff_base.saturating_mul(1 << (t.fails - 1).min(16)).min(self.config.backoff_max);
        t.retry_at = now + backoff;
        self.tried[tracker] = true;
        self.next_announce = self.next_announce.min(now);
    }

    /// BEP 12: a tracker that answers moves to the front of its tier.
    fn promote(&mut self, tracker: usize) {
        for tier in &mut self.tiers {
            if let Some(pos) = tier.iter().position(|&i| i == tracker) {
                tier[..=pos].rotate_right(1);
            }
        }
    }
}

#[cfg(test)]
mod tests;
