//! `sluice serve`: the torrent catalog behind the HTTP streaming API. This file adapts the
//! catalog to the HTTP crate's [`Library`] seam and puts the access layer (IP lists, basic
//! auth: `sluice_http::access`) and optional TLS (`crate::tls`) in front of the routes.
//!
//! Sluice's own settings (`/api/v1/settings`: `disconnect_timeout`, `metadata_timeout`,
//! `focus`, `focus_cap`) start from the command line and are stored under the `sluice` key
//! when changed through the API; stored values win at the next start.

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
use sluice_http::torrserver::TorrentMeta;
use sluice_http::{AccessPolicy, Accounts, IpFilter, IpNet, protect};
use sluice_http::{Added, FileIndex, FileInfo, FileReader, HttpConfig, Library, LibraryError, SourceError};
use sluice_http::{StreamSource, Torrent, TorrentDetail, TorrentFile, TorrentState, api_router, torrserver_router};
use sluice_node::{RamCache, Session};

use crate::NetArgs;

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
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    Disk,
    Ram,
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

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let state_dir = args.data_dir.join(".sluice");
    let mut config = args.net.session_config(args.peer_listen, 6881, &state_dir)?;
    if args.storage == StorageKind::Ram {
        config.ram = Some(RamCache::new(args.ram_budget));
    }
    let http = args.net.listen_or(args.listen, 8090);
    if args.net.loopback_only && !http.ip().is_loopback() {
        anyhow::bail!("{http} is not a loopback address, and loopback-only is on");
    }
    let accounts = args.auth_file.as_deref().map(read_accounts).transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let db_path = args.db.unwrap_or_else(|| state_dir.join("sluice.db"));
    if let Some(parent) = db_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let db = Db::open(&db_path).with_context(|| format!("opening the database {}", db_path.display()))?;
    let session = Session::start(config).await?;
    let options = CatalogOptions {
        disconnect_timeout: std::time::Duration::from_secs(args.disconnect_timeout),
        state_dir,
        ..CatalogOptions::new(args.data_dir)
    };
    let catalog = Catalog::open(session, db, options).await?;
    let listener = tokio::net::TcpListener::bind(http).await.with_context(|| format!("listening on {http}"))?;
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let defaults = Settings {
        disconnect_timeout: args.disconnect_timeout,
        metadata_timeout: args.metadata_timeout,
        focus: true,
        focus_cap: FOCUS_CAP,
    };
    let library = Arc::new(NodeLibrary {
        catalog: catalog.clone(),
        settings: std::sync::Mutex::new(defaults),
        settings_write: tokio::sync::Mutex::new(()),
        http_addr: listener.local_addr()?,
        shutdown: shutdown.clone(),
    });
    library.load_settings().await?;
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
    /// Held across a settings update's database write, so updates apply in order.
    settings_write: tokio::sync::Mutex<()>,
    /// Where this server's HTTP listens (ffprobe reads streams from it).
    pub(crate) http_addr: SocketAddr,
    /// Notified to stop the server gracefully (TorrServer's `/shutdown`).
    pub(crate) shutdown: Arc<tokio::sync::Notify>,
}

/// The database key Sluice's own settings are stored under (TorrServer's are "BitTorr").
const SETTINGS_KEY: &str = "sluice";
/// Other torrents' download rate while one streams, by default.
const FOCUS_CAP: u64 = 32 * 1024;

impl NodeLibrary {
    pub(crate) fn metadata_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.lock().unwrap_or_else(|p| p.into_inner()).metadata_timeout)
    }

    /// Applies the stored settings over the command line's (a value set through the API
    /// stays in force across restarts). A stored document this version cannot read is
    /// reported and left alone.
    async fn load_settings(&self) -> anyhow::Result<()> {
        let stored = self.catalog.settings(SETTINGS_KEY).await.context("reading the settings")?;
        let mut settings = self.settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(value) = stored {
            match serde_json::from_value::<SettingsPatch>(value) {
                Ok(patch) if patch.check().is_ok() => patch.apply(&mut settings),
                _ => eprintln!("ignoring the stored settings ({SETTINGS_KEY:?}): not this version's form"),
            }
        }
        self.apply(settings);
        Ok(())
    }

    fn apply(&self, s: Settings) {
        self.catalog.set_disconnect_timeout(Duration::from_secs(s.disconnect_timeout));
        self.catalog.set_focus(if s.focus { Focus::Cap(s.focus_cap) } else { Focus::Off });
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// The API's view of a torrent.
fn torrent(s: &Snapshot) -> Torrent {
    let length = s.info.as_ref().map_or(0, |i| i.size);
    let state = match s.stat {
        _ if s.complete => TorrentState::Complete,
        Stat::GettingInfo => TorrentState::Pending,
        Stat::Added | Stat::Preload | Stat::Working => TorrentState::Running,
        Stat::Closed | Stat::InDb => TorrentState::Closed,
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
        Box::pin(async move { Ok(self.settings.lock().unwrap_or_else(|p| p.into_inner()).clone()) })
    }

    fn update_settings(&self, patch: SettingsPatch) -> BoxFuture<'_, Result<Settings, LibraryError>> {
        Box::pin(async move {
            let _write = self.settings_write.lock().await;
            let mut settings = self.settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
            patch.apply(&mut settings);
            let value = serde_json::to_value(&settings).map_err(|e| LibraryError::Unavailable(e.to_string()))?;
            // Stored first: a failed write changes nothing.
            self.catalog.set_settings(SETTINGS_KEY, value).await.map_err(library_error)?;
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
