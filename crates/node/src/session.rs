//! The session: the listeners shared by all torrents (TCP, and uTP on the same port) and the
//! table that routes inbound connections to them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::blocklist::Blocklist;
use sluice_core::metainfo::Metainfo;
use sluice_core::{Bitfield, InfoHash, PeerId};
use sluice_dht::Dht;
use sluice_engine::{Config, SharedLimit, Torrent};
use sluice_lsd::{Lsd, LsdConfig};
use sluice_storage::{CacheEvents, FsStore, PieceStore, RamCache, RamStore, Resume};
use sluice_wire::Handshake;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::FileReader;
use crate::encryption::{self, PLAINTEXT_HEAD};
use crate::limits::{ConnectionLimits, Gate, Slot, Slots};
pub use crate::magnet::{AddMagnet, MagnetHandle, MagnetState};
use crate::streams::Streams;
pub use crate::torrent_task::Progress;
use crate::torrent_task::{Command, TorrentTask};
use crate::trackers::{self, TrackerSettings, TrackerTask};
use crate::transport::{Dialer, PeerStream};
use crate::verified::Verified;
use crate::{Clock, Encryption, NetPolicy};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{addr} is not a loopback address, and loopback-only is on")]
    NotLoopback { addr: SocketAddr },
    #[error("storage: {0}")]
    Storage(#[from] sluice_storage::StorageError),
    #[error("the torrent's file {} would be inside Sluice's state folder", .0.display())]
    IntoStateDir(PathBuf),
    #[error("torrent {0} is already added")]
    Duplicate(InfoHash),
    #[error("the session has stopped")]
    Stopped,
    #[error("magnet: {0}")]
    Magnet(String),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to accept peer connections; `None`: outbound only.
    pub listen: Option<SocketAddr>,
    pub policy: NetPolicy,
    pub peer_id: PeerId,
    /// Template for each torrent's engine (peer id, port and seed are filled in per torrent).
    pub engine: Config,
    /// RAM-only storage: every torrent keeps its verified pieces in this one cache (and
    /// `AddTorrent`'s folders and start mode are unused); `None`: files on disk.
    pub ram: Option<Arc<RamCache>>,
    /// Where torrents look for peers besides the ones given (private torrents never do).
    pub dht: Option<Arc<dyn Dht>>,
    /// Local Service Discovery (BEP 14) through the interface with this address; `None`: off.
    /// Needs `listen`. Multicast leaves loopback: keep it off under loopback-only except in
    /// a network namespace of its own.
    pub lsd: Option<Ipv4Addr>,
    /// Trackers announced to beside (or instead of) each torrent's own.
    pub trackers: TrackerSettings,
    /// MSE/PE for peer connections, both ways.
    pub encryption: Encryption,
    /// Ceilings on connections across all torrents (each torrent's engine has its own too).
    pub limits: ConnectionLimits,
    /// Addresses never dialled nor accepted, nor taken from trackers, the DHT or LSD.
    pub blocklist: Option<Arc<Blocklist>>,
    /// The HTTP `User-Agent` sent to trackers; `None`: Sluice's own. (What peers see is
    /// `peer_id` and `engine.client_name`.)
    pub tracker_user_agent: Option<String>,
    /// PEM certificates trusted for https trackers besides the system's roots.
    pub tracker_ca: Option<PathBuf>,
    /// Map the listen port on the network's gateway, through UPnP IGD and NAT-PMP (never under
    /// loopback-only, nor for a loopback listen address).
    pub port_mapping: bool,
    /// uTP (BEP 29) beside TCP: accepted on a UDP socket at the listen address, and raced
    /// against TCP when dialling (see `transport`). Needs the `utp` feature (a default one);
    /// without it, ignored with a warning.
    pub utp: bool,
}

impl SessionConfig {
    /// A session confined to loopback: it listens on 127.0.0.1 (a port the system picks), has a
    /// random peer id and the default engine, stores on disk, uses no DHT, no local discovery
    /// and no extra trackers, encrypts by `Encryption::Allow` (the default), and speaks uTP
    /// beside TCP when built with it. For tests and tools; change fields with struct update
    /// syntax.
    pub fn loopback() -> Self {
        Self {
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            policy: NetPolicy { loopback_only: true },
            peer_id: crate::random_peer_id(),
            engine: Config::default(),
            ram: None,
            dht: None,
            lsd: None,
            trackers: TrackerSettings::default(),
            encryption: Encryption::default(),
            limits: ConnectionLimits::default(),
            blocklist: None,
            tracker_user_agent: None,
            tracker_ca: None,
            port_mapping: false,
            utp: cfg!(feature = "utp"),
        }
    }
}

