//! The TorrServer-compatible API against a fake backend, over real TCP on 127.0.0.1.
//!
//! Every response shape is compared with tests/golden/torrserver/*.txt: the status line, the
//! headers sorted (`date` left out), a blank line, then the body (JSON pretty-printed).
//! `SLUICE_BLESS=1 cargo test -p sluice-http --test torrserver` rewrites them. The client
//! sequences replay what Lampa (`src/interaction/torserver.js`) and Kodi's jacktorr
//! (`lib/torrserver/api.py`) send, per shared/reference/torrserver-api.md.

mod support;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Cursor;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::InfoHash;
use sluice_http::api::BoxFuture;
use sluice_http::torrserver::{
    AddRequest, AddSource, BTSets, CacheState, Link, PieceState, ReaderState, TorrServerBackend, TorrentFiles,
    TorrentMeta, TorrentStat, TorrentStatus, TsError, Viewed, torrserver_router,
};
use sluice_http::{FileIndex, FileInfo, FileReader, HttpConfig, SourceError, StreamSource};
use support::{Raw, get, send, send_json};

const SERIES: InfoHash = InfoHash([0x11; 20]);
const MOVIE: InfoHash = InfoHash([0x22; 20]);
const UPLOADED: InfoHash = InfoHash([0x33; 20]);
/// A magnet whose metadata never arrives.
const DEAD: InfoHash = InfoHash([0x44; 20]);
const TORRENT_FILE: &[u8] = b"d4:infod4:name6:uploadee";

fn content(path: &str, len: usize) -> Arc<[u8]> {
    let seed = path.len();
    (0..len).map(|i| (i * 7 + seed) as u8).collect::<Vec<_>>().into()
}

struct FakeTorrent {
    status: TorrentStatus,
    /// Metainfo order; `None` until the metadata is known.
    files: Option<Vec<(String, Arc<[u8]>)>>,
    saved: bool,
}

impl FakeTorrent {
    fn new(hash: InfoHash, name: &str, timestamp: i64, files: &[(&str, usize)]) -> Self {
        let files: Vec<_> = files.iter().map(|(p, l)| (p.to_string(), content(p, *l))).collect();
        let status = TorrentStatus {
            title: name.into(),
            name: name.into(),
            hash: hash.to_hex(),
            timestamp,
            stat: TorrentStat::Working,
            torrent_size: files.iter().map(|(_, d)| d.len() as u64).sum(),
            ..Default::default()
        };
        Self { status, files: Some(files), saved: false }
    }

    fn table(&self) -> Option<TorrentFiles> {
        self.files.as_ref().map(|f| TorrentFiles::new(f.iter().map(|(p, d)| (p.clone(), d.len() as u64))))
    }
}

#[derive(Default)]
struct Fake {
    /// Torrents the swarm "has": added on demand by hash or magnet.
    catalogue: Mutex<HashMap<InfoHash, FakeTorrent>>,
    torrents: Mutex<HashMap<InfoHash, FakeTorrent>>,
    viewed: Mutex<Vec<Viewed>>,
    settings: Mutex<Option<BTSets>>,
    calls: Mutex<Vec<String>>,
}

fn swarm() -> Fake {
    let fake = Fake::default();
    let mut c = fake.catalogue.lock().unwrap();
    let series = [
        ("Show S01/Show.E10.mkv", 3_000),
        ("Show S01/Show.E2.mkv", 2_000),
        ("Show S01/Show.E2.en.srt", 100),
        ("Show S01/Show.E1.mkv", 1_000),
        ("Show S01/Show.E1.mka", 500),
        ("Show S01/info.nfo", 10),
    ];
    c.insert(SERIES, FakeTorrent::new(SERIES, "Show S01", 1_700_000_100, &series));
    c.insert(MOVIE, FakeTorrent::new(MOVIE, "Movie (2024)", 1_700_000_000, &[("Movie (2024).mp4", 300_000)]));
    c.insert(UPLOADED, FakeTorrent::new(UPLOADED, "upload", 1_700_000_200, &[("upload/a.avi", 64)]));
    let mut dead = FakeTorrent::new(DEAD, "", 1_700_000_300, &[]);
    dead.files = None;
    dead.status.stat = TorrentStat::GettingInfo;
    c.insert(DEAD, dead);
    drop(c);
    fake
}

impl Fake {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn with<T>(&self, h: InfoHash, f: impl FnOnce(&mut FakeTorrent) -> T) -> Result<T, TsError> {
        self.torrents.lock().unwrap().get_mut(&h).map(f).ok_or(TsError::UnknownTorrent)
    }

    fn status(&self, t: &FakeTorrent) -> TorrentStatus {
        let mut s = t.status.clone();
        s.file_stats = t.table().map(|f| f.stats()).unwrap_or_default();
        s
    }
}

