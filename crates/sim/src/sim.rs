//! The event loop: one priority queue of timestamped events, one clock, one PRNG.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_core::{Bitfield, BlockRef, PeerId, PieceIndex, Timestamp};
use sluice_engine::{Config, Event, Input, Output, PeerKey, Torrent};
use sluice_storage::{CacheEvents, PieceStore, RamCache, RamStore};
use sluice_wire::Decoder;

use crate::script::{ConnId, Script, ScriptAction, ScriptIo};
use crate::{Content, MessageCounts, NodeMetrics};

/// Index of a node in its [`Sim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// A node's access link. Every byte a node sends goes through one FIFO uplink serialised at
/// `up_rate`, then takes the sender's plus the receiver's `latency` (each plus up to
/// `jitter`) to arrive; per-connection order is always kept. Downlinks are not constrained.
#[derive(Debug, Clone, Copy)]
pub struct NetProfile {
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes per second; `None` = unlimited.
    pub up_rate: Option<u64>,
}

impl NetProfile {
    pub fn new(latency_ms: u64, up_rate: Option<u64>) -> Self {
        Self { latency: Duration::from_millis(latency_ms), jitter: Duration::ZERO, up_rate }
    }
    pub fn with_jitter(mut self, jitter_ms: u64) -> Self {
        self.jitter = Duration::from_millis(jitter_ms);
        self
    }
}

impl Default for NetProfile {
    fn default() -> Self {
        Self::new(10, None)
    }
}

/// How to build an engine node.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub net: NetProfile,
    /// `peer_id`, `rng_seed` and `listen_port` are overwritten by the simulator.
    pub config: Config,
    /// Starts with every piece verified.
    pub seeder: bool,
    /// Time the simulated disk spends on each `VerifyPiece` (one piece at a time).
    pub verify_delay: Duration,
    /// Time each `ReadBlock` takes.
    pub read_delay: Duration,
    /// Keep verified pieces in a slot of this RAM cache (which evicts) instead of keeping
    /// every piece; several nodes may share one cache, as torrents of one server do.
    pub ram: Option<Arc<RamCache>>,
}

impl EngineSpec {
    pub fn leecher(net: NetProfile) -> Self {
        Self {
            net,
            config: Config::default(),
            seeder: false,
            verify_delay: Duration::ZERO,
            read_delay: Duration::ZERO,
            ram: None,
        }
    }
    pub fn seeder(net: NetProfile) -> Self {
        Self { seeder: true, ..Self::leecher(net) }
    }
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
    pub fn ram(mut self, cache: Arc<RamCache>) -> Self {
        self.ram = Some(cache);
        self
    }
}

/// Limits and switches of a run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Events processed at most before the run fails (livelock guard).
    pub max_steps: u64,
    /// Simulated time at most before the run fails.
    pub max_time: Duration,
    /// Events at one instant at most (a timer that never advances).
    pub max_steps_per_instant: u64,
    /// Decode every byte engines send and count messages (and fail on malformed output).
    pub sniff: bool,
    /// Call `Torrent::check_invariants` after every n-th input of a node (1 = every input).
    pub invariant_interval: u64,
    /// Sample `Torrent::stats` after every input.
    pub sample_stats: bool,
    /// Largest chunk bytes are delivered in; chunks are sometimes cut shorter at random.
    pub max_chunk: usize,
    /// Print connection lifecycle, faults and engine events to stderr.
    pub log: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            max_steps: 20_000_000,
            max_time: Duration::from_secs(3600),
            max_steps_per_instant: 1_000_000,
            sniff: true,
            invariant_interval: 1,
            sample_stats: true,
            max_chunk: 16 * 1024,
            log: false,
        }
    }
}

/// A run that did not reach its goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub seed: u64,
    pub at: Timestamp,
    pub steps: u64,
    pub what: String,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at t={:?} after {} steps; reproduce with seed={}",
            self.what,
            self.at.saturating_since(Timestamp::ZERO),
            self.steps,
            self.seed
        )
    }
}

impl std::error::Error for SimError {}

#[derive(Debug)]
struct Store {
    content: Rc<Content>,
    have: Bitfield,
    /// `None` for a seeder: it reads straight from the content.
    bytes: Option<Vec<u8>>,
    ram: Option<RamSlot>,
}

#[derive(Debug)]
struct RamSlot {
    store: RamStore,
    /// Pieces the cache let go and the engine was not told of yet.
    evicted: Arc<EvictionLog>,
    /// `Torrent::reprioritised` when the cache was last told what to keep.
    retained_at: Option<u64>,
    scratch: Vec<u8>,
}

#[derive(Debug, Default)]
struct EvictionLog(Mutex<Vec<PieceIndex>>);

impl CacheEvents for EvictionLog {
    fn stored(&self, _piece: PieceIndex) {}
    fn evicted(&self, piece: PieceIndex) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(piece);
    }
}

impl EvictionLog {
    fn take(&self) -> Vec<PieceIndex> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
    fn contains(&self, piece: PieceIndex) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).contains(&piece)
    }
}

