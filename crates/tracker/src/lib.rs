//! Tracker protocols: how a torrent learns peers from HTTP(S) and UDP trackers.
//!
//! The crate is split like the rest of Sluice so the protocol logic can be tested and fuzzed
//! without sockets or clocks:
//! - pure: [`url`] (what a tracker URL names, checked before any name is resolved), [`http`]
//!   (announce/scrape URLs, bencoded replies), [`udp`] (BEP 15 packets and timing),
//!   [`schedule`] (the per-torrent announce schedule: BEP 12 tiers, intervals, backoff,
//!   events) and [`list`] (extra tracker lists merged into a torrent's tiers). These never read
//!   a clock, never use a global RNG, never do I/O; every parser of tracker bytes returns a
//!   typed error, caps what it keeps, and never panics.
//! - I/O, behind the default `client` feature: [`client`], one announce or scrape over
//!   HTTP(S) or UDP with tokio, honouring the loopback-only policy before any DNS lookup.

pub mod http;
pub mod list;
pub mod schedule;
pub mod udp;
pub mod url;

#[cfg(feature = "client")]
pub mod client;

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{InfoHash, PeerId};

pub use list::{TrackerMode, apply_mode};
pub use schedule::{Announcer, Request, RequestId, RequestKind, ScheduleConfig};
pub use url::{Host, Scheme, TrackerUrl, UrlError};

/// Peers kept from one reply at most; the rest are dropped.
pub const MAX_PEERS: usize = 1000;

/// The announce event (BEP 3; numbered as BEP 15 numbers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    None = 0,
    Completed = 1,
    Started = 2,
    Stopped = 3,
}

/// What one announce tells a tracker, whatever its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// Our listening port (0 when we do not listen).
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    /// `None`: the tracker's default.
    pub numwant: Option<u32>,
    /// Identifies us across IP changes (BEP 7's `key`); constant per session.
    pub key: u32,
}

/// A successful announce, whatever its protocol.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceReply {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    /// HTTP `tracker id`: to be sent back on later announces.
    pub tracker_id: Option<Vec<u8>>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub warning: Option<String>,
    /// At most [`MAX_PEERS`], IPv4 and IPv6 together.
    pub peers: Vec<SocketAddr>,
}

/// One torrent's counts from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    pub seeders: u32,
    /// Downloads completed (`downloaded` in HTTP scrapes).
    pub completed: u32,
    pub leechers: u32,
}