fn magnet_hash(link: &str) -> Option<InfoHash> {
    let at = link.find("xt=urn:btih:")? + "xt=urn:btih:".len();
    InfoHash::from_hex(link.get(at..at + 40)?)
}

impl StreamSource for Fake {
    fn file(&self, torrent: InfoHash, index: FileIndex) -> Result<FileInfo, SourceError> {
        let map = self.torrents.lock().unwrap();
        let t = map.get(&torrent).ok_or(SourceError::UnknownTorrent)?;
        let (path, data) = t.files.as_ref().and_then(|f| f.get(index.0)).ok_or(SourceError::UnknownFile)?;
        Ok(FileInfo { path: path.clone(), length: data.len() as u64, modified: None })
    }

    fn open(&self, torrent: InfoHash, index: FileIndex, range: Range<u64>) -> Result<Box<dyn FileReader>, SourceError> {
        let map = self.torrents.lock().unwrap();
        let t = map.get(&torrent).ok_or(SourceError::UnknownTorrent)?;
        let (_, data) = t.files.as_ref().and_then(|f| f.get(index.0)).ok_or(SourceError::UnknownFile)?;
        self.log(format!("open {} {}..{}", index.0, range.start, range.end));
        Ok(Box::new(Cursor::new(data[range.start as usize..range.end as usize].to_vec())))
    }
}

