//! The per-torrent state machine.
//!
//! [`Torrent`] is split by concern: `conn` (address book, connecting, bans, dropping peers),
//! `protocol` (handshakes and message dispatch), `requests` (our download pipeline, piece
//! buffers and verification results), `blame` (who sent the bad block of a failed piece), `upload` (serving peers' requests), `choker` (who we upload to), `rate` (meters
//! and token buckets), `metadata` and `pex` (BEP 9 and BEP 11 extensions) and `invariants`
//! (the checks STATE.md lists).

mod blame;
mod choker;
mod conn;
#[cfg(test)]
mod conn_tests;
mod invariants;
mod metadata;
mod peer;
mod pex;
mod protocol;
mod rate;
mod requests;
mod streaming;
#[cfg(test)]
mod tests;
mod upload;
#[cfg(test)]
mod wire_tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::{Bound, Range};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use sluice_core::{Bitfield, BlockRef, InfoHash, Lengths, PeerId, PieceIndex, Timestamp};

use crate::picker::Picker;
use crate::stream::Streams;
use crate::{Config, Priority};
use conn::AddrEntry;
use peer::Peer;
pub use rate::SharedLimit;
use rate::{Meter, TokenBucket, Waiting};

/// A connection slot, chosen by the engine: by [`Output::Connect`] for outbound connections
/// and by [`Torrent::accept`] for inbound ones. Never reused within one `Torrent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub u64);

/// What the driver feeds the engine, always with the current time.
#[derive(Debug)]
pub enum Input<'a> {
    /// The outbound connection asked for by [`Output::Connect`] is established.
    Connected { peer: PeerKey },
    /// The connection failed to open, was closed by the peer, or hit an I/O error.
    Closed { peer: PeerKey },
    /// Bytes read from the peer's socket, split anywhere.
    Data { peer: PeerKey, bytes: &'a [u8] },
    /// The driver wrote this many bytes of earlier [`Output::Transmit`]s to the socket.
    Sent { peer: PeerKey, bytes: usize },
    /// Answer to [`Output::VerifyPiece`]: `ok` means the SHA-1 matched and the piece was
    /// written to storage; otherwise it was discarded. The buffer comes back for reuse.
    PieceChecked { piece: PieceIndex, ok: bool, buffer: Vec<u8> },
    /// Answer to [`Output::ReadBlock`]: the block's verified bytes, or `None` if the read failed.
    BlockRead { peer: PeerKey, block: BlockRef, data: Option<&'a [u8]> },
}

/// Why the engine closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Broken framing, bad handshake, out-of-range index, unrequested data, ...
    Protocol(String),
    WrongInfoHash,
    /// Connected to ourselves.
    SelfConnection,
    /// Already connected to this peer id.
    Duplicate,
    Banned,
    Timeout,
    /// The driver reported the connection closed or failed ([`Input::Closed`]).
    Closed,
    /// Both sides are seeds, or the connection limit was reached.
    NotUseful,
    /// It sent no block for long while the torrent was at its peer limit and an address never
    /// tried was waiting: its slot went to that address.
    Replaced,
    Shutdown,
}

