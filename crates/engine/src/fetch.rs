//! Fetching a torrent's info dictionary from peers (BEP 9), for a magnet link.
//!
//! [`MetadataFetcher`] is driven like [`crate::Torrent`]: feed an input or a timeout with the
//! current time, drain [`MetadataFetcher::poll_output`], sleep until
//! [`MetadataFetcher::poll_timeout`]. It dials the peers it is given, handshakes with the
//! extension-protocol bit, and asks every peer that advertises `ut_metadata` with a size
//! under [`FetchConfig::max_metadata_size`] for 16 KiB pieces, a few at a time each, so
//! several peers fill one buffer in parallel. The buffer is sized from the first usable
//! advertisement, so memory is bounded by the limit whatever peers claim; a peer that
//! advertises another size is not asked while that buffer is being filled.
//!
//! Hashing stays in the driver, as for pieces: a complete buffer goes out in
//! [`FetchOutput::VerifyMetadata`] and comes back as [`FetchInput::MetadataChecked`]. A
//! mismatch cannot say which of several senders lied, so (as with pieces) contributing is
//! not proof: the sole sender of a bad dictionary is banned at once; when there were several,
//! each gets a strike, two strikes ban, and the next attempt takes every piece from a single
//! peer so that its failure is attributable. Timeouts (handshake, a request, silence) drop
//! the connection and hand its pieces to others; a dropped address is dialled again after a
//! growing pause.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{InfoHash, PeerId, Timestamp};
use sluice_wire::{
    Decoder, ExtendedHandshake, Handshake, Message, MetadataMsg, UT_METADATA, metadata_piece_range, metadata_pieces,
    reserved,
};

use crate::{DisconnectReason, PeerKey};

/// The extended id we take `ut_metadata` messages as.
const OUR_UT_METADATA: u8 = 3;
/// Largest frame accepted from a peer: a metadata piece with its header, or a bitfield of a
/// torrent with up to four million pieces (we do not know the piece count yet).
const MAX_FRAME: u32 = 512 * 1024;
/// Rejects a connection may send before it is dropped (it probably lacks the metadata).
const MAX_REJECTS: u32 = 4;
/// Pause before asking a peer again after it rejected a request.
const REJECT_BACKOFF: Duration = Duration::from_secs(2);
/// Longest pause before dialling a dropped address again.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Strikes (shared blame for a bad dictionary) that ban an address.
const MAX_STRIKES: u32 = 2;
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Listen addresses of inbound peers kept for the torrent at most.
const MAX_LISTENING: usize = 256;

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub peer_id: PeerId,
    /// Our listen port, sent in the extended handshake.
    pub listen_port: Option<u16>,
    /// Sent as the extended handshake's `v` (empty: not sent).
    pub client_name: String,
    /// Peers advertising a larger dictionary are not asked.
    pub max_metadata_size: u32,
    /// Connections (including attempts) at most.
    pub max_peers: usize,
    /// Metadata requests in flight per peer.
    pub requests_per_peer: usize,
    /// Connecting and both handshakes must finish within this.
    pub handshake_timeout: Duration,
    /// A request unanswered this long drops the peer.
    pub request_timeout: Duration,
    /// Silence after which a peer is dropped.
    pub idle_timeout: Duration,
    /// First pause before dialling a dropped address again; doubles per failure, up to a minute.
    pub retry_after: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            peer_id: PeerId::sluice(*b"000000000000"),
            listen_port: None,
            client_name: crate::CLIENT_NAME.to_owned(),
            max_metadata_size: 16 * 1024 * 1024,
            max_peers: 8,
            requests_per_peer: 4,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            retry_after: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
pub enum FetchInput<'a> {
    /// The connection asked for by [`FetchOutput::Connect`] is established.
    Connected { peer: PeerKey },
    /// The connection failed or was closed.
    Closed { peer: PeerKey },
    /// Bytes read from the peer, split anywhere.
    Data { peer: PeerKey, bytes: &'a [u8] },
    /// Answer to [`FetchOutput::VerifyMetadata`]: whether its SHA-1 is the info-hash. The
    /// driver keeps the bytes when it is; the fetcher then closes every connection.
    MetadataChecked { ok: bool },
}

