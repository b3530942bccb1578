//! One connection's state: protocol flags, what the peer has, our requests to it, its
//! requests to us, and its outbox.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{Bitfield, BlockRef, PeerId, Timestamp};
use sluice_wire::{Decoder, Message};

use super::PeerKey;
use super::rate::Meter;

/// Blocks we stopped waiting for (timeout, choke, cancel) that the peer may still send.
const STALE_MAX: usize = 4096;
/// Blocks the peer rejected that are remembered at once, at most.
const REJECTED_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Outbound: waiting for the driver's `Connected`.
    Connecting,
    /// Waiting for the peer's handshake.
    Handshaking,
    Active,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub block: BlockRef,
    pub sent: Timestamp,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub key: PeerKey,
    pub addr: SocketAddr,
    pub outbound: bool,
    pub phase: Phase,
    /// Start of the current phase (handshake timeout).
    pub phase_since: Timestamp,
    pub active_since: Timestamp,
    /// Taken out while its messages are processed.
    pub decoder: Option<Decoder>,
    pub peer_id: Option<PeerId>,
    pub fast: bool,
    pub extended: bool,
    /// The peer's advertised request queue limit (`reqq`).
    pub reqq: Option<u32>,
    /// The extended id the peer takes `ut_metadata` messages as (BEP 9).
    pub ut_metadata: Option<u8>,
    /// Metadata pieces sent to it on this connection.
    pub metadata_served: u32,
    /// Where it accepts connections: its address if we dialled it, else its address with the
    /// port from its extended handshake (`p`), if it sent one. What PEX tells others.
    pub listen_addr: Option<SocketAddr>,
    /// The extended id it takes `ut_pex` messages as (BEP 11).
    pub ut_pex: Option<u8>,
    /// When our next PEX message to it is due (set while it takes them).
    pub pex_next: Option<Timestamp>,
    /// The listen addresses our PEX messages told it about and did not drop since.
    pub pex_told: BTreeSet<SocketAddr>,
    /// When we last took peers from a PEX message it sent.
    pub pex_taken_at: Option<Timestamp>,

    pub am_choking: bool,
    pub am_interested: bool,
    /// When we last became interested in it.
    pub interested_since: Timestamp,
    pub peer_choking: bool,
    pub peer_interested: bool,

    pub has: Bitfield,
    /// A Bitfield/HaveAll/HaveNone or a Have was received: no further bitfield allowed.
    pub has_known: bool,
    /// Pieces the peer has that we want (not verified, not `Skip`).
    pub wanted: u32,

    /// Our requests to it, oldest first.
    pub requests: VecDeque<Pending>,
    /// Blocks we gave up on, by the sequence number of their marking (oldest first).
    stale: BTreeMap<BlockRef, u64>,
    stale_order: BTreeMap<u64, BlockRef>,
    stale_seq: u64,
    /// Blocks it rejected, not asked of it again until the time given (oldest first).
    rejected: BTreeMap<BlockRef, Timestamp>,
    rejected_order: VecDeque<(Timestamp, BlockRef)>,
    /// Ceiling of the pipeline: back to the floor on a timeout, +1 per block received.
    pub pipeline_cap: usize,
    /// Lowest request→block latency seen.
    pub rtt_min: Option<Duration>,
    /// Waiting for a block since (snub detection): set by a request sent while nothing was
    /// pending or by a block arriving with more pending; `None` whenever the pipeline is empty.
    pub waiting_since: Option<Timestamp>,
    /// No block for `snub_timeout` while requests were pending: one request in flight at most
    /// (outside endgame) until it sends a block.
    pub snubbed: bool,
    /// Blocks it sent that were neither requested nor recently dropped, and blocks it sent
    /// that were (see `UNREQUESTED_MAX`).
    pub unrequested: u32,
    pub delivered: u32,
    /// A request to it timed out and it has sent no block since: no new requests until then
    /// (except in endgame), so its blocks go to others instead of back to it.
    pub probation_until: Option<Timestamp>,
    pub first_block_at: Option<Timestamp>,
    pub last_block_at: Option<Timestamp>,

    /// Its requests to us not yet read from storage, and those being read.
    pub upload_queue: VecDeque<BlockRef>,
    pub reading: VecDeque<BlockRef>,
    pub reading_bytes: u64,

    /// Bytes queued for the socket, flushed as one `Transmit` per drain.
    pub outbox: Vec<u8>,
    /// Bytes handed to the outbox and not yet reported `Sent`.
    pub unsent: u64,

    /// Its entry in the torrent's `timers`.
    pub timer: Option<Timestamp>,
    pub last_recv: Timestamp,
    pub last_sent: Timestamp,
    pub down: Meter,
    pub up: Meter,
}

