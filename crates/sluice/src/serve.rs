//! `sluice serve`: the torrent catalog behind the HTTP streaming API. This file adapts the
//! catalog to the HTTP crate's [`Library`] seam and puts the access layer (IP lists, basic
//! auth: `sluice_http::access`) and optional TLS (`crate::tls`) in front of the routes.
//!
//! Settings changed through the APIs apply at once (streams go on) and are stored: Sluice's
//! own (`/api/v1/settings`) under the `sluice` key, only the fields a request set;
//! TorrServer's `BTSets` (`/settings`) whole under `BitTorr`, its `TorrentDisconnectTimeout`
//! also in the `sluice` document (see [`crate::settings`] for what each field does). At the
//! next start a stored value applies unless its option is given on the command line, in the
//! environment or in the config file: then the option wins for that run (both are logged).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt as _;
use clap::Args;
use sluice_catalog::{Catalog, CatalogError, CatalogOptions, Focus, Meta, Snapshot, Source, Stat};
use sluice_core::InfoHash;
use sluice_db::Db;
use sluice_http::api::BoxFuture;
use sluice_http::api::{Settings, SettingsPatch};
use sluice_http::torrserver::{BTSets, TorrentMeta};
use sluice_http::{AccessPolicy, Accounts, IpFilter, IpNet, protect};
use sluice_http::{Added, FileIndex, FileInfo, FileReader, HttpConfig, Library, LibraryError, SourceError};
use sluice_http::{StreamSource, Torrent, TorrentDetail, TorrentFile, TorrentState, api_router, torrserver_router};
use sluice_node::{RamCache, Session};

use crate::NetArgs;
use crate::settings::{self, NodeSettings};

