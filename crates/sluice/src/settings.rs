//! What TorrServer's settings (`BTSets`, at `/settings`) mean for Sluice, in one place.
//!
//! TorrServer applies a `set` by dropping every torrent and recreating its engine, which
//! stops playback. Sluice applies the fields it has an equivalent for to the running node
//! instead (streams go on), stores the whole document (key `BitTorr`) and echoes it back,
//! with the values in force written over the fields below, so `/settings` and
//! `/api/v1/settings` never disagree.
//!
//! Applied at once:
//! - `CacheSize` (bytes): with `--storage ram`, the one RAM budget of every torrent together
//!   (TorrServer's is per torrent), at least [`MIN_RAM_BUDGET`]; a lower budget evicts at
//!   once, but never bytes a reader is copying. With disk storage it is only stored.
//! - `ConnectionsLimit`: peers per torrent; running torrents over a lowered limit drop their
//!   least useful peers.
//! - `DownloadRateLimit`, `UploadRateLimit` (KB/s, 1 KB = 1024 bytes; 0 unlimited): each
//!   torrent's limits, as `--download-limit`/`--upload-limit` set them (focus mode's cap
//!   still applies below them).
//! - `TorrentDisconnectTimeout` (seconds): `/api/v1/settings`' `disconnect_timeout`.
//! - `RetrackersMode` (0 keep, 1 add, 2 remove, 3 replace): `--tracker-mode` for torrents
//!   started from then on; the "default list" is `--tracker`.
//! - `DisableDHT`: torrents started from then on do not look up peers in the DHT (the DHT
//!   itself starts or stops at the next start).
//! - `PreloadCache` (%): how much `/stream?preload` reads, `CacheSize × PreloadCache %`.
//!
//! Applied at the next start (unless the matching option is given then): `DisableDHT`
//! (`--no-dht`), `DisableUPNP` (`--no-port-mapping`), `DisableUTP` (`--no-utp`), `ForceEncrypt`
//! (`--encryption require`), `EnableLPD` off (`--no-lsd`).
//!
//! Stored and echoed, without effect: `ReaderReadAHead` (Sluice sizes a reader's readahead
//! window from the media bitrate, and keeps container indexes rather than a share behind the
//! playhead), `UseDisk`, `TorrentsSavePath`, `RemoveCacheOnDrop` (storage is chosen with
//! `--storage` and `--data-dir`), `EnableDebug` (`SLUICE_LOG`), `EnableIPv6`, `DisableTCP`,
//! `DisablePEX`, `DisableUpload`, `PeersListenPort` (`--peer-listen`), `LPDIPv6`,
//! `EnableDLNA`, `EnableBonjour`, `FriendlyName`, `EnableRutorSearch`,
//! `EnableTorznabSearch`, `TorznabUrls`, `TMDBSettings`, `SslPort`, `SslCert`, `SslKey`,
//! `ResponsiveMode` (Sluice serves verified bytes only), `ShowFSActiveTorr`,
//! `StoreSettingsInJson`, `StoreViewedInJson`; `TrackTimecode` is read by `/viewed`.

use sluice_http::api::MAX_DISCONNECT_TIMEOUT;
use sluice_http::torrserver::BTSets;
use sluice_node::TrackerMode;

/// The smallest RAM budget `CacheSize` sets: a few readers' windows of typical pieces.
pub(crate) const MIN_RAM_BUDGET: u64 = 8 << 20;

/// The settings of the running node that `BTSets` reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeSettings {
    /// Bytes per second; `None`: unlimited.
    pub(crate) download_limit: Option<u64>,
    pub(crate) upload_limit: Option<u64>,
    pub(crate) peers_per_torrent: usize,
    /// The RAM storage budget; `None` with disk storage.
    pub(crate) ram_budget: Option<u64>,
    pub(crate) tracker_mode: TrackerMode,
    /// Torrents look up peers in the DHT.
    pub(crate) dht: bool,
}

/// Settings read only when the server starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StartSettings {
    pub(crate) dht: bool,
    pub(crate) upnp: bool,
    pub(crate) utp: bool,
    pub(crate) lsd: bool,
    pub(crate) require_encryption: bool,
}

/// Everything a `BTSets` document means for Sluice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapped {
    /// Seconds, as `/api/v1/settings` shows it.
    pub(crate) disconnect_timeout: u64,
    pub(crate) node: NodeSettings,
    pub(crate) start: StartSettings,
}

fn kb_per_sec(kb: i64) -> Option<u64> {
    u64::try_from(kb).ok().filter(|&k| k > 0).map(|k| k.saturating_mul(1024))
}

fn to_kb(bytes: Option<u64>) -> i64 {
    // A limit set in bytes (`--download-limit`) shows rounded, but never as 0 (unlimited).
    bytes.map_or(0, |b| i64::try_from(b.div_ceil(1024)).unwrap_or(i64::MAX))
}

/// What `b` (already [`BTSets::sanitize`]d) sets; `ram`: Sluice runs with RAM storage.
pub(crate) fn map(b: &BTSets, ram: bool) -> Mapped {
    let tracker_mode = match b.retrackers_mode {
        0 => TrackerMode::Keep,
        2 => TrackerMode::Remove,
        3 => TrackerMode::Replace,
        _ => TrackerMode::Add,
    };
    let node = NodeSettings {
        download_limit: kb_per_sec(b.download_rate_limit),
        upload_limit: kb_per_sec(b.upload_rate_limit),
        peers_per_torrent: usize::try_from(b.connections_limit).unwrap_or(1).max(1),
        ram_budget: ram.then(|| u64::try_from(b.cache_size).unwrap_or(0).max(MIN_RAM_BUDGET)),
        tracker_mode,
        dht: !b.disable_dht,
    };
    let start = StartSettings {
        dht: !b.disable_dht,
        upnp: !b.disable_upnp,
        utp: !b.disable_utp,
        lsd: b.enable_lpd,
        require_encryption: b.force_encrypt,
    };
    let disconnect_timeout = u64::try_from(b.torrent_disconnect_timeout).unwrap_or(1).clamp(1, MAX_DISCONNECT_TIMEOUT);
    Mapped { disconnect_timeout, node, start }
}