/// What the engine asks the driver to do.
#[derive(Debug)]
pub enum Output {
    /// Open a TCP connection; answer with [`Input::Connected`] or [`Input::Closed`].
    Connect {
        peer: PeerKey,
        addr: SocketAddr,
    },
    /// Write these bytes to the peer, after everything transmitted before; report progress
    /// with [`Input::Sent`].
    Transmit {
        peer: PeerKey,
        data: Vec<u8>,
    },
    /// Close the connection. The engine has forgotten the peer; no [`Input::Closed`] is needed.
    Disconnect {
        peer: PeerKey,
        reason: DisconnectReason,
    },
    /// All blocks of `piece` are in `data` (exactly the piece's length): hash it against the
    /// metainfo, persist it if it matches, and answer with [`Input::PieceChecked`].
    VerifyPiece {
        piece: PieceIndex,
        data: Vec<u8>,
    },
    /// Read a block of verified data to upload; answer with [`Input::BlockRead`].
    ReadBlock {
        peer: PeerKey,
        block: BlockRef,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PieceVerified(PieceIndex),
    /// A piece failed its hash; these peers sent blocks of it.
    HashFailed {
        piece: PieceIndex,
        peers: Vec<PeerKey>,
    },
    /// The peer's handshake was accepted.
    PeerConnected {
        peer: PeerKey,
        addr: SocketAddr,
    },
    /// Every peer slot that goes away (also after [`Input::Closed`]) is reported once.
    PeerDisconnected {
        peer: PeerKey,
        reason: DisconnectReason,
    },
    PeerBanned {
        addr: SocketAddr,
    },
    /// Every wanted piece is verified.
    Complete,
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub bytes_have: u64,
    pub bytes_wanted_left: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Payload bytes per second, smoothed.
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers_connected: usize,
    pub peers_known: usize,
    /// Bytes reserved by piece buffers now, and the most ever reserved.
    pub buffered_bytes: u64,
    pub buffered_bytes_peak: u64,
    pub endgame: bool,
    /// Pieces whose tier and deadline were recomputed since the start (readers moving,
    /// opening, closing; base priority changes): what streaming costs the picker.
    pub pieces_reprioritised: u64,
}

/// Interval between regular rechokes.
const RECHOKE_INTERVAL: Duration = Duration::from_secs(10);
/// Interval between rotations of the optimistic unchoke.
const OPTIMISTIC_INTERVAL: Duration = Duration::from_secs(30);
/// Returned piece buffers kept for reuse.
const FREE_BUFFERS_MAX: usize = 4;
/// An outbox up to this long is copied out on a drain, keeping its allocation for the next
/// messages; a longer one (block data) is handed over whole.
const OUTBOX_COPY_MAX: usize = 4096;
/// An outbox allocation larger than this is not kept between drains.
const OUTBOX_KEEP_MAX: usize = 64 * 1024;

/// One torrent's engine.
#[derive(Debug)]
pub struct Torrent {
    info_hash: InfoHash,
    lengths: Lengths,
    config: Config,
    picker: Picker,
    rng: SmallRng,
    /// Time of the latest mutation (for `stats`).
    now: Timestamp,

    peers: BTreeMap<PeerKey, Peer>,
    next_key: u64,
    /// Outbound connections not yet established.
    half_open: usize,
    /// Dialable addresses we know.
    addrs: BTreeMap<SocketAddr, AddrEntry>,
    /// Idle addresses by the time they may be dialed.
    connect_queue: BTreeSet<(Timestamp, SocketAddr)>,
    banned: BTreeSet<SocketAddr>,
    banned_ids: BTreeSet<PeerId>,
    /// Failed pieces an address was the sole contributor of.
    offenders: BTreeMap<SocketAddr, u32>,
    /// Peers that left with blocks in pieces still in flight, for attributing those blocks.
    departed: BTreeMap<PeerKey, (SocketAddr, Option<PeerId>)>,
    /// Blocks of failed pieces by sender, judged when the piece verifies.
    suspects: blame::Suspects,

    outputs: VecDeque<Output>,
    /// Peers whose outbox became non-empty since it was last drained, each once, in order.
    flush: VecDeque<PeerKey>,
    /// Every peer's timer as (deadline, peer), the deadline never later than the peer's
    /// earliest real one (it may be earlier: the timer then fires, finds nothing due and is
    /// set again). See `peer.timer`.
    timers: BTreeSet<(Timestamp, PeerKey)>,
    /// Peers whose deadlines may have moved earlier in this mutation; re-armed by `settle`.
    timers_dirty: BTreeSet<PeerKey>,
    /// Reused list of peers whose timers are due.
    due: Vec<PeerKey>,

    /// Piece buffers being filled, and pieces handed out for verification.
    buffers: BTreeMap<PieceIndex, Vec<u8>>,
    verifying: BTreeSet<PieceIndex>,
    free_buffers: Vec<Vec<u8>>,
    reserved: u64,
    reserved_peak: u64,
    /// See [`Stats::pieces_reprioritised`].
    reprioritised: u64,

    /// Pieces (and their bytes) not verified and not `Skip`.
    wanted_pieces: u32,
    wanted_bytes: u64,
    have_bytes: u64,
    /// `Event::Complete` was emitted for the current wanted set.
    complete_announced: bool,