impl TorrServerBackend for Fake {
    fn add(&self, request: AddRequest) -> BoxFuture<'_, Result<TorrentStatus, TsError>> {
        Box::pin(async move {
            let h = match &request.source {
                AddSource::Link(Link::Hash(h)) => *h,
                AddSource::Link(Link::Magnet(m)) => magnet_hash(m).ok_or(TsError::BadLink("no btih".into()))?,
                AddSource::Link(Link::Url(_)) => return Err(TsError::BadLink("no fetching in tests".into())),
                AddSource::Torrent(b) if b[..] == *TORRENT_FILE => UPLOADED,
                AddSource::Torrent(_) => return Err(TsError::BadLink("not a torrent".into())),
            };
            self.log(format!("add {h} save={}", request.save));
            let mut map = self.torrents.lock().unwrap();
            let t = match map.entry(h) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let mut t =
                        self.catalogue.lock().unwrap().remove(&h).ok_or(TsError::Unavailable("no swarm".into()))?;
                    let m = request.meta;
                    if !m.title.is_empty() {
                        t.status.title = m.title;
                    }
                    (t.status.poster, t.status.category, t.status.data) = (m.poster, m.category, m.data);
                    t.saved = request.save;
                    e.insert(t)
                }
            };
            let mut s = self.status(t);
            s.file_stats = Default::default();
            s.stat = TorrentStat::GettingInfo;
            Ok(s)
        })
    }

    fn files(&self, hash: InfoHash) -> BoxFuture<'_, Result<Arc<TorrentFiles>, TsError>> {
        Box::pin(async move { self.with(hash, |t| t.table())?.map(Arc::new).ok_or(TsError::MetadataTimeout) })
    }

    fn get(&self, hash: InfoHash) -> BoxFuture<'_, Result<TorrentStatus, TsError>> {
        Box::pin(async move {
            let map = self.torrents.lock().unwrap();
            map.get(&hash).map(|t| self.status(t)).ok_or(TsError::UnknownTorrent)
        })
    }

    fn list(&self) -> BoxFuture<'_, Vec<TorrentStatus>> {
        Box::pin(async move { self.torrents.lock().unwrap().values().map(|t| self.status(t)).collect() })
    }

    fn set(&self, hash: InfoHash, meta: TorrentMeta) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            self.with(hash, |t| {
                t.status.title = if meta.title.is_empty() { t.status.name.clone() } else { meta.title };
                (t.status.poster, t.status.category) = (meta.poster, meta.category);
                if !meta.data.is_empty() {
                    t.status.data = meta.data;
                }
            })
        })
    }

    fn remove(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            self.log(format!("rem {hash}"));
            self.torrents.lock().unwrap().remove(&hash).map(|_| ()).ok_or(TsError::UnknownTorrent)
        })
    }

    fn drop_torrent(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            self.log(format!("drop {hash}"));
            self.with(hash, |t| t.status.stat = if t.saved { TorrentStat::InDb } else { TorrentStat::Closed })
        })
    }

    fn wipe(&self) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            self.torrents.lock().unwrap().clear();
            Ok(())
        })
    }

    fn save(&self, hash: InfoHash) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            self.log(format!("save {hash}"));
            self.with(hash, |t| t.saved = true)
        })
    }

    fn cache(&self, hash: InfoHash) -> BoxFuture<'_, Result<Option<CacheState>, TsError>> {
        Box::pin(async move {
            let status = self.get(hash).await?;
            if status.file_stats.is_empty() {
                return Ok(None);
            }
            let pieces = [0, 1, 9].map(|i| {
                let p = PieceState { id: i, length: 16384, size: 16384, completed: i != 9, priority: (i % 6) as u8 };
                (i, p)
            });
            Ok(Some(CacheState {
                hash: hash.to_hex(),
                capacity: 64 << 20,
                filled: 3 * 16384,
                pieces_length: 16384,
                pieces_count: 19,
                torrent: Some(status),
                pieces: pieces.into_iter().collect(),
                readers: vec![ReaderState { start: 0, end: 9, reader: 1 }],
            }))
        })
    }

    fn preload(&self, hash: InfoHash, file: FileIndex) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            self.log(format!("preload {hash} {}", file.0));
            self.with(hash, |t| {
                t.status.stat = TorrentStat::Preload;
                t.status.preload_size = 32 << 20;
            })?;
            for step in 1..=8u64 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                self.with(hash, |t| {
                    t.status.preloaded_bytes = step * (4 << 20);
                    t.status.download_speed = 2.5e6;
                })?;
            }
            self.with(hash, |t| t.status.stat = TorrentStat::Working)
        })
    }

    fn viewed_set(&self, hash: InfoHash, id: u32, timecode: Option<f64>) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            let mut v = self.viewed.lock().unwrap();
            let (h, i) = (hash.to_hex(), i64::from(id));
            match v.iter_mut().find(|m| m.hash == h && m.file_index == i) {
                Some(m) => m.timecode = timecode.unwrap_or(m.timecode),
                None => v.push(Viewed { hash: h, file_index: i, timecode: timecode.unwrap_or(0.0) }),
            }
            Ok(())
        })
    }

    fn viewed_remove(&self, hash: InfoHash, id: Option<u32>) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            let h = hash.to_hex();
            self.viewed.lock().unwrap().retain(|m| m.hash != h || id.is_some_and(|i| m.file_index != i64::from(i)));
            Ok(())
        })
    }

    fn viewed_list(&self, hash: Option<InfoHash>) -> BoxFuture<'_, Vec<Viewed>> {
        Box::pin(async move {
            let h = hash.map(|h| h.to_hex());
            let v = self.viewed.lock().unwrap();
            v.iter().filter(|m| h.as_ref().is_none_or(|h| *h == m.hash)).cloned().collect()
        })
    }

    fn settings(&self) -> BoxFuture<'_, BTSets> {
        Box::pin(async move { self.settings.lock().unwrap().clone().unwrap_or_default() })
    }

    fn set_settings(&self, settings: BTSets) -> BoxFuture<'_, Result<(), TsError>> {
        Box::pin(async move {
            *self.settings.lock().unwrap() = Some(settings);
            Ok(())
        })
    }

    fn probe(&self, hash: InfoHash, file: FileIndex) -> BoxFuture<'_, Result<Value, TsError>> {
        Box::pin(async move {
            self.with(hash, |_| ())?;
            Ok(json!({"format": {"filename": format!("/play/{hash}/{}", file.0), "duration": "12.5"}, "streams": []}))
        })
    }

    fn shutdown(&self, reason: Option<String>) -> Result<(), TsError> {
        self.log(format!("shutdown {reason:?}"));
        Ok(())
    }
}

type Server = support::Server<Fake>;

async fn serve() -> Server {
    support::serve(swarm(), |fake| torrserver_router(fake, HttpConfig::default())).await
}

async fn post(s: &Server, target: &str, body: Value) -> Raw {
    send_json(s, "POST", target, &body).await
}

fn golden(s: &Server, name: &str, raw: &Raw) {
    support::golden("torrserver", s.addr, name, raw);
}

fn magnet(h: InfoHash, name: &str) -> String {
    format!("magnet:?xt=urn:btih:{h}&dn={name}&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce")
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().expect("an object").keys().map(String::as_str).collect()
}