/// How a torrent learns which pieces it already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Trust the resume journal (pieces it lists were verified before being recorded).
    Resume,
    /// Hash every existing byte (for seeding a folder of data).
    Recheck,
}

#[derive(Debug, Clone)]
pub struct AddTorrent {
    pub meta: Metainfo,
    /// The folder the torrent's files live in.
    pub data_dir: PathBuf,
    /// Where the resume journal lives.
    pub state_dir: PathBuf,
    pub mode: StartMode,
}

/// Torrents by info-hash; `None` while a torrent is being added (its storage is opening).
type Routes = Arc<Mutex<HashMap<InfoHash, Option<mpsc::Sender<Command>>>>>;

#[derive(Debug)]
pub struct Session {
    shared: Shared,
    accept_task: Option<tokio::task::JoinHandle<()>>,
    /// Tells the port mapping task (if any) to remove its mappings and end.
    stop_portmap: watch::Sender<bool>,
    /// Stops the uTP socket's own tasks (and with them every uTP connection).
    #[cfg(feature = "utp")]
    utp_stop: Option<tokio_util::sync::CancellationToken>,
}

/// What adding a torrent needs, shared with the tasks that fetch magnets' metadata.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) config: SessionConfig,
    pub(crate) listen_addr: Option<SocketAddr>,
    routes: Routes,
    pub(crate) clock: Clock,
    pub(crate) gate: Gate,
    pub(crate) slots: Slots,
    pub(crate) lsd: Option<Arc<Lsd>>,
    pub(crate) tracker_client: Arc<sluice_tracker::client::Client>,
    /// BEP 7's `key`: the same for every announce of this session.
    pub(crate) tracker_key: u32,
    pub(crate) dialer: Dialer,
    /// What the `Session::set_*` methods change while torrents run.
    tunables: Arc<Mutex<Tunables>>,
    /// The session's download and upload limits, which all its torrents draw from together.
    download_limit: SharedLimit,
    upload_limit: SharedLimit,
}

/// The settings a running session may change: torrents started later take them, and
/// running ones are told those their engine can change (rate limits, peers per torrent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tunables {
    download_rate_limit: Option<u64>,
    upload_rate_limit: Option<u64>,
    max_peers: usize,
    tracker_mode: sluice_tracker::TrackerMode,
    dht: bool,
}