impl Peer {
    pub(crate) fn new(
        key: PeerKey,
        addr: SocketAddr,
        outbound: bool,
        num_pieces: u32,
        initial_pipeline: usize,
        now: Timestamp,
    ) -> Self {
        Self {
            key,
            addr,
            outbound,
            phase: if outbound { Phase::Connecting } else { Phase::Handshaking },
            phase_since: now,
            active_since: now,
            decoder: None,
            peer_id: None,
            fast: false,
            extended: false,
            reqq: None,
            ut_metadata: None,
            metadata_served: 0,
            listen_addr: outbound.then_some(addr),
            ut_pex: None,
            pex_next: None,
            pex_told: BTreeSet::new(),
            pex_taken_at: None,
            am_choking: true,
            am_interested: false,
            interested_since: Timestamp::ZERO,
            peer_choking: true,
            peer_interested: false,
            has: Bitfield::new(num_pieces),
            has_known: false,
            wanted: 0,
            requests: VecDeque::new(),
            stale: BTreeMap::new(),
            stale_order: BTreeMap::new(),
            stale_seq: 0,
            rejected: BTreeMap::new(),
            rejected_order: VecDeque::new(),
            pipeline_cap: initial_pipeline,
            rtt_min: None,
            waiting_since: None,
            snubbed: false,
            unrequested: 0,
            delivered: 0,
            probation_until: None,
            first_block_at: None,
            last_block_at: None,
            upload_queue: VecDeque::new(),
            reading: VecDeque::new(),
            reading_bytes: 0,
            outbox: Vec::new(),
            unsent: 0,
            timer: None,
            last_recv: now,
            last_sent: now,
            down: Meter::new(now),
            up: Meter::new(now),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    /// Appends a message to the outbox (see [`Self::write`]).
    pub(crate) fn send(&mut self, msg: &Message<'_>, now: Timestamp, flush: &mut VecDeque<PeerKey>) {
        self.write(now, flush, |out| msg.encode(out));
    }

    /// The peer's own bookkeeping is consistent (see `Torrent::check_invariants`).
    pub(crate) fn check_invariants(&self) {
        assert!(self.stale.len() <= STALE_MAX, "stale blocks of {:?} past the bound", self.key);
        assert_eq!(self.stale.len(), self.stale_order.len(), "stale blocks of {:?}", self.key);
        assert!(self.stale.iter().all(|(b, seq)| self.stale_order.get(seq) == Some(b)));
        assert!(self.rejected_order.len() <= REJECTED_MAX, "rejections of {:?} past the bound", self.key);
        assert!(
            self.rejected.iter().all(|(b, t)| self.rejected_order.contains(&(*t, *b))),
            "rejection of {:?} without its expiry",
            self.key
        );
        assert!(self.rejected_order.iter().zip(self.rejected_order.iter().skip(1)).all(|(a, b)| a.0 <= b.0));
    }

    /// Removes our request for `block`, returning when it was sent.
    pub(crate) fn take_request(&mut self, block: BlockRef) -> Option<Timestamp> {
        // Peers answer in order, so the match is almost always at the front.
        let i = self.requests.iter().position(|p| p.block == block)?;
        self.requests.remove(i).map(|p| p.sent)
    }

    /// Remembers that we gave up on `block` (the oldest of `STALE_MAX` is forgotten). O(log n).
    pub(crate) fn mark_stale(&mut self, block: BlockRef) {
        if self.stale.contains_key(&block) {
            return;
        }
        self.stale_seq += 1;
        self.stale.insert(block, self.stale_seq);
        self.stale_order.insert(self.stale_seq, block);
        if self.stale_order.len() > STALE_MAX
            && let Some((_, old)) = self.stale_order.pop_first()
        {
            self.stale.remove(&old);
        }
    }

    /// Whether `block` was requested from this peer and given up on; forgets it. O(log n).
    pub(crate) fn take_stale(&mut self, block: BlockRef) -> bool {
        match self.stale.remove(&block) {
            Some(seq) => {
                self.stale_order.remove(&seq);
                true
            }
            None => false,
        }
    }

    /// Appends bytes to the outbox with `write`; a peer whose outbox was empty joins
    /// `flush`, the queue `poll_output` drains.
    pub(crate) fn write(&mut self, now: Timestamp, flush: &mut VecDeque<PeerKey>, write: impl FnOnce(&mut Vec<u8>)) {
        let before = self.outbox.len();
        write(&mut self.outbox);
        let n = self.outbox.len() - before;
        if n > 0 {
            if before == 0 {
                flush.push_back(self.key);
            }
            self.unsent += n as u64;
            self.last_sent = now;
        }
    }

    /// The peer rejected `block`: not to be asked of it again before `until`.
    pub(crate) fn rejected(&mut self, block: BlockRef, until: Timestamp) {
        self.rejected.insert(block, until);
        self.rejected_order.push_back((until, block));
        if self.rejected_order.len() > REJECTED_MAX
            && let Some((t, old)) = self.rejected_order.pop_front()
            && self.rejected.get(&old) == Some(&t)
        {
            self.rejected.remove(&old);
        }
    }

    /// Whether `block` was rejected by this peer lately.
    pub(crate) fn avoids(&self, block: BlockRef) -> bool {
        !self.rejected.is_empty() && self.rejected.contains_key(&block)
    }

    /// When the oldest remembered rejection expires.
    pub(crate) fn rejected_until(&self) -> Option<Timestamp> {
        self.rejected_order.front().map(|&(t, _)| t)
    }

    /// Forgets the rejections that expired by `now`; returns whether there were any.
    pub(crate) fn expire_rejections(&mut self, now: Timestamp) -> bool {
        let mut any = false;
        while let Some(&(t, block)) = self.rejected_order.front()
            && t <= now
        {
            self.rejected_order.pop_front();
            if self.rejected.get(&block) == Some(&t) {
                self.rejected.remove(&block);
            }
            any = true;
        }
        any
    }

    /// When the oldest request times out.
    pub(crate) fn request_deadline(&self, timeout: Duration) -> Option<Timestamp> {
        self.requests.front().map(|p| p.sent + timeout)
    }
}