#[tokio::test]
async fn echo_and_settings() {
    let s = serve().await;
    let r = get(&s, "/echo").await;
    golden(&s, "echo", &r);
    assert_eq!(r.text(), "MatriX.143");

    let r = post(&s, "/settings", json!({"action": "get"})).await;
    golden(&s, "settings_get", &r);
    assert_eq!(r.json()["CacheSize"], 64 << 20, "Lampa's compatibility check");

    let sets = json!({"cachesize": 128 << 20, "PreloadCache": 250, "readerreadahead": 1, "UseDisk": true,
        "EnableDLNA": true, "TorznabUrls": [{"Host": "http://127.0.0.1:9117", "Key": "k", "Name": "j"}], "Unknown": 1});
    let r = post(&s, "/settings", json!({"action": "set", "sets": sets})).await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = post(&s, "/settings", json!({"action": "get"})).await;
    golden(&s, "settings_after_set", &r);
    let v = r.json();
    assert_eq!(
        (&v["CacheSize"], &v["PreloadCache"], &v["ReaderReadAHead"]),
        (&json!(128 << 20), &json!(100), &json!(5))
    );
    assert_eq!(
        (&v["UseDisk"], &v["ConnectionsLimit"], &v["ResponsiveMode"]),
        (&json!(false), &json!(25), &json!(false))
    );

    let r = post(&s, "/settings", json!({"action": "def"})).await;
    assert_eq!(r.status, 200);
    let r = post(&s, "/settings", json!({"action": "get"})).await;
    assert_eq!(r.json(), serde_json::to_value(BTSets::default()).unwrap());
}

#[tokio::test]
async fn torrents_actions_and_status_shapes() {
    let s = serve().await;
    let r = post(&s, "/torrents", json!({"action": "list"})).await;
    assert_eq!((r.status, r.text()), (200, "[]"));

    let add = json!({"action": "add", "link": magnet(SERIES, "Show"), "title": "Show", "poster": "http://127.0.0.1/p.jpg",
        "category": "tv", "data": "{\"lampa\":true}", "save_to_db": true});
    let r = post(&s, "/torrents", add).await;
    golden(&s, "torrents_add", &r);
    assert_eq!(r.json()["hash"], SERIES.to_hex());
    assert!(r.json().get("file_stats").is_none(), "add answers before the metadata");
    post(&s, "/torrents", json!({"action": "add", "link": MOVIE.to_hex()})).await;

    let r = post(&s, "/torrents", json!({"action": "get", "hash": SERIES.to_hex()})).await;
    golden(&s, "torrents_get", &r);
    let v = r.json();
    let ids: Vec<(i64, &str)> = v["file_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_i64().unwrap(), f["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids[..4],
        [
            (1, "Show S01/Show.E1.mka"),
            (2, "Show S01/Show.E1.mkv"),
            (3, "Show S01/Show.E2.en.srt"),
            (4, "Show S01/Show.E2.mkv")
        ]
    );
    assert_eq!(ids[4], (5, "Show S01/Show.E10.mkv"));
    for key in
        ["title", "poster", "category", "data", "timestamp", "name", "hash", "stat", "stat_string", "torrent_size"]
    {
        assert!(v.get(key).is_some(), "{key}");
    }
    for absent in ["loaded_size", "preloaded_bytes", "download_speed", "total_peers", "bit_rate"] {
        assert!(v.get(absent).is_none(), "{absent} is zero and omitted");
    }

    let set =
        json!({"action": "set", "hash": SERIES.to_hex(), "title": "", "poster": "", "category": "movie", "data": ""});
    assert_eq!(post(&s, "/torrents", set).await.status, 200);
    post(&s, "/torrents", json!({"action": "drop", "hash": SERIES.to_hex()})).await;
    let r = post(&s, "/torrents", json!({"action": "list"})).await;
    golden(&s, "torrents_list", &r);
    let list = r.json();
    assert_eq!(list[0]["hash"], SERIES.to_hex(), "newest first");
    assert_eq!(
        (&list[0]["title"], &list[0]["data"], &list[0]["stat"]),
        (&json!("Show S01"), &json!("{\"lampa\":true}"), &json!(5))
    );

    assert_eq!(post(&s, "/torrents", json!({"action": "rem", "hash": MOVIE.to_hex()})).await.status, 200);
    assert_eq!(
        post(&s, "/torrents", json!({"action": "rem", "hash": MOVIE.to_hex()})).await.status,
        200,
        "unknown: 200"
    );
    assert_eq!(post(&s, "/torrents", json!({"action": "get", "hash": MOVIE.to_hex()})).await.status, 404);
    assert_eq!(post(&s, "/torrents", json!({"action": "wipe"})).await.status, 200);
    assert_eq!(post(&s, "/torrents", json!({"action": "list"})).await.text(), "[]");
}

