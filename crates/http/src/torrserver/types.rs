//! TorrServer's JSON shapes, key for key.
//!
//! The casing split is TorrServer's and clients depend on it: status, viewed marks and
//! request bodies are snake_case (Go `json` tags); settings and the cache state are the Go
//! field names (PascalCase, no tags). Go's `omitempty` leaves zero numbers, empty strings
//! and empty arrays out, so those fields are skipped here when zero, and clients must (and
//! do) accept the missing keys.
//!
//! Request bodies are decoded the way Go's `encoding/json` does: keys match
//! case-insensitively, unknown keys are ignored, `null` leaves the zero value, and a value
//! of the wrong type fails the whole request (400).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

fn zero_u64(v: &u64) -> bool {
    *v == 0
}

fn zero_u32(v: &u32) -> bool {
    *v == 0
}

fn zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// `stat` of a [`TorrentStatus`], serialized as its number next to its `stat_string`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TorrentStat {
    /// Just added, nothing asked of the swarm yet.
    #[default]
    Added,
    /// Fetching the metadata.
    GettingInfo,
    /// A preload is filling the cache.
    Preload,
    Working,
    Closed,
    /// Known (saved) but not loaded: no peers, no memory.
    InDb,
}

impl TorrentStat {
    pub fn code(self) -> u8 {
        match self {
            Self::Added => 0,
            Self::GettingInfo => 1,
            Self::Preload => 2,
            Self::Working => 3,
            Self::Closed => 4,
            Self::InDb => 5,
        }
    }

    /// TorrServer's `stat_string` for this state.
    pub fn text(self) -> &'static str {
        match self {
            Self::Added => "Torrent added",
            Self::GettingInfo => "Torrent getting info",
            Self::Preload => "Torrent preload",
            Self::Working => "Torrent working",
            Self::Closed => "Torrent closed",
            Self::InDb => "Torrent in db",
        }
    }
}

/// Flattened into [`TorrentStatus`]: the two keys can never disagree.
impl Serialize for TorrentStat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("stat", &self.code())?;
        map.serialize_entry("stat_string", self.text())?;
        map.end()
    }
}

/// One file of a torrent: `id` is 1-based in natural path order (see
/// [`TorrentFiles`](super::TorrentFiles)); `path` includes the torrent's top folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FileStat {
    #[serde(skip_serializing_if = "zero_u32")]
    pub id: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "zero_u64")]
    pub length: u64,
}

/// A torrent's `file_stats`, rendered to JSON once: the list never changes once the metadata
/// is known, and `/torrents list` writes every torrent's list on each poll (escaping the same
/// paths again was most of that route's CPU).
#[derive(Clone, Debug, Default)]
pub struct FileStats(Option<Arc<RawValue>>);

impl FileStats {
    pub fn new(stats: &[FileStat]) -> Self {
        if stats.is_empty() {
            return Self(None);
        }
        // Serializing plain strings and numbers cannot fail.
        Self(serde_json::value::to_raw_value(stats).ok().map(Arc::from))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The rendered JSON array (`[]` when empty).
    pub fn json(&self) -> &str {
        self.0.as_deref().map_or("[]", RawValue::get)
    }
}

impl PartialEq for FileStats {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for FileStats {}

impl Serialize for FileStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(s),
            None => s.collect_seq(std::iter::empty::<FileStat>()),
        }
    }
}

/// The status object behind `/torrents` add/get/list, `/stream?stat` and `/cache`'s
/// `Torrent`. Field order is TorrServer's.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TorrentStatus {
    pub title: String,
    pub category: String,
    pub poster: String,
    /// Free-form client data, returned verbatim.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// Unix seconds when added.
    pub timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Lowercase hex info-hash.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub torrs_hash: String,
    #[serde(flatten)]
    pub stat: TorrentStat,
    #[serde(skip_serializing_if = "zero_u64")]
    pub loaded_size: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub torrent_size: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub preloaded_bytes: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub preload_size: u64,
    /// Bytes per second.
    #[serde(skip_serializing_if = "zero_f64")]
    pub download_speed: f64,
    #[serde(skip_serializing_if = "zero_f64")]
    pub upload_speed: f64,
    #[serde(skip_serializing_if = "zero_u32")]
    pub total_peers: u32,
    #[serde(skip_serializing_if = "zero_u32")]
    pub pending_peers: u32,
    #[serde(skip_serializing_if = "zero_u32")]
    pub active_peers: u32,
    #[serde(skip_serializing_if = "zero_u32")]
    pub connected_seeders: u32,
    #[serde(skip_serializing_if = "zero_u32")]
    pub half_open_peers: u32,
    #[serde(skip_serializing_if = "zero_u64")]
    pub bytes_written: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub bytes_written_data: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub bytes_read: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub bytes_read_data: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub bytes_read_useful_data: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub chunks_written: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub chunks_read: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub chunks_read_useful: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub chunks_read_wasted: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub pieces_dirtied_good: u64,
    #[serde(skip_serializing_if = "zero_u64")]
    pub pieces_dirtied_bad: u64,
    #[serde(skip_serializing_if = "zero_f64")]
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bit_rate: String,
    /// Present once the metadata is known; never for `InDb` entries.
    #[serde(skip_serializing_if = "FileStats::is_empty")]
    pub file_stats: FileStats,
}

