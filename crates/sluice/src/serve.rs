//! `sluice serve`: the node behind the HTTP streaming API. This file only adapts the node's
//! torrent handles to the HTTP crate's [`Library`] seam.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use sluice_core::InfoHash;
use sluice_core::magnet::Magnet;
use sluice_core::metainfo::Metainfo;
use sluice_http::api::BoxFuture;
use sluice_http::{Added, AddedFile, FileIndex, FileInfo, FileReader, HttpConfig, Library, LibraryError, SourceError};
use sluice_http::{StreamSource, api_router};
use sluice_node::{AddMagnet, AddTorrent, MagnetHandle, NodeError, RamCache, Session, StartMode, TorrentHandle};

use crate::NetArgs;

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
    let mut config = args.net.session_config(args.peer_listen, 6881, &args.data_dir.join(".sluice"))?;
    if args.storage == StorageKind::Ram {
        config.ram = Some(RamCache::new(args.ram_budget));
    }
    let session = Session::start(config).await?;
    let http = args.net.listen_or(args.listen, 8090);
    if args.net.loopback_only && !http.ip().is_loopback() {
        anyhow::bail!("{http} is not a loopback address, and loopback-only is on");
    }
    let library = Arc::new(NodeLibrary {
        session,
        data_dir: args.data_dir,
        metadata_timeout: std::time::Duration::from_secs(args.metadata_timeout),
        torrents: Mutex::default(),
        magnets: Mutex::default(),
    });
    let config = HttpConfig {
        read_timeout: std::time::Duration::from_secs(args.read_timeout),
        max_file_size: args.max_file_size,
        ..HttpConfig::default()
    };
    let app = api_router(library.clone(), config).merge(crate::exporter::router(library.clone())?);
    let listener = tokio::net::TcpListener::bind(http).await.with_context(|| format!("listening on {http}"))?;
    eprintln!("http on {}", listener.local_addr()?);
    if let Some(addr) = library.session.listen_addr() {
        eprintln!("listening on {addr}");
    }
    axum::serve(listener, app).with_graceful_shutdown(crate::progress::shutdown_signal()).await?;
    let magnets: Vec<MagnetHandle> =
        library.magnets.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, m)| m).collect();
    for m in magnets {
        m.cancel().await;
        if let Some(t) = m.torrent() {
            library.torrents.lock().unwrap_or_else(|p| p.into_inner()).insert(t.info_hash(), t);
        }
    }
    let handles: Vec<TorrentHandle> =
        library.torrents.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    for h in handles {
        h.shutdown().await;
    }
    library.session.save_dht().await;
    Ok(())
}

struct NodeLibrary {
    session: Session,
    data_dir: PathBuf,
    metadata_timeout: std::time::Duration,
    torrents: Mutex<HashMap<InfoHash, TorrentHandle>>,
    /// Magnets whose metadata was not known when their add returned.
    magnets: Mutex<HashMap<InfoHash, MagnetHandle>>,
}

impl crate::exporter::Torrents for NodeLibrary {
    fn progress(&self) -> Vec<(InfoHash, sluice_node::Progress)> {
        let torrents = self.torrents.lock().unwrap_or_else(|p| p.into_inner());
        torrents.iter().map(|(hash, h)| (*hash, h.progress())).collect()
    }
}

impl NodeLibrary {
    /// The running torrent; a magnet whose metadata arrived since is moved over on the way.
    fn handle(&self, torrent: InfoHash) -> Option<TorrentHandle> {
        if let Some(h) = self.torrents.lock().unwrap_or_else(|p| p.into_inner()).get(&torrent) {
            return Some(h.clone());
        }
        let ready = self.magnets.lock().unwrap_or_else(|p| p.into_inner()).get(&torrent)?.torrent()?;
        self.torrents.lock().unwrap_or_else(|p| p.into_inner()).insert(torrent, ready.clone());
        self.magnets.lock().unwrap_or_else(|p| p.into_inner()).remove(&torrent);
        Some(ready)
    }

    fn magnet(&self, torrent: InfoHash) -> Option<MagnetHandle> {
        self.magnets.lock().unwrap_or_else(|p| p.into_inner()).get(&torrent).cloned()
    }
}

fn added(meta: &Metainfo, created: bool) -> Added {
    let files = meta.files.iter().map(|f| AddedFile { path: f.path.join("/"), length: f.length }).collect();
    Added { info_hash: meta.info_hash, name: meta.name.clone(), files, created, pending: false }
}

