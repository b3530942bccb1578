//! Shared by the catalog tests: content, a Sluice seeder session and catalogs on loopback
//! addresses 127.0.0.80-84.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_catalog::{Catalog, CatalogOptions, Focus, Snapshot, Stat};
use sluice_core::InfoHash;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_db::Db;
use sluice_node::{AddTorrent, Session, SessionConfig, StartMode, TorrentHandle};

pub const SEEDER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 80);
pub const LEECHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 81);

pub fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// A single-file torrent of `data`: (the .torrent bytes, its metainfo).
pub fn torrent(name: &str, piece_length: u32, data: &[u8]) -> (Vec<u8>, Metainfo) {
    let bytes = TorrentBuilder::single_file(name, piece_length, data.to_vec()).build();
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    (bytes, meta)
}

pub fn session_config(ip: Ipv4Addr) -> SessionConfig {
    SessionConfig { listen: Some(SocketAddr::from((ip, 0))), ..SessionConfig::loopback() }
}

/// A Sluice session seeding every given torrent, uploading each at most `upload_rate` B/s.
pub struct Seeder {
    pub session: Session,
    pub torrents: Vec<TorrentHandle>,
}

impl Seeder {
    pub async fn start(dir: &Path, upload_rate: Option<u64>, torrents: &[(&Metainfo, &[u8])]) -> Seeder {
        let mut config = session_config(SEEDER_IP);
        config.engine.upload_rate_limit = upload_rate;
        let session = Session::start(config).await.unwrap();
        let mut handles = Vec::new();
        for (meta, data) in torrents {
            let data_dir = dir.join("seed");
            std::fs::create_dir_all(&data_dir).unwrap();
            std::fs::write(data_dir.join(&meta.name), data).unwrap();
            let add = AddTorrent {
                meta: (*meta).clone(),
                data_dir,
                state_dir: dir.join("seed-state"),
                mode: StartMode::Recheck,
            };
            handles.push(session.add_torrent(add).await.unwrap());
        }
        Seeder { session, torrents: handles }
    }

    pub fn addr(&self) -> SocketAddr {
        self.session.listen_addr().unwrap()
    }
}

pub fn options(dir: &Path, timeout: Duration, focus: Focus) -> CatalogOptions {
    CatalogOptions { disconnect_timeout: timeout, focus, ..CatalogOptions::new(dir.join("data")) }
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("sluice.db")
}

pub async fn open_catalog(dir: &Path, options: CatalogOptions) -> Catalog {
    let session = Session::start(session_config(LEECHER_IP)).await.unwrap();
    let db = Db::open(db_path(dir)).unwrap();
    Catalog::open(session, db, options).await.unwrap()
}

/// Polls the torrent's status until `ok` holds; panics after `limit`.
pub async fn wait_for(
    catalog: &Catalog,
    hash: InfoHash,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = catalog.status(hash).expect("known torrent");
        if ok(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn closed(s: &Snapshot) -> bool {
    s.stat == Stat::Closed
}
