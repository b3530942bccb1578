//! `GET /api/v1/events`: live progress as server-sent events.
//!
//! The library is polled once a second (its list is cheap: in-memory snapshots) and each
//! torrent that differs from what this client was last sent goes out as `event: torrent` with
//! the `Torrent` JSON, so a torrent changes at most once a second per client; a torrent that
//! left the list goes out as `event: removed` with `{"info_hash"}`. The first poll sends every
//! torrent, so a client needs no separate list call. A comment every 15 s keeps idle proxies
//! from closing the stream. This response is the crate's one without a `Content-Length`: it
//! never ends on its own.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sluice_core::InfoHash;
use tokio::time::{Interval, MissedTickBehavior};

use super::{Library, Torrent, sorted};

const POLL: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Feed {
    lib: Arc<dyn Library>,
    sent: HashMap<InfoHash, Torrent>,
    queue: VecDeque<Event>,
    tick: Interval,
}

impl Feed {
    /// Queues what changed since the last poll.
    fn diff(&mut self, now: Vec<Torrent>) {
        let mut seen = HashMap::with_capacity(now.len());
        for t in sorted(now) {
            if self.sent.get(&t.info_hash) != Some(&t) {
                let data = serde_json::to_string(&t).unwrap_or_default();
                self.queue.push_back(Event::default().event("torrent").data(data));
            }
            seen.insert(t.info_hash, t);
        }
        let mut gone: Vec<InfoHash> = self.sent.keys().filter(|h| !seen.contains_key(h)).copied().collect();
        gone.sort_by_key(|h| h.0);
        for h in gone {
            let data = serde_json::json!({ "info_hash": h.to_hex() }).to_string();
            self.queue.push_back(Event::default().event("removed").data(data));
        }
        self.sent = seen;
    }
}

pub(super) async fn events(State(lib): State<Arc<dyn Library>>) -> Response {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed { lib, sent: HashMap::new(), queue: VecDeque::new(), tick };
    let stream = futures_lite::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.queue.pop_front() {
                return Some((Ok::<_, Infallible>(event), feed));
            }
            feed.tick.tick().await;
            let now = feed.lib.list().await;
            feed.diff(now);
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}