impl Session {
    pub async fn start(config: SessionConfig) -> Result<Self, NodeError> {
        let routes: Routes = Arc::default();
        let gate = Gate { policy: config.policy, blocklist: config.blocklist.clone() };
        let slots = Slots::new(config.limits);
        let mut listen_addr = None;
        let mut accept_task = None;
        if let Some(addr) = config.listen {
            if !config.policy.allows(&addr) {
                return Err(NodeError::NotLoopback { addr });
            }
            let listener = TcpListener::bind(addr).await.map_err(|source| NodeError::Listen { addr, source })?;
            let local = listener.local_addr().map_err(|source| NodeError::Listen { addr, source })?;
            listen_addr = Some(local);
            let accepting = accept_loop(listener, routes.clone(), gate.clone(), slots.clone(), config.encryption);
            accept_task = Some(tokio::spawn(accepting));
        }
        #[cfg(feature = "utp")]
        let (dialer, utp_stop) = if config.utp {
            let (dialer, stop) = start_utp(listen_addr, &routes, &gate, &slots, &config).await?;
            (dialer, Some(stop))
        } else {
            (Dialer::tcp(listen_addr.map(|a| a.ip())), None)
        };
        #[cfg(not(feature = "utp"))]
        let dialer = {
            if config.utp {
                tracing::warn!("uTP asked for, but this build has no uTP (the `utp` feature): TCP only");
            }
            Dialer::tcp(listen_addr.map(|a| a.ip()))
        };
        let lsd = match (config.lsd, listen_addr) {
            (Some(interface), Some(listen)) => {
                let lsd_config =
                    LsdConfig { interface, port: listen.port(), loopback_only: config.policy.loopback_only };
                let cookie = format!("sluice-{:016x}", crate::random_seed());
                let on_peer = lsd_router(routes.clone(), gate.clone());
                match Lsd::start(lsd_config, cookie, on_peer) {
                    Ok(lsd) => Some(lsd),
                    Err(e) => {
                        tracing::warn!(error = %e, "local service discovery could not start");
                        None
                    }
                }
            }
            _ => None,
        };
        let mut tracker_config = sluice_tracker::client::ClientConfig {
            loopback_only: config.policy.loopback_only,
            // Announce from the address peers are accepted on, so trackers record that one.
            bind_ip: listen_addr.map(|a| a.ip()).filter(|ip| !ip.is_unspecified()),
            ca_file: config.tracker_ca.clone(),
            ..Default::default()
        };
        if let Some(agent) = &config.tracker_user_agent {
            tracker_config.user_agent.clone_from(agent);
        }
        let tracker_client = Arc::new(sluice_tracker::client::Client::new(tracker_config));
        let (stop_portmap, portmap_stopped) = watch::channel(false);
        if let Some(listen) =
            listen_addr.filter(|_| crate::portmap::wanted(config.port_mapping, config.policy, listen_addr))
        {
            tokio::spawn(crate::portmap::run(listen, portmap_stopped));
        }
        let tracker_key = crate::random_seed() as u32;
        let clock = Clock::new();
        let download_limit = SharedLimit::new(config.engine.download_rate_limit, clock.now());
        let upload_limit = SharedLimit::new(config.engine.upload_rate_limit, clock.now());
        let tunables = Arc::new(Mutex::new(Tunables {
            download_rate_limit: config.engine.download_rate_limit,
            upload_rate_limit: config.engine.upload_rate_limit,
            max_peers: config.engine.max_peers,
            tracker_mode: config.trackers.mode,
            dht: true,
        }));
        let shared = Shared {
            config,
            listen_addr,
            routes,
            clock,
            gate,
            slots,
            lsd,
            tracker_client,
            tracker_key,
            download_limit,
            upload_limit,
            dialer,
            tunables,
        };
        Ok(Self {
            shared,
            accept_task,
            stop_portmap,
            #[cfg(feature = "utp")]
            utp_stop,
        })
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.shared.listen_addr
    }

    /// Whether torrents keep their verified pieces in files (with resume journals) rather
    /// than in the RAM cache, which forgets a torrent's pieces when it stops.
    pub fn stores_on_disk(&self) -> bool {
        self.shared.config.ram.is_none()
    }

    /// The session's HTTP/UDP tracker client, with its policy (loopback-only, bind address);
    /// the server fetches `.torrent` links through it too.
    pub fn http_client(&self) -> Arc<sluice_tracker::client::Client> {
        self.shared.tracker_client.clone()
    }

    /// Writes the DHT's routing table for the next start (if there is a DHT).
    pub async fn save_dht(&self) {
        if let Some(dht) = &self.shared.config.dht {
            dht.save().await;
        }
    }

    /// Opens storage, learns what is already verified and starts the torrent's task.
    /// Hashing (for [`StartMode::Recheck`]) runs on a blocking thread.
    pub async fn add_torrent(&self, add: AddTorrent) -> Result<TorrentHandle, NodeError> {
        self.shared.reserve(add.meta.info_hash)?;
        self.shared.start(add).await
    }

    /// Starts fetching a magnet's metadata from its `x.pe` peers, its trackers and the extra
    /// ones, the DHT and local discovery (when on), peers that connect to us, and any given
    /// later with [`MagnetHandle::add_peers`]; once it hashes to the info-hash, the torrent starts as if
    /// added with [`Session::add_torrent`] (trackers from the link), with every peer the
    /// fetch knew. Returns at once; [`MagnetHandle::wait`] waits for the torrent.
    pub fn add_magnet(&self, add: AddMagnet) -> Result<MagnetHandle, NodeError> {
        self.shared.reserve(add.magnet.info_hash)?;
        Ok(crate::magnet::spawn(self.shared.clone(), add))
    }

    /// Changes the session's download and upload limits (bytes per second, `None`:
    /// unlimited), which its torrents share: together they stay under them (a
    /// `sluice_engine::SharedLimit` each). Applies at once to running torrents; their
    /// connections and readers go on.
    pub async fn set_rate_limits(&self, download: Option<u64>, upload: Option<u64>) {
        self.shared.tune(|t| (t.download_rate_limit, t.upload_rate_limit) = (download, upload));
        let now = self.shared.clock.now();
        self.shared.download_limit.set_rate(download, now);
        self.shared.upload_limit.set_rate(upload, now);
        self.shared.tell_all(|| Command::SharedLimitsChanged).await;
    }