/// `/cache` answer for a torrent with a cache (PascalCase Go field names).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CacheState {
    pub hash: String,
    /// Bytes the cache may hold for this torrent.
    pub capacity: u64,
    /// Bytes it holds.
    pub filled: u64,
    /// The piece length.
    pub pieces_length: u64,
    pub pieces_count: u32,
    pub torrent: Option<TorrentStatus>,
    /// Pieces holding data, by index.
    pub pieces: BTreeMap<u32, PieceState>,
    pub readers: Vec<ReaderState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PieceState {
    pub id: u32,
    /// The piece's length.
    pub length: u64,
    /// Bytes of it present.
    pub size: u64,
    pub completed: bool,
    /// 0 none, 1 normal, 2 high, 3 readahead, 4 next, 5 now.
    pub priority: u8,
}

/// One reader's kept piece range and current piece.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReaderState {
    pub start: u32,
    pub end: u32,
    pub reader: u32,
}

/// A viewed mark as `/viewed list` returns it; `file_index` is the 1-based file id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Viewed {
    pub hash: String,
    pub file_index: i64,
    /// Seconds; 0 unless the server tracks time codes.
    pub timecode: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TorznabConfig {
    pub host: String,
    pub key: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TmdbSettings {
    #[serde(rename = "APIKey")]
    pub api_key: String,
    #[serde(rename = "APIURL")]
    pub api_url: String,
    #[serde(rename = "ImageURL")]
    pub image_url: String,
    #[serde(rename = "ImageURLRu")]
    pub image_url_ru: String,
}

impl Default for TmdbSettings {
    fn default() -> Self {
        Self {
            api_key: String::new(),
            api_url: "https://api.themoviedb.org".into(),
            image_url: "https://image.tmdb.org".into(),
            image_url_ru: "https://imagetmdb.com".into(),
        }
    }
}

/// TorrServer's settings object. `Default` is TorrServer's defaults (`/settings def`); a
/// `set` starts from zero values for the keys it leaves out, as Go does, and
/// [`BTSets::sanitize`] then applies TorrServer's minimums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default = "BTSets::zeroed")]
pub struct BTSets {
    /// Piece-cache bytes per active torrent. Lampa checks this key exists.
    pub cache_size: i64,
    pub reader_read_a_head: i64,
    pub preload_cache: i64,
    pub use_disk: bool,
    pub torrents_save_path: String,
    pub remove_cache_on_drop: bool,
    pub force_encrypt: bool,
    pub retrackers_mode: i64,
    pub torrent_disconnect_timeout: i64,
    pub enable_debug: bool,
    #[serde(rename = "EnableDLNA")]
    pub enable_dlna: bool,
    pub enable_bonjour: bool,
    pub friendly_name: String,
    pub enable_rutor_search: bool,
    pub enable_torznab_search: bool,
    pub torznab_urls: Option<Vec<TorznabConfig>>,
    #[serde(rename = "TMDBSettings")]
    pub tmdb_settings: TmdbSettings,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "DisableTCP")]
    pub disable_tcp: bool,
    #[serde(rename = "DisableUTP")]
    pub disable_utp: bool,
    #[serde(rename = "DisableUPNP")]
    pub disable_upnp: bool,
    #[serde(rename = "DisableDHT")]
    pub disable_dht: bool,
    #[serde(rename = "DisablePEX")]
    pub disable_pex: bool,
    pub disable_upload: bool,
    /// KB/s, 0 unlimited.
    pub download_rate_limit: i64,
    pub upload_rate_limit: i64,
    pub connections_limit: i64,
    pub peers_listen_port: i64,
    #[serde(rename = "EnableLPD")]
    pub enable_lpd: bool,
    #[serde(rename = "LPDIPv6")]
    pub lpd_ipv6: bool,
    pub ssl_port: i64,
    pub ssl_cert: String,
    pub ssl_key: String,
    pub responsive_mode: bool,
    #[serde(rename = "ShowFSActiveTorr")]
    pub show_fs_active_torr: bool,
    pub store_settings_in_json: bool,
    pub store_viewed_in_json: bool,
    pub track_timecode: bool,
}

