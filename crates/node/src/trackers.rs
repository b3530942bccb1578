//! Announcing a torrent to its trackers.
//!
//! One task per torrent drives the sans-IO [`Announcer`] with the session's shared tracker
//! [`Client`]. It sits beside the torrent task rather than inside it: it only needs the
//! torrent's published [`Progress`] (counts for the announce, completion for `completed`, the
//! end of the torrent for `stopped`) and its command channel (to hand over peers), so a slow
//! tracker never delays the engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::{InfoHash, PeerId};
use sluice_tracker::client::{Client, ClientError};
use sluice_tracker::{
    AnnounceReply, AnnounceRequest, Announcer, Event, RequestId, RequestKind, ScheduleConfig, ScrapeStats, TrackerMode,
    TrackerUrl,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::torrent_task::{Command, Progress};
use crate::{Clock, NetPolicy};

/// Which trackers torrents announce to, beside or instead of their own (TorrServer's
/// "retrackers").
#[derive(Debug, Clone, Default)]
pub struct TrackerSettings {
    pub extra: Vec<String>,
    pub mode: TrackerMode,
}

/// While downloading with fewer connected peers than this, announce again as soon as the
/// tracker's min interval allows.
const WANT_PEERS: usize = 8;
const NUMWANT: u32 = 50;
/// How long `stopped` announces may delay a torrent's shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct TrackerTask {
    pub(crate) announcer: Announcer,
    pub(crate) client: Arc<Client>,
    pub(crate) clock: Clock,
    pub(crate) info_hash: InfoHash,
    pub(crate) peer_id: PeerId,
    /// Our listening address, if any (its port is announced; it is never dialled).
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) key: u32,
    pub(crate) total_length: u64,
    pub(crate) progress: watch::Receiver<Progress>,
    /// Weak: the torrent task ends when its handles are gone, whatever this task does.
    pub(crate) commands: mpsc::WeakSender<Command>,
}

/// The tiers a torrent announces to under `settings` and `policy`: with loopback-only on,
/// trackers that are not on loopback are left out (and never resolved).
pub(crate) fn tiers(own: &[Vec<String>], settings: &TrackerSettings, policy: NetPolicy) -> Vec<Vec<String>> {
    let mut tiers = sluice_tracker::apply_mode(settings.mode, own, &settings.extra);
    if policy.loopback_only {
        for tier in &mut tiers {
            tier.retain(|u| match TrackerUrl::parse(u) {
                Ok(url) if !url.host.is_loopback() => {
                    tracing::info!(tracker = %u, "skipping a tracker that is not on loopback (loopback-only)");
                    false
                }
                _ => true,
            });
        }
        tiers.retain(|t| !t.is_empty());
    }
    tiers
}

pub(crate) fn schedule(tiers: &[Vec<String>], seed: u64, clock: &Clock) -> Announcer {
    let announcer = Announcer::new(tiers, ScheduleConfig::default(), seed, clock.now());
    for (url, e) in announcer.skipped() {
        tracing::warn!(tracker = %url, error = %e, "skipping an unusable tracker URL");
    }
    announcer
}

enum Outcome {
    Announced(AnnounceReply),
    Scraped(ScrapeStats),
}

type Done = (RequestId, TrackerUrl, RequestKind, Result<Outcome, ClientError>);

impl TrackerTask {
    pub(crate) async fn run(mut self) {
        let mut was_complete = self.progress.borrow().complete;
        let mut flights: JoinSet<Done> = JoinSet::new();
        loop {
            if !self.send(&mut flights) {
                break;
            }
            let wake = self.announcer.poll_timeout().map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                |t| self.clock.instant(t).into(),
            );
            tokio::select! {
                changed = self.progress.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let (complete, peers) = {
                        let p = self.progress.borrow_and_update();
                        (p.complete, p.stats.peers_connected)
                    };
                    let now = self.clock.now();
                    if complete && !was_complete {
                        self.announcer.completed(now);
                    }
                    was_complete = complete;
                    if !complete && peers < WANT_PEERS {
                        self.announcer.need_peers(now);
                    }
                }
                Some(done) = flights.join_next() => {
                    if let Ok(done) = done && !self.on_done(done).await {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.stop(flights).await;
    }

    /// Starts every request the schedule wants now; false if the torrent is gone.
    fn send(&mut self, flights: &mut JoinSet<Done>) -> bool {
        let now = self.clock.now();
        while let Some(req) = self.announcer.poll_request(now) {
            let client = self.client.clone();
            let (url, kind, id, tracker_id) = (req.tracker, req.kind, req.id, req.tracker_id);
            let announce = match kind {
                RequestKind::Announce(event) => Some(self.request(event)),
                RequestKind::Scrape => None,
            };
            let hash = self.info_hash;
            flights.spawn(async move {
                let outcome = match announce {
                    Some(a) => client.announce(&url, &a, tracker_id.as_deref()).await.map(Outcome::Announced),
                    None => client.scrape(&url, hash).await.map(Outcome::Scraped),
                };
                (id, url, kind, outcome)
            });
        }
        self.commands.strong_count() > 0
    }

    fn request(&self, event: Event) -> AnnounceRequest {
        let p = self.progress.borrow();
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.listen.map_or(0, |a| a.port()),
            uploaded: p.stats.uploaded,
            downloaded: p.stats.downloaded,
            left: self.total_length.saturating_sub(p.stats.bytes_have),
            event,
            numwant: Some(if event == Event::Stopped || p.complete { 0 } else { NUMWANT }),
            key: self.key,
        }
    }

    /// False if the torrent is gone.
    async fn on_done(&mut self, done: Done) -> bool {
        let peers = self.settle(done);
        if peers.is_empty() {
            return true;
        }
        let Some(commands) = self.commands.upgrade() else {
            return false;
        };
        commands.send(Command::AddPeers(peers)).await.is_ok()
    }

    /// Tells the schedule how a request went; returns the peers learnt.
    fn settle(&mut self, (id, url, kind, outcome): Done) -> Vec<SocketAddr> {
        let now = self.clock.now();
        match outcome {
            Ok(Outcome::Announced(reply)) => {
                if let Some(w) = &reply.warning {
                    tracing::warn!(tracker = %url, warning = %w, "tracker warning");
                }
                tracing::debug!(tracker = %url, ?kind, peers = reply.peers.len(), interval = ?reply.interval, "announced");
                self.announcer.announced(id, &reply, now);
                reply.peers.into_iter().filter(|p| Some(*p) != self.listen).collect()
            }
            Ok(Outcome::Scraped(stats)) => {
                self.announcer.scraped(id, stats);
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(tracker = %url, ?kind, error = %e, "tracker request failed");
                self.announcer.failed(id, now);
                Vec::new()
            }
        }
    }

    /// `stopped` to every tracker that knows us, after the announces already under way (a
    /// `completed` may be one), all within [`STOP_TIMEOUT`].
    async fn stop(mut self, mut flights: JoinSet<Done>) {
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        self.settle_all(&mut flights, deadline).await;
        flights.abort_all();
        self.announcer.stop();
        self.send(&mut flights);
        self.settle_all(&mut flights, deadline).await;
    }

    async fn settle_all(&mut self, flights: &mut JoinSet<Done>, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, async {
            while let Some(done) = flights.join_next().await {
                if let Ok(done) = done {
                    self.settle(done);
                }
            }
        })
        .await;
    }
}