    /// Changes the peer connections per torrent (at least 1), running torrents included:
    /// those over a lowered limit drop their least useful peers.
    pub async fn set_peers_per_torrent(&self, max_peers: usize) {
        let max_peers = max_peers.max(1);
        self.shared.tune(|t| t.max_peers = max_peers);
        self.shared.tell_all(|| Command::SetMaxPeers(max_peers)).await;
    }

    /// How torrents (and magnets) started from now on combine the extra trackers with their
    /// own; running ones keep the list they started with.
    pub fn set_tracker_mode(&self, mode: sluice_tracker::TrackerMode) {
        self.shared.tune(|t| t.tracker_mode = mode);
    }

    /// Whether torrents started from now on look for peers in the DHT (when the session has
    /// one); running lookups go on until their torrent stops.
    pub fn set_dht_lookups(&self, on: bool) {
        self.shared.tune(|t| t.dht = on);
    }

    /// The download and upload limits and peers per torrent in force.
    pub fn limits(&self) -> (Option<u64>, Option<u64>, usize) {
        let t = self.shared.tunables();
        (t.download_rate_limit, t.upload_rate_limit, t.max_peers)
    }
}

impl Shared {
    fn tunables(&self) -> Tunables {
        self.tunables.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn tune(&self, change: impl FnOnce(&mut Tunables)) {
        change(&mut self.tunables.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Sends a command to every running torrent (magnet fetches ignore it: their torrent
    /// reads the tunables when it starts).
    async fn tell_all(&self, command: impl Fn() -> Command) {
        let senders: Vec<_> =
            self.routes.lock().unwrap_or_else(|p| p.into_inner()).values().flatten().cloned().collect();
        for tx in senders {
            let _ = tx.send(command()).await;
        }
    }

    /// The tracker settings for a torrent starting now.
    pub(crate) fn trackers(&self) -> TrackerSettings {
        TrackerSettings { mode: self.tunables().tracker_mode, ..self.config.trackers.clone() }
    }

    /// The DHT, if torrents starting now should use it.
    pub(crate) fn dht(&self) -> Option<&Arc<dyn Dht>> {
        self.config.dht.as_ref().filter(|_| self.tunables().dht)
    }

    /// Claims `info_hash` in the routing table (no inbound connection is routed to it yet).
    pub(crate) fn reserve(&self, info_hash: InfoHash) -> Result<(), NodeError> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if routes.contains_key(&info_hash) {
            return Err(NodeError::Duplicate(info_hash));
        }
        routes.insert(info_hash, None);
        Ok(())
    }

    /// Routes inbound connections (and peers found by local discovery) for a reserved
    /// `info_hash` to `tx`: a magnet's metadata fetch until its torrent starts.
    pub(crate) fn route(&self, info_hash: InfoHash, tx: mpsc::Sender<Command>) {
        if let Some(route) = self.routes.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&info_hash) {
            *route = Some(tx);
        }
    }

    /// Gives up a claim made by [`Shared::reserve`].
    pub(crate) fn release(&self, info_hash: InfoHash) {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).remove(&info_hash);
    }

    /// Starts a torrent whose info-hash this caller reserved.
    pub(crate) async fn start(&self, add: AddTorrent) -> Result<TorrentHandle, NodeError> {
        let info_hash = add.meta.info_hash;
        let meta = Arc::new(add.meta);
        let (evicted_tx, evicted_rx) = mpsc::unbounded_channel();
        let opened = match &self.config.ram {
            Some(cache) => Ok(open_ram(cache, &meta, evicted_tx)),
            None => {
                let m = meta.clone();
                tokio::task::spawn_blocking(move || open_storage(&m, &add.data_dir, &add.state_dir, add.mode))
                    .await
                    .map_err(|_| NodeError::Stopped)
                    .flatten()
            }
        };
        let (storage, have) = match opened {
            Ok(o) => o,
            Err(e) => {
                self.routes.lock().unwrap_or_else(|p| p.into_inner()).remove(&info_hash);
                return Err(e);
            }
        };

        let tunables = self.tunables();
        let mut engine_cfg = self.config.engine.clone();
        // The session's limits, shared with its other torrents, not one each.
        engine_cfg.download_rate_limit = None;
        engine_cfg.upload_rate_limit = None;
        engine_cfg.shared_download_limit = Some(self.download_limit.clone());
        engine_cfg.shared_upload_limit = Some(self.upload_limit.clone());
        engine_cfg.max_peers = tunables.max_peers;
        engine_cfg.peer_id = self.config.peer_id;
        engine_cfg.listen_port = self.listen_addr.map(|a| a.port());
        engine_cfg.private = meta.private;
        engine_cfg.rng_seed ^= u64::from_le_bytes(info_hash.0[..8].try_into().unwrap_or([0; 8]));
        if let Some(cache) = &self.config.ram {
            let budget = cache.stats().budget;
            engine_cfg.fit_ram_budget(budget);
            let piece = u64::from(meta.lengths.piece_length());
            if budget < 8 * piece {
                tracing::warn!(
                    %info_hash, budget, piece,
                    "RAM budget holds fewer than 8 pieces of this torrent: readers' windows will not fit and pieces will be fetched again and again"
                );
            }
        }
        let (verified, store, resume, ram) = match storage {
            Storage::Disk { store, resume } => {
                (Arc::new(Verified::new(&have)), store, Some(Arc::new(Mutex::new(resume))), None)
            }
            Storage::Ram { store, verified } => (verified, store.clone() as Arc<dyn PieceStore>, None, Some(store)),
        };
        let now = self.clock.now();
        let mut engine = Torrent::new(info_hash, meta.lengths, have, engine_cfg, now);
        engine.set_metadata(meta.info_bytes.clone());
        if ram.is_some() {
            // Only what readers ask for: the rest of the torrent would only churn the cache.
            engine.set_priority(0..meta.lengths.num_pieces(), sluice_engine::Priority::Skip, now);
        } else {
            for pieces in crate::streams::likely_first_reads(&meta) {
                engine.set_priority(pieces, sluice_engine::Priority::High, now);
            }
        }

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        // Seed the snapshot with what storage already holds, so callers reading progress right
        // after add_torrent (e.g. the CLI's `resume:` line) never see an empty default.
        let initial = Progress { stats: engine.stats(), ..Progress::default() };
        let (progress_tx, progress_rx) = watch::channel(initial);
        let tracker_settings = TrackerSettings { mode: tunables.tracker_mode, ..self.config.trackers.clone() };
        let tiers = trackers::tiers(&meta.trackers, &tracker_settings, self.config.policy);
        let tracker_task = (!tiers.is_empty()).then(|| TrackerTask {
            announcer: trackers::schedule(&tiers, crate::random_seed(), &self.clock),
            client: self.tracker_client.clone(),
            clock: self.clock,
            info_hash,
            peer_id: self.config.peer_id,
            listen: self.listen_addr,
            key: self.tracker_key,
            total_length: meta.lengths.total_length(),
            progress: progress_rx.clone(),
            commands: cmd_tx.downgrade(),
        });
        let task = TorrentTask {
            engine,
            clock: self.clock,
            gate: self.gate.clone(),
            slots: self.slots.clone(),
            encryption: self.config.encryption,
            dialer: self.dialer.clone(),
            meta: meta.clone(),
            store: store.clone(),
            resume,
            ram,
            evicted: evicted_rx,
            commands: cmd_rx,
            progress: progress_tx,
            verified: verified.clone(),
        };
        let routes = self.routes.clone();
        routes.lock().unwrap_or_else(|p| p.into_inner()).insert(info_hash, Some(cmd_tx.clone()));
        // A change made while this torrent was being set up reached the routes without it
        // (the rate limits are shared objects: a torrent always sees their current rates).
        let now_tuned = self.tunables();
        if now_tuned.max_peers != tunables.max_peers {
            let _ = cmd_tx.try_send(Command::SetMaxPeers(now_tuned.max_peers));
        }
        let lsd = self.lsd.clone().filter(|_| !meta.private);
        if let Some(lsd) = &lsd {
            lsd.add(info_hash).await;
        }
        tokio::spawn(async move {
            task.run().await;
            routes.lock().unwrap_or_else(|p| p.into_inner()).remove(&info_hash);
            if let Some(lsd) = lsd {
                lsd.remove(info_hash);
            }
        });
        if let (Some(dht), Some(port), false) =
            (self.config.dht.as_ref().filter(|_| tunables.dht), self.listen_addr.map(|a| a.port()), meta.private)
        {
            tokio::spawn(dht_lookups(dht.clone(), info_hash, port, cmd_tx.clone()));
        }
        let announcing = Arc::new(Mutex::new(tracker_task.map(|t| tokio::spawn(t.run()))));
        let streams = Arc::new(Streams::new(cmd_tx.clone(), store, verified, meta.clone()));
        Ok(TorrentHandle { info_hash, meta, streams, commands: cmd_tx, progress: progress_rx, announcing })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = &self.accept_task {
            t.abort();
        }
        self.stop_portmap.send_replace(true);
        #[cfg(feature = "utp")]
        if let Some(stop) = &self.utp_stop {
            stop.cancel();
        }
    }
}

enum Storage {
    Disk { store: Arc<dyn PieceStore>, resume: Resume },
    Ram { store: Arc<RamStore>, verified: Arc<Verified> },
}

type Opened = (Storage, Bitfield);

/// Mirrors a torrent's RAM cache slot into its readers' bitfield (under the cache's lock) and
/// tells its task which pieces went.
struct RamEvents {
    verified: Arc<Verified>,
    evicted: mpsc::UnboundedSender<sluice_core::PieceIndex>,
}

impl CacheEvents for RamEvents {
    fn stored(&self, piece: sluice_core::PieceIndex) {
        self.verified.set(piece);
    }

