//! Sluice's own `/api/v1` against a fake library, over real TCP on 127.0.0.1: every response
//! shape against tests/golden/api_v1/*.txt (see `support::golden`; `SLUICE_BLESS=1` rewrites
//! them), and every route's error cases.

mod support;

use std::io::Cursor;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;

use axum::body::Bytes;
use serde_json::{Value, json};
use sluice_core::InfoHash;
use sluice_http::api::{BoxFuture, OPENAPI, Settings, SettingsPatch};
use sluice_http::torrserver::TorrentMeta;
use sluice_http::{
    Added, FileIndex, FileInfo, FileReader, HttpConfig, Library, LibraryError, SourceError, StreamSource, Torrent,
    TorrentDetail, TorrentFile, TorrentState, api_router,
};
use support::{Raw, get, send, send_json};

const MOVIE: InfoHash = InfoHash([0x22; 20]);
const SHOW: InfoHash = InfoHash([0x11; 20]);
/// A magnet whose metadata never arrives.
const PENDING: InfoHash = InfoHash([0x44; 20]);
const UNKNOWN: InfoHash = InfoHash([0x99; 20]);
const TORRENT_FILE: &[u8] = b"d4:infod4:name5:movieee";

fn content(index: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + index) as u8).collect()
}

struct FakeTorrent {
    torrent: Torrent,
    /// Metainfo order; `None` while pending.
    files: Option<Vec<(String, Vec<u8>)>>,
}

fn fake_torrent(hash: InfoHash, name: &str, added_at: i64, files: &[(&str, usize)]) -> FakeTorrent {
    let files: Vec<_> = files.iter().enumerate().map(|(i, (p, l))| (p.to_string(), content(i, *l))).collect();
    let length = files.iter().map(|(_, d)| d.len() as u64).sum();
    let torrent = Torrent {
        info_hash: hash,
        name: name.into(),
        title: name.into(),
        category: String::new(),
        poster: String::new(),
        data: String::new(),
        added_at,
        state: TorrentState::Running,
        pending: false,
        length,
        verified_bytes: length / 4,
        progress: 0.25,
        download_rate: 1_000_000,
        upload_rate: 20_000,
        peers: 3,
        readers: 0,
        error: None,
    };
    FakeTorrent { torrent, files: Some(files) }
}

#[derive(Default)]
struct Fake {
    torrents: Mutex<Vec<FakeTorrent>>,
    removed: Mutex<Vec<(InfoHash, bool)>>,
    settings: Mutex<Option<Settings>>,
}

fn default_settings() -> Settings {
    Settings { disconnect_timeout: 30, metadata_timeout: 30, focus: true, focus_cap: 32768 }
}

fn movie() -> FakeTorrent {
    let files = [
        ("Movie (2024)/Movie (2024).mkv", 3_000),
        ("Movie (2024)/Movie (2024).en.srt", 100),
        ("Movie (2024)/Movie (2024).mka", 500),
        ("Movie (2024)/Movie (2024).forced.ass", 50),
        ("Movie (2024)/Bonus.mp4", 700),
        ("Movie (2024)/notes.txt", 10),
    ];
    fake_torrent(MOVIE, "Movie (2024)", 1_700_000_000, &files)
}

fn fake() -> Fake {
    let show = [("Show/Show.E10.mkv", 1_000), ("Show/Show.E2.mkv", 900), ("Show/Show.E2.srt", 10)];
    let mut pending = fake_torrent(PENDING, "Pending Film", 1_700_000_300, &[]);
    pending.files = None;
    pending.torrent.state = TorrentState::Pending;
    pending.torrent.pending = true;
    (pending.torrent.verified_bytes, pending.torrent.progress) = (0, 0.0);
    let mut show = fake_torrent(SHOW, "Show", 1_700_000_100, &show);
    show.torrent.state = TorrentState::Closed;
    show.torrent.error = Some("storage failed".into());
    Fake { torrents: Mutex::new(vec![pending, show, movie()]), ..Fake::default() }
}