#[derive(Debug)]
pub enum FetchOutput {
    Connect {
        peer: PeerKey,
        addr: SocketAddr,
    },
    Transmit {
        peer: PeerKey,
        data: Vec<u8>,
    },
    /// Close the connection; no [`FetchInput::Closed`] is needed.
    Disconnect {
        peer: PeerKey,
        reason: DisconnectReason,
    },
    /// The whole dictionary: hash it and answer with [`FetchInput::MetadataChecked`].
    VerifyMetadata {
        data: Vec<u8>,
    },
    /// The address sent a dictionary that did not hash to the info-hash; never dialled again.
    Banned {
        addr: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    Active,
}

#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    phase: Phase,
    since: Timestamp,
    decoder: Decoder,
    /// Their id for `ut_metadata`, and the size they advertised.
    ut_metadata: Option<u8>,
    size: Option<u32>,
    /// Pieces asked of it, with when.
    in_flight: Vec<(u32, Timestamp)>,
    rejects: u32,
    /// Not asked for pieces before this (after a reject); `ZERO` when no backoff runs.
    backoff_until: Timestamp,
    last_recv: Timestamp,
    last_sent: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    Asked(PeerKey),
    /// Received from this address.
    Have(SocketAddr),
}

#[derive(Debug)]
struct Assembly {
    size: u32,
    buf: Vec<u8>,
    slots: Vec<Slot>,
    /// In single-source mode, the one peer every piece is asked of.
    owner: Option<PeerKey>,
}

#[derive(Debug, Default)]
struct AddrState {
    live: Option<PeerKey>,
    retry_at: Timestamp,
    failures: u32,
    strikes: u32,
    /// Connected and did not offer the extension protocol or `ut_metadata`: not dialled again.
    useless: bool,
    /// It dialled us: the address is its outgoing port, never dialled and forgotten with the
    /// connection.
    inbound: bool,
}

/// Fetches one torrent's metadata; see the module docs.
#[derive(Debug)]
pub struct MetadataFetcher {
    info_hash: InfoHash,
    config: FetchConfig,
    conns: BTreeMap<PeerKey, Conn>,
    next_key: u64,
    addrs: BTreeMap<SocketAddr, AddrState>,
    banned: BTreeSet<SocketAddr>,
    /// Where inbound peers said (extended handshake `p`) they accept connections.
    listening: BTreeSet<SocketAddr>,
    assembly: Option<Assembly>,
    /// Pieces of the failed dictionary are to come from one peer (see the module docs).
    single_source: bool,
    /// Addresses of the dictionary being verified (by the driver), for blame.
    verifying: Option<Vec<SocketAddr>>,
    done: bool,
    outputs: VecDeque<FetchOutput>,
}