impl Store {
    fn read(&mut self, block: BlockRef) -> Option<&[u8]> {
        if !self.have.get(block.piece) {
            return None;
        }
        if let Some(ram) = &mut self.ram {
            ram.scratch.resize(block.len as usize, 0);
            return ram.store.read(block, &mut ram.scratch).is_ok().then_some(&ram.scratch[..]);
        }
        let Some(bytes) = &self.bytes else {
            return Some(self.content.block(block));
        };
        let start = self.content.lengths.piece_start(block.piece).0 as usize + block.offset as usize;
        Some(&bytes[start..start + block.len as usize])
    }

    /// Stores a verified piece; false if a RAM cache had no room for it.
    fn write(&mut self, piece: PieceIndex, data: &[u8]) -> bool {
        if let Some(ram) = &self.ram {
            if ram.store.write_piece(piece, data).is_err() || !ram.store.holds(piece) {
                return false;
            }
        } else if let Some(bytes) = &mut self.bytes {
            let start = self.content.lengths.piece_start(piece).0 as usize;
            bytes[start..start + data.len()].copy_from_slice(data);
        }
        self.have.set(piece);
        true
    }

    /// The stored piece's bytes equal the content's (one a RAM slot evicted is not stored).
    fn matches(&self, piece: PieceIndex) -> bool {
        let want = self.content.piece(piece);
        if let Some(ram) = &self.ram {
            let mut got = vec![0; want.len()];
            let block = BlockRef { piece, offset: 0, len: want.len() as u32 };
            return ram.store.read(block, &mut got).is_err_and(|e| e.is_missing()) || got[..] == *want;
        }
        let Some(bytes) = &self.bytes else {
            return true;
        };
        let start = self.content.lengths.piece_start(piece).0 as usize;
        bytes[start..start + want.len()] == *want
    }
}

#[derive(Debug)]
struct EngineNode {
    torrent: Torrent,
    store: Store,
    /// Live keys: the connection and which of its ends is ours.
    keys: HashMap<PeerKey, (ConnId, usize)>,
    /// Outbound attempts that will fail.
    failing: HashSet<PeerKey>,
    /// The engine's latest `poll_timeout`.
    timeout: Option<Timestamp>,
    /// Earliest wake-up event in the queue. A later timeout needs no new event: the wake-up
    /// re-arms itself when it fires early.
    wakeup: Option<Timestamp>,
    verify_delay: Duration,
    read_delay: Duration,
    disk_busy: Timestamp,
    inputs: u64,
    metrics: NodeMetrics,
}

enum NodeKind {
    Engine(Box<EngineNode>),
    Script(Box<dyn Script>),
}

impl fmt::Debug for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeKind::Engine(_) => f.write_str("Engine"),
            NodeKind::Script(s) => write!(f, "Script({s:?})"),
        }
    }
}

#[derive(Debug)]
struct Node {
    addr: SocketAddr,
    net: NetProfile,
    up_busy: Timestamp,
    online: bool,
    kind: NodeKind,
}

#[derive(Debug)]
struct End {
    node: NodeId,
    key: Option<PeerKey>,
    open: bool,
    /// Address of the other side as this end sees it.
    remote: SocketAddr,
    /// Inbound bytes held until the handshake names the torrent.
    pending: Vec<u8>,
}

#[derive(Debug)]
struct Sniffer {
    decoder: Decoder,
    handshaken: bool,
}

#[derive(Debug)]
struct Conn {
    /// `ends[0]` opened the connection. Direction `d` carries bytes from `ends[d]`.
    ends: [End; 2],
    established: bool,
    /// Reset by a fault: nothing more is delivered.
    dead: bool,
    last_arrival: [Timestamp; 2],
    /// Bytes transmitted and not yet sent, per direction.
    queued: [u64; 2],
    sniff: [Option<Sniffer>; 2],
}

#[derive(Debug)]
enum Ev {
    Timer { node: NodeId },
    Connected { conn: ConnId },
    ConnectFailed { node: NodeId, key: PeerKey },
    Arrive { conn: ConnId, dir: usize, data: Vec<u8> },
    Sent { conn: ConnId, dir: usize, bytes: usize },
    CloseEnd { conn: ConnId, end: usize },
    Drop { a: NodeId, b: NodeId },
    Online { node: NodeId, online: bool },
    PieceChecked { node: NodeId, piece: PieceIndex, data: Vec<u8> },
    BlockRead { node: NodeId, key: PeerKey, block: BlockRef },
    ScriptTimer { node: NodeId, conn: ConnId },
}