/// A magnet still fetching its metadata: named by its `dn`, else its info-hash.
fn pending(magnet: &Magnet, created: bool) -> Added {
    let name = magnet.name.clone().unwrap_or_else(|| magnet.info_hash.to_hex());
    Added { info_hash: magnet.info_hash, name, files: Vec::new(), created, pending: true }
}

impl StreamSource for NodeLibrary {
    fn file(&self, torrent: InfoHash, index: FileIndex) -> Result<FileInfo, SourceError> {
        let handle = self.handle(torrent).ok_or(SourceError::UnknownTorrent)?;
        let file = handle.metainfo().files.get(index.0).filter(|f| !f.pad).ok_or(SourceError::UnknownFile)?;
        Ok(FileInfo { path: file.path.join("/"), length: file.length, modified: None })
    }

    fn open(&self, torrent: InfoHash, index: FileIndex, range: Range<u64>) -> Result<Box<dyn FileReader>, SourceError> {
        let handle = self.handle(torrent).ok_or(SourceError::UnknownTorrent)?;
        let reader = handle.open_reader(index.0, range).ok_or(SourceError::UnknownFile)?;
        Ok(Box::new(reader))
    }
}

impl Library for NodeLibrary {
    fn add_torrent(&self, torrent: axum::body::Bytes) -> BoxFuture<'_, Result<Added, LibraryError>> {
        Box::pin(async move {
            let meta = Metainfo::from_bytes(&torrent).map_err(|e| LibraryError::BadTorrent(e.to_string()))?;
            if let Some(h) = self.handle(meta.info_hash) {
                return Ok(added(h.metainfo(), false));
            }
            let add = AddTorrent {
                meta: meta.clone(),
                data_dir: self.data_dir.clone(),
                state_dir: self.data_dir.join(".sluice"),
                mode: StartMode::Resume,
            };
            match self.session.add_torrent(add).await {
                Ok(handle) => {
                    self.torrents.lock().unwrap_or_else(|p| p.into_inner()).insert(meta.info_hash, handle);
                    Ok(added(&meta, true))
                }
                Err(NodeError::Duplicate(_)) => Ok(added(&meta, false)),
                Err(e @ NodeError::IntoStateDir(_)) => Err(LibraryError::BadTorrent(e.to_string())),
                Err(e) => Err(LibraryError::Unavailable(e.to_string())),
            }
        })
    }

    fn add_magnet(&self, link: String) -> BoxFuture<'_, Result<Added, LibraryError>> {
        Box::pin(async move {
            let magnet = Magnet::parse(&link).map_err(|e| LibraryError::BadTorrent(e.to_string()))?;
            let hash = magnet.info_hash;
            if let Some(h) = self.handle(hash) {
                return Ok(added(h.metainfo(), false));
            }
            let (fetch, created) = match self.magnet(hash) {
                Some(fetch) => {
                    let _ = fetch.add_peers(magnet.peers.clone()).await;
                    (fetch, false)
                }
                None => {
                    let add = AddMagnet {
                        magnet: magnet.clone(),
                        data_dir: self.data_dir.clone(),
                        state_dir: self.data_dir.join(".sluice"),
                        mode: StartMode::Resume,
                    };
                    match self.session.add_magnet(add) {
                        Ok(fetch) => {
                            self.magnets.lock().unwrap_or_else(|p| p.into_inner()).insert(hash, fetch.clone());
                            (fetch, true)
                        }
                        // Being added from a .torrent right now.
                        Err(NodeError::Duplicate(_)) => return Ok(pending(&magnet, false)),
                        Err(e) => return Err(LibraryError::Unavailable(e.to_string())),
                    }
                }
            };
            match tokio::time::timeout(self.metadata_timeout, fetch.wait()).await {
                Ok(Ok(torrent)) => {
                    let meta = torrent.metainfo().clone();
                    self.handle(hash);
                    Ok(added(&meta, created))
                }
                Ok(Err(e)) => {
                    self.magnets.lock().unwrap_or_else(|p| p.into_inner()).remove(&hash);
                    Err(LibraryError::Unavailable(e.to_string()))
                }
                Err(_) => Ok(pending(&magnet, created)),
            }
        })
    }

    fn add_peers(&self, torrent: InfoHash, peers: Vec<SocketAddr>) -> BoxFuture<'_, Result<(), LibraryError>> {
        Box::pin(async move {
            let result = match (self.handle(torrent), self.magnet(torrent)) {
                (Some(handle), _) => handle.add_peers(peers).await,
                (None, Some(fetch)) => fetch.add_peers(peers).await,
                (None, None) => return Err(LibraryError::UnknownTorrent),
            };
            result.map_err(|e| LibraryError::Unavailable(e.to_string()))
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