/// Writes the values in force over the fields they come from (the others keep what was
/// stored).
pub(crate) fn overlay(b: &mut BTSets, disconnect_timeout: u64, node: &NodeSettings) {
    b.torrent_disconnect_timeout = i64::try_from(disconnect_timeout).unwrap_or(i64::MAX);
    b.download_rate_limit = to_kb(node.download_limit);
    b.upload_rate_limit = to_kb(node.upload_limit);
    b.connections_limit = i64::try_from(node.peers_per_torrent).unwrap_or(i64::MAX);
    if let Some(budget) = node.ram_budget {
        b.cache_size = i64::try_from(budget).unwrap_or(i64::MAX);
    }
    b.retrackers_mode = match node.tracker_mode {
        TrackerMode::Keep => 0,
        TrackerMode::Add => 1,
        TrackerMode::Remove => 2,
        TrackerMode::Replace => 3,
    };
    b.disable_dht = !node.dht;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(change: impl FnOnce(&mut BTSets)) -> BTSets {
        let mut b = BTSets::default();
        change(&mut b);
        b.sanitize();
        b
    }

    #[test]
    fn torrserver_defaults_map_to_sluice_defaults() {
        let m = map(&BTSets::default(), false);
        assert_eq!(m.disconnect_timeout, 30);
        assert_eq!(
            m.node,
            NodeSettings {
                download_limit: None,
                upload_limit: None,
                peers_per_torrent: 25,
                ram_budget: None,
                tracker_mode: TrackerMode::Add,
                dht: true,
            }
        );
        assert_eq!(m.start, StartSettings { dht: true, upnp: true, utp: true, lsd: true, require_encryption: false });
        assert_eq!(map(&BTSets::default(), true).node.ram_budget, Some(64 << 20));
    }

    #[test]
    fn each_field_maps() {
        let b = sets(|b| {
            b.download_rate_limit = 300;
            b.upload_rate_limit = 2;
            b.connections_limit = 7;
            b.cache_size = 100 << 20;
            b.torrent_disconnect_timeout = 90;
            b.retrackers_mode = 3;
            b.disable_dht = true;
            b.disable_upnp = true;
            b.disable_utp = true;
            b.enable_lpd = false;
            b.force_encrypt = true;
        });
        let m = map(&b, true);
        assert_eq!(m.node.download_limit, Some(300 * 1024));
        assert_eq!(m.node.upload_limit, Some(2048));
        assert_eq!(m.node.peers_per_torrent, 7);
        assert_eq!(m.node.ram_budget, Some(100 << 20));
        assert_eq!(m.node.tracker_mode, TrackerMode::Replace);
        assert!(!m.node.dht);
        assert_eq!(m.disconnect_timeout, 90);
        assert_eq!(
            m.start,
            StartSettings { dht: false, upnp: false, utp: false, lsd: false, require_encryption: true }
        );
        let modes: Vec<_> = (0..=4).map(|r| map(&sets(|b| b.retrackers_mode = r), false).node.tracker_mode).collect();
        use TrackerMode::*;
        assert_eq!(modes, [Keep, Add, Remove, Replace, Add]);
    }

    #[test]
    fn out_of_range_values_are_bounded() {
        let b = sets(|b| {
            b.cache_size = 1024;
            b.torrent_disconnect_timeout = i64::MAX;
            b.download_rate_limit = i64::MAX;
            b.connections_limit = -3;
        });
        let m = map(&b, true);
        assert_eq!(m.node.ram_budget, Some(MIN_RAM_BUDGET));
        assert_eq!(m.disconnect_timeout, MAX_DISCONNECT_TIMEOUT);
        assert_eq!(m.node.download_limit, Some(u64::MAX));
        assert_eq!(m.node.peers_per_torrent, 25, "sanitize makes it the default");
        assert_eq!(map(&b, false).node.ram_budget, None, "CacheSize is only stored with disk storage");
    }

    #[test]
    fn overlay_shows_the_values_in_force_and_maps_back_to_them() {
        let node = NodeSettings {
            download_limit: Some(100_000),
            upload_limit: None,
            peers_per_torrent: 40,
            ram_budget: Some(256 << 20),
            tracker_mode: TrackerMode::Keep,
            dht: false,
        };
        let mut b = sets(|b| b.friendly_name = "box".into());
        overlay(&mut b, 45, &node);
        assert_eq!(
            (b.download_rate_limit, b.upload_rate_limit, b.connections_limit, b.cache_size),
            (98, 0, 40, 256 << 20)
        );
        assert_eq!((b.torrent_disconnect_timeout, b.retrackers_mode, b.disable_dht), (45, 0, true));
        assert_eq!(b.friendly_name, "box", "unmapped fields keep their stored values");
        let back = map(&b, true);
        assert_eq!(back.disconnect_timeout, 45);
        assert_eq!(back.node, NodeSettings { download_limit: Some(98 * 1024), ..node.clone() });
        let mut disk = BTSets::default();
        overlay(&mut disk, 45, &NodeSettings { ram_budget: None, ..node });
        assert_eq!(disk.cache_size, 64 << 20, "disk storage echoes the stored CacheSize");
    }
}
