//! Adding a torrent from a magnet link: a task drives the engine's sans-IO
//! [`MetadataFetcher`] over real sockets until the info dictionary is known and hashes to the
//! info-hash (hashed here, on the blocking pool), then starts the torrent like
//! `Session::add_torrent` and hands it every peer the fetch knew.
//!
//! Every peer source feeds the fetch: the link's `x.pe` peers, a tracker task announcing to
//! the link's `tr` trackers (and the session's extra ones, by its mode), DHT lookups and local
//! service discovery when the session has them, and inbound connections: the info-hash is
//! routed to the fetch until the torrent takes the route over, so peers that learnt of us
//! (from the same tracker, say) are served the handshake and asked for the dictionary too.
//! The tracker task is aborted, not stopped, when the torrent starts: the torrent's own task
//! announces right after, so no `stopped` goes out in between.
//!
//! The verified dictionary is saved as `<info-hash>.torrent` in the state folder (disk storage
//! only), with the link's trackers; adding the same magnet again, after a restart, starts from
//! that file instead of asking peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_core::InfoHash;
use sluice_core::magnet::Magnet;
use sluice_core::metainfo::Metainfo;
use sluice_engine::{FetchConfig, FetchInput, FetchOutput, MetadataFetcher, PeerKey};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::peer_conn::{PeerEvent, PeerIo, Setup, spawn_connect};
use crate::session::{AddTorrent, NodeError, Shared, StartMode, TorrentHandle};
use crate::torrent_task::{Command as Routed, Progress};
use crate::trackers::{self, TrackerTask};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `left` announced before the torrent's size is known: not zero, so trackers count a leecher.
const UNKNOWN_LEFT: u64 = 16 * 1024;

#[derive(Debug, Clone)]
pub struct AddMagnet {
    pub magnet: Magnet,
    /// As in [`AddTorrent`], for the torrent once its metadata is known.
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub mode: StartMode,
}

/// Where a magnet stands.
#[derive(Debug, Clone)]
pub enum MagnetState {
    /// Fetching: open connections, and bytes of the dictionary received out of its size
    /// (once a peer advertised one).
    Fetching {
        connections: usize,
        received: u64,
        size: Option<u32>,
    },
    Ready(TorrentHandle),
    /// The metadata hashed right but is not a usable torrent, storage failed, or the fetch
    /// was cancelled.
    Failed(String),
}

#[derive(Debug)]
enum Command {
    AddPeers(Vec<SocketAddr>),
    Cancel(oneshot::Sender<()>),
}

/// A magnet being resolved (and, once [`MagnetState::Ready`], its torrent).
#[derive(Debug, Clone)]
pub struct MagnetHandle {
    magnet: Magnet,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<MagnetState>,
}

impl MagnetHandle {
    pub fn info_hash(&self) -> InfoHash {
        self.magnet.info_hash
    }

    pub fn magnet(&self) -> &Magnet {
        &self.magnet
    }

    pub fn state(&self) -> MagnetState {
        self.state.borrow().clone()
    }

    /// The torrent, if its metadata is known.
    pub fn torrent(&self) -> Option<TorrentHandle> {
        match &*self.state.borrow() {
            MagnetState::Ready(t) => Some(t.clone()),
            _ => None,
        }
    }

    /// More peers to ask for the metadata (passed on to the torrent once it runs).
    pub async fn add_peers(&self, peers: Vec<SocketAddr>) -> Result<(), NodeError> {
        if let Some(t) = self.torrent() {
            return t.add_peers(peers).await;
        }
        self.commands.send(Command::AddPeers(peers)).await.map_err(|_| NodeError::Stopped)
    }