impl MetadataFetcher {
    pub fn new(info_hash: InfoHash, config: FetchConfig) -> Self {
        Self {
            info_hash,
            config,
            conns: BTreeMap::new(),
            next_key: 0,
            addrs: BTreeMap::new(),
            banned: BTreeSet::new(),
            listening: BTreeSet::new(),
            assembly: None,
            single_source: false,
            verifying: None,
            done: false,
            outputs: VecDeque::new(),
        }
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The dictionary was verified: nothing more to do.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Addresses known and not banned, for the torrent that takes over: inbound peers by the
    /// port they listen on, not the one they dialled from.
    pub fn peers(&self) -> Vec<SocketAddr> {
        let known = self.addrs.iter().filter(|(_, a)| !a.inbound).map(|(addr, _)| *addr);
        let listening = self.listening.iter().filter(|a| !self.banned.contains(a) && !self.addrs.contains_key(a));
        known.chain(listening.copied()).collect()
    }

    /// Connections open or being opened.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Bytes of the dictionary received so far, and its size (once a peer advertised one).
    pub fn progress(&self) -> (u64, Option<u32>) {
        match &self.assembly {
            Some(a) => {
                let have = a.slots.iter().enumerate().filter(|(_, s)| matches!(s, Slot::Have(_)));
                let bytes = have.filter_map(|(i, _)| metadata_piece_range(a.size, i as u32)).map(|r| r.len() as u64);
                (bytes.sum(), Some(a.size))
            }
            None => (0, None),
        }
    }

    pub fn add_peer(&mut self, addr: SocketAddr, now: Timestamp) {
        if !self.done && !self.banned.contains(&addr) && !self.addrs.contains_key(&addr) {
            self.addrs.insert(addr, AddrState { retry_at: now, ..AddrState::default() });
        }
        self.settle(now);
    }

    /// Takes a connection the peer opened to us (the driver read its handshake to route it
    /// here, and feeds those bytes next as [`FetchInput::Data`]); `None` when it is refused:
    /// banned, already connected, or no connection slot free.
    pub fn accept(&mut self, addr: SocketAddr, now: Timestamp) -> Option<PeerKey> {
        let taken = self.addrs.get(&addr).is_some_and(|a| a.live.is_some());
        if self.done || taken || self.banned.contains(&addr) || self.conns.len() >= self.config.max_peers {
            return None;
        }
        let key = self.open(addr, now);
        self.addrs.entry(addr).or_insert_with(|| AddrState { inbound: true, ..AddrState::default() }).live = Some(key);
        self.on_connected(key, now);
        Some(key)
    }

    pub fn handle_input(&mut self, input: FetchInput<'_>, now: Timestamp) {
        match input {
            FetchInput::Connected { peer } => self.on_connected(peer, now),
            FetchInput::Closed { peer } => self.drop_conn(peer, None, now),
            FetchInput::Data { peer, bytes } => self.on_data(peer, bytes, now),
            FetchInput::MetadataChecked { ok } => self.on_checked(ok, now),
        }
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        let keys: Vec<PeerKey> = self.conns.keys().copied().collect();
        for key in keys {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if c.backoff_until <= now {
                c.backoff_until = Timestamp::ZERO;
            }
            let timed_out = if c.phase != Phase::Active || c.ut_metadata.is_none() {
                now >= c.since + self.config.handshake_timeout
            } else {
                c.in_flight.first().is_some_and(|&(_, t)| now >= t + self.config.request_timeout)
                    || now >= c.last_recv + self.config.idle_timeout
            };
            if timed_out {
                self.drop_conn(key, Some(DisconnectReason::Timeout), now);
                continue;
            }
            if c.phase == Phase::Active && now >= c.last_sent + KEEP_ALIVE {
                c.last_sent = now;
                let mut data = Vec::new();
                Message::KeepAlive.encode(&mut data);
                self.outputs.push_back(FetchOutput::Transmit { peer: key, data });
            }
        }
        self.settle(now);
    }

    pub fn poll_output(&mut self) -> Option<FetchOutput> {
        self.outputs.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.done {
            return None;
        }
        let mut next: Option<Timestamp> = None;
        let mut at = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        for c in self.conns.values() {
            if c.phase != Phase::Active || c.ut_metadata.is_none() {
                at(c.since + self.config.handshake_timeout);
                continue;
            }
            if let Some(&(_, t)) = c.in_flight.first() {
                at(t + self.config.request_timeout);
            }
            if c.backoff_until != Timestamp::ZERO {
                at(c.backoff_until);
            }
            at(c.last_recv + self.config.idle_timeout);
            at(c.last_sent + KEEP_ALIVE);
        }
        if self.conns.len() < self.config.max_peers {
            for a in self.addrs.values().filter(|a| a.live.is_none() && !a.useless) {
                at(a.retry_at);
            }
        }
        next
    }

    /// Closes every connection (the driver gave up, or the dictionary is known).
    pub fn shutdown(&mut self, now: Timestamp) {
        self.done = true;
        let keys: Vec<PeerKey> = self.conns.keys().copied().collect();
        for key in keys {
            self.drop_conn(key, Some(DisconnectReason::Shutdown), now);
        }
        self.assembly = None;
    }

    /// Panics if the bookkeeping is inconsistent.
    pub fn check_invariants(&self) {
        assert!(self.conns.len() <= self.config.max_peers);
        for (key, c) in &self.conns {
            assert_eq!(self.addrs.get(&c.addr).and_then(|a| a.live), Some(*key), "{key:?} not its address's live peer");
            assert!(c.in_flight.len() <= self.config.requests_per_peer);
            for &(piece, _) in &c.in_flight {
                let slot = self.assembly.as_ref().and_then(|a| a.slots.get(piece as usize));
                assert_eq!(slot, Some(&Slot::Asked(*key)), "request of {key:?} for {piece} not in the assembly");
            }
        }
        for (addr, a) in &self.addrs {
            assert!(!self.banned.contains(addr));
            if let Some(k) = a.live {
                assert_eq!(self.conns.get(&k).map(|c| c.addr), Some(*addr));
            }
        }
        if let Some(a) = &self.assembly {
            assert!(a.size <= self.config.max_metadata_size && a.size > 0);
            assert_eq!(a.slots.len() as u32, metadata_pieces(a.size));
            for (i, s) in a.slots.iter().enumerate() {
                if let Slot::Asked(k) = s {
                    assert!(self.conns.get(k).is_some_and(|c| c.in_flight.iter().any(|&(p, _)| p as usize == i)));
                }
            }
            assert!(self.verifying.is_none() || a.buf.is_empty(), "verifying while filling");
            assert!(self.verifying.is_some() || a.buf.len() == a.size as usize);
        }
        assert!(!self.done || self.conns.is_empty());
    }

    // ---- connections ----

    fn on_connected(&mut self, key: PeerKey, now: Timestamp) {
        let Some(c) = self.conns.get_mut(&key).filter(|c| c.phase == Phase::Connecting) else {
            return;
        };
        c.phase = Phase::Handshaking;
        c.since = now;
        c.last_recv = now;
        c.last_sent = now;
        let mut hs = Handshake::new(self.info_hash, self.config.peer_id);
        hs.reserved = [0; 8];
        hs.reserved[reserved::EXTENSION_PROTOCOL.0] |= reserved::EXTENSION_PROTOCOL.1;
        let mut data = Vec::new();
        hs.encode(&mut data);
        self.outputs.push_back(FetchOutput::Transmit { peer: key, data });
    }

    fn on_data(&mut self, key: PeerKey, bytes: &[u8], now: Timestamp) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if c.phase == Phase::Connecting {
            return;
        }
        c.last_recv = now;
        c.decoder.push(bytes);
        if c.phase == Phase::Handshaking {
            match c.decoder.next_handshake() {
                Ok(None) => return,
                Ok(Some(hs)) => {
                    if let Err(why) = self.on_handshake(key, &hs, now) {
                        return self.drop_conn(key, Some(why), now);
                    }
                }
                Err(e) => return self.drop_conn(key, Some(DisconnectReason::Protocol(e.to_string())), now),
            }
        }
        // Messages borrow the decoder; collect what we act on first.
        let mut acts: Vec<Act> = Vec::new();
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let failed = loop {
            match c.decoder.next_message() {
                Ok(Some(Message::Extended { id: 0, payload })) => match ExtendedHandshake::decode(payload) {
                    Ok(ext) => {
                        acts.push(Act::Handshake(ext.extension_id(UT_METADATA), ext.metadata_size, ext.listen_port))
                    }
                    Err(e) => break Some(e.to_string()),
                },
                Ok(Some(Message::Extended { id: OUR_UT_METADATA, payload })) => match MetadataMsg::decode(payload) {
                    Ok(MetadataMsg::Data { piece, total_size, data }) => {
                        acts.push(Act::Data(piece, total_size, data.to_vec()));
                    }
                    Ok(MetadataMsg::Reject { piece }) => acts.push(Act::Reject(piece)),
                    // We serve nothing while fetching.
                    Ok(MetadataMsg::Request { piece }) => acts.push(Act::Refuse(piece)),
                    Ok(MetadataMsg::Other { .. }) => {}
                    Err(e) => break Some(e.to_string()),
                },
                // Bitfields, haves, chokes...: nothing to us before we have the metadata.
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        for act in acts {
            if !self.conns.contains_key(&key) {
                return;
            }
            self.act(key, act, now);
        }
        if let Some(why) = failed {
            self.drop_conn(key, Some(DisconnectReason::Protocol(why)), now);
        }
    }

    fn on_handshake(&mut self, key: PeerKey, hs: &Handshake, now: Timestamp) -> Result<(), DisconnectReason> {
        if hs.info_hash != self.info_hash {
            return Err(DisconnectReason::WrongInfoHash);
        }
        if hs.peer_id == self.config.peer_id {
            return Err(DisconnectReason::SelfConnection);
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return Ok(());
        };
        if !hs.supports(reserved::EXTENSION_PROTOCOL) {
            if let Some(a) = self.addrs.get_mut(&c.addr) {
                a.useless = true;
            }
            return Err(DisconnectReason::NotUseful);
        }
        c.phase = Phase::Active;
        let ext = ExtendedHandshake {
            extensions: vec![(UT_METADATA.to_owned(), OUR_UT_METADATA)],
            listen_port: self.config.listen_port,
            client: Some(self.config.client_name.clone()).filter(|c| !c.is_empty()),
            ..ExtendedHandshake::default()
        };
        let mut payload = Vec::new();
        ext.encode(&mut payload);
        self.send(key, &Message::Extended { id: 0, payload: &payload }, now);
        Ok(())
    }

    fn act(&mut self, key: PeerKey, act: Act, now: Timestamp) {
        match act {
            Act::Handshake(id, size, port) => {
                let Some(c) = self.conns.get_mut(&key) else {
                    return;
                };
                if let Some(port) = port.filter(|&p| p != 0)
                    && self.addrs.get(&c.addr).is_some_and(|a| a.inbound)
                    && self.listening.len() < MAX_LISTENING
                {
                    self.listening.insert(SocketAddr::new(c.addr.ip(), port));
                }
                let Some(id) = id else {
                    if let Some(a) = self.addrs.get_mut(&c.addr) {
                        a.useless = true;
                    }
                    return self.drop_conn(key, Some(DisconnectReason::NotUseful), now);
                };
                c.ut_metadata = Some(id);
                // No size: it has no metadata yet (itself a magnet downloader); it may tell us later.
                c.size = size.and_then(|s| u32::try_from(s).ok()).filter(|&s| s > 0);
                if let Some(s) = size
                    && s > u64::from(self.config.max_metadata_size)
                {
                    let why = format!("advertises {s} bytes of metadata, over the limit");
                    self.drop_conn(key, Some(DisconnectReason::Protocol(why)), now);
                }
            }
            Act::Data(piece, total, data) => self.on_piece(key, piece, total, &data, now),
            Act::Reject(piece) => {
                self.release(key, Some(piece));
                let Some(c) = self.conns.get_mut(&key) else {
                    return;
                };
                c.rejects += 1;
                c.backoff_until = now + REJECT_BACKOFF;
                if c.rejects > MAX_REJECTS {
                    self.drop_conn(key, Some(DisconnectReason::NotUseful), now);
                }
            }
            Act::Refuse(piece) => {
                if let Some(id) = self.conns.get(&key).and_then(|c| c.ut_metadata) {
                    let mut payload = Vec::new();
                    MetadataMsg::Reject { piece }.encode(&mut payload);
                    self.send(key, &Message::Extended { id, payload: &payload }, now);
                }
            }
        }
    }

    fn on_piece(&mut self, key: PeerKey, piece: u32, total: u64, data: &[u8], now: Timestamp) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(i) = c.in_flight.iter().position(|&(p, _)| p == piece) else {
            // Unrequested (or for a buffer we dropped): ignored.
            return;
        };
        let addr = c.addr;
        let Some(a) = self.assembly.as_mut() else {
            return;
        };
        let range = metadata_piece_range(a.size, piece);
        let fits = total == u64::from(a.size) && range.as_ref().is_some_and(|r| r.len() == data.len());
        let Some(range) = range.filter(|_| fits) else {
            let why = format!("metadata piece {piece} of {} bytes (total {total}) does not fit", data.len());
            return self.drop_conn(key, Some(DisconnectReason::Protocol(why)), now);
        };
        c.in_flight.remove(i);
        a.buf[range].copy_from_slice(data);
        a.slots[piece as usize] = Slot::Have(addr);
    }

    fn on_checked(&mut self, ok: bool, now: Timestamp) {
        let Some(senders) = self.verifying.take() else {
            return;
        };
        if ok {
            self.shutdown(now);
            return;
        }
        self.assembly = None;
        let distinct: BTreeSet<SocketAddr> = senders.into_iter().collect();
        let sole = distinct.len() == 1;
        for addr in distinct {
            let strikes = self.addrs.get_mut(&addr).map_or(MAX_STRIKES, |a| {
                a.strikes += 1;
                a.strikes
            });
            if sole || strikes >= MAX_STRIKES {
                self.ban(addr, now);
            }
        }
        self.single_source = true;
    }

    fn ban(&mut self, addr: SocketAddr, now: Timestamp) {
        if let Some(key) = self.addrs.get(&addr).and_then(|a| a.live) {
            self.drop_conn(key, Some(DisconnectReason::Banned), now);
        }
        self.addrs.remove(&addr);
        if self.banned.insert(addr) {
            self.outputs.push_back(FetchOutput::Banned { addr });
        }
    }

    /// Forgets a connection; `reason` (when we close it) goes out as a `Disconnect`.
    fn drop_conn(&mut self, key: PeerKey, reason: Option<DisconnectReason>, now: Timestamp) {
        self.release(key, None);
        let Some(c) = self.conns.remove(&key) else {
            return;
        };
        if self.addrs.get(&c.addr).is_some_and(|a| a.inbound) {
            self.addrs.remove(&c.addr);
        } else if let Some(a) = self.addrs.get_mut(&c.addr) {
            a.live = None;
            a.failures += 1;
            let pause = self.config.retry_after.saturating_mul(1 << a.failures.min(6).saturating_sub(1));
            a.retry_at = now + pause.min(MAX_RETRY);
        }
        if let Some(reason) = reason {
            self.outputs.push_back(FetchOutput::Disconnect { peer: key, reason });
        }
    }

    /// Hands `key`'s requests (or just `piece`) back to the assembly.
    fn release(&mut self, key: PeerKey, piece: Option<u32>) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let a = &mut self.assembly;
        c.in_flight.retain(|&(p, _)| {
            if piece.is_some_and(|only| only != p) {
                return true;
            }
            if let Some(slot) = a.as_mut().and_then(|a| a.slots.get_mut(p as usize))
                && *slot == Slot::Asked(key)
            {
                *slot = Slot::Missing;
            }
            false
        });
        if let Some(asm) = a.as_mut()
            && piece.is_none()
            && asm.owner == Some(key)
        {
            // Single source: its pieces are only attributable while it alone sends them.
            *a = None;
        }
    }