/// How long a graceful stop waits for open HTTP connections (streams) to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTP address [default: port 8090 on every interface, on 127.0.0.1 when loopback-only].
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<SocketAddr>,
    /// Address to accept peer connections on [default: port 6881, on 127.0.0.1 when
    /// loopback-only].
    #[arg(long, value_name = "IP:PORT")]
    peer_listen: Option<SocketAddr>,
    /// Folder the torrents' files are downloaded into (resume data in DATA_DIR/.sluice).
    #[arg(long, default_value = "sluice-data")]
    data_dir: PathBuf,
    /// The database of added torrents, viewed marks and settings [default:
    /// DATA_DIR/.sluice/sluice.db].
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// A torrent nothing reads from and no API call touches for this many seconds releases
    /// its peers and memory (it stays known and starts again when used).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    disconnect_timeout: u64,
    /// A read that waits longer than this for downloaded bytes ends the response, in seconds.
    #[arg(long, default_value_t = 120)]
    read_timeout: u64,
    /// How long `POST /api/v1/torrents` with a magnet waits for its metadata before answering
    /// 202 (the fetch goes on), in seconds.
    #[arg(long, default_value_t = 30)]
    metadata_timeout: u64,
    /// Files larger than this many bytes are refused with 403.
    #[arg(long)]
    max_file_size: Option<u64>,
    /// Where verified pieces live: files under DATA_DIR, or only memory (nothing is written
    /// to disk; one budget for all torrents, see --ram-budget).
    #[arg(long, value_enum, default_value_t = StorageKind::Disk)]
    storage: StorageKind,
    /// Memory all torrents' pieces may use together with `--storage ram` (e.g. 256MiB, 1GiB,
    /// or bytes).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    ram_budget: u64,
    /// Require HTTP basic auth, with the accounts of this file: `user:password` lines (`#`
    /// comments). Players' links of torrents already added stay open without credentials.
    /// The file must not be readable by group or others.
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Only these clients may use the HTTP server: addresses or CIDR blocks (repeat or
    /// separate with commas) [default: every client].
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    allow_ip: Vec<IpNet>,
    /// Clients refused with 403, even when --allow-ip lists them (addresses or CIDR blocks).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    deny_ip: Vec<IpNet>,
    /// Serve HTTPS instead of HTTP on --listen, with this PEM certificate chain (leaf first).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
    /// The options given explicitly, by id, with where they came from.
    #[arg(skip)]
    pub(crate) explicit: Vec<(String, &'static str)>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    Disk,
    Ram,
}

impl From<sluice_node::TrackerMode> for crate::TrackerModeArg {
    fn from(m: sluice_node::TrackerMode) -> Self {
        use sluice_node::TrackerMode;
        match m {
            TrackerMode::Keep => Self::Keep,
            TrackerMode::Add => Self::Add,
            TrackerMode::Remove => Self::Remove,
            TrackerMode::Replace => Self::Replace,
        }
    }
}

/// A byte count with an optional binary (KiB, MiB, GiB) or decimal (K, M, G) suffix.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size (e.g. 256MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("unknown unit in {s:?} (use KiB, MiB, GiB, K, M or G)")),
    };
    n.checked_mul(mult).filter(|&b| b > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

pub async fn run(mut args: ServeArgs) -> anyhow::Result<()> {
    let state_dir = args.data_dir.join(".sluice");
    // Refused before anything is written.
    let http = args.net.listen_or(args.listen, 8090);
    if args.net.loopback_only && !http.ip().is_loopback() {
        anyhow::bail!("{http} is not a loopback address, and loopback-only is on");
    }
    let accounts = args.auth_file.as_deref().map(read_accounts).transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let db_path = args.db.clone().unwrap_or_else(|| state_dir.join("sluice.db"));
    if let Some(parent) = db_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let db = Db::open(&db_path).with_context(|| format!("opening the database {}", db_path.display()))?;
    let stored = Stored::read(&db)?;
    let focus = stored.apply_to(&mut args);
    let ram = (args.storage == StorageKind::Ram).then(|| RamCache::new(args.ram_budget));
    let mut config = args.net.session_config(args.peer_listen, 6881, &state_dir)?;
    config.ram = ram.clone();
    let dht = config.dht.is_some();
    let session = Session::start(config).await?;
    let options = CatalogOptions {
        disconnect_timeout: std::time::Duration::from_secs(args.disconnect_timeout),
        state_dir,
        ..CatalogOptions::new(args.data_dir)
    };
    let catalog = Catalog::open(session, db, options).await?;
    let listener = tokio::net::TcpListener::bind(http).await.with_context(|| format!("listening on {http}"))?;
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let settings = Settings {
        disconnect_timeout: args.disconnect_timeout,
        metadata_timeout: args.metadata_timeout,
        focus: focus.focus.unwrap_or(true),
        focus_cap: focus.focus_cap.unwrap_or(FOCUS_CAP),
    };
    let node = NodeSettings {
        download_limit: args.net.download_limit,
        upload_limit: args.net.upload_limit,
        peers_per_torrent: args.net.peers_per_torrent.max(1),
        ram_budget: ram.as_ref().map(|_| args.ram_budget),
        tracker_mode: args.net.tracker_mode.into(),
        dht,
    };
    let library = Arc::new(NodeLibrary {
        catalog: catalog.clone(),
        settings: std::sync::Mutex::new(settings.clone()),
        node: std::sync::Mutex::new(node),
        ram,
        settings_write: tokio::sync::Mutex::new(()),
        http_addr: listener.local_addr()?,
        shutdown: shutdown.clone(),
        file_ids: Default::default(),
    });
    library.apply(settings);
    let config = HttpConfig {
        read_timeout: std::time::Duration::from_secs(args.read_timeout),
        max_file_size: args.max_file_size,
        https: tls.is_some(),
        ..HttpConfig::default()
    };
    let app = api_router(library.clone(), config.clone())
        .merge(torrserver_router(library, config))
        .merge(crate::exporter::router(catalog.clone())?);
    let known = catalog.clone();
    let policy = AccessPolicy {
        ips: IpFilter { allow: args.allow_ip, deny: args.deny_ip },
        accounts,
        known: Arc::new(move |h| known.status(h).is_some()),
        guesses: Arc::default(),
    };
    let app = protect(app, Arc::new(policy)).into_make_service_with_connect_info::<SocketAddr>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("{scheme} on {}", listener.local_addr()?);
    if let Some(addr) = catalog.session().listen_addr() {
        eprintln!("listening on {addr}");
    }
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            () = crate::progress::shutdown_signal() => {}
            () = shutdown.notified() => {}
        }
        let _ = stopping.send(());
    };
    {
        // `tap_io` makes axum hand the client address (ConnectInfo) to the access layer for a
        // listener of our own.
        let server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
                Box::pin(std::future::IntoFuture::into_future(axum::serve(listener, app).with_graceful_shutdown(stop)))
            }
            None => {
                Box::pin(std::future::IntoFuture::into_future(axum::serve(listener, app).with_graceful_shutdown(stop)))
            }
        };
        // A player holding a stream open would keep a graceful stop waiting forever, and
        // whoever sent the signal would then kill the process before the resume data is
        // flushed: open connections get a grace period, then are left behind.
        let grace = async {
            match stopped.await {
                Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            served = server => served?,
            () = grace => eprintln!("connections still open {SHUTDOWN_GRACE:?} after the stop: closing them"),
        }
    }
    catalog.close().await;
    catalog.session().save_dht().await;
    eprintln!("stopped: torrents closed, resume data flushed");
    Ok(())
}