    /// Waits until the torrent runs (or the fetch failed).
    pub async fn wait(&self) -> Result<TorrentHandle, NodeError> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                MagnetState::Ready(t) => return Ok(t.clone()),
                MagnetState::Failed(e) => return Err(NodeError::Magnet(e.clone())),
                MagnetState::Fetching { .. } => {}
            }
            if state.changed().await.is_err() {
                return Err(NodeError::Stopped);
            }
        }
    }

    /// Stops fetching (a torrent already running is left alone: shut it down through its handle).
    pub async fn cancel(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Cancel(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) fn spawn(shared: Shared, add: AddMagnet) -> MagnetHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (state_tx, state_rx) = watch::channel(MagnetState::Fetching { connections: 0, received: 0, size: None });
    let handle = MagnetHandle { magnet: add.magnet.clone(), commands: cmd_tx, state: state_rx };
    tokio::spawn(async move {
        let hash = add.magnet.info_hash;
        if let Some(meta) = saved(&shared, &add).await {
            tracing::info!(info_hash = %hash, name = %meta.name, "metadata from the state folder");
            let peers = add.magnet.peers.clone();
            state_tx.send_replace(start_meta(&shared, add, meta, peers).await);
            return;
        }
        let state = match fetch(&shared, &add, cmd_rx, &state_tx).await {
            Some(fetched) => start(&shared, add, fetched).await,
            None => {
                shared.release(hash);
                MagnetState::Failed("cancelled".into())
            }
        };
        if let MagnetState::Failed(e) = &state {
            tracing::warn!(info_hash = %hash, error = %e, "magnet failed");
        }
        state_tx.send_replace(state);
    });
    handle
}

/// Builds the torrent from the verified dictionary and starts it with the fetch's peers.
async fn start(shared: &Shared, add: AddMagnet, (info, peers): (Vec<u8>, Vec<SocketAddr>)) -> MagnetState {
    let hash = add.magnet.info_hash;
    let meta = match Metainfo::from_info(&info, &add.magnet.trackers) {
        Ok(m) => m,
        Err(e) => {
            shared.release(hash);
            return MagnetState::Failed(format!("the metadata is not a usable torrent: {e}"));
        }
    };
    tracing::info!(info_hash = %hash, name = %meta.name, bytes = info.len(), "metadata fetched");
    if shared.config.ram.is_none() {
        save(&add.state_dir, &meta).await;
    }
    start_meta(shared, add, meta, peers).await
}

async fn start_meta(shared: &Shared, add: AddMagnet, meta: Metainfo, peers: Vec<SocketAddr>) -> MagnetState {
    let add = AddTorrent { meta, data_dir: add.data_dir, state_dir: add.state_dir, mode: add.mode };
    match shared.start(add).await {
        Ok(torrent) => {
            let _ = torrent.add_peers(peers).await;
            MagnetState::Ready(torrent)
        }
        Err(e) => MagnetState::Failed(e.to_string()),
    }
}

type Fetched = (Vec<u8>, Vec<SocketAddr>);

/// Where a magnet's fetched metadata is kept, beside the torrent's resume journal.
pub(crate) fn saved_torrent_path(state_dir: &Path, info_hash: &InfoHash) -> PathBuf {
    state_dir.join(format!("{}.torrent", info_hash.to_hex()))
}

/// Writes the torrent file next to the resume journal (through a temporary file, so a crash
/// never leaves half a file under the real name). A failure only costs a fetch next time.
async fn save(state_dir: &Path, meta: &Metainfo) {
    let path = saved_torrent_path(state_dir, &meta.info_hash);
    let tmp = path.with_extension("torrent.tmp");
    let bytes = meta.torrent_file();
    let written = async {
        tokio::fs::create_dir_all(state_dir).await?;
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, &path).await
    };
    if let Err(e) = written.await {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the fetched metadata");
    }
}

/// The metadata saved by an earlier fetch of this magnet, if it is there and hashes right.
async fn saved(shared: &Shared, add: &AddMagnet) -> Option<Metainfo> {
    if shared.config.ram.is_some() {
        return None;
    }
    let path = saved_torrent_path(&add.state_dir, &add.magnet.info_hash);
    let bytes = tokio::fs::read(&path).await.ok()?;
    match Metainfo::from_bytes(&bytes) {
        Ok(mut meta) if meta.info_hash == add.magnet.info_hash => {
            // The link being added now names the trackers (as when it was fetched).
            meta.trackers = add.magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
            Some(meta)
        }
        _ => {
            tracing::warn!(path = %path.display(), "ignoring a saved torrent that does not match its magnet");
            None
        }
    }
}

/// The fetch's other peer sources: its tracker task, DHT lookups and LSD announcements.
struct Sources {
    tracker: Option<(tokio::task::JoinHandle<()>, watch::Sender<Progress>)>,
    dht: Option<tokio::task::JoinHandle<()>>,
    lsd: bool,
}