    down: Meter,
    up: Meter,
    down_bucket: Option<TokenBucket>,
    up_bucket: Option<TokenBucket>,
    /// While waiting on a shared limit: when to look at it again, a random time of up to
    /// one block after its balance turns positive, drawn afresh at each look that finds it
    /// spent, so the torrents waiting on one limit take turns in random order instead of the
    /// same one always first.
    down_retry: Timestamp,
    up_retry: Timestamp,
    /// This torrent's place among those waiting on its shared limits.
    down_waiting: Option<Waiting>,
    up_waiting: Option<Waiting>,
    /// Its wait ended: the next try at the shared limit may take even while others wait.
    down_turn: bool,
    up_turn: bool,
    /// The cap of [`Torrent::cap_download`], kept so a new limit combines with it.
    download_cap: Option<u64>,
    down_blocked: bool,
    up_blocked: bool,

    next_rechoke: Timestamp,
    next_optimistic: Timestamp,
    optimistic: Option<PeerKey>,

    /// Streaming readers and the user's base priorities; the picker holds their combination.
    streams: Streams,
    /// Next check for late blocks under a playhead.
    next_stream_tick: Option<Timestamp>,
    /// The last time a reader opened, moved or closed.
    reader_seen_at: Option<Timestamp>,

    /// Pipelines to refill before the current mutation returns.
    fill_queue: BTreeSet<PeerKey>,
    refill_all: bool,
    /// A piece in progress may have lost its last source (a peer left or choked us, or a
    /// priority changed) since the last look for orphans.
    orphans_possible: bool,
    /// In this mutation, a peer that could start a new piece got none for lack of budget.
    budget_stuck: bool,
    scratch: Vec<BlockRef>,
    shut_down: bool,
    /// The raw info dictionary, served to peers that fetch it (BEP 9); see `set_metadata`.
    metadata: Option<Vec<u8>>,
    /// Addresses that entered the address book from PEX (BEP 11), capped.
    pex_learned: usize,
}

impl Torrent {
    /// `have` are the pieces already verified in storage (from resume data).
    pub fn new(info_hash: InfoHash, lengths: Lengths, have: Bitfield, config: Config, now: Timestamp) -> Self {
        let mut picker = Picker::new(lengths, config.rng_seed ^ 0x5eed_1e55_0000_0001);
        let mut have_bytes = 0;
        for p in have.iter_ones().filter(|p| p.get() < lengths.num_pieces()) {
            picker.mark_have(p);
            have_bytes += u64::from(lengths.piece_len(p));
        }
        let have_count = picker.have().count_ones();
        let down_bucket = config.download_rate_limit.map(|r| TokenBucket::new(r, now));
        let up_bucket = config.upload_rate_limit.map(|r| TokenBucket::new(r, now));
        Self {
            info_hash,
            lengths,
            rng: SmallRng::seed_from_u64(config.rng_seed),
            picker,
            now,
            peers: BTreeMap::new(),
            next_key: 0,
            half_open: 0,
            addrs: BTreeMap::new(),
            connect_queue: BTreeSet::new(),
            banned: BTreeSet::new(),
            banned_ids: BTreeSet::new(),
            offenders: BTreeMap::new(),
            departed: BTreeMap::new(),
            suspects: blame::Suspects::default(),
            outputs: VecDeque::new(),
            flush: VecDeque::new(),
            timers: BTreeSet::new(),
            timers_dirty: BTreeSet::new(),
            due: Vec::new(),
            buffers: BTreeMap::new(),
            verifying: BTreeSet::new(),
            free_buffers: Vec::new(),
            reserved: 0,
            reserved_peak: 0,
            reprioritised: 0,
            wanted_pieces: lengths.num_pieces() - have_count,
            wanted_bytes: lengths.total_length() - have_bytes,
            have_bytes,
            complete_announced: have_count == lengths.num_pieces(),
            down: Meter::new(now),
            up: Meter::new(now),
            down_bucket,
            up_bucket,
            down_retry: now,
            up_retry: now,
            down_waiting: None,
            up_waiting: None,
            down_turn: false,
            up_turn: false,
            download_cap: None,
            down_blocked: false,
            up_blocked: false,
            next_rechoke: now + RECHOKE_INTERVAL,
            next_optimistic: now,
            optimistic: None,
            streams: Streams::new(lengths, &config),
            next_stream_tick: None,
            reader_seen_at: None,
            fill_queue: BTreeSet::new(),
            refill_all: false,
            orphans_possible: false,
            budget_stuck: false,
            scratch: Vec::new(),
            shut_down: false,
            metadata: None,
            pex_learned: 0,
            config,
        }
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }
    /// Every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    pub fn stats(&self) -> Stats {
        let have = self.picker.have();
        Stats {
            pieces_have: have.count_ones(),
            pieces_total: self.lengths.num_pieces(),
            bytes_have: self.have_bytes,
            bytes_wanted_left: self.wanted_bytes,
            downloaded: self.down.total(),
            uploaded: self.up.total(),
            download_rate: self.down.rate(self.now),
            upload_rate: self.up.rate(self.now),
            peers_connected: self.peers.values().filter(|p| p.is_active()).count(),
            peers_known: self.addrs.len(),
            buffered_bytes: self.reserved,
            buffered_bytes_peak: self.reserved_peak,
            endgame: self.picker.in_endgame(),
            pieces_reprioritised: self.reprioritised,
        }
    }