    fn evicted(&self, piece: sluice_core::PieceIndex) {
        self.verified.clear(piece);
        let _ = self.evicted.send(piece);
    }
}

fn open_ram(cache: &Arc<RamCache>, meta: &Metainfo, evicted: mpsc::UnboundedSender<sluice_core::PieceIndex>) -> Opened {
    let have = Bitfield::new(meta.lengths.num_pieces());
    let verified = Arc::new(Verified::new(&have));
    let store = Arc::new(cache.store(meta.lengths, Arc::new(RamEvents { verified: verified.clone(), evicted })));
    (Storage::Ram { store, verified }, have)
}

fn open_storage(
    meta: &Metainfo,
    data_dir: &std::path::Path,
    state_dir: &std::path::Path,
    mode: StartMode,
) -> Result<Opened, NodeError> {
    let store = FsStore::new(data_dir, meta)?;
    // The state folder may sit inside the data folder (the CLI's default): a torrent whose
    // files would land in it could forge another torrent's resume journal.
    if let Some(file) = (0..meta.files.len()).filter_map(|i| store.file_path(i)).find(|p| p.starts_with(state_dir)) {
        return Err(NodeError::IntoStateDir(file.to_path_buf()));
    }
    std::fs::create_dir_all(state_dir)
        .map_err(|source| sluice_storage::StorageError::Io { path: state_dir.to_path_buf(), source })?;
    let journal = Resume::path_for(state_dir, &meta.info_hash);
    let (mut resume, _) = Resume::open(&journal, meta.info_hash, meta.lengths.num_pieces())?;
    let have = match mode {
        // The journal only lists pieces verified before they were recorded; files that went
        // missing or shrank since then drop their pieces.
        StartMode::Resume => resume.drop_absent(&store)?,
        StartMode::Recheck => {
            let have = sluice_storage::recheck(&store, &meta.piece_hashes, recheck_threads())?;
            resume.replace(have.clone())?;
            have
        }
    };
    Ok((Storage::Disk { store: Arc::new(store), resume }, have))
}

fn recheck_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Hands peers that local service discovery found to their torrent's task.
fn lsd_router(routes: Routes, gate: Gate) -> sluice_lsd::OnPeer {
    Box::new(move |info_hash, peer| {
        if !gate.allows(&peer) {
            return;
        }
        let tx = routes.lock().unwrap_or_else(|p| p.into_inner()).get(&info_hash).cloned().flatten();
        if let Some(tx) = tx {
            tracing::debug!(%info_hash, %peer, "peer found by local service discovery");
            let _ = tx.try_send(Command::AddPeers(vec![peer]));
        }
    })
}

/// A torrent's DHT lookups are repeated this often once they found peers (BEP 5 clients
/// re-announce every 15 to 30 minutes)...
const DHT_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// ...and while they find none, after this wait, doubled each time up to `DHT_RETRY_MAX`.
const DHT_RETRY: Duration = Duration::from_secs(5);
const DHT_RETRY_MAX: Duration = Duration::from_secs(120);

/// Looks the torrent up in the DHT, hands what it finds to the torrent and announces our
/// listen port, until the torrent stops.
pub(crate) async fn dht_lookups(dht: Arc<dyn Dht>, info_hash: InfoHash, port: u16, torrent: mpsc::Sender<Command>) {
    let mut retry = DHT_RETRY;
    loop {
        let peers = tokio::select! {
            p = dht.get_peers(info_hash) => p,
            () = torrent.closed() => return,
        };
        tracing::debug!(%info_hash, found = peers.len(), "DHT lookup");
        let found = !peers.is_empty();
        if found && torrent.send(Command::AddPeers(peers)).await.is_err() {
            return;
        }
        if let Err(e) = dht.announce(info_hash, port).await {
            tracing::debug!(%info_hash, error = %e, "DHT announce");
        }
        dht.save().await;
        let wait = if found { DHT_INTERVAL } else { retry };
        retry = (retry * 2).min(DHT_RETRY_MAX);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = torrent.closed() => return,
        }
    }
}