    fn send(&mut self, key: PeerKey, msg: &Message<'_>, now: Timestamp) {
        if let Some(c) = self.conns.get_mut(&key) {
            c.last_sent = now;
            let mut data = Vec::new();
            msg.encode(&mut data);
            self.outputs.push_back(FetchOutput::Transmit { peer: key, data });
        }
    }

    // ---- scheduling ----

    /// Whether `c` can be asked for pieces of a `size`-byte dictionary now.
    fn eligible(c: &Conn, size: u32, now: Timestamp) -> bool {
        c.phase == Phase::Active && c.ut_metadata.is_some() && c.size == Some(size) && now >= c.backoff_until
    }

    fn settle(&mut self, now: Timestamp) {
        if self.done {
            return;
        }
        self.dial(now);
        if self.verifying.is_some() {
            return;
        }
        self.choose_assembly();
        self.request(now);
        let complete = self.assembly.as_ref().is_some_and(|a| a.slots.iter().all(|s| matches!(s, Slot::Have(_))));
        if complete && let Some(a) = self.assembly.as_mut() {
            let senders = a.slots.iter().filter_map(|s| if let Slot::Have(addr) = s { Some(*addr) } else { None });
            self.verifying = Some(senders.collect());
            let data = std::mem::take(&mut a.buf);
            self.outputs.push_back(FetchOutput::VerifyMetadata { data });
        }
    }

