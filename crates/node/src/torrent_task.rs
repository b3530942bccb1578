//! The task that owns one torrent's engine and carries out its outputs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::metainfo::Metainfo;
use sluice_core::{BlockRef, PieceIndex};
use sluice_engine::{Event, Input, Output, PeerKey, ReaderId, Stats, Torrent};
use sluice_mse::Cipher;
use sluice_storage::{PieceStore, RamStore, Resume};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::limits::{Gate, Slot, Slots};
use crate::peer_conn::{PeerEvent, PeerIo, Setup, spawn_connect};
use crate::transport::{Dialer, PeerStream};
use crate::{Clock, Encryption};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress snapshot is refreshed at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often written data is flushed and the resume journal compacted (when anything changed).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// Peer events queued for the torrent task at most (each holds at most one 64 KiB read), so a
/// busy task holds at most a few MiB of unread input before TCP pushes back on the peers.
const EVENT_QUEUE: usize = 128;

/// What a torrent's watchers see.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub stats: Stats,
    pub complete: bool,
    /// A local failure (disk) that stopped the torrent.
    pub error: Option<String>,
}

#[derive(Debug)]
pub(crate) enum Command {
    AddPeers(Vec<SocketAddr>),
    /// An inbound connection whose handshake (already read, in `head`, decrypted) names this
    /// torrent; `cipher` when it negotiated RC4.
    Incoming {
        stream: PeerStream,
        slot: Slot,
        addr: SocketAddr,
        head: Vec<u8>,
        cipher: Option<Box<Cipher>>,
    },
    Shutdown(oneshot::Sender<()>),
    /// Streaming readers (see `sluice_engine::Torrent::open_reader`): `file` is the file's
    /// range in the content stream, offsets are relative to the file.
    OpenReader {
        file: std::ops::Range<u64>,
        offset: u64,
        reply: oneshot::Sender<ReaderId>,
    },
    ReaderAt {
        id: ReaderId,
        offset: u64,
    },
    ReaderBitrate {
        id: ReaderId,
        bytes_per_sec: u64,
    },
    ReaderProtect {
        id: ReaderId,
        ranges: Vec<std::ops::Range<u64>>,
    },
    CloseReader {
        id: ReaderId,
    },
    /// See `sluice_engine::Torrent::cap_download`.
    CapDownload(Option<u64>),
    /// The session's shared limits changed rate: see
    /// `sluice_engine::Torrent::shared_limits_changed`.
    SharedLimitsChanged,
    /// See `sluice_engine::Torrent::set_max_peers`.
    SetMaxPeers(usize),
}

/// Results of blocking work.
enum Done {
    Checked { piece: PieceIndex, ok: bool, buffer: Vec<u8> },
    Read { peer: PeerKey, block: BlockRef, data: Option<Vec<u8>> },
    Failed(String),
}

pub(crate) struct TorrentTask {
    pub(crate) engine: Torrent,
    pub(crate) clock: Clock,
    pub(crate) gate: Gate,
    pub(crate) slots: Slots,
    pub(crate) encryption: Encryption,
    pub(crate) dialer: Dialer,
    pub(crate) meta: Arc<Metainfo>,
    pub(crate) store: Arc<dyn PieceStore>,
    /// The crash-safe journal of verified pieces; `None` in RAM mode (nothing survives).
    pub(crate) resume: Option<Arc<Mutex<Resume>>>,
    /// RAM mode: the cache slot `store` is, told what readers need kept.
    pub(crate) ram: Option<Arc<RamStore>>,
    /// RAM mode: pieces the cache evicted (or dropped instead of storing).
    pub(crate) evicted: mpsc::UnboundedReceiver<PieceIndex>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) progress: watch::Sender<Progress>,
    pub(crate) verified: Arc<crate::verified::Verified>,
}

struct Running {
    peers: HashMap<PeerKey, PeerIo>,
    /// Dials under way (or waiting for a slot of the session's limits).
    connecting: HashMap<PeerKey, AbortHandle>,
    events_tx: mpsc::Sender<PeerEvent>,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Blocking jobs (hash + write + journal, reads, checkpoints); awaited on shutdown so no
    /// verified piece is lost.
    jobs: JoinSet<()>,
    error: Option<String>,
    complete: bool,
    /// `Torrent::reprioritised` when the RAM cache was last told what to keep.
    retained_at: Option<u64>,
    /// A piece was verified in this run (its first one is logged: time to first byte).
    verified_one: bool,
}