#[tokio::test]
async fn cache_and_viewed() {
    let s = serve().await;
    post(&s, "/torrents", json!({"action": "add", "link": SERIES.to_hex()})).await;
    post(&s, "/torrents", json!({"action": "add", "link": DEAD.to_hex()})).await;
    let r = post(&s, "/cache", json!({"action": "get", "hash": SERIES.to_hex()})).await;
    golden(&s, "cache", &r);
    let v = r.json();
    let mut k = keys(&v);
    k.sort_unstable();
    assert_eq!(k, ["Capacity", "Filled", "Hash", "Pieces", "PiecesCount", "PiecesLength", "Readers", "Torrent"]);
    assert_eq!(keys(&r.json()["Pieces"]["9"]).len(), 5);
    let r = post(&s, "/cache", json!({"action": "get", "hash": DEAD.to_hex()})).await;
    assert_eq!((r.status, r.text()), (200, "{}"));
    assert_eq!(post(&s, "/cache", json!({"action": "get", "hash": MOVIE.to_hex()})).await.status, 404);

    let h = SERIES.to_hex();
    for (i, t) in [(2, 61.5), (4, 0.0), (5, 12.0)] {
        let r = post(&s, "/viewed", json!({"action": "set", "hash": h, "file_index": i, "timecode": t})).await;
        assert_eq!((r.status, r.body.len()), (200, 0));
    }
    post(&s, "/viewed", json!({"action": "rem", "hash": h, "file_index": 4})).await;
    let r = post(&s, "/viewed", json!({"action": "list", "hash": h})).await;
    golden(&s, "viewed_list", &r);
    assert_eq!(
        r.json(),
        json!([{"hash": h, "file_index": 2, "timecode": 61.5}, {"hash": h, "file_index": 5, "timecode": 12.0}])
    );
    assert_eq!(post(&s, "/viewed", json!({"action": "list"})).await.json().as_array().unwrap().len(), 2);
    post(&s, "/viewed", json!({"action": "rem", "hash": h, "file_index": -1})).await;
    assert_eq!(post(&s, "/viewed", json!({"action": "list", "hash": h})).await.text(), "[]");
}

#[tokio::test]
async fn playlists() {
    let s = serve().await;
    let h = SERIES.to_hex();
    let r = get(&s, &format!("/stream/Show.m3u?link={h}&m3u")).await;
    golden(&s, "m3u_stream", &r);
    assert_eq!(r.header("content-type"), Some("audio/x-mpegurl"));
    let port = s.addr.port();
    let expected = format!(
        "#EXTM3U\n#EXTINF:0,Show.E1.mkv\n\
         #EXTVLCOPT:input-slave=http://127.0.0.1:{port}/stream/Show.E1.mka?link={h}&index=1&play\n\
         http://127.0.0.1:{port}/stream/Show.E1.mkv?link={h}&index=2&play\n\
         #EXTINF:0,Show.E2.mkv\n\
         #EXTVLCOPT:input-slave=http://127.0.0.1:{port}/stream/Show.E2.en.srt?link={h}&index=3&play\n\
         http://127.0.0.1:{port}/stream/Show.E2.mkv?link={h}&index=4&play\n\
         #EXTINF:0,Show.E10.mkv\nhttp://127.0.0.1:{port}/stream/Show.E10.mkv?link={h}&index=5&play\n"
    );
    assert_eq!(r.text(), expected);

    post(&s, "/viewed", json!({"action": "set", "hash": h, "file_index": 4})).await;
    let r = get(&s, &format!("/playlist?hash={h}&fromlast")).await;
    golden(&s, "playlist_fromlast", &r);
    assert!(r.text().starts_with("#EXTM3U\n#EXTINF:0,Show.E2.mkv\n"), "{}", r.text());
    assert_eq!(r.header("content-disposition"), Some("attachment; filename=\"Show S01.m3u\""));
    assert_eq!(get(&s, &format!("/stream?link={h}&index=5&m3u")).await.text().lines().count(), 3);

    let add = json!({"action": "add", "link": MOVIE.to_hex(), "title": "Movie \"2024\"", "poster": "http://127.0.0.1/m.jpg", "category": "movie"});
    post(&s, "/torrents", add).await;
    let r = get(&s, "/playlistall/all.m3u").await;
    golden(&s, "playlistall", &r);
    assert_eq!(r.text().matches("#EXTINF").count(), 2);
    assert!(r.text().contains(&format!("/stream/Movie%20%222024%22.m3u?link={}&m3u&fn=file.m3u\n", MOVIE.to_hex())));
    assert_eq!(get(&s, "/playlistall/all.m3u?category=movie").await.text().matches("#EXTINF").count(), 1);
    assert_eq!(get(&s, "/playlistall/all.m3u?category=uncategorized").await.text().matches("#EXTINF").count(), 1);
    assert_eq!(get(&s, "/playlistall/all.m3u?search=SHOW").await.text().matches("#EXTINF").count(), 1);
}

