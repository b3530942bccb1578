//! `sluice serve` answers the TorrServer API the way a client such as Lampa drives it: a
//! magnet added through `/torrents`, polled until its files are known, streamed with a
//! `Range` through `/stream?play`, listed as an M3U, marked viewed, its cache state read, and
//! removed; the torrent comes from real libtorrent seeders.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const BLOCK: u8 = 85;
const PORT: u16 = 28500;

fn post(http: &str, path: &str, body: &Value) -> (u16, Vec<u8>) {
    let body = serde_json::to_vec(body).expect("json");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, _, body) = http_exchange(http, &head, &body);
    (status, body)
}

fn post_json(http: &str, path: &str, body: &Value) -> Value {
    let (status, bytes) = post(http, path, body);
    assert_eq!(status, 200, "{path} {body}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{path}: {}", String::from_utf8_lossy(&bytes)))
}

fn get(http: &str, target: &str, extra: &str) -> (u16, String, Vec<u8>) {
    http_exchange(http, &format!("GET {target} HTTP/1.1\r\nHost: sluice\r\n{extra}Connection: close\r\n\r\n"), b"")
}

#[test]
fn lampa_like_client_adds_streams_marks_and_removes() {
    let Some(tmp) = interop_tempdir("interop_torrserver_api") else {
        return;
    };
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec { name: "tsapi", size: 6 * MIB, seed: 85, files: 3, piece_length: 256 * 1024, hybrid: false },
    );
    let seeders = start_seeders(&fx, BLOCK, 2..=2, PORT, &SeedOpts::default(), tmp.path());
    let serve = Serve::start(BLOCK, PORT, tmp.path());
    let http = serve.http.clone();
    let peers: Vec<&str> = seeders.iter().map(|s| s.endpoint.as_str()).collect();
    let magnet = magnet_for(&fx, &peers);

    let (status, _, body) = get(&http, "/echo", "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).starts_with("MatriX."), "{}", String::from_utf8_lossy(&body));

    let added = post_json(
        &http,
        "/torrents",
        &json!({"action": "add", "link": magnet, "title": "T", "poster": "P", "save_to_db": true}),
    );
    let hash = added["hash"].as_str().expect("hash").to_owned();
    assert_eq!(hash.len(), 40);
    assert_eq!(added["title"], "T");
    assert_eq!(added["poster"], "P");
    assert!(added["stat"].is_u64() && added["stat_string"].is_string(), "{added}");

    // Poll until the metadata is known.
    let started = Instant::now();
    let status = loop {
        let s = post_json(&http, "/torrents", &json!({"action": "get", "hash": hash}));
        if s["file_stats"].as_array().is_some_and(|f| !f.is_empty()) {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no file_stats: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["name"], "tsapi");
    assert_eq!(status["torrent_size"].as_u64(), Some(6 * MIB));
    let files = status["file_stats"].as_array().expect("file_stats").clone();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["id"], 1);
    let path = files[0]["path"].as_str().expect("path").to_owned();
    let content = std::fs::read(fx.data.join(&path)).expect("source file");
    assert_eq!(files[0]["length"].as_u64(), Some(content.len() as u64));

    // A ranged read through /stream?play.
    let (from, to) = (1_000usize, content.len() - 1_000);
    let (code, head, body) =
        get(&http, &format!("/stream?link={hash}&index=1&play"), &format!("Range: bytes={from}-{to}\r\n"));
    assert_eq!(code, 206, "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("content-range: bytes {from}-{to}/{}", content.len())),
        "{head}"
    );
    assert!(body == content[from..=to], "ranged body differs from the file");

    // The playlist answers; it lists media files only (by extension), and the fixture's
    // files have none, so it holds no entries here.
    let (code, head, body) = get(&http, &format!("/stream?link={hash}&index=1&m3u"), "");
    assert_eq!(code, 200, "{head}");
    let m3u = String::from_utf8(body).expect("m3u is text");
    assert!(m3u.starts_with("#EXTM3U"), "{m3u}");
    assert!(m3u.lines().filter(|l| l.starts_with("http")).all(|l| l.contains(&format!("link={hash}&index="))), "{m3u}");
    // The path form a playlist entry may use serves the same bytes.
    let (code, head, body) = get(&http, &format!("/play/{hash}/1"), "Range: bytes=0-99999\r\n");
    assert_eq!(code, 206, "{head}");
    assert!(body == content[..100_000], "/play body differs from the file");

    // Viewed marks.
    let (code, _) = post(&http, "/viewed", &json!({"action": "set", "hash": hash, "file_index": 1}));
    assert_eq!(code, 200);
    let viewed = post_json(&http, "/viewed", &json!({"action": "list", "hash": hash}));
    let viewed = viewed.as_array().expect("viewed array");
    assert!(viewed.iter().any(|v| v["hash"] == hash.as_str() && v["file_index"] == 1), "{viewed:?}");

    // The list holds it, with the client's fields.
    let list = post_json(&http, "/torrents", &json!({"action": "list"}));
    let entry = list.as_array().expect("list").iter().find(|t| t["hash"] == hash.as_str()).expect("listed").clone();
    assert_eq!(entry["title"], "T");

    // The cache state shows the pieces the read above verified.
    let cache = post_json(&http, "/cache", &json!({"action": "get", "hash": hash}));
    assert_eq!(cache["Hash"], hash.as_str());
    assert_eq!(cache["PiecesLength"].as_u64(), Some(256 * 1024));
    assert!(cache["Pieces"].as_object().is_some_and(|p| !p.is_empty()), "{cache}");
    assert_eq!(cache["Torrent"]["hash"], hash.as_str());

    // Settings default, then removal.
    let settings = post_json(&http, "/settings", &json!({"action": "get"}));
    assert!(settings["CacheSize"].is_i64(), "{settings}");
    let (code, _) = post(&http, "/torrents", &json!({"action": "rem", "hash": hash}));
    assert_eq!(code, 200);
    let list = post_json(&http, "/torrents", &json!({"action": "list"}));
    assert!(list.as_array().expect("list").iter().all(|t| t["hash"] != hash.as_str()), "{list}");
    assert!(!serve.proc.stderr().contains("panicked"));
}