impl Fake {
    fn detail(t: &FakeTorrent) -> TorrentDetail {
        let files = t.files.iter().flatten().enumerate();
        let files = files
            .map(|(i, (p, d))| TorrentFile { index: FileIndex(i), path: p.clone(), length: d.len() as u64 })
            .collect();
        TorrentDetail { torrent: t.torrent.clone(), files }
    }

    fn find<T>(&self, h: InfoHash, f: impl FnOnce(&mut FakeTorrent) -> T) -> Option<T> {
        self.torrents.lock().unwrap().iter_mut().find(|t| t.torrent.info_hash == h).map(f)
    }
}

impl StreamSource for Fake {
    fn file(&self, torrent: InfoHash, index: FileIndex) -> Result<FileInfo, SourceError> {
        let file = self.find(torrent, |t| t.files.as_ref().and_then(|f| f.get(index.0)).cloned());
        let (path, data) = file.ok_or(SourceError::UnknownTorrent)?.ok_or(SourceError::UnknownFile)?;
        Ok(FileInfo { path, length: data.len() as u64, modified: None })
    }

    fn open(&self, torrent: InfoHash, index: FileIndex, range: Range<u64>) -> Result<Box<dyn FileReader>, SourceError> {
        let file = self.find(torrent, |t| t.files.as_ref().and_then(|f| f.get(index.0)).cloned());
        let (_, data) = file.ok_or(SourceError::UnknownTorrent)?.ok_or(SourceError::UnknownFile)?;
        Ok(Box::new(Cursor::new(data[range.start as usize..range.end as usize].to_vec())))
    }
}

impl Library for Fake {
    fn add_torrent(&self, torrent: Bytes, meta: TorrentMeta) -> BoxFuture<'_, Result<Added, LibraryError>> {
        Box::pin(async move {
            if torrent[..] != *TORRENT_FILE {
                return Err(LibraryError::BadTorrent("not a bencoded dictionary".into()));
            }
            let created = self.find(MOVIE, |_| ()).is_none();
            if created {
                let mut m = movie();
                m.torrent.title = if meta.title.is_empty() { m.torrent.name.clone() } else { meta.title };
                self.torrents.lock().unwrap().push(m);
            }
            Ok(Added { detail: self.find(MOVIE, |t| Self::detail(t)).unwrap(), created })
        })
    }

    fn add_magnet(&self, magnet: String, meta: TorrentMeta) -> BoxFuture<'_, Result<Added, LibraryError>> {
        Box::pin(async move {
            let hex = magnet.strip_prefix("magnet:?xt=urn:btih:").unwrap_or(&magnet);
            let hash = hex.get(..40).and_then(InfoHash::from_hex).ok_or(LibraryError::BadTorrent("no btih".into()))?;
            if hash == UNKNOWN {
                return Err(LibraryError::Unavailable("the session is stopping".into()));
            }
            let created = self.find(hash, |_| ()).is_none();
            if created {
                let mut t = fake_torrent(hash, &meta.title, 1_700_000_400, &[]);
                (t.files, t.torrent.pending, t.torrent.state) = (None, true, TorrentState::Pending);
                (t.torrent.category, t.torrent.poster, t.torrent.data) = (meta.category, meta.poster, meta.data);
                self.torrents.lock().unwrap().push(t);
            }
            Ok(Added { detail: self.find(hash, |t| Self::detail(t)).unwrap(), created })
        })
    }

    fn add_peers(&self, torrent: InfoHash, _peers: Vec<SocketAddr>) -> BoxFuture<'_, Result<(), LibraryError>> {
        Box::pin(async move { self.find(torrent, |_| ()).ok_or(LibraryError::UnknownTorrent) })
    }

    fn list(&self) -> BoxFuture<'_, Vec<Torrent>> {
        Box::pin(async move { self.torrents.lock().unwrap().iter().map(|t| t.torrent.clone()).collect() })
    }

    fn torrent(&self, torrent: InfoHash) -> BoxFuture<'_, Result<TorrentDetail, LibraryError>> {
        Box::pin(async move { self.find(torrent, |t| Self::detail(t)).ok_or(LibraryError::UnknownTorrent) })
    }

    fn remove(&self, torrent: InfoHash, delete_files: bool) -> BoxFuture<'_, Result<(), LibraryError>> {
        Box::pin(async move {
            let mut list = self.torrents.lock().unwrap();
            let at = list.iter().position(|t| t.torrent.info_hash == torrent).ok_or(LibraryError::UnknownTorrent)?;
            list.remove(at);
            self.removed.lock().unwrap().push((torrent, delete_files));
            Ok(())
        })
    }

    fn files(&self, torrent: InfoHash) -> BoxFuture<'_, Result<Vec<TorrentFile>, LibraryError>> {
        Box::pin(async move { self.find(torrent, |t| Self::detail(t).files).ok_or(LibraryError::UnknownTorrent) })
    }

    fn settings(&self) -> BoxFuture<'_, Result<Settings, LibraryError>> {
        Box::pin(async move { Ok(self.settings.lock().unwrap().clone().unwrap_or_else(default_settings)) })
    }

    fn update_settings(&self, patch: SettingsPatch) -> BoxFuture<'_, Result<Settings, LibraryError>> {
        Box::pin(async move {
            let mut s = self.settings.lock().unwrap();
            let mut now = s.clone().unwrap_or_else(default_settings);
            patch.apply(&mut now);
            *s = Some(now.clone());
            Ok(now)
        })
    }
}