/// Largest accounts file read.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// The accounts of `--auth-file`; refused when group or others may read it.
fn read_accounts(path: &std::path::Path) -> anyhow::Result<Accounts> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("reading the auth file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the auth file {} may be read by other users (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let mut text = String::new();
    f.take(MAX_AUTH_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the auth file {} (UTF-8 text)", path.display()))?;
    if text.len() as u64 > MAX_AUTH_FILE {
        anyhow::bail!("the auth file {} is larger than {} KiB", path.display(), MAX_AUTH_FILE >> 10);
    }
    Accounts::parse(&text).with_context(|| format!("the auth file {}", path.display()))
}

/// The catalog behind the HTTP crate's [`Library`] seam (and the TorrServer routes', see
/// [`crate::torrserver`]).
pub(crate) struct NodeLibrary {
    pub(crate) catalog: Catalog,
    /// What `/api/v1/settings` shows: the values in force.
    settings: std::sync::Mutex<Settings>,
    /// The node's settings in force (what `/settings` shows over the stored `BTSets`).
    pub(crate) node: std::sync::Mutex<NodeSettings>,
    /// The RAM storage's cache (`--storage ram`).
    pub(crate) ram: Option<Arc<RamCache>>,
    /// Held across a settings update's database write, so updates apply in order.
    pub(crate) settings_write: tokio::sync::Mutex<()>,
    /// Where this server's HTTP listens (ffprobe reads streams from it).
    pub(crate) http_addr: SocketAddr,
    /// Notified to stop the server gracefully (TorrServer's `/shutdown`).
    pub(crate) shutdown: Arc<tokio::sync::Notify>,
    pub(crate) file_ids: crate::torrserver::FileIds,
}

/// The database key Sluice's own settings are stored under (TorrServer's are "BitTorr").
pub(crate) const SETTINGS_KEY: &str = "sluice";
/// Other torrents' download rate while one streams, by default.
const FOCUS_CAP: u64 = 32 * 1024;

impl NodeLibrary {
    pub(crate) fn metadata_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.lock().unwrap_or_else(|p| p.into_inner()).metadata_timeout)
    }

    pub(crate) fn settings_in_force(&self) -> Settings {
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn apply(&self, s: Settings) {
        self.catalog.set_disconnect_timeout(Duration::from_secs(s.disconnect_timeout));
        self.catalog.set_focus(if s.focus { Focus::Cap(s.focus_cap) } else { Focus::Off });
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Applies node settings to the running session, changing only what differs (a new rate
    /// limit restarts the torrents' token buckets).
    pub(crate) async fn apply_node(&self, new: NodeSettings) {
        let old = self.node.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let session = self.catalog.session();
        if (old.download_limit, old.upload_limit) != (new.download_limit, new.upload_limit) {
            session.set_rate_limits(new.download_limit, new.upload_limit).await;
        }
        if old.peers_per_torrent != new.peers_per_torrent {
            session.set_peers_per_torrent(new.peers_per_torrent).await;
        }
        if old.tracker_mode != new.tracker_mode {
            session.set_tracker_mode(new.tracker_mode);
        }
        if old.dht != new.dht {
            session.set_dht_lookups(new.dht);
        }
        if let (Some(cache), Some(budget)) = (&self.ram, new.ram_budget)
            && old.ram_budget != Some(budget)
        {
            let held = cache.set_budget(budget);
            tracing::info!(budget, held, "RAM budget changed");
        }
        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = new;
    }

    /// Writes `fields` over the stored `sluice` document (other stored fields stay).
    pub(crate) async fn store_own(
        &self,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), CatalogError> {
        let mut doc = match self.catalog.settings(SETTINGS_KEY).await? {
            Some(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        doc.extend(fields);
        self.catalog.set_settings(SETTINGS_KEY, serde_json::Value::Object(doc)).await
    }
}

/// The settings stored by earlier runs.
struct Stored {
    own: SettingsPatch,
    torrserver: Option<BTSets>,
}

impl Stored {
    /// A stored document this version cannot read is reported and left alone.
    fn read(db: &Db) -> anyhow::Result<Self> {
        let own = match db.settings(SETTINGS_KEY).context("reading the settings")? {
            None => SettingsPatch::default(),
            Some(value) => match serde_json::from_value::<SettingsPatch>(value) {
                Ok(patch) if patch.check().is_ok() => patch,
                _ => {
                    eprintln!("ignoring the stored settings ({SETTINGS_KEY:?}): not this version's form");
                    SettingsPatch::default()
                }
            },
        };
        let torrserver = match db.settings(crate::torrserver::SETTINGS_KEY).context("reading the settings")? {
            None => None,
            Some(value) => match serde_json::from_value::<BTSets>(value) {
                Ok(mut sets) => {
                    sets.sanitize();
                    Some(sets)
                }
                Err(_) => {
                    eprintln!("ignoring the stored TorrServer settings: not this version's form");
                    None
                }
            },
        };
        Ok(Self { own, torrserver })
    }

    /// Puts the stored values into `args` where no option was given explicitly, logging which
    /// won where they differ. Returns the stored focus fields (they have no option).
    fn apply_to(&self, args: &mut ServeArgs) -> SettingsPatch {
        let explicit = std::mem::take(&mut args.explicit);
        let pick = Precedence { explicit: &explicit };
        if let Some(t) = self.own.disconnect_timeout {
            pick.settle(&["disconnect_timeout"], "disconnect timeout (s)", &mut args.disconnect_timeout, t);
        }
        if let Some(t) = self.own.metadata_timeout {
            pick.settle(&["metadata_timeout"], "metadata timeout (s)", &mut args.metadata_timeout, t);
        }
        if let Some(sets) = &self.torrserver {
            let m = settings::map(sets, args.storage == StorageKind::Ram);
            let net = &mut args.net;
            pick.settle(&["download_limit"], "download limit (B/s)", &mut net.download_limit, m.node.download_limit);
            pick.settle(&["upload_limit"], "upload limit (B/s)", &mut net.upload_limit, m.node.upload_limit);
            pick.settle(
                &["peers_per_torrent"],
                "peers per torrent",
                &mut net.peers_per_torrent,
                m.node.peers_per_torrent,
            );
            pick.settle(&["tracker_mode"], "tracker mode", &mut net.tracker_mode, m.node.tracker_mode.into());
            pick.settle(&["no_dht"], "DHT off", &mut net.no_dht, !m.start.dht);
            pick.settle(&["no_port_mapping"], "port mapping off", &mut net.no_port_mapping, !m.start.upnp);
            if !m.start.utp && pick.settle(&["utp", "no_utp"], "uTP off", &mut net.no_utp, true) {
                net.utp = false;
            }
            if !m.start.lsd {
                pick.settle(&["lsd", "no_lsd"], "local service discovery off", &mut net.no_lsd, true);
            }
            if m.start.require_encryption {
                pick.settle(&["encryption"], "encryption", &mut net.encryption, crate::EncryptionArg::Require);
            }
            if let Some(budget) = m.node.ram_budget {
                pick.settle(&["ram_budget"], "RAM budget (bytes)", &mut args.ram_budget, budget);
            }
        }
        self.own.clone()
    }
}

/// Which of an explicit option and a stored value applies.
struct Precedence<'a> {
    explicit: &'a [(String, &'static str)],
}

impl Precedence<'_> {
    /// Sets `current` to `stored` unless one of `ids` was given explicitly; true if `current`
    /// now holds the stored value.
    fn settle<T: PartialEq + std::fmt::Debug>(&self, ids: &[&str], what: &str, current: &mut T, stored: T) -> bool {
        if *current == stored {
            return true;
        }
        match self.explicit.iter().find(|(id, _)| ids.contains(&id.as_str())) {
            Some((_, source)) => {
                tracing::info!("{what}: {current:?} from the {source}, over the stored {stored:?} (for this run)");
                false
            }
            None => {
                tracing::info!("{what}: {stored:?} from the stored settings, over the default {current:?}");
                *current = stored;
                true
            }
        }
    }
}

