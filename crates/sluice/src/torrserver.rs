//! The catalog behind the TorrServer-compatible routes: [`TorrServerBackend`] for the same
//! [`NodeLibrary`] that serves `/api/v1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sluice_catalog::{CatalogError, FileId, Info, Meta, MetaUpdate, Snapshot, Source, Stat};
use sluice_core::InfoHash;
use sluice_http::FileIndex;
use sluice_http::api::BoxFuture;
use sluice_http::torrserver::{
    AddRequest, AddSource, BTSets, CacheState, Link, PieceState, TorrServerBackend, TorrentFiles, TorrentMeta,
    TorrentStat, TorrentStatus, TsError, Viewed,
};
use tokio::io::AsyncReadExt;

use crate::serve::NodeLibrary;

/// The database key TorrServer's settings are stored under.
pub(crate) const SETTINGS_KEY: &str = "BitTorr";

fn ts_error(e: CatalogError) -> TsError {
    match e {
        CatalogError::BadTorrent(m) => TsError::BadLink(m),
        CatalogError::UnknownTorrent => TsError::UnknownTorrent,
        CatalogError::UnknownFile => TsError::Refused("the torrent has no such file".into()),
        CatalogError::Busy => TsError::Refused("the torrent is being streamed".into()),
        e => TsError::Unavailable(e.to_string()),
    }
}

fn stat(s: Stat) -> TorrentStat {
    match s {
        Stat::Added => TorrentStat::Added,
        Stat::GettingInfo => TorrentStat::GettingInfo,
        Stat::Preload => TorrentStat::Preload,
        Stat::Working => TorrentStat::Working,
        Stat::Closed => TorrentStat::Closed,
        Stat::InDb => TorrentStat::InDb,
    }
}

/// TorrServer's file ids per torrent, built once per metainfo: sorting paths in natural order
/// was most of a status's cost, and `/torrents list` (every torrent) and `/cache` (every
/// 100 ms) ask for them all the time. An entry lives as long as its [`Info`] does (a removed
/// torrent's entry is pruned once the cache has doubled since it was last pruned).
#[derive(Debug, Default)]
pub(crate) struct FileIds(Mutex<FileIdMap>);

#[derive(Debug, Default)]
struct FileIdMap {
    map: HashMap<InfoHash, (Weak<Info>, Arc<TorrentFiles>)>,
    prune_at: usize,
}

impl FileIds {
    /// The torrent's files, `None` until its metadata is known (pad files left out).
    fn of(&self, s: &Snapshot) -> Option<Arc<TorrentFiles>> {
        let info = s.info.as_ref()?;
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((weak, files)) = lock().map.get(&s.info_hash)
            && std::ptr::eq(weak.as_ptr(), Arc::as_ptr(info))
        {
            return Some(files.clone());
        }
        let files = Arc::new(TorrentFiles::with_indices(
            info.files.iter().map(|f| (FileIndex(f.index), f.path.clone(), f.length)),
        ));
        let mut ids = lock();
        if ids.map.len() >= ids.prune_at {
            ids.map.retain(|_, (weak, _)| weak.strong_count() > 0);
            ids.prune_at = (2 * ids.map.len()).max(64);
        }
        ids.map.insert(s.info_hash, (Arc::downgrade(info), files.clone()));
        Some(files)
    }
}

fn status(s: &Snapshot, files: Option<&TorrentFiles>) -> TorrentStatus {
    TorrentStatus {
        title: s.title.clone(),
        category: s.category.clone(),
        poster: s.poster.clone(),
        data: s.data.clone(),
        timestamp: s.added_at.0,
        name: s.info.as_ref().map(|i| i.name.clone()).unwrap_or_else(|| s.title.clone()),
        hash: s.info_hash.to_hex(),
        stat: stat(s.stat),
        loaded_size: s.bytes_have,
        torrent_size: s.info.as_ref().map_or(0, |i| i.size),
        download_speed: s.download_rate as f64,
        upload_speed: s.upload_rate as f64,
        total_peers: u32::try_from(s.peers_known).unwrap_or(u32::MAX),
        active_peers: u32::try_from(s.peers_connected).unwrap_or(u32::MAX),
        bytes_read_data: s.downloaded,
        bytes_written_data: s.uploaded,
        file_stats: files.map(TorrentFiles::stats).unwrap_or_default(),
        ..TorrentStatus::default()
    }
}

impl NodeLibrary {
    /// The stored document with the values in force over the fields Sluice applies.
    async fn ts_settings(&self) -> BTSets {
        let mut sets = match self.catalog.settings(SETTINGS_KEY).await {
            Ok(Some(v)) => serde_json::from_value(v).unwrap_or_default(),
            _ => BTSets::default(),
        };
        let node = self.node.lock().unwrap_or_else(|p| p.into_inner()).clone();
        crate::settings::overlay(&mut sets, self.settings_in_force().disconnect_timeout, &node);
        sets
    }