#[tokio::test]
async fn byte_serving() {
    let s = serve().await;
    let h = SERIES.to_hex();
    let r =
        send(s.addr, "GET", &format!("/stream/Show.E10.mkv?link={h}&index=5&play"), &[("Range", "bytes=100-199")], b"")
            .await;
    golden(&s, "stream_play_range", &r);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &content("Show S01/Show.E10.mkv", 3_000)[100..200]);
    assert_eq!(r.header("server"), Some("TorrServer (Portable SDK for UPnP devices)"));

    let r = send(s.addr, "HEAD", &format!("/play/{h}/2"), &[("getcontentFeatures.dlna.org", "1")], b"").await;
    golden(&s, "play_head", &r);
    assert_eq!((r.status, r.header("content-length"), r.body.len()), (200, Some("1000"), 0));
    let r = get(&s, &format!("/play?hash={h}&id=4")).await;
    assert_eq!(r.body, &content("Show S01/Show.E2.mkv", 2_000)[..]);
    // A single-file torrent ignores the id.
    let m = MOVIE.to_hex();
    post(&s, "/torrents", json!({"action": "add", "link": m})).await;
    assert_eq!(get(&s, &format!("/play/{m}/7")).await.body.len(), 300_000);
    let marks = post(&s, "/viewed", json!({"action": "list"})).await.json();
    assert_eq!(marks.as_array().unwrap().len(), 3, "every GET stream marks its file viewed: {marks}");

    let r = send(s.addr, "GET", "/download/2", &[("Range", "bytes=-10")], b"").await;
    golden(&s, "download_range", &r);
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 2097142-2097151/2097152")));
    assert_eq!(r.body, vec![0; 10]);
    assert_eq!(get(&s, "/download/1").await.body.len(), 1 << 20);
}

fn multipart(files: &[&[u8]], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--B0undary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    for (i, f) in files.iter().enumerate() {
        let head = format!(
            "--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{i}.torrent\"\r\n\
             Content-Type: application/x-bittorrent\r\n\r\n"
        );
        body.extend(head.bytes());
        body.extend_from_slice(f);
        body.extend(b"\r\n");
    }
    body.extend(b"--B0undary--\r\n");
    body
}

#[tokio::test]
async fn upload() {
    let s = serve().await;
    let ct = [("Content-Type", "multipart/form-data; boundary=B0undary")];
    let body = multipart(&[TORRENT_FILE], &[("title", "Uploaded"), ("save", "true"), ("category", "other")]);
    let r = send(s.addr, "POST", "/torrent/upload", &ct, &body).await;
    golden(&s, "upload_one", &r);
    assert_eq!((&r.json()["hash"], &r.json()["title"]), (&json!(UPLOADED.to_hex()), &json!("Uploaded")));
    assert!(s.fake.calls.lock().unwrap().contains(&format!("add {UPLOADED} save=true")));
    let body = multipart(&[TORRENT_FILE, b"garbage"], &[]);
    let r = send(s.addr, "POST", "/torrent/upload", &ct, &body).await;
    assert_eq!(r.json()["hash"], UPLOADED.to_hex(), "the bad file is skipped: one torrent added, one object");
    let r = send(s.addr, "POST", "/torrent/upload", &ct, &multipart(&[TORRENT_FILE, TORRENT_FILE], &[])).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(2), "several: an array");
    let r = send(s.addr, "POST", "/torrent/upload", &ct, &multipart(&[b"x"], &[])).await;
    assert_eq!((r.status, r.text()), (200, "[]"));
}