/// The API's view of a torrent.
fn torrent(s: &Snapshot) -> Torrent {
    let length = s.info.as_ref().map_or(0, |i| i.size);
    let state = match s.stat {
        // A closed torrent counts what its files hold, complete or not.
        Stat::Closed | Stat::InDb => TorrentState::Closed,
        _ if s.complete => TorrentState::Complete,
        Stat::GettingInfo => TorrentState::Pending,
        Stat::Added | Stat::Preload | Stat::Working => TorrentState::Running,
    };
    Torrent {
        info_hash: s.info_hash,
        name: s.info.as_ref().map_or_else(|| s.title.clone(), |i| i.name.clone()),
        title: s.title.clone(),
        category: s.category.clone(),
        poster: s.poster.clone(),
        data: s.data.clone(),
        added_at: s.added_at.0,
        state,
        pending: s.info.is_none(),
        length,
        verified_bytes: s.bytes_have,
        progress: if length == 0 { 0.0 } else { s.bytes_have as f64 / length as f64 },
        download_rate: s.download_rate,
        upload_rate: s.upload_rate,
        peers: s.peers_connected as u64,
        readers: s.readers as u64,
        error: s.error.clone(),
    }
}

/// The torrent with its files (pad files left out; `index` is the metainfo position).
fn detail(s: &Snapshot) -> TorrentDetail {
    let files = s.info.as_ref().map_or_else(Vec::new, |info| {
        info.files
            .iter()
            .map(|f| TorrentFile { index: FileIndex(f.index), path: f.path.clone(), length: f.length })
            .collect()
    });
    TorrentDetail { torrent: torrent(s), files }
}