    /// Waits (up to the metadata timeout) until the torrent runs with its metadata.
    async fn running(&self, hash: InfoHash) -> Result<Snapshot, TsError> {
        if let Some(s) = self.catalog.status(hash)
            && s.info.is_some()
            && s.stat == Stat::Working
        {
            return Ok(s);
        }
        match tokio::time::timeout(self.metadata_timeout(), self.catalog.activate(hash)).await {
            Ok(Ok(s)) if s.info.is_some() => Ok(s),
            Ok(Ok(_)) | Err(_) => Err(TsError::MetadataTimeout),
            Ok(Err(e)) => Err(ts_error(e)),
        }
    }
}

impl TorrServerBackend for NodeLibrary {
    fn add(&self, request: AddRequest) -> BoxFuture<'_, Result<TorrentStatus, TsError>> {
        Box::pin(async move {
            let source = match request.source {
                AddSource::Torrent(bytes) => Source::Torrent(bytes.to_vec()),
                AddSource::Link(Link::Magnet(link)) => Source::Link(link),
                AddSource::Link(Link::Hash(hash)) => Source::Link(hash.to_hex()),
                AddSource::Link(Link::Url(url)) => Source::Link(url),
            };
            let TorrentMeta { title, poster, category, data } = request.meta;
            let meta = Meta { title, poster, category, data };
            // The catalog saves every torrent it is given: `save` has nothing more to do.
            let added = self.catalog.add(source, meta).await.map_err(ts_error)?;
            let s = &added.snapshot;
            Ok(status(s, self.file_ids.of(s).as_deref()))
        })
    }

    fn files(&self, hash: InfoHash) -> BoxFuture<'_, Result<Arc<TorrentFiles>, TsError>> {
        Box::pin(async move {
            let s = self.running(hash).await?;
            self.file_ids.of(&s).ok_or(TsError::MetadataTimeout)
        })
    }

    fn get(&self, hash: InfoHash) -> BoxFuture<'_, Result<TorrentStatus, TsError>> {
        Box::pin(async move {
            let s = self.catalog.get(hash).ok_or(TsError::UnknownTorrent)?;
            Ok(status(&s, self.file_ids.of(&s).as_deref()))
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<TorrentStatus>> {
        Box::pin(async move {
            self.catalog
                .list()
                .iter()
                .map(|s| match s.stat {
                    Stat::InDb => status(s, None),
                    _ => status(s, self.file_ids.of(s).as_deref()),
                })
                .collect()
        })
    }

    fn set(&self, hash: InfoHash, meta: TorrentMeta) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            let update = MetaUpdate {
                title: Some(meta.title),
                poster: Some(meta.poster),
                category: Some(meta.category),
                data: (!meta.data.is_empty()).then_some(meta.data),
            };
            self.catalog.set(hash, update).await.map_err(ts_error)
        })
    }

    fn remove(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            match self.catalog.remove(hash, false).await.map_err(ts_error)? {
                true => Ok(()),
                false => Err(TsError::UnknownTorrent),
            }
        })
    }

    fn drop_torrent(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move { self.catalog.drop(hash).await.map_err(ts_error) })
    }

    fn wipe(&self) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move { self.catalog.wipe(false).await.map_err(ts_error) })
    }

    fn save(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>> {
        // The catalog persists a torrent when it is added.
        Box::pin(async move { self.catalog.status(hash).map(|_| ()).ok_or(TsError::UnknownTorrent) })
    }

    fn cache(&self, hash: InfoHash) -> BoxFuture<'_, Result<Option<CacheState>, TsError>> {
        Box::pin(async move {
            let s = self.catalog.get(hash).ok_or(TsError::UnknownTorrent)?;
            let Some(info) = s.info.clone() else {
                return Ok(None);
            };
            let piece_length = u64::from(info.piece_length);
            let mut pieces = std::collections::BTreeMap::new();
            if let Some(verified) = self.catalog.verified(hash) {
                for i in verified.iter_ones() {
                    let id = i.get();
                    let start = u64::from(id) * piece_length;
                    let length = piece_length.min(info.size.saturating_sub(start));
                    pieces.insert(id, PieceState { id, length, size: length, completed: true, priority: 0 });
                }
            }
            Ok(Some(CacheState {
                hash: hash.to_hex(),
                // RAM storage: the one budget (what TorrServer shows, its cache's capacity).
                capacity: self.ram.as_ref().map_or(info.size, |c| c.stats().budget),
                filled: s.bytes_have,
                pieces_length: piece_length,
                pieces_count: info.pieces,
                torrent: Some(status(&s, self.file_ids.of(&s).as_deref())),
                pieces,
                readers: Vec::new(),
            }))
        })
    }

    fn preload(&self, hash: InfoHash, file: FileIndex) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            let s = self.running(hash).await?;
            let info = s.info.as_ref().ok_or(TsError::MetadataTimeout)?;
            let length = info.file(file.0).ok_or_else(|| TsError::Refused("no such file".into()))?.length;
            let settings = self.ts_settings().await;
            let want = u64::try_from(settings.cache_size.saturating_mul(settings.preload_cache.clamp(0, 100)) / 100)
                .unwrap_or(0);
            let want = if want == 0 { 32 << 20 } else { want };
            let end = want.min(length);
            if end == 0 {
                return Ok(());
            }
            let mut reader = self.catalog.open_reader(hash, file.0, 0..end).map_err(ts_error)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(TsError::Unavailable(format!("preload: {e}"))),
                }
            }
        })
    }

    fn viewed_set(&self, hash: InfoHash, id: u32, timecode: Option<f64>) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            let track = timecode.is_some() && self.ts_settings().await.track_timecode;
            let result = match timecode {
                Some(t) => {
                    let t =
                        if track { Duration::try_from_secs_f64(t).unwrap_or(Duration::ZERO) } else { Duration::ZERO };
                    self.catalog.set_viewed(hash, FileId(id), t).await
                }
                None => self.catalog.mark_viewed(hash, FileId(id)).await,
            };
            result.map_err(ts_error)
        })
    }

    fn viewed_remove(&self, hash: InfoHash, id: Option<u32>) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move { self.catalog.remove_viewed(hash, id.map(FileId)).await.map(|_| ()).map_err(ts_error) })
    }

    fn viewed_list(&self, hash: Option<InfoHash>) -> BoxFuture<'_, Vec<Viewed>> {
        Box::pin(async move {
            let marks = self.catalog.viewed(hash).await.unwrap_or_default();
            marks
                .into_iter()
                .map(|m| Viewed {
                    hash: m.info_hash.to_hex(),
                    file_index: i64::from(m.file.0),
                    timecode: m.timecode.as_secs_f64(),
                })
                .collect()
        })
    }

    fn settings(&self) -> BoxFuture<'_, BTSets> {
        Box::pin(self.ts_settings())
    }

    fn set_settings(&self, settings: BTSets) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            let _write = self.settings_write.lock().await;
            let mapped = crate::settings::map(&settings, self.ram.is_some());
            let value = serde_json::to_value(&settings).map_err(|e| TsError::Unavailable(e.to_string()))?;
            // Stored first: a failed write changes nothing.
            self.catalog.set_settings(SETTINGS_KEY, value).await.map_err(ts_error)?;
            let timeout = serde_json::Value::from(mapped.disconnect_timeout);
            self.store_own([("disconnect_timeout".to_owned(), timeout)].into_iter().collect())
                .await
                .map_err(ts_error)?;
            let own = sluice_http::api::Settings {
                disconnect_timeout: mapped.disconnect_timeout,
                ..self.settings_in_force()
            };
            self.apply(own);
            self.apply_node(mapped.node).await;
            Ok(())
        })
    }

    fn probe(&self, hash: InfoHash, file: FileIndex) -> BoxFuture<'_, Result<serde_json::Value, TsError>> {
        Box::pin(async move {
            self.running(hash).await?;
            let mut addr = self.http_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let url = format!("http://{addr}/api/v1/torrents/{}/files/{}/stream", hash.to_hex(), file.0);
            let output = tokio::task::spawn_blocking(move || {
                std::process::Command::new("ffprobe")
                    .args(["-v", "quiet", "-print_format", "json", "-show_format", "-show_streams", &url])
                    .stdin(std::process::Stdio::null())
                    .output()
            })
            .await
            .map_err(|e| TsError::Unavailable(e.to_string()))?;
            let output = match output {
                Ok(o) => o,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(TsError::Unavailable("ffprobe is not installed".into()));
                }
                Err(e) => return Err(TsError::Unavailable(format!("ffprobe: {e}"))),
            };
            if !output.status.success() {
                return Err(TsError::Unavailable(format!("ffprobe failed ({})", output.status)));
            }
            serde_json::from_slice(&output.stdout).map_err(|e| TsError::Unavailable(format!("ffprobe output: {e}")))
        })
    }

    fn shutdown(&self, reason: Option<String>) -> Result<(), TsError> {
        eprintln!("shutdown requested over HTTP{}", reason.map(|r| format!(": {r}")).unwrap_or_default());
        self.shutdown.notify_one();
        Ok(())
    }
}
