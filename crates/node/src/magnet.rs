//! Adding a torrent from a magnet link: a task drives the engine's sans-IO
//! [`MetadataFetcher`] over real sockets until the info dictionary is known and hashes to the
//! info-hash (hashed here, on the blocking pool), then starts the torrent like
//! `Session::add_torrent` and hands it every peer the fetch knew.
//!
//! The info-hash stays reserved in the session's routing table meanwhile, so the same
//! torrent cannot be added twice; inbound connections for it are refused until it starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_core::InfoHash;
use sluice_core::magnet::Magnet;
use sluice_core::metainfo::Metainfo;
use sluice_engine::{FetchConfig, FetchInput, FetchOutput, MetadataFetcher, PeerKey};
use tokio::sync::{mpsc, oneshot, watch};

use crate::Encryption;
use crate::peer_conn::{PeerEvent, PeerIo, Setup, spawn_connect};
use crate::session::{AddTorrent, NodeError, Shared, StartMode, TorrentHandle};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

fn add_peers(shared: &Shared, fetcher: &mut MetadataFetcher, addrs: &[SocketAddr]) {
    for &a in addrs {
        if shared.config.policy.allows(&a) {
            fetcher.add_peer(a, shared.clock.now());
        } else {
            tracing::warn!(addr = %a, "not dialling a non-loopback address (loopback-only)");
        }
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
        ..FetchConfig::default()
    };
    let mut fetcher = MetadataFetcher::new(add.magnet.info_hash, config);
    let (events_tx, mut events_rx) = mpsc::channel::<PeerEvent>(64);
    let (hashed_tx, mut hashed_rx) = mpsc::unbounded_channel::<(bool, Vec<u8>)>();
    let mut peers: HashMap<PeerKey, PeerIo> = HashMap::new();
    let mut verified: Option<Vec<u8>> = None;
    add_peers(shared, &mut fetcher, &add.magnet.peers);

    loop {
        while let Some(out) = fetcher.poll_output() {
            match out {
                FetchOutput::Connect { peer, addr } => spawn_connect(peer, addr, CONNECT_TIMEOUT, events_tx.clone()),
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
            return Some((info, fetcher.peers()));
        }
        let (received, size) = fetcher.progress();
        state.send_replace(MagnetState::Fetching { connections: fetcher.connections(), received, size });
        let wake = fetcher.poll_timeout().map_or(Instant::now() + Duration::from_secs(3600), |t| clock.instant(t));
        tokio::select! {
            Some(ev) = events_rx.recv() => {
                let now = clock.now();
                match ev {
                    PeerEvent::Connected { peer, stream } => {
                        let setup = match shared.config.encryption {
                            Encryption::Off => Setup::Ready(None),
                            encryption => Setup::Initiate { info_hash: add.magnet.info_hash, encryption },
                        };
                        peers.insert(peer, PeerIo::spawn(peer, stream, setup, events_tx.clone()));
                        fetcher.handle_input(FetchInput::Connected { peer }, now);
                    }
                    PeerEvent::Data { peer, bytes } => {
                        if peers.contains_key(&peer) {
                            fetcher.handle_input(FetchInput::Data { peer, bytes: &bytes }, now);
                        }
                    }
                    PeerEvent::Sent { .. } => {}
                    PeerEvent::Closed { peer } => {
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
            cmd = commands.recv() => match cmd {
                Some(Command::AddPeers(addrs)) => add_peers(shared, &mut fetcher, &addrs),
                Some(Command::Cancel(reply)) => {
                    fetcher.shutdown(clock.now());
                    let _ = reply.send(());
                    return None;
                }
                None => return None,
            },
            _ = tokio::time::sleep_until(wake.into()) => fetcher.handle_timeout(clock.now()),
        }
    }
}