impl Ev {
    fn tag(&self) -> u64 {
        match self {
            Ev::Timer { node } => 1 | (node.0 as u64) << 8,
            Ev::Connected { conn } => 2 | conn.0 << 8,
            Ev::ConnectFailed { node, .. } => 3 | (node.0 as u64) << 8,
            Ev::Arrive { conn, dir, data } => 4 | (*dir as u64) << 4 | conn.0 << 8 | (data.len() as u64) << 32,
            Ev::Sent { conn, dir, bytes } => 5 | (*dir as u64) << 4 | conn.0 << 8 | (*bytes as u64) << 32,
            Ev::CloseEnd { conn, end } => 6 | (*end as u64) << 4 | conn.0 << 8,
            Ev::Drop { a, b } => 7 | (a.0 as u64) << 8 | (b.0 as u64) << 32,
            Ev::Online { node, online } => 8 | u64::from(*online) << 4 | (node.0 as u64) << 8,
            Ev::PieceChecked { node, piece, .. } => 9 | (node.0 as u64) << 8 | u64::from(piece.get()) << 32,
            Ev::BlockRead { node, block, .. } => 10 | (node.0 as u64) << 8 | u64::from(block.piece.get()) << 32,
            Ev::ScriptTimer { node, conn } => 11 | (node.0 as u64) << 8 | conn.0 << 32,
        }
    }
}

/// A queue entry: time, scheduling order, and the slot holding the event. Payloads live in
/// a slab so that heap moves stay small.
type Scheduled = Reverse<(Timestamp, u64, u32)>;

/// A deterministic swarm: see the crate documentation.
#[derive(Debug)]
pub struct Sim {
    seed: u64,
    cfg: SimConfig,
    now: Timestamp,
    rng: SmallRng,
    queue: BinaryHeap<Scheduled>,
    slots: Vec<Option<Ev>>,
    free_slots: Vec<u32>,
    seq: u64,
    steps: u64,
    steps_this_instant: u64,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, NodeId>,
    conns: Vec<Option<Conn>>,
    trace: u64,
    events: Vec<(Timestamp, NodeId, Event)>,
    messages: BTreeMap<(NodeId, NodeId), MessageCounts>,
    completions: u64,
    outputs: Vec<Output>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const LISTEN_PORT: u16 = 6881;

impl Sim {
    pub fn new(seed: u64, cfg: SimConfig) -> Self {
        Self {
            seed,
            cfg,
            now: Timestamp::ZERO,
            rng: SmallRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            steps: 0,
            steps_this_instant: 0,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            conns: Vec::new(),
            trace: FNV_OFFSET,
            events: Vec::new(),
            messages: BTreeMap::new(),
            completions: 0,
            outputs: Vec::new(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_since(Timestamp::ZERO)
    }
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Hash of every event processed and every engine output, in order, with their times.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    // ---- building the swarm ----

    fn next_addr(&self) -> SocketAddr {
        let n = self.nodes.len();
        let ip = Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250) as u8 + 2);
        SocketAddr::V4(SocketAddrV4::new(ip, LISTEN_PORT))
    }

    fn push_node(&mut self, net: NetProfile, kind: NodeKind) -> NodeId {
        let addr = self.next_addr();
        let id = NodeId(self.nodes.len());
        self.nodes.push(Node { addr, net, up_busy: Timestamp::ZERO, online: true, kind });
        self.by_addr.insert(addr, id);
        id
    }

    /// Adds an engine serving `content`.
    pub fn add_engine(&mut self, content: &Rc<Content>, spec: EngineSpec) -> NodeId {
        let pieces = content.lengths.num_pieces();
        let have = if spec.seeder { Bitfield::full(pieces) } else { Bitfield::new(pieces) };
        let mut config = spec.config;
        config.peer_id = PeerId::sluice(self.rng.random());
        config.rng_seed = self.rng.random();
        config.listen_port = Some(LISTEN_PORT);
        let torrent = Torrent::new(content.info_hash, content.lengths, have.clone(), config, self.now);
        let ram = spec.ram.filter(|_| !spec.seeder).map(|cache| {
            let evicted = Arc::new(EvictionLog::default());
            let store = cache.store(content.lengths, evicted.clone());
            RamSlot { store, evicted, retained_at: None, scratch: Vec::new() }
        });
        let bytes = (!spec.seeder && ram.is_none()).then(|| vec![0u8; content.data.len()]);
        let engine = EngineNode {
            torrent,
            store: Store { content: Rc::clone(content), have, bytes, ram },
            keys: HashMap::new(),
            failing: HashSet::new(),
            timeout: None,
            wakeup: None,
            verify_delay: spec.verify_delay,
            read_delay: spec.read_delay,
            disk_busy: Timestamp::ZERO,
            inputs: 0,
            metrics: NodeMetrics::default(),
        };
        let id = self.push_node(spec.net, NodeKind::Engine(Box::new(engine)));
        self.after_mutation(id);
        id
    }

    /// Adds a scripted peer listening for connections.
    pub fn add_script(&mut self, net: NetProfile, script: Box<dyn Script>) -> NodeId {
        self.push_node(net, NodeKind::Script(script))
    }

    pub fn addr(&self, node: NodeId) -> SocketAddr {
        self.nodes[node.0].addr
    }