fn added(s: &Snapshot, created: bool) -> Added {
    Added { detail: detail(s), created }
}

fn meta(m: TorrentMeta) -> Meta {
    Meta { title: m.title, poster: m.poster, category: m.category, data: m.data }
}

fn library_error(e: CatalogError) -> LibraryError {
    match e {
        CatalogError::BadTorrent(m) => LibraryError::BadTorrent(m),
        CatalogError::UnknownTorrent => LibraryError::UnknownTorrent,
        e => LibraryError::Unavailable(e.to_string()),
    }
}

impl StreamSource for NodeLibrary {
    fn file(&self, torrent: InfoHash, index: FileIndex) -> Result<FileInfo, SourceError> {
        let status = self.catalog.status(torrent).ok_or(SourceError::UnknownTorrent)?;
        let info = status.info.ok_or_else(|| SourceError::Unavailable("the metadata is not known yet".into()))?;
        let file = info.file(index.0).ok_or(SourceError::UnknownFile)?;
        Ok(FileInfo { path: file.path.clone(), length: file.length, modified: None })
    }

    fn open(&self, torrent: InfoHash, index: FileIndex, range: Range<u64>) -> Result<Box<dyn FileReader>, SourceError> {
        match self.catalog.open_reader(torrent, index.0, range) {
            Ok(reader) => Ok(Box::new(reader)),
            Err(CatalogError::UnknownTorrent) => Err(SourceError::UnknownTorrent),
            Err(CatalogError::UnknownFile) => Err(SourceError::UnknownFile),
            Err(e) => Err(SourceError::Unavailable(e.to_string())),
        }
    }
}

