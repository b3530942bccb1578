use std::time::Duration;

use sluice_core::PeerId;

use crate::SharedLimit;

/// Tunables of one torrent's engine. `Default` gives values for a real client.
#[derive(Debug, Clone)]
pub struct Config {
    pub peer_id: PeerId,
    /// Port we accept connections on, sent in the extended handshake (`p`).
    pub listen_port: Option<u16>,
    /// The metainfo says `private=1` (BEP 27): peers come only from the tracker, so no peer
    /// exchange (BEP 11) in either direction.
    pub private: bool,
    /// Our client and version, sent in the extended handshake (`v`; empty: not sent).
    pub client_name: String,
    /// Seed of the engine's PRNG (tie-breaks, optimistic unchoke). Same seed, same run.
    pub rng_seed: u64,
    /// Connected peers at most (TorrServer uses 25 per torrent).
    pub max_peers: usize,
    /// Outbound connection attempts in flight at most.
    pub max_half_open: usize,
    /// Bytes of piece buffers (received, not yet verified and written) at most.
    pub buffer_budget: u64,
    /// Download / upload limits in bytes per second; `None` = unlimited.
    pub download_rate_limit: Option<u64>,
    pub upload_rate_limit: Option<u64>,
    /// Limits this torrent shares with others (a session's); they apply besides its own.
    pub shared_download_limit: Option<SharedLimit>,
    pub shared_upload_limit: Option<SharedLimit>,
    /// Regular unchoke slots (an optimistic slot is added on top).
    pub upload_slots: usize,
    /// Requests we keep in flight per peer: the floor, and the ceiling of the
    /// rate × RTT estimate.
    pub min_pipeline: usize,
    pub max_pipeline: usize,
    /// Requests kept in flight to a peer until its rate has been measured (about two
    /// seconds of blocks). Deep enough that a fast peer is not throttled while measured.
    pub initial_pipeline: usize,
    /// A request unanswered this long is given to another peer.
    pub request_timeout: Duration,
    /// Requests pending at a peer this long without a block from it: snubbed. Outside
    /// endgame a snubbed peer is sent one request at a time (besides the probation after each
    /// request timeout), so a sole source that recovers is noticed; it gets no tit-for-tat
    /// upload slot, and its next block forgives it. The wait restarts whenever its pipeline
    /// empties (e.g. every request timed out).
    pub snub_timeout: Duration,
    /// Silence after which a peer is dropped; keep-alives are sent at a third of it.
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Failed pieces an address may have been the only source of before it is banned. Merely
    /// contributing to a failed piece never bans: a failed piece is fetched again from one
    /// peer, and once it verifies, any earlier sender whose blocks differ from the good ones
    /// is banned at once (see STATE.md). At least 1.
    pub max_hash_failures: u32,
    /// Keep serving uploads once complete.
    pub seed_when_complete: bool,
    /// Media time a streaming reader's readahead window covers (the same again is fetched
    /// at `High` beyond it), converted to bytes with the reader's bitrate.
    pub stream_window: Duration,
    /// Bounds of a readahead window in bytes (the lower one is raised to two pieces).
    pub stream_window_min: u64,
    pub stream_window_max: u64,
    /// Bitrate assumed for a reader whose bitrate is neither given nor measured yet.
    pub stream_default_bitrate: u64,
    /// A reader with no read for this long, while another reader of the torrent read
    /// meanwhile, goes dormant: its window is released until its next read.
    pub reader_idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            peer_id: PeerId::sluice(*b"000000000000"),
            listen_port: None,
            private: false,
            client_name: crate::CLIENT_NAME.to_owned(),
            rng_seed: 0,
            max_peers: 25,
            max_half_open: 16,
            buffer_budget: 32 * 1024 * 1024,
            download_rate_limit: None,
            upload_rate_limit: None,
            shared_download_limit: None,
            shared_upload_limit: None,
            upload_slots: 4,
            min_pipeline: 4,
            max_pipeline: 1024,
            initial_pipeline: 64,
            request_timeout: Duration::from_secs(20),
            snub_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            max_hash_failures: 2,
            seed_when_complete: true,
            stream_window: Duration::from_secs(30),
            stream_window_min: 4 * 1024 * 1024,
            stream_window_max: 128 * 1024 * 1024,
            stream_default_bitrate: 1_000_000,
            reader_idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Limits for a store that holds at most `budget` bytes for every torrent and reader
    /// together (RAM mode), where the process as a whole must stay near that figure: each
    /// reader's window is capped at an eighth of it (its `High` tier doubles that), so a few
    /// readers and their protected regions fit at once, and piece buffers at a sixteenth
    /// (always at least one piece).
    pub fn fit_ram_budget(&mut self, budget: u64) {
        let share = budget / 8;
        self.stream_window_max = self.stream_window_max.min(share);
        self.stream_window_min = self.stream_window_min.min(share);
        self.buffer_budget = self.buffer_budget.min(budget / 16);
    }
}