/// Lampa: settings probe, add with its data, file list by `get`, preload through `/stream`
/// while polling `stat` on the same link, then play with `Range`, and drop on exit.
#[tokio::test]
async fn lampa_sequence() {
    let s = serve().await;
    let r = post(&s, "/settings", json!({"action": "get"})).await;
    assert!(r.json().get("CacheSize").is_some());
    let data = "{\"lampa\":true,\"movie\":{\"id\":1}}";
    let add = json!({"action": "add", "link": magnet(SERIES, "Show"), "title": "[LAMPA] Show", "category": "tv",
        "poster": "http://127.0.0.1/p.jpg", "data": data, "save_to_db": true});
    let r = post(&s, "/torrents", add).await;
    assert_eq!(r.status, 200);
    let h = r.json()["hash"].as_str().unwrap().to_owned();
    let r = post(&s, "/torrents", json!({"action": "get", "hash": h})).await;
    assert_eq!((&r.json()["data"], &r.json()["title"]), (&json!(data), &json!("[LAMPA] Show")));
    let file = &r.json()["file_stats"][4];
    let (id, name) =
        (file["id"].as_i64().unwrap(), file["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned());
    let url = format!("/stream/{name}?link={h}&index={id}");

    let addr = s.addr;
    let preload = tokio::spawn({
        let url = url.clone();
        async move { send(addr, "GET", &format!("{url}&preload"), &[], b"").await }
    });
    let mut seen = Vec::new();
    while !preload.is_finished() {
        let r = get(&s, &format!("{url}&stat")).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        seen.push((
            v["stat"].as_i64().unwrap(),
            v["preloaded_bytes"].as_u64().unwrap_or(0),
            v.get("preload_size").is_some(),
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = preload.await.unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(
        seen.iter().any(|&(stat, bytes, size)| stat == 2 && bytes > 0 && size),
        "progress seen while preloading: {seen:?}"
    );
    assert!(s.fake.calls.lock().unwrap().contains(&format!("preload {h} 0")), "id 5 is metainfo file 0");

    let r = send(s.addr, "GET", &format!("{url}&play"), &[("Range", "bytes=0-")], b"").await;
    assert_eq!((r.status, r.body.len()), (206, 3_000));
    assert_eq!(post(&s, "/torrents", json!({"action": "drop", "hash": h})).await.status, 200);
    assert_eq!(post(&s, "/torrents", json!({"action": "list"})).await.json()[0]["stat"], 5);
}

/// jacktorr: add then `stat`, `preload&stat`, play by `/stream/<path>` and by `/play?hash&id`,
/// the list, and removal.
#[tokio::test]
async fn jacktorr_sequence() {
    let s = serve().await;
    let add = json!({"action": "add", "link": magnet(MOVIE, "Movie"), "title": "Movie", "poster": "", "data": ""});
    let r = post(&s, "/torrents", add).await;
    let h = r.json()["hash"].as_str().unwrap().to_owned();
    let r = get(&s, &format!("/stream?link={h}&stat")).await;
    golden(&s, "stream_stat", &r);
    assert_eq!(r.json()["file_stats"][0]["id"], 1);
    let r = get(&s, &format!("/stream?link={h}&index=1&preload&stat")).await;
    assert_eq!((r.json()["stat"].as_i64(), r.json()["preloaded_bytes"].as_u64()), (Some(3), Some(32 << 20)));
    let r = get(&s, &format!("/stream/Movie%20(2024).mp4?link={h}&index=1&play")).await;
    assert_eq!((r.status, r.header("content-type"), r.body.len()), (200, Some("video/mp4"), 300_000));
    let r = send(s.addr, "GET", &format!("/play?hash={h}&id=1"), &[("Range", "bytes=299990-")], b"").await;
    assert_eq!((r.status, r.body.len()), (206, 10));
    assert_eq!(post(&s, "/torrents", json!({"action": "list"})).await.json().as_array().unwrap().len(), 1);
    assert_eq!(post(&s, "/torrents", json!({"action": "rem", "hash": h})).await.status, 200);
    assert_eq!(get(&s, &format!("/stream?link={h}&save")).await.status, 500, "gone from the swarm too");
}

#[tokio::test]
async fn stream_flags_and_misc_routes() {
    let s = serve().await;
    let h = SERIES.to_hex();
    let r = get(&s, &format!("/stream?link={h}&save")).await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(s.fake.calls.lock().unwrap().contains(&format!("save {h}")));
    let r = get(&s, &format!("/stream?link={}&title=T%2520x", magnet(SERIES, "x").replace('&', "%26"))).await;
    assert_eq!(r.status, 200);

    let r = get(&s, &format!("/ffp/{h}/5")).await;
    golden(&s, "ffprobe", &r);
    assert_eq!(r.json()["format"]["filename"], format!("/play/{h}/0"));

    let r = get(&s, "/shutdown/maintenance").await;
    assert_eq!(r.status, 200);
    assert!(s.fake.calls.lock().unwrap().contains(&"shutdown Some(\"maintenance\")".to_owned()));

    let r = send(
        s.addr,
        "OPTIONS",
        "/torrents",
        &[
            ("Origin", "http://lampa.mx"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Private-Network", "true"),
        ],
        b"",
    )
    .await;
    golden(&s, "cors_preflight", &r);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-private-network"), Some("true"));
    assert!(r.header("access-control-allow-headers").unwrap().contains("Authorization"));
}

/// Bad input: TorrServer's status codes, empty bodies, no panic. One golden file lists them.
#[tokio::test]
async fn bad_input() {
    let s = serve().await;
    post(&s, "/torrents", json!({"action": "add", "link": SERIES.to_hex()})).await;
    let h = SERIES.to_hex();
    let unknown = InfoHash([0x99; 20]).to_hex();
    let huge = vec![b' '; 2 << 20];
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("POST", "/torrents".into(), b"{\"action\":\"fly\"}".to_vec()),
        ("POST", "/torrents".into(), b"{}".to_vec()),
        ("POST", "/torrents".into(), b"not json".to_vec()),
        ("POST", "/torrents".into(), b"[1,2]".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":7}".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":\"add\",\"save_to_db\":\"yes\",\"link\":\"x\"}".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":\"add\"}".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":\"add\",\"link\":\"file:///etc/passwd\"}".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":\"add\",\"link\":\"magnet:?dn=nohash\"}".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":\"get\"}".to_vec()),
        ("POST", "/torrents".into(), format!("{{\"action\":\"get\",\"hash\":\"{unknown}\"}}").into_bytes()),
        ("POST", "/torrents".into(), b"{\"action\":\"get\",\"hash\":\"zz\"}".to_vec()),
        ("POST", "/torrents".into(), b"{\"action\":\"rem\",\"hash\":\"zz\"}".to_vec()),
        ("POST", "/torrents".into(), huge.clone()),
        ("POST", "/settings".into(), b"{\"action\":\"nope\"}".to_vec()),
        ("POST", "/settings".into(), b"{\"action\":\"set\"}".to_vec()),
        ("POST", "/settings".into(), b"{\"action\":\"set\",\"sets\":{\"CacheSize\":\"big\"}}".to_vec()),
        ("POST", "/settings".into(), b"{\"action\":\"set\",\"sets\":[]}".to_vec()),
        ("POST", "/cache".into(), b"{\"action\":\"list\"}".to_vec()),
        ("POST", "/cache".into(), format!("{{\"action\":\"get\",\"hash\":\"{unknown}\"}}").into_bytes()),
        ("POST", "/viewed".into(), b"{\"action\":\"what\"}".to_vec()),
        ("POST", "/viewed".into(), b"{\"action\":\"set\"}".to_vec()),
        ("POST", "/viewed".into(), format!("{{\"action\":\"set\",\"hash\":\"{h}\",\"file_index\":-3}}").into_bytes()),
        ("POST", "/viewed".into(), format!("{{\"action\":\"set\",\"hash\":\"{h}\",\"file_index\":1.5}}").into_bytes()),
        ("POST", "/torrent/upload".into(), b"--x\r\n".to_vec()),
        ("GET", "/torrents".into(), Vec::new()),
        ("GET", "/stream".into(), Vec::new()),
        ("GET", "/stream?link=&play".into(), Vec::new()),
        ("GET", "/stream?link=torrs://abc&play".into(), Vec::new()),
        ("GET", "/stream?link=http://127.0.0.1:1/x.torrent&stat".into(), Vec::new()),
        ("GET", format!("/stream?link={h}&play"), Vec::new()),
        ("GET", format!("/stream?link={h}&index=x&play"), Vec::new()),
        ("GET", format!("/stream?link={h}&index=99&play"), Vec::new()),
        ("GET", format!("/stream?link={h}&index=99&preload"), Vec::new()),
        ("GET", format!("/stream?link={}&stat", DEAD.to_hex()), Vec::new()),
        ("GET", format!("/stream?link={unknown}&stat"), Vec::new()),
        ("GET", "/play/zz/1".into(), Vec::new()),
        ("GET", format!("/play/{unknown}/1"), Vec::new()),
        ("GET", format!("/play/{h}/x"), Vec::new()),
        ("GET", format!("/play/{h}/0"), Vec::new()),
        ("GET", "/play?id=1".into(), Vec::new()),
        ("GET", "/playlist".into(), Vec::new()),
        ("GET", format!("/playlist?hash={unknown}"), Vec::new()),
        ("GET", "/download/x".into(), Vec::new()),
        ("GET", "/download/99999999999999".into(), Vec::new()),
        ("GET", format!("/download/{}", u64::MAX), Vec::new()),
        ("GET", "/ffp/zz/1".into(), Vec::new()),
        ("GET", format!("/ffp/{h}/77"), Vec::new()),
        ("GET", format!("/ffp/{unknown}/1"), Vec::new()),
    ];
    let mut report = String::new();
    for (method, target, body) in &cases {
        let extra: &[(&str, &str)] = if target == "/torrent/upload" {
            &[("Content-Type", "multipart/form-data; boundary=x")]
        } else {
            &[("Content-Type", "application/json")]
        };
        let r = send(s.addr, method, target, extra, body).await;
        let shown = if body.len() > 100 {
            format!("<{} bytes>", body.len())
        } else {
            String::from_utf8_lossy(body).into_owned()
        };
        let answer = if r.body.len() > 100 {
            format!("<{} bytes>", r.body.len())
        } else {
            String::from_utf8_lossy(&r.body).into_owned()
        };
        report.push_str(&format!("{method} {target} {shown}\n  -> {} {answer}\n", r.status));
        assert!(r.status >= 400 || (r.status == 200 && r.body.is_empty()), "{method} {target}: {}", r.status);
    }
    let raw = Raw { status: 200, headers: Vec::new(), head_text: "bad input".into(), body: report.into_bytes() };
    golden(&s, "errors", &raw);
    // Still serving after all that.
    assert_eq!(get(&s, "/echo").await.status, 200);
}