    /// Tells engine `from` about `to`'s address (as a tracker would).
    pub fn introduce(&mut self, from: NodeId, to: NodeId) {
        let addr = self.addr(to);
        self.command(from, |t, now| t.add_peer(addr, now));
    }

    /// Runs a command on an engine and routes what it outputs.
    pub fn command<R>(&mut self, node: NodeId, f: impl FnOnce(&mut Torrent, Timestamp) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.engine_mut(node).torrent, now);
        self.after_mutation(node);
        r
    }

    /// Resets every connection between `a` and `b` at `at`: both sides see them closed.
    pub fn schedule_drop(&mut self, at: Duration, a: NodeId, b: NodeId) {
        self.schedule(Timestamp::ZERO + at, Ev::Drop { a, b });
    }

    /// Takes `node` off the network from `from` until `until`: its connections reset and
    /// connection attempts to it fail.
    pub fn schedule_offline(&mut self, node: NodeId, from: Duration, until: Duration) {
        self.schedule(Timestamp::ZERO + from, Ev::Online { node, online: false });
        self.schedule(Timestamp::ZERO + until, Ev::Online { node, online: true });
    }

    // ---- observing ----

    /// The scripted peer at `node`, if it is a `T`.
    pub fn script_as<T: Script>(&self, node: NodeId) -> Option<&T> {
        match &self.nodes[node.0].kind {
            NodeKind::Script(s) => (s.as_ref() as &dyn Any).downcast_ref(),
            NodeKind::Engine(_) => None,
        }
    }

    pub fn torrent(&self, node: NodeId) -> &Torrent {
        &self.engine(node).torrent
    }
    pub fn metrics(&self, node: NodeId) -> &NodeMetrics {
        &self.engine(node).metrics
    }
    /// Pieces the driver verified and stored for `node`.
    pub fn stored(&self, node: NodeId) -> &Bitfield {
        &self.engine(node).store.have
    }
    /// Whether every stored piece of `node` equals the source content, byte for byte.
    pub fn content_matches(&self, node: NodeId) -> bool {
        let store = &self.engine(node).store;
        store.have.iter_ones().all(|p| store.matches(p))
    }