impl Sources {
    async fn start(shared: &Shared, add: &AddMagnet, inbox: &mpsc::Sender<Routed>) -> Self {
        let hash = add.magnet.info_hash;
        let own: Vec<Vec<String>> = add.magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
        let tiers = trackers::tiers(&own, &shared.trackers(), shared.config.policy);
        let tracker = (!tiers.is_empty()).then(|| {
            let (progress_tx, progress) = watch::channel(Progress::default());
            let task = TrackerTask {
                announcer: trackers::schedule(&tiers, crate::random_seed(), &shared.clock),
                client: shared.tracker_client.clone(),
                clock: shared.clock,
                info_hash: hash,
                peer_id: shared.config.peer_id,
                listen: shared.listen_addr,
                key: shared.tracker_key,
                total_length: UNKNOWN_LEFT,
                progress,
                commands: inbox.downgrade(),
            };
            (tokio::spawn(task.run()), progress_tx)
        });
        let dht = match (shared.dht(), shared.listen_addr) {
            (Some(dht), Some(listen)) => {
                Some(tokio::spawn(crate::session::dht_lookups(dht.clone(), hash, listen.port(), inbox.clone())))
            }
            _ => None,
        };
        if let Some(lsd) = &shared.lsd {
            lsd.add(hash).await;
        }
        Self { tracker, dht, lsd: shared.lsd.is_some() }
    }

    /// The metadata is known: the torrent's own tasks take over (no `stopped` announce).
    fn hand_over(self) {
        if let Some((task, _)) = self.tracker {
            task.abort();
        }
        if let Some(dht) = self.dht {
            dht.abort();
        }
    }

    /// The fetch was given up: trackers hear `stopped` (the task ends with its progress).
    fn stop(self, shared: &Shared, info_hash: InfoHash) {
        if let Some(dht) = self.dht {
            dht.abort();
        }
        if let (true, Some(lsd)) = (self.lsd, &shared.lsd) {
            lsd.remove(info_hash);
        }
    }
}

fn add_peers(shared: &Shared, fetcher: &mut MetadataFetcher, addrs: &[SocketAddr]) {
    for a in shared.gate.filter(addrs.iter().copied()) {
        fetcher.add_peer(a, shared.clock.now());
    }
}