impl Default for BTSets {
    fn default() -> Self {
        Self {
            cache_size: 64 << 20,
            reader_read_a_head: 95,
            preload_cache: 50,
            retrackers_mode: 1,
            torrent_disconnect_timeout: 30,
            enable_bonjour: true,
            tmdb_settings: TmdbSettings::default(),
            connections_limit: 25,
            enable_lpd: true,
            responsive_mode: true,
            show_fs_active_torr: true,
            store_settings_in_json: true,
            ..Self::zeroed()
        }
    }
}

impl BTSets {
    /// Go's zero value: what a key left out of a `set` becomes before [`Self::sanitize`].
    pub fn zeroed() -> Self {
        Self {
            cache_size: 0,
            reader_read_a_head: 0,
            preload_cache: 0,
            use_disk: false,
            torrents_save_path: String::new(),
            remove_cache_on_drop: false,
            force_encrypt: false,
            retrackers_mode: 0,
            torrent_disconnect_timeout: 0,
            enable_debug: false,
            enable_dlna: false,
            enable_bonjour: false,
            friendly_name: String::new(),
            enable_rutor_search: false,
            enable_torznab_search: false,
            torznab_urls: None,
            tmdb_settings: TmdbSettings {
                api_key: String::new(),
                api_url: String::new(),
                image_url: String::new(),
                image_url_ru: String::new(),
            },
            enable_ipv6: false,
            disable_tcp: false,
            disable_utp: false,
            disable_upnp: false,
            disable_dht: false,
            disable_pex: false,
            disable_upload: false,
            download_rate_limit: 0,
            upload_rate_limit: 0,
            connections_limit: 0,
            peers_listen_port: 0,
            enable_lpd: false,
            lpd_ipv6: false,
            ssl_port: 0,
            ssl_cert: String::new(),
            ssl_key: String::new(),
            responsive_mode: false,
            show_fs_active_torr: false,
            store_settings_in_json: false,
            store_viewed_in_json: false,
            track_timecode: false,
        }
    }

    /// TorrServer's failsafe corrections on `set`: zero cache size, connection limit and
    /// disconnect timeout take their defaults, percentages are clamped, and the disk cache
    /// needs a path. Negative sizes and limits, which TorrServer passes on, become the
    /// default or zero here.
    pub fn sanitize(&mut self) {
        let def = Self::default();
        if self.cache_size <= 0 {
            self.cache_size = def.cache_size;
        }
        if self.connections_limit <= 0 {
            self.connections_limit = def.connections_limit;
        }
        if self.torrent_disconnect_timeout <= 0 {
            self.torrent_disconnect_timeout = def.torrent_disconnect_timeout;
        }
        self.reader_read_a_head = self.reader_read_a_head.clamp(5, 100);
        self.preload_cache = self.preload_cache.clamp(0, 100);
        self.download_rate_limit = self.download_rate_limit.max(0);
        self.upload_rate_limit = self.upload_rate_limit.max(0);
        if !(0..=65535).contains(&self.peers_listen_port) {
            self.peers_listen_port = 0;
        }
        if self.torrents_save_path.is_empty() {
            self.use_disk = false;
        }
    }