impl TorrentTask {
    pub(crate) async fn run(mut self) {
        let (events_tx, mut events_rx) = mpsc::channel::<PeerEvent>(EVENT_QUEUE);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut r = Running {
            peers: HashMap::new(),
            connecting: HashMap::new(),
            events_tx,
            done_tx,
            jobs: JoinSet::new(),
            error: None,
            complete: self.engine.is_complete(),
            retained_at: None,
            verified_one: false,
        };
        let mut next_progress = Instant::now();
        let mut next_checkpoint = Instant::now() + CHECKPOINT_EVERY;
        let mut shutdown_reply = None;

        loop {
            self.drain(&mut r);
            self.publish_retained(&mut r);
            while r.jobs.try_join_next().is_some() {}
            let now = Instant::now();
            if now >= next_progress {
                self.publish(&r);
                next_progress = now + PROGRESS_EVERY;
            }
            if now >= next_checkpoint {
                self.checkpoint(&mut r);
                next_checkpoint = now + CHECKPOINT_EVERY;
            }
            if r.error.is_some() {
                break;
            }
            let wake = self
                .engine
                .poll_timeout()
                .map(|t| self.clock.instant(t))
                .unwrap_or(now + Duration::from_secs(3600))
                .min(next_progress.max(now + Duration::from_millis(1)))
                .min(next_checkpoint);
            tokio::select! {
                Some(ev) = events_rx.recv() => {
                    self.on_peer_event(&mut r, ev);
                    // Batch whatever else is already queued before draining outputs.
                    for _ in 0..64 {
                        match events_rx.try_recv() {
                            Ok(ev) => {
                                self.on_peer_event(&mut r, ev);
                                self.drain(&mut r);
                            }
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = done_rx.recv() => self.on_done(&mut r, done),
                Some(piece) = self.evicted.recv() => self.on_evicted(piece),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::AddPeers(addrs)) => {
                        let now = self.clock.now();
                        for a in self.gate.filter(addrs) {
                            self.engine.add_peer(a, now);
                        }
                    }
                    Some(Command::Incoming { stream, slot, addr, head, cipher }) => {
                        self.on_incoming(&mut r, stream, slot, addr, head, cipher);
                    }
                    Some(Command::OpenReader { file, offset, reply }) => {
                        let id = self.engine.open_reader(file, offset, self.clock.now());
                        let _ = reply.send(id);
                    }
                    Some(Command::ReaderAt { id, offset }) => self.engine.reader_seek(id, offset, self.clock.now()),
                    Some(Command::ReaderBitrate { id, bytes_per_sec }) => {
                        self.engine.set_bitrate(id, bytes_per_sec, self.clock.now());
                    }
                    Some(Command::ReaderProtect { id, ranges }) => self.engine.protect(id, &ranges, self.clock.now()),
                    Some(Command::CloseReader { id }) => self.engine.close_reader(id, self.clock.now()),
                    Some(Command::CapDownload(cap)) => self.engine.cap_download(cap, self.clock.now()),
                    Some(Command::SharedLimitsChanged) => self.engine.shared_limits_changed(self.clock.now()),
                    Some(Command::SetMaxPeers(n)) => self.engine.set_max_peers(n, self.clock.now()),
                    Some(Command::Shutdown(reply)) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = self.clock.now();
                    self.engine.handle_timeout(now);
                }
            }
        }

        self.engine.shutdown(self.clock.now());
        self.drain(&mut r);
        r.peers.clear();
        for dial in r.connecting.values() {
            dial.abort();
        }
        // Every piece handed to a worker is written and journaled before the final checkpoint.
        while r.jobs.join_next().await.is_some() {}
        self.checkpoint(&mut r);
        while r.jobs.join_next().await.is_some() {}
        while let Ok(done) = done_rx.try_recv() {
            if let Done::Failed(e) = done {
                r.error.get_or_insert(e);
            }
        }
        self.publish(&r);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn publish(&self, r: &Running) {
        let p = Progress { stats: self.engine.stats(), complete: r.complete, error: r.error.clone() };
        self.progress.send_replace(p);
    }

    /// Flushes written data, then compacts the journal to the pieces recorded before the flush
    /// began, so the snapshot never vouches for a piece recorded after. The journal is not held
    /// during the flush: an fsync can take seconds on a busy or slow disk, and verifications
    /// (and so readers waiting on them) would wait that long to record. Skipped when nothing
    /// was recorded since the last one.
    fn checkpoint(&self, r: &mut Running) {
        let Some(resume) = self.resume.clone() else {
            return;
        };
        let store = self.store.clone();
        let done = r.done_tx.clone();
        r.jobs.spawn_blocking(move || {
            let durable = {
                let j = resume.lock().unwrap_or_else(|p| p.into_inner());
                if j.records_since_compact() == 0 {
                    return;
                }
                // Each of these was written before it was recorded: the flush covers it.
                j.have().clone()
            };
            if let Err(e) = store.flush() {
                let _ = done.send(Done::Failed(format!("flushing data: {e}")));
                return;
            }
            let mut j = resume.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = j.compact_to(&durable) {
                tracing::warn!(error = %e, "compacting resume journal");
            }
        });
    }

    fn on_incoming(
        &mut self,
        r: &mut Running,
        stream: PeerStream,
        slot: Slot,
        addr: SocketAddr,
        head: Vec<u8>,
        cipher: Option<Box<Cipher>>,
    ) {
        let now = self.clock.now();
        let Some(peer) = self.engine.accept(addr, now) else {
            return;
        };
        r.peers.insert(peer, PeerIo::spawn(peer, slot, Setup::Accepted { stream, cipher }, r.events_tx.clone()));
        self.engine.handle_input(Input::Data { peer, bytes: &head }, now);
    }

    fn on_peer_event(&mut self, r: &mut Running, ev: PeerEvent) {
        let now = self.clock.now();
        match ev {
            PeerEvent::Connected { peer, addr, dialled, slot } => {
                if r.connecting.remove(&peer).is_some() {
                    let setup = Setup::Dialled {
                        dialled,
                        addr,
                        dialer: self.dialer.clone(),
                        info_hash: self.meta.info_hash,
                        encryption: self.encryption,
                    };
                    r.peers.insert(peer, PeerIo::spawn(peer, slot, setup, r.events_tx.clone()));
                    self.engine.handle_input(Input::Connected { peer }, now);
                }
            }
            PeerEvent::Data { peer, bytes } => {
                if r.peers.contains_key(&peer) {
                    self.engine.handle_input(Input::Data { peer, bytes: &bytes }, now);
                }
                // The engine may have dropped the peer meanwhile; then the buffer just goes.
                if let Some(io) = r.peers.get(&peer) {
                    io.recycle(bytes);
                }
            }
            PeerEvent::Sent { peer, bytes } => {
                if r.peers.contains_key(&peer) {
                    self.engine.handle_input(Input::Sent { peer, bytes }, now);
                }
            }
            PeerEvent::Closed { peer } => {
                let known = r.connecting.remove(&peer).is_some() || r.peers.remove(&peer).is_some();
                if known {
                    self.engine.handle_input(Input::Closed { peer }, now);
                }
            }
        }
    }

    fn on_done(&mut self, r: &mut Running, done: Done) {
        let now = self.clock.now();
        match done {
            Done::Checked { piece, ok, buffer } => {
                if !ok {
                    tracing::info!(%piece, "piece failed its hash check; fetching it again");
                } else if !r.verified_one {
                    r.verified_one = true;
                    tracing::info!(info_hash = %self.meta.info_hash, %piece, "first piece verified");
                }
                self.engine.handle_input(Input::PieceChecked { piece, ok, buffer }, now);
                // The RAM cache may have evicted it already (or had no room for it).
                if ok && !self.store.holds(piece) {
                    self.engine.forget_piece(piece, now);
                }
            }
            Done::Read { peer, block, data } => {
                if r.peers.contains_key(&peer) {
                    self.engine.handle_input(Input::BlockRead { peer, block, data: data.as_deref() }, now);
                }
            }
            Done::Failed(e) => {
                tracing::error!(error = %e, "storage failure; stopping the torrent");
                r.error = Some(e);
            }
        }
    }

    /// Carries out every pending output of the engine.
    fn drain(&mut self, r: &mut Running) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Connect { peer, addr } => {
                    if self.gate.allows(&addr) {
                        let dial = spawn_connect(
                            peer,
                            addr,
                            &self.slots,
                            self.dialer.clone(),
                            CONNECT_TIMEOUT,
                            r.events_tx.clone(),
                        );
                        r.connecting.insert(peer, dial);
                    } else {
                        self.engine.handle_input(Input::Closed { peer }, self.clock.now());
                    }
                }
                Output::Transmit { peer, data } => {
                    if let Some(io) = r.peers.get(&peer)
                        && !io.send(data)
                    {
                        tracing::warn!(?peer, "peer does not read what it asks for; dropping it");
                        r.peers.remove(&peer);
                        self.engine.handle_input(Input::Closed { peer }, self.clock.now());
                    }
                }
                Output::Disconnect { peer, reason } => {
                    tracing::debug!(?peer, ?reason, "disconnect");
                    r.peers.remove(&peer);
                    if let Some(dial) = r.connecting.remove(&peer) {
                        dial.abort();
                    }
                }
                Output::VerifyPiece { piece, data } => self.verify(r, piece, data),
                Output::ReadBlock { peer, block } => self.read(r, peer, block),
                Output::Event(ev) => self.on_event(r, ev),
            }
        }
    }

    fn on_event(&mut self, r: &mut Running, ev: Event) {
        match ev {
            Event::Complete => {
                r.complete = true;
                self.checkpoint(r);
                self.publish(r);
            }
            Event::PeerBanned { addr } => tracing::warn!(%addr, "peer banned after sending corrupt data"),
            Event::HashFailed { piece, peers } => tracing::info!(%piece, ?peers, "hash failure"),
            Event::PeerConnected { peer, addr } => tracing::debug!(?peer, %addr, "peer connected"),
            Event::PeerDisconnected { peer, reason } => tracing::debug!(?peer, ?reason, "peer disconnected"),
            // The engine reports a piece only after the driver wrote and journaled it. A RAM
            // cache sets readers' bits itself, as it stores and evicts.
            Event::PieceVerified(piece) if self.ram.is_none() => self.verified.set(piece),
            Event::PieceVerified(_) => {}
        }
    }

    fn verify(&self, r: &mut Running, piece: PieceIndex, data: Vec<u8>) {
        let expected = self.meta.piece_hashes[piece.as_usize()];
        let store = self.store.clone();
        let resume = self.resume.clone();
        let done = r.done_tx.clone();
        r.jobs.spawn_blocking(move || {
            let ok = sluice_storage::piece_matches(&data, &expected);
            if ok {
                if let Err(e) = store.write_piece(piece, &data) {
                    let _ = done.send(Done::Failed(format!("writing piece {piece}: {e}")));
                    return;
                }
                // Journal only after the write returned: the journal never vouches for bytes
                // that are not in the files.
                if let Some(resume) = resume {
                    let mut j = resume.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = j.record(piece) {
                        let _ = done.send(Done::Failed(format!("recording piece {piece}: {e}")));
                        return;
                    }
                }
            }
            let _ = done.send(Done::Checked { piece, ok, buffer: data });
        });
    }

    /// The RAM cache let `piece` go: unless it came back meanwhile, the engine fetches it
    /// again when a reader wants it.
    fn on_evicted(&mut self, piece: PieceIndex) {
        if !self.store.holds(piece) {
            self.engine.forget_piece(piece, self.clock.now());
        }
    }

    /// Tells the RAM cache what readers need, when that may have changed: O(readers) then,
    /// one comparison otherwise.
    fn publish_retained(&mut self, r: &mut Running) {
        let Some(ram) = &self.ram else {
            return;
        };
        let version = self.engine.reprioritised();
        if r.retained_at != Some(version) {
            ram.set_retained(self.engine.retained().into_iter().map(|(p, tier)| (p, tier as u8)).collect());
            r.retained_at = Some(version);
        }
    }

    fn read(&self, r: &mut Running, peer: PeerKey, block: BlockRef) {
        let store = self.store.clone();
        let done = r.done_tx.clone();
        let job = move || {
            let mut buf = vec![0u8; block.len as usize];
            let data = match store.read(block, &mut buf) {
                Ok(()) => Some(buf),
                // An evicted piece (RAM mode) is refused to the peer; that is no failure.
                Err(e) if e.is_missing() && !store.reads_block() => None,
                Err(e) => {
                    tracing::warn!(?block, error = %e, "read for upload failed");
                    None
                }
            };
            let _ = done.send(Done::Read { peer, block, data });
        };
        if self.store.reads_block() {
            r.jobs.spawn_blocking(job);
        } else {
            job();
        }
    }
}