/// Inbound connections waiting for their handshake at most; more wait in the listen backlog.
const PENDING_HANDSHAKES: usize = 64;

/// Reads each inbound connection's handshake to find its torrent, then hands it over.
///
/// A connection from a refused address, or one over the session's connection limit, is
/// closed right after the accept.
async fn accept_loop(listener: TcpListener, routes: Routes, gate: Gate, slots: Slots, encryption: Encryption) {
    let pending = Arc::new(tokio::sync::Semaphore::new(PENDING_HANDSHAKES));
    loop {
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A dual-stack listener ([::]) sees IPv4 peers as ::ffff:a.b.c.d: the same peers as
        // their IPv4 addresses everywhere else (address book, bans, blocklist).
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if let Some(why) = gate.refuses(&addr) {
            tracing::debug!(%addr, why, "inbound connection refused");
            continue;
        }
        spawn_route(PeerStream::tcp(stream), addr, &slots, routes.clone(), encryption, permit);
    }
}

/// Takes a session slot for an inbound connection (closing it if none is free) and routes it.
fn spawn_route(
    stream: PeerStream,
    addr: SocketAddr,
    slots: &Slots,
    routes: Routes,
    encryption: Encryption,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(slot) = slots.try_inbound() else {
        tracing::debug!(%addr, "inbound connection refused: the session's connection limit is reached");
        return;
    };
    tokio::spawn(async move {
        let routed = route_inbound(stream, addr, slot, routes, encryption).await;
        drop(permit);
        if let Err(e) = routed {
            tracing::debug!(%addr, error = %e, "inbound connection dropped");
        }
    });
}