    /// Decodes a `sets` object the way Go would: case-insensitive keys, zero for the rest.
    pub fn from_request(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        let names = serde_json::to_value(Self::zeroed()).ok();
        let names: Vec<String> = match &names {
            Some(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        decode(value, &names)
    }
}

/// `POST /torrents` body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TorrentsRequest {
    #[serde(deserialize_with = "nullable")]
    pub action: String,
    #[serde(deserialize_with = "nullable")]
    pub link: String,
    #[serde(deserialize_with = "nullable")]
    pub hash: String,
    #[serde(deserialize_with = "nullable")]
    pub title: String,
    #[serde(deserialize_with = "nullable")]
    pub category: String,
    #[serde(deserialize_with = "nullable")]
    pub poster: String,
    #[serde(deserialize_with = "nullable")]
    pub data: String,
    #[serde(deserialize_with = "nullable")]
    pub save_to_db: bool,
}

impl TorrentsRequest {
    pub const KEYS: &[&str] = &["action", "link", "hash", "title", "category", "poster", "data", "save_to_db"];
}

/// `POST /viewed` body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ViewedRequest {
    #[serde(deserialize_with = "nullable")]
    pub action: String,
    #[serde(deserialize_with = "nullable")]
    pub hash: String,
    #[serde(deserialize_with = "nullable")]
    pub file_index: i64,
    #[serde(deserialize_with = "nullable")]
    pub timecode: f64,
}

impl ViewedRequest {
    pub const KEYS: &[&str] = &["action", "hash", "file_index", "timecode"];
}

/// `POST /cache` body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CacheRequest {
    #[serde(deserialize_with = "nullable")]
    pub action: String,
    #[serde(deserialize_with = "nullable")]
    pub hash: String,
}

impl CacheRequest {
    pub const KEYS: &[&str] = &["action", "hash"];
}

/// `POST /settings` body; `sets` is decoded with [`BTSets::from_request`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SettingsRequest {
    #[serde(deserialize_with = "nullable")]
    pub action: String,
    pub sets: Option<serde_json::Value>,
}

impl SettingsRequest {
    pub const KEYS: &[&str] = &["action", "sets"];
}

/// `null` decodes as the zero value, as in Go.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Decodes a JSON object (anything else is an error, as for Go structs) into `T` after renaming its keys to the canonical spelling in
/// `names` when they match ignoring ASCII case (an exact match wins, as in Go).
pub fn decode<T: DeserializeOwned>(value: serde_json::Value, names: &[&str]) -> Result<T, serde_json::Error> {
    let value = match value {
        serde_json::Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            let (exact, folded): (Vec<_>, Vec<_>) = map.into_iter().partition(|(k, _)| names.contains(&k.as_str()));
            for (k, v) in exact {
                out.insert(k, v);
            }
            for (k, v) in folded {
                if let Some(name) = names.iter().find(|n| n.eq_ignore_ascii_case(&k)) {
                    out.entry(*name).or_insert(v);
                }
            }
            serde_json::Value::Object(out)
        }
        _ => return Err(serde::de::Error::custom("expected a JSON object")),
    };
    serde_json::from_value(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn zero_fields_are_left_out() {
        let s = TorrentStatus { title: "t".into(), hash: "ab".into(), ..Default::default() };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"title":"t","category":"","poster":"","timestamp":0,"hash":"ab","stat":0,"stat_string":"Torrent added"})
        );
    }

    #[test]
    fn settings_set_is_case_insensitive_and_zero_filled() {
        let mut s = BTSets::from_request(json!({"cachesize": 1000, "PRELOADCACHE": 300, "UseDisk": true})).unwrap();
        assert_eq!(s.cache_size, 1000);
        assert_eq!(s.connections_limit, 0);
        s.sanitize();
        assert_eq!((s.preload_cache, s.connections_limit, s.reader_read_a_head), (100, 25, 5));
        assert!(!s.use_disk, "no save path");
        assert!(BTSets::from_request(json!({"CacheSize": "big"})).is_err());
        assert!(BTSets::from_request(json!([])).is_err());
    }

    #[test]
    fn default_settings_round_trip() {
        let v = serde_json::to_value(BTSets::default()).unwrap();
        assert_eq!(v["CacheSize"], 64 << 20);
        assert_eq!(v["TMDBSettings"]["APIURL"], "https://api.themoviedb.org");
        assert_eq!(BTSets::from_request(v).unwrap(), BTSets::default());
    }

    #[test]
    fn requests_accept_null_and_any_case() {
        let r: TorrentsRequest =
            decode(json!({"Action": "add", "LINK": "x", "title": null, "extra": 1}), TorrentsRequest::KEYS).unwrap();
        assert_eq!((r.action.as_str(), r.link.as_str(), r.title.as_str()), ("add", "x", ""));
        assert!(decode::<TorrentsRequest>(json!({"action": 5}), TorrentsRequest::KEYS).is_err());
        assert!(decode::<TorrentsRequest>(json!([1]), TorrentsRequest::KEYS).is_err());
    }
}