    /// The torrent's raw info dictionary (its SHA-1 is the info-hash; the caller checked):
    /// from now on the extended handshake advertises `ut_metadata` and the dictionary's
    /// size, and peers may fetch it (BEP 9). Dictionaries past 4 GiB are ignored.
    pub fn set_metadata(&mut self, info: Vec<u8>) {
        if u32::try_from(info.len()).is_ok_and(|n| n > 0) {
            self.metadata = Some(info);
        }
    }

    /// A peer address learned from the command line, a tracker, DHT or PEX. The engine
    /// connects when it has room (limits, backoff, bans).
    pub fn add_peer(&mut self, addr: SocketAddr, now: Timestamp) {
        self.now = now;
        let _ = self.learn_addr(addr, now);
        self.try_connect(now);
    }

    /// An inbound connection whose handshake names this torrent. `None`: refuse it (banned,
    /// full). The driver then feeds every byte it read, the handshake included.
    pub fn accept(&mut self, addr: SocketAddr, now: Timestamp) -> Option<PeerKey> {
        self.now = now;
        self.accept_inbound(addr, now)
    }

    pub fn handle_input(&mut self, input: Input<'_>, now: Timestamp) {
        self.now = now;
        match input {
            Input::Connected { peer }
            | Input::Closed { peer }
            | Input::Data { peer, .. }
            | Input::Sent { peer, .. }
            | Input::BlockRead { peer, .. } => {
                self.timers_dirty.insert(peer);
            }
            Input::PieceChecked { .. } => {}
        }
        match input {
            Input::Connected { peer } => self.on_connected(peer, now),
            Input::Closed { peer } => self.remove_peer(peer, DisconnectReason::Closed, false, now),
            Input::Data { peer, bytes } => self.on_data(peer, bytes, now),
            Input::Sent { peer, bytes } => self.on_sent(peer, bytes, now),
            Input::PieceChecked { piece, ok, buffer } => self.on_piece_checked(piece, ok, buffer, now),
            Input::BlockRead { peer, block, data } => self.on_block_read(peer, block, data, now),
        }
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        let mut due = std::mem::take(&mut self.due);
        while let Some(&(t, key)) = self.timers.first()
            && t <= now
        {
            self.timers.pop_first();
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.timer = None;
            }
            due.push(key);
        }
        for &key in &due {
            self.peer_timers(key, now);
            self.timers_dirty.insert(key);
        }
        due.clear();
        self.due = due;
        if now >= self.next_rechoke {
            self.rechoke(now);
            self.replace_idle_peer(now);
        }
        if self.down_blocked
            && self.down_bucket.as_ref().is_none_or(|b| now >= b.ready_at())
            && self.shared_wait_over(false, now)
        {
            self.unblock_downloads();
        }
        if self.up_blocked
            && self.up_bucket.as_ref().is_none_or(|b| now >= b.ready_at())
            && self.shared_wait_over(true, now)
        {
            self.unblock_uploads(now);
        }
        self.try_connect(now);
        self.stream_timers(now);
        self.settle(now);
    }

    /// Next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        // Each peer's messages since the last drain go out as one Transmit. Keys of peers
        // removed meanwhile are skipped.
        while let Some(key) = self.flush.pop_front() {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            let out = &mut peer.outbox;
            let data = if out.len() <= OUTBOX_COPY_MAX && out.capacity() <= OUTBOX_KEEP_MAX {
                let data = out.clone();
                out.clear();
                data
            } else {
                std::mem::take(out)
            };
            return Some(Output::Transmit { peer: key, data });
        }
        None
    }

    /// When [`Torrent::handle_timeout`] must be called next. Changes only after a mutation.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.shut_down {
            return None;
        }
        let mut next = self.next_rechoke;
        if let Some(&(t, _)) = self.timers.first() {
            next = next.min(t);
        }
        if self.down_blocked {
            let own = self.down_bucket.as_ref().map(TokenBucket::ready_at);
            let shared = self.down_waiting.as_ref().map(|_| self.down_retry);
            if let Some(t) = own.max(shared) {
                next = next.min(t);
            }
        }
        if self.up_blocked {
            let own = self.up_bucket.as_ref().map(TokenBucket::ready_at);
            let shared = self.up_waiting.as_ref().map(|_| self.up_retry);
            if let Some(t) = own.max(shared) {
                next = next.min(t);
            }
        }
        if self.can_dial()
            && let Some(&(t, _)) = self.connect_queue.first()
        {
            next = next.min(t);
        }
        if let Some(t) = self.stream_deadline() {
            next = next.min(t);
        }
        Some(next)
    }

    /// Caps the download rate below [`Config::download_rate_limit`] until the cap is lifted
    /// with `None` (a server slows torrents nobody watches while another one streams).
    /// Requests already sent are not withdrawn; a cap of 0 lets nothing more be requested
    /// beyond the bucket's first two blocks.
    pub fn cap_download(&mut self, cap: Option<u64>, now: Timestamp) {
        self.now = now;
        self.download_cap = cap;
        self.reset_down_bucket(now);
        self.settle(now);
    }

    /// Replaces [`Config::download_rate_limit`] and [`Config::upload_rate_limit`] from now on
    /// (a server's settings changed while torrents run); a cap from [`Self::cap_download`]
    /// still applies below the new download limit. Connections and requests in flight stay.
    pub fn set_rate_limits(&mut self, download: Option<u64>, upload: Option<u64>, now: Timestamp) {
        self.now = now;
        self.config.download_rate_limit = download;
        self.config.upload_rate_limit = upload;
        self.reset_down_bucket(now);
        self.up_bucket = upload.map(|r| TokenBucket::new(r, now));
        if self.up_blocked {
            self.unblock_uploads(now);
        }
        self.settle(now);
    }

    /// A [`SharedLimit`] of this torrent's changed rate: whatever waited on it tries again
    /// now (and blocks again if it still must).
    pub fn shared_limits_changed(&mut self, now: Timestamp) {
        self.now = now;
        if self.down_blocked {
            self.unblock_downloads();
        }
        if self.up_blocked {
            self.unblock_uploads(now);
        }
        self.settle(now);
    }

    /// Ends a wait for download tokens; a wait on the shared limit becomes a turn at it.
    fn unblock_downloads(&mut self) {
        self.down_blocked = false;
        self.refill_all = true;
        if self.down_waiting.take().is_some() {
            self.down_turn = true;
        }
    }

    /// When a torrent waiting on `limit` looks again: once its balance turns positive, plus
    /// a random wait of up to one block's time at its rate (at most 50 ms).
    fn retry_time(&mut self, limit: &SharedLimit, now: Timestamp) -> Timestamp {
        let block_us =
            limit.rate().map_or(0, |r| u64::from(sluice_core::BLOCK_SIZE) * 1_000_000 / r.max(1)).min(50_000);
        let jitter = Duration::from_micros(rand::Rng::random_range(&mut self.rng, 0..=block_us));
        limit.ready_at().unwrap_or(now).max(now) + jitter
    }

    /// Whether a wait on the shared download (or upload) limit, if any, is over at `now`: its
    /// retry time has come and the balance is positive. A look that finds the balance spent
    /// (another torrent's turn came first) draws a new retry time.
    fn shared_wait_over(&mut self, upload: bool, now: Timestamp) -> bool {
        let (limit, waiting, retry) = if upload {
            (&self.config.shared_upload_limit, self.up_waiting.is_some(), self.up_retry)
        } else {
            (&self.config.shared_download_limit, self.down_waiting.is_some(), self.down_retry)
        };
        let Some(limit) = limit.clone().filter(|_| waiting) else { return true };
        if now < retry {
            return false;
        }
        if limit.ready(now) {
            return true;
        }
        let at = self.retry_time(&limit, now);
        *(if upload { &mut self.up_retry } else { &mut self.down_retry }) = at;
        false
    }

    fn unblock_uploads(&mut self, now: Timestamp) {
        self.up_blocked = false;
        if self.up_waiting.take().is_some() {
            self.up_turn = true;
        }
        // A turn lasts the whole pass: every peer's queue may take while the balance holds.
        let mut next = self.next_peer(None);
        while let Some(key) = next {
            self.pump_uploads(key, now);
            next = self.next_peer(Some(key));
        }
        self.up_turn = false;
    }

    /// Replaces [`Config::max_peers`] (at least 1). Over a lowered limit, the peers that gave
    /// the fewest bytes lately are disconnected ([`DisconnectReason::NotUseful`]); the rest go on.
    pub fn set_max_peers(&mut self, max_peers: usize, now: Timestamp) {
        self.now = now;
        self.config.max_peers = max_peers.max(1);
        while self.peers.len() > self.config.max_peers {
            let victim = self
                .peers
                .values()
                .map(|p| (p.is_active(), p.delivered, p.last_block_at.unwrap_or(p.active_since), p.key))
                .min()
                .map(|(.., key)| key);
            let Some(key) = victim else { break };
            self.remove_peer(key, DisconnectReason::NotUseful, true, now);
        }
        self.try_connect(now);
        self.settle(now);
    }

    fn reset_down_bucket(&mut self, now: Timestamp) {
        let limit = match (self.config.download_rate_limit, self.download_cap) {
            (Some(l), Some(c)) => Some(l.min(c)),
            (l, c) => l.or(c),
        };
        self.down_bucket = limit.map(|r| TokenBucket::new(r, now));
        if self.down_blocked {
            self.unblock_downloads();
        }
    }

    /// Sets the base priority tier of a range of pieces (streaming readers may raise it,
    /// never lower it). Cost is proportional to the range (times the readers).
    pub fn set_priority(&mut self, pieces: Range<u32>, priority: Priority, now: Timestamp) {
        self.now = now;
        let range = self.streams.set_base(pieces, priority);
        let mut refreshed = self.refresh_pieces(&[range]);
        refreshed.tiers = true;
        refreshed.wanted = true;
        self.after_priorities(refreshed, now);
        self.settle(now);
    }

    /// Sets (or clears) the time by which a piece should be verified (readers' deadlines
    /// may be earlier).
    pub fn set_deadline(&mut self, piece: PieceIndex, deadline: Option<Timestamp>, now: Timestamp) {
        self.now = now;
        if piece.get() < self.lengths.num_pieces() {
            self.streams.set_base_deadline(piece, deadline);
            let one = piece.get()..piece.get() + 1;
            self.refresh_pieces(std::slice::from_ref(&one));
        }
    }

    /// A verified piece is no longer in storage (a RAM cache evicted it): it is fetched again
    /// if anyone wants it. Peers were told we have it and cannot be told otherwise; their
    /// requests for it are refused from now on.
    pub fn forget_piece(&mut self, piece: PieceIndex, now: Timestamp) {
        self.now = now;
        if !self.picker.have().get(piece) {
            return;
        }
        self.picker.mark_missing(piece);
        self.have_bytes -= u64::from(self.lengths.piece_len(piece));
        let wanted = self.is_wanted(piece);
        if wanted {
            self.wanted_changed(piece, true);
        }
        self.streams.refresh_idle_at(self.picker.have());
        self.after_priorities(streaming::Refreshed { wanted, tiers: false }, now);
        self.refill_all = true;
        self.settle(now);
    }

    /// What streaming readers need kept, as piece ranges with the tier they demand (windows
    /// by tier, protected container regions as `High`); ranges may overlap. A store that
    /// evicts keeps these longest. O(readers).
    pub fn retained(&self) -> Vec<(Range<u32>, Priority)> {
        self.streams.retention()
    }

    /// [`Stats::pieces_reprioritised`], cheaply: every change of a reader's window or
    /// protected ranges recomputes the pieces it touches, so what [`Torrent::retained`]
    /// returns can only differ once this has grown.
    pub fn reprioritised(&self) -> u64 {
        self.reprioritised
    }

    /// Closes every connection; outputs the disconnects.
    pub fn shutdown(&mut self, now: Timestamp) {
        self.now = now;
        self.shut_down = true;
        self.connect_queue.clear();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.remove_peer(key, DisconnectReason::Shutdown, true, now);
        }
    }

    /// Panics if an internal invariant is broken (see STATE.md).
    pub fn check_invariants(&self) {
        self.verify_invariants();
    }

    // ---- shared helpers ----

    /// Not verified and not `Skip`.
    fn is_wanted(&self, piece: PieceIndex) -> bool {
        !self.picker.have().get(piece) && self.picker.priority(piece) != Priority::Skip
    }

    /// `piece` entered or left the wanted set (priority change or verification).
    fn wanted_changed(&mut self, piece: PieceIndex, wanted: bool) {
        let len = u64::from(self.lengths.piece_len(piece));
        if wanted {
            self.wanted_pieces += 1;
            self.wanted_bytes += len;
        } else {
            self.wanted_pieces -= 1;
            self.wanted_bytes -= len;
        }
        for peer in self.peers.values_mut().filter(|p| p.has.get(piece)) {
            if wanted {
                peer.wanted += 1;
            } else {
                peer.wanted -= 1;
            }
        }
    }

    fn queue_fill(&mut self, key: PeerKey) {
        self.fill_queue.insert(key);
    }

    /// A piece in progress may have no source left: refill everyone, and if a peer then
    /// cannot start a piece for lack of budget, look for pieces to abandon.
    fn lost_source(&mut self) {
        self.orphans_possible = true;
        self.refill_all = true;
    }

    /// Work deferred to the end of a mutation: refilling request pipelines, and freeing
    /// budget held by pieces nobody can serve if that left a peer without work.
    fn settle(&mut self, now: Timestamp) {
        self.refill(now);
        if std::mem::take(&mut self.budget_stuck) && self.release_orphans() {
            self.refill_all = true;
            self.refill(now);
            self.budget_stuck = false;
        }
        while let Some(key) = self.timers_dirty.pop_first() {
            self.arm_timer(key);
        }
    }

    /// Sets `key`'s entry in `timers` to its earliest deadline.
    fn arm_timer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let deadline = self.peer_deadline(peer);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.timer == deadline {
            return;
        }
        if let Some(old) = peer.timer {
            self.timers.remove(&(old, key));
        }
        peer.timer = deadline;
        if let Some(t) = deadline {
            self.timers.insert((t, key));
        }
    }

    /// The first peer after `after` in key order (the first of all for `None`): walks the
    /// peers while they are added and removed, without collecting their keys.
    fn next_peer(&self, after: Option<PeerKey>) -> Option<PeerKey> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.peers.range((from, Bound::Unbounded)).next().map(|(&k, _)| k)
    }

    fn refill(&mut self, now: Timestamp) {
        if std::mem::take(&mut self.refill_all) {
            self.fill_queue.clear();
            // Peers that just timed out or are snubbed go last, so their blocks go to others.
            // While streaming, faster peers pick first: they get the blocks under the playheads.
            let by_rate = self.streams.any_awake();
            let mut keys: Vec<(bool, std::cmp::Reverse<u64>, PeerKey)> = self
                .peers
                .iter()
                .map(|(k, p)| {
                    let rate = if by_rate { p.down.rate(now) } else { 0 };
                    (p.probation_until.is_some() || p.snubbed, std::cmp::Reverse(rate), *k)
                })
                .collect();
            keys.sort();
            for (_, _, key) in keys {
                self.fill_requests(key, now);
            }
        } else {
            while let Some(key) = self.fill_queue.pop_first() {
                self.fill_requests(key, now);
            }
        }
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    /// Emits `Complete` once per completion and applies what completion implies.
    fn check_complete(&mut self, now: Timestamp) {
        let complete = self.picker.is_complete();
        if !complete {
            // Wanted again (a priority raised, a piece evicted): seeds we hung up on are useful.
            if std::mem::take(&mut self.complete_announced) {
                self.requeue_seeds(now);
            }
            return;
        }
        if self.complete_announced {
            return;
        }
        self.complete_announced = true;
        self.emit(Event::Complete);
        let we_seed = self.picker.have().is_full();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get(&key) else {
                continue;
            };
            if !self.config.seed_when_complete || (we_seed && peer.is_active() && peer.has.is_full()) {
                self.remove_peer(key, DisconnectReason::NotUseful, true, now);
            } else {
                self.update_interest(key, now);
            }
        }
        self.unchoke_free_slots(now);
    }
}