type Server = support::Server<Fake>;

async fn serve() -> Server {
    support::serve(fake(), |fake| api_router(fake, HttpConfig::default())).await
}

fn golden(s: &Server, name: &str, raw: &Raw) {
    support::golden("api_v1", s.addr, name, raw);
}

async fn request(s: &Server, method: &str, target: &str, body: Option<Value>) -> Raw {
    match body {
        Some(b) => send_json(s, method, target, &b).await,
        None => send(s.addr, method, target, &[], b"").await,
    }
}

/// The error code of a JSON error response, after checking its shape.
fn code(r: &Raw) -> String {
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = r.json();
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("no code: {v}")).to_owned()
}

#[tokio::test]
async fn list_get_files_and_remove() {
    let s = serve().await;
    let r = get(&s, "/api/v1/torrents").await;
    golden(&s, "list", &r);
    let v = r.json();
    let order: Vec<&str> = v["torrents"].as_array().unwrap().iter().map(|t| t["info_hash"].as_str().unwrap()).collect();
    assert_eq!(order, [MOVIE.to_hex(), SHOW.to_hex(), PENDING.to_hex()], "oldest first");
    assert!(v["torrents"][0].get("files").is_none(), "list items carry no files");

    let r = get(&s, &format!("/api/v1/torrents/{MOVIE}")).await;
    golden(&s, "get", &r);
    let v = r.json();
    assert_eq!(v["files"][1]["path"], "Movie (2024)/Movie (2024).en.srt");
    assert_eq!(
        v["files"][0]["stream_url"],
        format!("/api/v1/torrents/{MOVIE}/files/0/stream/Movie%20%282024%29.mkv").as_str()
    );

    let r = get(&s, &format!("/api/v1/torrents/{PENDING}")).await;
    let v = r.json();
    assert_eq!((&v["pending"], &v["state"], &v["files"]), (&json!(true), &json!("pending"), &json!([])));

    let r = get(&s, &format!("/api/v1/torrents/{MOVIE}/files")).await;
    golden(&s, "files", &r);
    // The stream URL a file names serves its bytes.
    let url = r.json()["files"][2]["stream_url"].as_str().unwrap().to_owned();
    let r = send(s.addr, "GET", &url, &[("Range", "bytes=10-19")], b"").await;
    assert_eq!((r.status, &r.body[..]), (206, &content(2, 500)[10..20]));

    let r = request(&s, "DELETE", &format!("/api/v1/torrents/{SHOW}?delete_files=true"), None).await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = request(&s, "DELETE", &format!("/api/v1/torrents/{PENDING}"), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(*s.fake.removed.lock().unwrap(), [(SHOW, true), (PENDING, false)]);
    let r = get(&s, "/api/v1/torrents").await;
    assert_eq!(r.json()["torrents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn add_shapes() {
    let s = serve().await;
    let link = format!("magnet:?xt=urn:btih:{}&dn=x", InfoHash([0x55; 20]));
    let body =
        json!({"link": link, "title": "Film", "category": "movie", "poster": "http://127.0.0.1/p.jpg", "data": "{}"});
    let r = request(&s, "POST", "/api/v1/torrents", Some(body)).await;
    golden(&s, "add_pending", &r);
    assert_eq!(r.status, 202);
    let r = request(&s, "POST", "/api/v1/torrents", Some(json!({"magnet": link}))).await;
    assert_eq!((r.status, &r.json()["title"]), (202, &json!("Film")), "magnet is an alias of link");

    s.fake.torrents.lock().unwrap().retain(|t| t.torrent.info_hash != MOVIE);
    let torrent = [("Content-Type", "application/x-bittorrent")];
    let r = send(s.addr, "POST", "/api/v1/torrents", &torrent, TORRENT_FILE).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["files"].as_array().unwrap().len(), 6);
    let r = send(s.addr, "POST", "/api/v1/torrents", &torrent, TORRENT_FILE).await;
    assert_eq!(r.status, 200, "already known");
}

#[tokio::test]
async fn every_route_answers_bad_input_with_json_errors() {
    let s = serve().await;
    let h = MOVIE.to_hex();
    let huge = vec![b'['; 200 * 1024];
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        ("GET", "/api/v1/nothing".into(), None, 404, "not_found"),
        ("GET", "/api/v1".into(), None, 404, "not_found"),
        ("GET", "/api/v1/torrents/abc".into(), None, 400, "bad_info_hash"),
        ("GET", format!("/api/v1/torrents/{h}00"), None, 400, "bad_info_hash"),
        ("GET", format!("/api/v1/torrents/{UNKNOWN}"), None, 404, "unknown_torrent"),
        ("GET", format!("/api/v1/torrents/{UNKNOWN}/files"), None, 404, "unknown_torrent"),
        ("GET", "/api/v1/torrents/zz/files".into(), None, 400, "bad_info_hash"),
        ("GET", format!("/api/v1/torrents/{h}/files/0/nothing"), None, 404, "not_found"),
        ("PUT", "/api/v1/torrents".into(), None, 405, "method_not_allowed"),
        ("DELETE", "/api/v1/torrents".into(), None, 405, "method_not_allowed"),
        ("POST", format!("/api/v1/torrents/{h}"), None, 405, "method_not_allowed"),
        ("DELETE", format!("/api/v1/torrents/{UNKNOWN}"), None, 404, "unknown_torrent"),
        ("DELETE", "/api/v1/torrents/xyz".into(), None, 400, "bad_info_hash"),
        ("DELETE", format!("/api/v1/torrents/{h}?delete_files=maybe"), None, 400, "bad_query"),
        ("DELETE", format!("/api/v1/torrents/{h}?wipe=1"), None, 400, "bad_query"),
        ("POST", "/api/v1/torrents".into(), Some(json!({})), 400, "bad_body"),
        ("POST", "/api/v1/torrents".into(), Some(json!({"link": 5})), 400, "bad_body"),
        ("POST", "/api/v1/torrents".into(), Some(json!({"link": "x", "extra": 1})), 400, "bad_body"),
        ("POST", "/api/v1/torrents".into(), Some(json!({"link": "ftp://h/t.torrent"})), 400, "bad_link"),
        ("POST", "/api/v1/torrents".into(), Some(json!({"link": ""})), 400, "bad_link"),
        (
            "POST",
            "/api/v1/torrents".into(),
            Some(json!({"link": "http://127.0.0.1/t.torrent"})),
            400,
            // the route hands URLs to the library, whose refusal (the fake's) passes through
            "bad_torrent",
        ),
        ("POST", "/api/v1/torrents".into(), Some(json!({"link": "magnet:?dn=no-hash"})), 400, "bad_torrent"),
        ("POST", "/api/v1/torrents".into(), Some(json!({"link": UNKNOWN.to_hex()})), 503, "unavailable"),
        ("POST", format!("/api/v1/torrents/{h}/peers"), Some(json!({"a": 1})), 400, "bad_body"),
        ("POST", format!("/api/v1/torrents/{h}/peers"), Some(json!(["nowhere"])), 400, "bad_peer"),
        ("POST", format!("/api/v1/torrents/{UNKNOWN}/peers"), Some(json!([])), 404, "unknown_torrent"),
        ("POST", "/api/v1/torrents/q/peers".into(), Some(json!([])), 400, "bad_info_hash"),
        ("GET", format!("/api/v1/torrents/{h}/peers"), None, 405, "method_not_allowed"),
        ("GET", format!("/api/v1/torrents/{h}/files/x/stream"), None, 400, "bad_file_index"),
        ("GET", format!("/api/v1/torrents/{h}/files/99/stream"), None, 404, "unknown_file"),
        ("GET", format!("/api/v1/torrents/{UNKNOWN}/files/0/stream"), None, 404, "unknown_torrent"),
        ("POST", format!("/api/v1/torrents/{h}/files/0/stream"), None, 405, "method_not_allowed"),
    ];
    let mut seen = Vec::new();
    for (method, target, body, status, want) in cases {
        let r = request(&s, method, &target, body.clone()).await;
        assert_eq!((r.status, code(&r).as_str()), (status, want), "{method} {target} {body:?}: {}", r.text());
        if status == 405 {
            assert!(r.header("allow").is_some(), "{method} {target}: 405 without Allow");
        }
        seen.push(r);
    }
    golden(&s, "error_not_found", &seen[0]);
    golden(&s, "error_unknown_torrent", &seen[4]);
    golden(&s, "error_method", &seen[8]);

    let r = send(s.addr, "POST", "/api/v1/torrents", &[("Content-Type", "application/x-bittorrent")], b"junk").await;
    assert_eq!((r.status, code(&r).as_str()), (400, "bad_torrent"));
    let r = send(s.addr, "POST", &format!("/api/v1/torrents/{h}/peers"), &[], &huge).await;
    assert_eq!((r.status, code(&r).as_str()), (413, "body_too_large"));
    golden(&s, "error_too_large", &r);
}

#[tokio::test]
async fn settings_get_and_patch() {
    let s = serve().await;
    let r = get(&s, "/api/v1/settings").await;
    golden(&s, "settings", &r);
    let r = request(&s, "PATCH", "/api/v1/settings", Some(json!({"focus_cap": 0, "disconnect_timeout": 120}))).await;
    golden(&s, "settings_after_patch", &r);
    assert_eq!(r.json(), get(&s, "/api/v1/settings").await.json());
    let r = request(&s, "PATCH", "/api/v1/settings", Some(json!({}))).await;
    assert_eq!((r.status, &r.json()["focus_cap"]), (200, &json!(0)), "an empty patch changes nothing");

    let cases = [
        (json!({"nope": 1}), "bad_body"),
        (json!({"focus": "yes"}), "bad_body"),
        (json!({"focus_cap": -1}), "bad_body"),
        (json!([]), "bad_body"),
        (json!(null), "bad_body"),
        (json!({"disconnect_timeout": 0}), "bad_setting"),
        (json!({"disconnect_timeout": 604_801}), "bad_setting"),
        (json!({"metadata_timeout": 0}), "bad_setting"),
        (json!({"metadata_timeout": 5, "disconnect_timeout": 0}), "bad_setting"),
    ];
    for (body, want) in cases {
        let r = request(&s, "PATCH", "/api/v1/settings", Some(body.clone())).await;
        assert_eq!((r.status, code(&r).as_str()), (400, want), "{body}");
    }
    let r = send(s.addr, "PATCH", "/api/v1/settings", &[], b"").await;
    assert_eq!((r.status, code(&r).as_str()), (400, "bad_body"));
    let r = send(s.addr, "PATCH", "/api/v1/settings", &[], &vec![b' '; 100 * 1024]).await;
    assert_eq!((r.status, code(&r).as_str()), (413, "body_too_large"));
    for method in ["POST", "PUT", "DELETE"] {
        let r = request(&s, method, "/api/v1/settings", Some(json!({}))).await;
        assert_eq!((r.status, code(&r).as_str()), (405, "method_not_allowed"), "{method}");
    }
    assert_eq!(get(&s, "/api/v1/settings").await.json()["disconnect_timeout"], 120, "refused patches change nothing");
}

#[tokio::test]
async fn playlists_with_input_slaves() {
    let s = serve().await;
    let r = get(&s, &format!("/api/v1/torrents/{MOVIE}/playlist.m3u")).await;
    golden(&s, "m3u_torrent", &r);
    let text = r.text();
    let host = format!("http://{}/api/v1/torrents/{MOVIE}/files/", s.addr);
    assert!(text.contains(&format!("#EXTVLCOPT:input-slave={host}1/stream/")), "{text}");
    assert!(!text.contains("notes.txt") && !text.contains("\n#EXTINF:0,Movie (2024).mka"), "{text}");
    // A video's namesakes ride on its input-slave line; Bonus.mp4 comes first (natural order).
    let entries: Vec<&str> = text.lines().filter(|l| l.starts_with("#EXTINF")).collect();
    assert_eq!(entries, ["#EXTINF:0,Bonus.mp4", "#EXTINF:0,Movie (2024).mkv"]);

    let r = send(s.addr, "GET", "/api/v1/playlist.m3u", &[("Host", "tv.local:8090")], b"").await;
    golden(&s, "m3u_all", &r);
    assert!(r.text().lines().filter(|l| l.starts_with("http")).all(|l| l.starts_with("http://tv.local:8090/")));
    assert!(r.text().contains(&SHOW.to_hex()) && !r.text().contains(&PENDING.to_hex()));
    // A Host that could break the playlist's lines is not echoed.
    let r = send(s.addr, "GET", "/api/v1/playlist.m3u", &[("Host", "a b\"x")], b"").await;
    assert!(r.status == 400 || !r.text().contains("a b"), "{}", r.text());

    let cases = [
        (format!("/api/v1/torrents/{PENDING}/playlist.m3u"), 409, "metadata_pending"),
        (format!("/api/v1/torrents/{UNKNOWN}/playlist.m3u"), 404, "unknown_torrent"),
        ("/api/v1/torrents/nope/playlist.m3u".to_owned(), 400, "bad_info_hash"),
    ];
    for (target, status, want) in cases {
        let r = get(&s, &target).await;
        assert_eq!((r.status, code(&r).as_str()), (status, want), "{target}");
    }
    let r = request(&s, "POST", "/api/v1/playlist.m3u", Some(json!({}))).await;
    assert_eq!((r.status, code(&r).as_str()), (405, "method_not_allowed"));
}

/// Reads an event stream until `until` has appeared `count` times (or fails after 10 s).
async fn read_events(stream: &mut tokio::net::TcpStream, seen: &mut String, until: &str, count: usize) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.matches(until).count() < count {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("events in time").unwrap();
        assert!(n > 0, "the event stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn events_report_changes_and_removals() {
    use tokio::io::AsyncWriteExt;
    let s = serve().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: sluice\r\n\r\n").await.unwrap();
    let mut seen = String::new();
    read_events(&mut stream, &mut seen, "event: torrent\n", 3).await;
    let head = seen.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: text/event-stream"), "{head}");
    let first = seen.find(&MOVIE.to_hex()).unwrap();
    assert!(first < seen.find(&SHOW.to_hex()).unwrap(), "oldest first");

    // Progress on one torrent, another removed: exactly those two events follow.
    s.fake.find(MOVIE, |t| (t.torrent.verified_bytes, t.torrent.progress) = (4360, 1.0));
    s.fake.torrents.lock().unwrap().retain(|t| t.torrent.info_hash != SHOW);
    let before = seen.len();
    read_events(&mut stream, &mut seen, "event: removed\n", 1).await;
    read_events(&mut stream, &mut seen, "event: torrent\n", 4).await;
    let later = &seen[before..];
    let data: Vec<Value> =
        later.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(data.contains(&json!({"info_hash": SHOW.to_hex()})), "{later}");
    let movie = data.iter().find(|d| d["info_hash"] == MOVIE.to_hex().as_str()).expect("a torrent event");
    assert_eq!((&movie["progress"], &movie["verified_bytes"]), (&json!(1.0), &json!(4360)));
    assert_eq!(data.len(), 2, "unchanged torrents are not sent again: {later}");
}

/// `(path, method)` pairs: those the OpenAPI document names, and those the router's source
/// declares (`.route("/api/v1/...", get(..).post(..))`; `get` serves `HEAD` too, and the
/// `any` catch-alls are the JSON 404).
fn documented() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            out.push((path.clone(), method.clone()));
        }
    }
    out.sort();
    out
}