/// The uTP socket: on the TCP listener's address when listening (so one port reaches both),
/// else on an ephemeral port for dialling only. Returns the dialer using it and the token that
/// stops it.
#[cfg(feature = "utp")]
async fn start_utp(
    listen: Option<SocketAddr>,
    routes: &Routes,
    gate: &Gate,
    slots: &Slots,
    config: &SessionConfig,
) -> Result<(Dialer, tokio_util::sync::CancellationToken), NodeError> {
    let bind = listen.unwrap_or_else(|| {
        let ip = if config.policy.loopback_only { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
        SocketAddr::from((ip, 0))
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = librqbit_utp::SocketOpts {
        // As TCP_NODELAY on TCP peers: small messages (requests, haves) go at once.
        disable_nagle: true,
        cancellation_token: stop.clone(),
        ..Default::default()
    };
    let socket = librqbit_utp::UtpSocketUdp::new_udp_with_opts(bind, opts, Default::default())
        .await
        .map_err(|e| NodeError::Listen { addr: bind, source: std::io::Error::other(format!("uTP: {e}")) })?;
    if listen.is_some() {
        let accepting = utp_accept_loop(
            socket.clone(),
            routes.clone(),
            gate.clone(),
            slots.clone(),
            config.encryption,
            stop.clone(),
        );
        tokio::spawn(accepting);
    }
    Ok((Dialer::with_utp(socket, listen.map(|a| a.ip())), stop))
}

/// [`accept_loop`] for uTP connections.
#[cfg(feature = "utp")]
async fn utp_accept_loop(
    socket: Arc<librqbit_utp::UtpSocketUdp>,
    routes: Routes,
    gate: Gate,
    slots: Slots,
    encryption: Encryption,
    stop: tokio_util::sync::CancellationToken,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(PENDING_HANDSHAKES));
    loop {
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        let stream = tokio::select! {
            s = socket.accept() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "uTP accept failed; no more inbound uTP");
                    return;
                }
            },
            () = stop.cancelled() => return,
        };
        let addr = stream.remote_addr();
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if let Some(why) = gate.refuses(&addr) {
            tracing::debug!(%addr, why, "inbound uTP connection refused");
            continue;
        }
        spawn_route(PeerStream::Utp(stream), addr, &slots, routes.clone(), encryption, permit);
    }
}