    fn dial(&mut self, now: Timestamp) {
        while self.conns.len() < self.config.max_peers {
            let Some((&addr, a)) =
                self.addrs.iter_mut().find(|(_, a)| a.live.is_none() && !a.useless && a.retry_at <= now)
            else {
                return;
            };
            let key = PeerKey(self.next_key);
            a.live = Some(key);
            self.open(addr, now);
            self.outputs.push_back(FetchOutput::Connect { peer: key, addr });
        }
    }

    fn open(&mut self, addr: SocketAddr, now: Timestamp) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let conn = Conn {
            addr,
            phase: Phase::Connecting,
            since: now,
            decoder: Decoder::new(MAX_FRAME),
            ut_metadata: None,
            size: None,
            in_flight: Vec::new(),
            rejects: 0,
            backoff_until: Timestamp::ZERO,
            last_recv: now,
            last_sent: now,
        };
        self.conns.insert(key, conn);
        key
    }

    /// Keeps the buffer while some peer can fill it; otherwise starts one for the size the
    /// first usable peer advertises.
    fn choose_assembly(&mut self) {
        let usable = |size: u32| {
            self.conns.values().any(|c| c.phase == Phase::Active && c.ut_metadata.is_some() && c.size == Some(size))
        };
        if let Some(a) = &self.assembly {
            let in_flight = a.slots.iter().any(|s| matches!(s, Slot::Asked(_)));
            if in_flight || usable(a.size) {
                return;
            }
        }
        let size = self
            .conns
            .values()
            .filter(|c| c.phase == Phase::Active && c.ut_metadata.is_some())
            .find_map(|c| c.size.filter(|&s| s <= self.config.max_metadata_size));
        self.assembly = size.map(|size| Assembly {
            size,
            buf: vec![0; size as usize],
            slots: vec![Slot::Missing; metadata_pieces(size) as usize],
            owner: None,
        });
    }

    fn request(&mut self, now: Timestamp) {
        let Some(a) = self.assembly.as_mut() else {
            return;
        };
        let keys: Vec<PeerKey> = self.conns.keys().copied().collect();
        for key in keys {
            if self.single_source && a.owner.is_some_and(|o| o != key) {
                continue;
            }
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if !Self::eligible(c, a.size, now) {
                continue;
            }
            let Some(their_id) = c.ut_metadata else {
                continue;
            };
            let mut data = Vec::new();
            while c.in_flight.len() < self.config.requests_per_peer {
                let Some(piece) = a.slots.iter().position(|s| *s == Slot::Missing) else {
                    break;
                };
                a.slots[piece] = Slot::Asked(key);
                c.in_flight.push((piece as u32, now));
                if self.single_source {
                    a.owner = Some(key);
                }
                let mut payload = Vec::new();
                MetadataMsg::Request { piece: piece as u32 }.encode(&mut payload);
                Message::Extended { id: their_id, payload: &payload }.encode(&mut data);
            }
            if !data.is_empty() {
                c.last_sent = now;
                self.outputs.push_back(FetchOutput::Transmit { peer: key, data });
            }
        }
    }
}

/// What a peer's messages asked of us, collected while its decoder is borrowed.
enum Act {
    Handshake(Option<u8>, Option<u64>, Option<u16>),
    Data(u32, u64, Vec<u8>),
    Reject(u32),
    Refuse(u32),
}

#[cfg(test)]
mod tests;