    pub fn events(&self) -> &[(Timestamp, NodeId, Event)] {
        &self.events
    }
    pub fn events_of(&self, node: NodeId) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |(_, n, _)| *n == node).map(|(_, _, e)| e)
    }
    /// Messages engine `from` sent to `to` (needs [`SimConfig::sniff`]).
    pub fn messages(&self, from: NodeId, to: NodeId) -> MessageCounts {
        self.messages.get(&(from, to)).copied().unwrap_or_default()
    }
    /// Messages engine `from` sent to anyone.
    pub fn messages_from(&self, from: NodeId) -> MessageCounts {
        let mut total = MessageCounts::default();
        for (_, c) in self.messages.range((from, NodeId(0))..=(from, NodeId(usize::MAX))) {
            total += *c;
        }
        total
    }

    // ---- running ----

    /// Runs until `done` holds (checked after every event).
    pub fn run_until(&mut self, mut done: impl FnMut(&Sim) -> bool) -> Result<(), SimError> {
        while !done(self) {
            if !self.step()? {
                return Err(self.error("nothing left to simulate".into()));
            }
        }
        Ok(())
    }

    /// Runs until every engine in `nodes` reported `Event::Complete`.
    pub fn run_until_complete(&mut self, nodes: &[NodeId]) -> Result<(), SimError> {
        let mut seen = u64::MAX;
        self.run_until(|sim| {
            if sim.completions == seen {
                return false;
            }
            seen = sim.completions;
            nodes.iter().all(|&n| sim.metrics(n).completed_at.is_some())
        })
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        let end = self.now + d;
        while self.queue.peek().is_some_and(|s| s.0.0 <= end) {
            self.step()?;
        }
        self.now = self.now.max(end);
        Ok(())
    }

    /// Processes the earliest event. `Ok(false)` if none is left.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let Some(Reverse((at, _, slot))) = self.queue.pop() else {
            return Ok(false);
        };
        let ev = self.slots[slot as usize].take().expect("queued slot holds an event");
        self.free_slots.push(slot);
        if at > self.now {
            self.now = at;
            self.steps_this_instant = 0;
        }
        self.steps += 1;
        self.steps_this_instant += 1;
        if self.steps > self.cfg.max_steps {
            return Err(self.error(format!("step limit {} reached", self.cfg.max_steps)));
        }
        if self.elapsed() > self.cfg.max_time {
            return Err(self.error(format!("time limit {:?} reached", self.cfg.max_time)));
        }
        if self.steps_this_instant > self.cfg.max_steps_per_instant {
            return Err(self.error("livelock: time does not advance".into()));
        }
        self.mix(at.as_micros());
        self.mix(ev.tag());
        self.dispatch(ev);
        Ok(true)
    }

    fn error(&self, what: String) -> SimError {
        SimError { seed: self.seed, at: self.now, steps: self.steps, what }
    }

    /// Panics on a broken driving contract; that is an engine bug, not a run that failed.
    fn violation(&self, what: impl fmt::Display) -> ! {
        panic!("engine contract violation: {what} at t={:?}; reproduce with seed={}", self.elapsed(), self.seed)
    }

    fn log(&self, node: NodeId, what: fmt::Arguments<'_>) {
        if self.cfg.log {
            eprintln!("[{:>11.6}s] n{} {what}", self.elapsed().as_secs_f64(), node.0);
        }
    }

    fn mix(&mut self, word: u64) {
        for b in word.to_le_bytes() {
            self.trace = (self.trace ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    fn schedule(&mut self, at: Timestamp, ev: Ev) {
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.slots.push(Some(ev));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push(Reverse((at.max(self.now), self.seq, slot)));
    }

    fn engine(&self, node: NodeId) -> &EngineNode {
        match &self.nodes[node.0].kind {
            NodeKind::Engine(e) => e,
            NodeKind::Script(_) => panic!("node {node:?} is not an engine"),
        }
    }

    fn engine_mut(&mut self, node: NodeId) -> &mut EngineNode {
        match &mut self.nodes[node.0].kind {
            NodeKind::Engine(e) => e,
            NodeKind::Script(_) => panic!("node {node:?} is not an engine"),
        }
    }

    fn is_engine(&self, node: NodeId) -> bool {
        matches!(self.nodes[node.0].kind, NodeKind::Engine(_))
    }

    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    fn input(&mut self, node: NodeId, input: Input<'_>) {
        let now = self.now;
        self.engine_mut(node).torrent.handle_input(input, now);
        self.after_mutation(node);
    }

    /// Tells every engine whose RAM slot lost pieces (the driver's job in RAM mode).
    fn apply_evictions(&mut self) {
        for i in 0..self.nodes.len() {
            let NodeKind::Engine(e) = &mut self.nodes[i].kind else { continue };
            let Some(ram) = &e.store.ram else { continue };
            let gone: Vec<PieceIndex> = ram.evicted.take().into_iter().filter(|&p| !ram.store.holds(p)).collect();
            if gone.is_empty() {
                continue;
            }
            for &p in &gone {
                e.store.have.clear(p);
                e.metrics.evicted += 1;
            }
            let now = self.now;
            for p in gone {
                self.engine_mut(NodeId(i)).torrent.forget_piece(p, now);
                self.after_mutation(NodeId(i));
            }
        }
    }

    /// Checks invariants, samples stats, drains and routes outputs, re-arms the timer.
    fn after_mutation(&mut self, node: NodeId) {
        let interval = self.cfg.invariant_interval.max(1);
        let sample = self.cfg.sample_stats;
        let mut outputs = std::mem::take(&mut self.outputs);
        let NodeKind::Engine(e) = &mut self.nodes[node.0].kind else { unreachable!("engines only") };
        e.inputs += 1;
        if e.inputs % interval == 0 {
            e.torrent.check_invariants();
        }
        if let Some(ram) = &mut e.store.ram {
            let version = e.torrent.reprioritised();
            if ram.retained_at != Some(version) {
                ram.store.set_retained(e.torrent.retained().into_iter().map(|(r, tier)| (r, tier as u8)).collect());
                ram.retained_at = Some(version);
            }
            let used = ram.store.cache().stats().used;
            e.metrics.max_cache_bytes = e.metrics.max_cache_bytes.max(used);
        }
        if sample {
            let stats = e.torrent.stats();
            e.metrics.max_buffered_bytes = e.metrics.max_buffered_bytes.max(stats.buffered_bytes);
            e.metrics.endgame_seen |= stats.endgame;
        }
        while let Some(o) = e.torrent.poll_output() {
            outputs.push(o);
        }
        e.timeout = e.torrent.poll_timeout();
        if let Some(t) = e.timeout
            && e.wakeup.is_none_or(|w| t < w)
        {
            let at = t.max(self.now);
            e.wakeup = Some(at);
            self.schedule(at, Ev::Timer { node });
        }
        for o in outputs.drain(..) {
            self.route(node, o);
        }
        self.outputs = outputs;
    }

    fn route(&mut self, node: NodeId, output: Output) {
        match output {
            Output::Connect { peer, addr } => {
                self.mix(0x100 | peer.0 << 16);
                self.log(node, format_args!("connect {peer:?} to {addr}"));
                self.engine_mut(node).metrics.connects += 1;
                self.connect(node, peer, addr);
            }
            Output::Transmit { peer, data } => {
                self.mix(0x200 | peer.0 << 16 | (data.len() as u64) << 40);
                let Some(&(conn, end)) = self.engine(node).keys.get(&peer) else {
                    self.violation(format_args!("{node:?} transmits to unknown {peer:?}"))
                };
                let c = self.conn(conn).expect("live key has a connection");
                if !c.established {
                    self.violation(format_args!("{node:?} transmits to {peer:?} before Connected"));
                }
                self.transmit(conn, end, data);
            }
            Output::Disconnect { peer, reason } => {
                self.mix(0x300 | peer.0 << 16);
                self.log(node, format_args!("disconnect {peer:?}: {reason:?}"));
                let e = self.engine_mut(node);
                e.failing.remove(&peer);
                if let Some((conn, end)) = e.keys.remove(&peer) {
                    self.close_end(conn, end);
                }
            }
            Output::VerifyPiece { piece, data } => {
                self.mix(0x400 | u64::from(piece.get()) << 16);
                let now = self.now;
                let e = self.engine_mut(node);
                if data.len() != e.store.content.lengths.piece_len(piece) as usize {
                    let len = data.len();
                    self.violation(format_args!("{node:?} VerifyPiece {piece:?} with {len} bytes"));
                }
                e.metrics.verify_outstanding_bytes += data.len() as u64;
                e.metrics.max_verify_outstanding_bytes =
                    e.metrics.max_verify_outstanding_bytes.max(e.metrics.verify_outstanding_bytes);
                let done = e.disk_busy.max(now) + e.verify_delay;
                e.disk_busy = done;
                self.schedule(done, Ev::PieceChecked { node, piece, data });
            }
            Output::ReadBlock { peer, block } => {
                self.mix(0x500 | peer.0 << 16 | u64::from(block.piece.get()) << 40);
                let at = self.now + self.engine(node).read_delay;
                self.schedule(at, Ev::BlockRead { node, key: peer, block });
            }
            Output::Event(event) => self.event(node, event),
        }
    }

    fn event(&mut self, node: NodeId, event: Event) {
        let now = self.now;
        let e = self.engine_mut(node);
        let tag = match &event {
            Event::PieceVerified(p) => {
                let dropped = e.store.ram.as_ref().is_some_and(|r| r.evicted.contains(*p));
                if !e.store.have.get(*p) && !dropped {
                    self.violation(format_args!("{node:?} reports {p:?} verified; the driver never stored it"));
                }
                e.metrics.verified.push((*p, now));
                1 | u64::from(p.get()) << 8
            }
            Event::HashFailed { piece, .. } => 2 | u64::from(piece.get()) << 8,
            Event::PeerConnected { peer, .. } => 3 | peer.0 << 8,
            Event::PeerDisconnected { peer, .. } => 4 | peer.0 << 8,
            Event::PeerBanned { .. } => 5,
            Event::Complete => {
                if e.metrics.completed_at.is_none() {
                    e.metrics.completed_at = Some(now);
                }
                self.completions += 1;
                6
            }
        };
        self.mix(0x600 | tag << 16);
        if !matches!(event, Event::PieceVerified(_)) {
            self.log(node, format_args!("{event:?}"));
        }
        self.events.push((now, node, event));
    }

    fn connect(&mut self, node: NodeId, key: PeerKey, addr: SocketAddr) {
        let target = self.by_addr.get(&addr).copied().filter(|t| self.nodes[t.0].online);
        let src = &self.nodes[node.0];
        let Some(target) = target.filter(|_| src.online) else {
            let at = self.now + 2 * src.net.latency + Duration::from_millis(1);
            self.engine_mut(node).failing.insert(key);
            self.schedule(at, Ev::ConnectFailed { node, key });
            return;
        };
        let id = ConnId(self.conns.len() as u64);
        let ephemeral = SocketAddr::new(src.addr.ip(), 20_000 + (id.0 % 40_000) as u16);
        let rtt = 2 * (src.net.latency + self.nodes[target.0].net.latency);
        let sniff = |on: bool| on.then(|| Sniffer { decoder: Decoder::new(1 << 24), handshaken: false });
        self.conns.push(Some(Conn {
            ends: [
                End { node, key: Some(key), open: true, remote: addr, pending: Vec::new() },
                End { node: target, key: None, open: true, remote: ephemeral, pending: Vec::new() },
            ],
            established: false,
            dead: false,
            last_arrival: [Timestamp::ZERO; 2],
            queued: [0; 2],
            sniff: [sniff(self.cfg.sniff), sniff(self.cfg.sniff && self.is_engine(target))],
        }));
        self.engine_mut(node).keys.insert(key, (id, 0));
        self.schedule(self.now + rtt, Ev::Connected { conn: id });
    }

    fn transmit(&mut self, id: ConnId, dir: usize, data: Vec<u8>) {
        let now = self.now;
        let max_chunk = self.cfg.max_chunk.max(1);
        let Some(c) = self.conns.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        if c.dead || !c.ends[dir].open {
            return;
        }
        let (src, dst) = (c.ends[dir].node, c.ends[1 - dir].node);
        c.queued[dir] += data.len() as u64;
        let queued = c.queued[dir];
        if let NodeKind::Engine(e) = &mut self.nodes[src.0].kind {
            e.metrics.max_send_queue = e.metrics.max_send_queue.max(queued);
        }
        let c = self.conns[id.0 as usize].as_mut().expect("checked above");
        if let Some(s) = &mut c.sniff[dir] {
            s.decoder.push(&data);
            let counts = self.messages.entry((src, dst)).or_default();
            let mut bad = None;
            if !s.handshaken {
                match s.decoder.next_handshake() {
                    Ok(Some(_)) => s.handshaken = true,
                    Ok(None) => {}
                    Err(err) => bad = Some(err),
                }
            }
            while s.handshaken && bad.is_none() {
                match s.decoder.next_message() {
                    Ok(Some(msg)) => counts.count(&msg),
                    Ok(None) => break,
                    Err(err) => bad = Some(err),
                }
            }
            if let Some(err) = bad {
                self.violation(format_args!("{src:?} sent malformed bytes to {dst:?}: {err}"));
            }
        }
        let (up_rate, src_latency, src_jitter) = {
            let n = &self.nodes[src.0];
            (n.net.up_rate, n.net.latency, n.net.jitter)
        };
        let (dst_latency, dst_jitter) = (self.nodes[dst.0].net.latency, self.nodes[dst.0].net.jitter);
        let mut offset = 0;
        while offset < data.len() {
            let mut len = (data.len() - offset).min(max_chunk);
            if self.rng.random_ratio(1, 4) {
                len = self.rng.random_range(1..=len);
            }
            let chunk = data[offset..offset + len].to_vec();
            offset += len;
            let up = &mut self.nodes[src.0].up_busy;
            let serialise = up_rate.map_or(0, |r| (len as u64 * 1_000_000).div_ceil(r.max(1)));
            *up = (*up).max(now) + Duration::from_micros(serialise);
            let departed = *up;
            let jitter = jitter_sample(&mut self.rng, src_jitter) + jitter_sample(&mut self.rng, dst_jitter);
            let c = self.conns[id.0 as usize].as_mut().expect("checked above");
            let arrive = (departed + src_latency + dst_latency + jitter).max(c.last_arrival[dir]);
            c.last_arrival[dir] = arrive;
            self.schedule(departed, Ev::Sent { conn: id, dir, bytes: len });
            self.schedule(arrive, Ev::Arrive { conn: id, dir, data: chunk });
        }
    }

    /// End `end` closes its side; the other side learns after the bytes already sent.
    fn close_end(&mut self, id: ConnId, end: usize) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        c.ends[end].open = false;
        let other = 1 - end;
        if c.ends[other].open {
            let latency = self.nodes[c.ends[end].node.0].net.latency + self.nodes[c.ends[other].node.0].net.latency;
            let at = (now + latency).max(c.last_arrival[end]);
            self.schedule(at, Ev::CloseEnd { conn: id, end: other });
        } else {
            self.conns[id.0 as usize] = None;
        }
    }

    fn reset(&mut self, id: ConnId) {
        let Some(c) = self.conn(id) else { return };
        c.dead = true;
        let open = [c.ends[0].open, c.ends[1].open];
        for end in (0..2).filter(|&e| open[e]) {
            self.schedule(self.now, Ev::CloseEnd { conn: id, end });
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Timer { node } => {
                let now = self.now;
                let e = self.engine_mut(node);
                if e.wakeup != Some(now) {
                    return; // superseded by an earlier wake-up, which already ran
                }
                e.wakeup = None;
                match e.timeout {
                    Some(t) if t <= now => {
                        e.torrent.handle_timeout(now);
                        self.after_mutation(node);
                    }
                    Some(t) => {
                        e.wakeup = Some(t);
                        self.schedule(t, Ev::Timer { node });
                    }
                    None => {}
                }
            }
            Ev::Connected { conn } => {
                let Some(c) = self.conn(conn) else { return };
                if c.dead || !c.ends[0].open {
                    return;
                }
                c.established = true;
                let (a, key, b) = (c.ends[0].node, c.ends[0].key.expect("initiator has a key"), c.ends[1].node);
                if !self.is_engine(b) {
                    self.script(b, |s, io| s.on_open(io, conn));
                }
                self.input(a, Input::Connected { peer: key });
            }
            Ev::ConnectFailed { node, key } => {
                if self.engine_mut(node).failing.remove(&key) {
                    self.log(node, format_args!("connect {key:?} failed"));
                    self.input(node, Input::Closed { peer: key });
                }
            }
            Ev::Arrive { conn, dir, data } => self.arrive(conn, 1 - dir, data),
            Ev::Sent { conn, dir, bytes } => {
                let Some(c) = self.conn(conn) else { return };
                c.queued[dir] -= bytes as u64;
                if c.dead || !c.ends[dir].open {
                    return;
                }
                if let (Some(key), node) = (c.ends[dir].key, c.ends[dir].node)
                    && self.is_engine(node)
                {
                    self.input(node, Input::Sent { peer: key, bytes });
                }
            }
            Ev::CloseEnd { conn, end } => {
                let Some(c) = self.conn(conn) else { return };
                if !c.ends[end].open {
                    return;
                }
                c.ends[end].open = false;
                let (node, key) = (c.ends[end].node, c.ends[end].key);
                if !c.ends[1 - end].open {
                    self.conns[conn.0 as usize] = None;
                }
                if !self.is_engine(node) {
                    self.script(node, |s, io| s.on_closed(io, conn));
                } else if let Some(key) = key {
                    self.log(node, format_args!("{key:?} closed by the other side"));
                    self.engine_mut(node).keys.remove(&key);
                    self.input(node, Input::Closed { peer: key });
                }
            }
            Ev::Drop { a, b } => {
                self.log(a, format_args!("link to n{} drops", b.0));
                for id in self.conns_between(|x, y| (x == a && y == b) || (x == b && y == a)) {
                    self.reset(id);
                }
            }
            Ev::Online { node, online } => {
                self.log(node, format_args!("online: {online}"));
                self.nodes[node.0].online = online;
                if !online {
                    for id in self.conns_between(|x, y| x == node || y == node) {
                        self.reset(id);
                    }
                }
            }
            Ev::PieceChecked { node, piece, data } => {
                let e = self.engine_mut(node);
                let ok = e.store.content.verify(piece, &data);
                e.metrics.pieces_checked += 1;
                e.metrics.verify_outstanding_bytes -= data.len() as u64;
                if ok {
                    e.store.write(piece, &data);
                } else {
                    e.metrics.pieces_failed += 1;
                }
                self.input(node, Input::PieceChecked { piece, ok, buffer: data });
                self.apply_evictions();
            }
            Ev::BlockRead { node, key, block } => {
                let now = self.now;
                let e = self.engine_mut(node);
                let data = e.store.read(block);
                e.torrent.handle_input(Input::BlockRead { peer: key, block, data }, now);
                self.after_mutation(node);
            }
            Ev::ScriptTimer { node, conn } => self.script(node, |s, io| s.on_timer(io, conn)),
        }
    }

    fn conns_between(&self, pick: impl Fn(NodeId, NodeId) -> bool) -> Vec<ConnId> {
        let live = self.conns.iter().enumerate().filter_map(|(i, c)| c.as_ref().map(|c| (i, c)));
        live.filter(|(_, c)| !c.dead && pick(c.ends[0].node, c.ends[1].node)).map(|(i, _)| ConnId(i as u64)).collect()
    }

    fn arrive(&mut self, conn: ConnId, end: usize, data: Vec<u8>) {
        let Some(c) = self.conn(conn) else { return };
        if c.dead || !c.ends[end].open {
            return;
        }
        let node = c.ends[end].node;
        if !matches!(self.nodes[node.0].kind, NodeKind::Engine(_)) {
            self.script(node, |s, io| s.on_data(io, conn, &data));
            return;
        }
        let c = self.conn(conn).expect("checked above");
        if let Some(key) = c.ends[end].key {
            self.input(node, Input::Data { peer: key, bytes: &data });
            return;
        }
        // Inbound, not accepted yet: wait for the handshake to name the torrent.
        let e = &mut c.ends[end];
        e.pending.extend_from_slice(&data);
        if e.pending.len() < 48 {
            return;
        }
        let pending = std::mem::take(&mut e.pending);
        let remote = e.remote;
        let info_hash = self.engine(node).store.content.info_hash;
        if pending[..20] != *b"\x13BitTorrent protocol" || pending[28..48] != info_hash.0 {
            self.close_end(conn, end);
            return;
        }
        let key = self.command(node, |t, now| t.accept(remote, now));
        let Some(key) = key else {
            self.close_end(conn, end);
            return;
        };
        self.conn(conn).expect("still open").ends[end].key = Some(key);
        self.engine_mut(node).keys.insert(key, (conn, end));
        self.input(node, Input::Data { peer: key, bytes: &pending });
    }

    fn script(&mut self, node: NodeId, f: impl FnOnce(&mut dyn Script, &mut ScriptIo<'_>)) {
        let mut actions = Vec::new();
        {
            let NodeKind::Script(s) = &mut self.nodes[node.0].kind else { unreachable!("scripts only") };
            let mut io = ScriptIo { now: self.now, rng: &mut self.rng, actions: &mut actions };
            f(s.as_mut(), &mut io);
        }
        for action in actions {
            match action {
                ScriptAction::Send(conn, bytes) => {
                    if let Some(end) = self.script_end(node, conn) {
                        self.transmit(conn, end, bytes);
                    }
                }
                ScriptAction::Close(conn) => {
                    if let Some(end) = self.script_end(node, conn) {
                        self.close_end(conn, end);
                    }
                }
                ScriptAction::Timer(conn, after) => {
                    self.schedule(self.now + after, Ev::ScriptTimer { node, conn });
                }
            }
        }
    }

    fn script_end(&mut self, node: NodeId, conn: ConnId) -> Option<usize> {
        let c = self.conn(conn)?;
        (0..2).find(|&i| c.ends[i].node == node && c.ends[i].open)
    }
}

fn jitter_sample(rng: &mut SmallRng, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..=jitter.as_micros() as u64))
}