/// Sniffs the first bytes: the plaintext handshake's 20-byte prefix, or else an MSE public key.
async fn route_inbound(
    mut stream: PeerStream,
    addr: SocketAddr,
    slot: Slot,
    routes: Routes,
    encryption: Encryption,
) -> Result<(), String> {
    let mut head = vec![0u8; Handshake::LEN];
    let timeout = Duration::from_secs(10);
    let sniff = &mut head[..PLAINTEXT_HEAD.len()];
    tokio::time::timeout(timeout, stream.read_exact(sniff))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (info_hash, head, cipher) = if sniff == PLAINTEXT_HEAD {
        if encryption == Encryption::Require {
            return Err("plaintext peer refused: encryption is required".into());
        }
        tokio::time::timeout(timeout, stream.read_exact(&mut head[PLAINTEXT_HEAD.len()..]))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let hs = Handshake::decode(&head).map_err(|e| e.to_string())?;
        (hs.info_hash, head, None)
    } else {
        if encryption == Encryption::Off {
            return Err("encrypted peer refused: encryption is off".into());
        }
        let known = routes.clone();
        let lookup = Box::new(move |req2: &[u8; 20]| {
            let routes = known.lock().unwrap_or_else(|p| p.into_inner());
            routes.keys().find(|h| sluice_mse::skey_hash(h) == *req2).copied()
        });
        let sniffed = head[..PLAINTEXT_HEAD.len()].to_vec();
        encryption::respond(&mut stream, &sniffed, encryption, lookup).await.map_err(|e| e.to_string())?
    };
    let tx = routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&info_hash)
        .cloned()
        .flatten()
        .ok_or_else(|| format!("unknown torrent {info_hash}"))?;
    tx.send(Command::Incoming { stream, slot, addr, head, cipher }).await.map_err(|_| "torrent stopped".to_string())
}

/// A running torrent.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    info_hash: InfoHash,
    meta: Arc<Metainfo>,
    streams: Arc<Streams>,
    commands: mpsc::Sender<Command>,
    progress: watch::Receiver<Progress>,
    /// The torrent's tracker task; it announces `stopped` once the torrent task ends.
    announcing: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl TorrentHandle {
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    pub fn metainfo(&self) -> &Metainfo {
        &self.meta
    }

    /// Streams bytes `range` (relative to the file) of file `index` (metainfo order, pad files
    /// included): the reader waits for each piece to be verified and returns only verified
    /// bytes. `None` if the file or range does not exist.
    ///
    /// The reader drives the engine's streaming scheduler: the pieces under its position come
    /// first, a window of media ahead of it next, and the file's container index (found by
    /// probing when the file's first reader opens) is protected while any reader is open.
    pub fn open_reader(&self, index: usize, range: std::ops::Range<u64>) -> Option<FileReader> {
        self.streams.open(index, range)
    }

    pub async fn add_peers(&self, peers: Vec<SocketAddr>) -> Result<(), NodeError> {
        self.commands.send(Command::AddPeers(peers)).await.map_err(|_| NodeError::Stopped)
    }

    /// The latest progress snapshot.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// The pieces readers can read now (verified and, in RAM mode, still cached).
    pub fn verified(&self) -> Bitfield {
        self.streams.verified.snapshot(self.meta.lengths.num_pieces())
    }

    /// Caps the download rate below the session's limit, or lifts the cap with `None`
    /// (see `sluice_engine::Torrent::cap_download`).
    pub async fn cap_download(&self, cap: Option<u64>) -> Result<(), NodeError> {
        self.commands.send(Command::CapDownload(cap)).await.map_err(|_| NodeError::Stopped)
    }

    /// A receiver that wakes on every progress update.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Stops the torrent: closes connections, flushes data and the resume journal, then tells
    /// its trackers (`stopped`, for a few seconds at most).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let announcing = self.announcing.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = announcing {
            let _ = task.await;
        }
    }
}