impl Library for NodeLibrary {
    fn add_torrent(&self, torrent: axum::body::Bytes, m: TorrentMeta) -> BoxFuture<'_, Result<Added, LibraryError>> {
        Box::pin(async move {
            let done = self.catalog.add(Source::Torrent(torrent.to_vec()), meta(m)).await;
            let done = done.map_err(library_error)?;
            // Answer once it runs, so a torrent whose storage cannot open is refused here
            // (and not kept) rather than failing its first stream.
            if let Ok(Err(e)) =
                tokio::time::timeout(self.metadata_timeout(), self.catalog.activate(done.snapshot.info_hash)).await
            {
                if done.created {
                    let _ = self.catalog.remove(done.snapshot.info_hash, false).await;
                }
                return Err(library_error(e));
            }
            let now = self.catalog.status(done.snapshot.info_hash).unwrap_or(done.snapshot);
            Ok(added(&now, done.created))
        })
    }

    fn add_magnet(&self, link: String, m: TorrentMeta) -> BoxFuture<'_, Result<Added, LibraryError>> {
        Box::pin(async move {
            let done = self.catalog.add(Source::Link(link), meta(m)).await.map_err(library_error)?;
            let hash = done.snapshot.info_hash;
            if done.snapshot.info.is_some() {
                return Ok(added(&done.snapshot, done.created));
            }
            match tokio::time::timeout(self.metadata_timeout(), self.catalog.activate(hash)).await {
                Ok(Ok(s)) => Ok(added(&s, done.created)),
                Ok(Err(e)) => Err(library_error(e)),
                Err(_) => Ok(added(&done.snapshot, done.created)),
            }
        })
    }

    fn add_peers(&self, torrent: InfoHash, peers: Vec<SocketAddr>) -> BoxFuture<'_, Result<(), LibraryError>> {
        Box::pin(async move { self.catalog.add_peers(torrent, peers).await.map_err(library_error) })
    }

    fn list(&self) -> BoxFuture<'_, Vec<Torrent>> {
        Box::pin(async move { self.catalog.list().iter().map(torrent).collect() })
    }

    fn torrent(&self, hash: InfoHash) -> BoxFuture<'_, Result<TorrentDetail, LibraryError>> {
        Box::pin(async move { self.catalog.get(hash).map(|s| detail(&s)).ok_or(LibraryError::UnknownTorrent) })
    }

    fn files(&self, hash: InfoHash) -> BoxFuture<'_, Result<Vec<TorrentFile>, LibraryError>> {
        Box::pin(async move { self.catalog.status(hash).map(|s| detail(&s).files).ok_or(LibraryError::UnknownTorrent) })
    }

    fn settings(&self) -> BoxFuture<'_, Result<Settings, LibraryError>> {
        Box::pin(async move { Ok(self.settings_in_force()) })
    }

    fn update_settings(&self, patch: SettingsPatch) -> BoxFuture<'_, Result<Settings, LibraryError>> {
        Box::pin(async move {
            let _write = self.settings_write.lock().await;
            let mut settings = self.settings_in_force();
            patch.apply(&mut settings);
            let SettingsPatch { disconnect_timeout, metadata_timeout, focus, focus_cap } = patch;
            let fields = [
                ("disconnect_timeout", disconnect_timeout.map(serde_json::Value::from)),
                ("metadata_timeout", metadata_timeout.map(serde_json::Value::from)),
                ("focus", focus.map(serde_json::Value::from)),
                ("focus_cap", focus_cap.map(serde_json::Value::from)),
            ];
            let fields = fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect();
            // Stored first: a failed write changes nothing.
            self.store_own(fields).await.map_err(library_error)?;
            self.apply(settings.clone());
            Ok(settings)
        })
    }

    fn remove(&self, hash: InfoHash, delete_files: bool) -> BoxFuture<'_, Result<(), LibraryError>> {
        Box::pin(async move {
            match self.catalog.remove(hash, delete_files).await.map_err(library_error)? {
                true => Ok(()),
                false => Err(LibraryError::UnknownTorrent),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("300M"), Ok(300_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err() && parse_size("12XB").is_err() && parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