fn routed() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for source in [include_str!("../src/api.rs"), include_str!("../src/server.rs")] {
        for piece in source.split(".route(\"").skip(1) {
            let (path, rest) = piece.split_once('"').unwrap();
            let call = &rest[..rest.find("))").map_or(rest.len(), |i| i + 2)];
            if !path.starts_with("/api/v1") {
                continue;
            }
            for method in ["get", "post", "patch", "delete", "put", "any"] {
                let found = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric() && call.as_bytes()[i - 1] != b'_'
                });
                if found && method != "any" {
                    out.push((path.to_owned(), method.to_owned()));
                    if method == "get" {
                        out.push((path.to_owned(), "head".to_owned()));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn openapi_names_every_route_and_nothing_else() {
    let (doc, routes) = (documented(), routed());
    assert!(routes.len() > 10, "the source scan found too little: {routes:?}");
    let head_only: Vec<_> = routes.iter().filter(|r| r.1 == "head" && !doc.contains(r)).collect();
    let missing: Vec<_> = routes.iter().filter(|r| r.1 != "head" && !doc.contains(r)).collect();
    let extra: Vec<_> = doc.iter().filter(|r| !routes.contains(r)).collect();
    assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
    assert!(extra.is_empty(), "openapi.json names routes the router lacks: {extra:?}");
    assert!(head_only.iter().all(|(p, _)| !p.contains("/stream")), "stream routes document HEAD");

    // And the server answers each documented operation (not the 404 fallback, not 405).
    let s = serve().await;
    for (path, method) in &doc {
        let target =
            path.replace("{info_hash}", &MOVIE.to_hex()).replace("{index}", "0").replace("{filename}", "a.mkv");
        if path == "/api/v1/events" {
            continue;
        }
        let body = (method != "get" && method != "head" && method != "delete").then(|| json!([]));
        let r = request(&s, &method.to_uppercase(), &target, body).await;
        let fallback = r.status == 404 && r.text().contains("\"not_found\"");
        assert!(!fallback && r.status != 405, "{method} {target}: {} {}", r.status, r.text());
    }

    let r = get(&s, "/api/v1/openapi.json").await;
    golden(&s, "openapi", &r);
    let v = r.json();
    assert_eq!(v["openapi"], "3.1.0");
    let refs = OPENAPI.match_indices("\"$ref\": \"#/components/").map(|(i, _)| &OPENAPI[i + 22..]);
    for r in refs {
        let target = &r[..r.find('"').unwrap()];
        let mut node = &v["components"];
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref #/components/{target}");
    }
}