/// Runs the fetcher until the dictionary is verified (`Some`) or the fetch is cancelled
/// (also when every handle is dropped).
async fn fetch(
    shared: &Shared,
    add: &AddMagnet,
    mut commands: mpsc::Receiver<Command>,
    state: &watch::Sender<MagnetState>,
) -> Option<Fetched> {
    let clock = shared.clock;
    let config = FetchConfig {
        peer_id: shared.config.peer_id,
        listen_port: shared.listen_addr.map(|a| a.port()),
        client_name: shared.config.engine.client_name.clone(),
        ..FetchConfig::default()
    };
    let mut fetcher = MetadataFetcher::new(add.magnet.info_hash, config);
    let (events_tx, mut events_rx) = mpsc::channel::<PeerEvent>(64);
    let (hashed_tx, mut hashed_rx) = mpsc::unbounded_channel::<(bool, Vec<u8>)>();
    let mut peers: HashMap<PeerKey, PeerIo> = HashMap::new();
    let mut dialing: HashMap<PeerKey, AbortHandle> = HashMap::new();
    let mut verified: Option<Vec<u8>> = None;
    add_peers(shared, &mut fetcher, &add.magnet.peers);
    let hash = add.magnet.info_hash;
    let (inbox_tx, mut inbox) = mpsc::channel::<Routed>(64);
    shared.route(hash, inbox_tx.clone());
    let sources = Sources::start(shared, add, &inbox_tx).await;
    drop(inbox_tx);
    let (mut learnt, mut connected) = (false, false);
    let cancelled = |sources: Sources| {
        sources.stop(shared, hash);
        None
    };

    loop {
        while let Some(out) = fetcher.poll_output() {
            match out {
                FetchOutput::Connect { peer, addr } => {
                    if shared.gate.allows(&addr) {
                        let dialer = shared.dialer.clone();
                        let dial = spawn_connect(peer, addr, &shared.slots, dialer, CONNECT_TIMEOUT, events_tx.clone());
                        dialing.insert(peer, dial);
                    } else {
                        fetcher.handle_input(FetchInput::Closed { peer }, clock.now());
                    }
                }
                FetchOutput::Transmit { peer, data } => {
                    if let Some(io) = peers.get(&peer)
                        && !io.send(data)
                    {
                        peers.remove(&peer);
                        fetcher.handle_input(FetchInput::Closed { peer }, clock.now());
                    }
                }
                FetchOutput::Disconnect { peer, reason } => {
                    tracing::debug!(?peer, ?reason, "metadata peer disconnected");
                    peers.remove(&peer);
                    if let Some(dial) = dialing.remove(&peer) {
                        dial.abort();
                    }
                }
                FetchOutput::VerifyMetadata { data } => {
                    let (tx, hash) = (hashed_tx.clone(), add.magnet.info_hash);
                    tokio::task::spawn_blocking(move || {
                        let ok = sluice_storage::piece_matches(&data, &hash.0);
                        let _ = tx.send((ok, data));
                    });
                }
                FetchOutput::Banned { addr } => {
                    tracing::warn!(%addr, "peer banned: its metadata does not hash to the info-hash");
                }
            }
        }
        if let Some(info) = verified.take() {
            sources.hand_over();
            return Some((info, fetcher.peers()));
        }
        let (received, size) = fetcher.progress();
        state.send_replace(MagnetState::Fetching { connections: fetcher.connections(), received, size });
        let wake = fetcher.poll_timeout().map_or(Instant::now() + Duration::from_secs(3600), |t| clock.instant(t));
        tokio::select! {
            Some(ev) = events_rx.recv() => {
                let now = clock.now();
                match ev {
                    PeerEvent::Connected { peer, addr, dialled, slot } => {
                        if dialing.remove(&peer).is_none() {
                            continue;
                        }
                        if !std::mem::replace(&mut connected, true) {
                            tracing::info!(info_hash = %hash, "magnet: first metadata peer connected");
                        }
                        let setup = Setup::Dialled {
                            dialled,
                            addr,
                            dialer: shared.dialer.clone(),
                            info_hash: add.magnet.info_hash,
                            encryption: shared.config.encryption,
                        };
                        peers.insert(peer, PeerIo::spawn(peer, slot, setup, events_tx.clone()));
                        fetcher.handle_input(FetchInput::Connected { peer }, now);
                    }
                    PeerEvent::Data { peer, bytes } => {
                        if peers.contains_key(&peer) {
                            fetcher.handle_input(FetchInput::Data { peer, bytes: &bytes }, now);
                        }
                    }
                    PeerEvent::Sent { .. } => {}
                    PeerEvent::Closed { peer } => {
                        dialing.remove(&peer);
                        peers.remove(&peer);
                        fetcher.handle_input(FetchInput::Closed { peer }, now);
                    }
                }
            }
            Some((ok, data)) = hashed_rx.recv() => {
                if !ok {
                    tracing::warn!(bytes = data.len(), "fetched metadata does not hash to the info-hash; discarded");
                } else {
                    verified = Some(data);
                }
                fetcher.handle_input(FetchInput::MetadataChecked { ok }, clock.now());
            }
            Some(routed) = inbox.recv() => match routed {
                Routed::AddPeers(addrs) => {
                    if !std::mem::replace(&mut learnt, true) {
                        tracing::info!(info_hash = %hash, peers = addrs.len(), "magnet: first peers learnt");
                    }
                    add_peers(shared, &mut fetcher, &addrs);
                }
                Routed::Incoming { stream, slot, addr, head, cipher } => {
                    let now = clock.now();
                    if let Some(peer) = fetcher.accept(addr, now) {
                        if !std::mem::replace(&mut connected, true) {
                            tracing::info!(info_hash = %hash, "magnet: first metadata peer connected");
                        }
                        peers.insert(peer, PeerIo::spawn(peer, slot, Setup::Accepted { stream, cipher }, events_tx.clone()));
                        fetcher.handle_input(FetchInput::Data { peer, bytes: &head }, now);
                    }
                }
                Routed::Shutdown(reply) => {
                    let _ = reply.send(());
                }
                _ => {}
            },
            cmd = commands.recv() => match cmd {
                Some(Command::AddPeers(addrs)) => add_peers(shared, &mut fetcher, &addrs),
                Some(Command::Cancel(reply)) => {
                    fetcher.shutdown(clock.now());
                    let _ = reply.send(());
                    return cancelled(sources);
                }
                None => return cancelled(sources),
            },
            _ = tokio::time::sleep_until(wake.into()) => fetcher.handle_timeout(clock.now()),
        }
    }
}
