//! Sluice's own `/api/v1` end to end: a real `sluice serve`, a rate-capped libtorrent seeder,
//! and a client that adds a magnet with a title, lists, gets, reads the files, streams a range
//! and a whole file while changing settings, watches progress on the event stream, plays the
//! playlist's external subtitle track, and deletes the torrent with its files.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sluice_core::metainfo::TorrentBuilder;

const BLOCK: u8 = 86;
const PORT: u16 = 28600;

fn request(http: &str, method: &str, target: &str, body: Option<&Value>, extra: &str) -> (u16, String, Vec<u8>) {
    let body = body.map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    http_exchange(http, &head, &body)
}

fn json_of(http: &str, method: &str, target: &str, body: Option<&Value>, want: u16) -> Value {
    let (status, _, bytes) = request(http, method, target, body, "");
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, want, "{method} {target}: {text}");
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{method} {target}: {text}"))
}

/// Pseudo-random bytes (a fixed LCG: the content only has to differ between files).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Follows `GET /api/v1/events` on a thread; everything received so far.
fn watch_events(http: &str) -> Arc<Mutex<String>> {
    let seen = Arc::new(Mutex::new(String::new()));
    let mut s = std::net::TcpStream::connect(http).expect("connect");
    s.write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes()).expect("write");
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    seen
}

/// The `data:` of every event of `kind` received so far.
fn events(seen: &Mutex<String>, kind: &str) -> Vec<Value> {
    let text = seen.lock().unwrap().clone();
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let lines = block.lines().map(|l| l.trim_end_matches('\r'));
        if lines.clone().any(|l| l == format!("event: {kind}")) {
            let data: String = lines.filter_map(|l| l.strip_prefix("data: ")).collect();
            out.push(serde_json::from_str(&data).unwrap_or_else(|_| panic!("event data {data:?}")));
        }
    }
    out
}

#[test]
fn client_adds_lists_streams_watches_plays_and_deletes() {
    let Some(tmp) = interop_tempdir("interop_api_v1") else {
        return;
    };
    let files = [
        ("Show.E1.mkv", noise(3 * MIB as usize + 12_345, 1)),
        ("Show.E1.en.srt", noise(2_000, 2)),
        ("Show.E1.mka", noise(400_000, 3)),
        ("notes.txt", noise(100, 4)),
    ];
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("show")).expect("mkdir");
    let mut builder = TorrentBuilder::new("show", 256 * 1024);
    for (name, bytes) in &files {
        std::fs::write(data.join("show").join(name), bytes).expect("write file");
        builder = builder.file(&[*name], bytes.clone());
    }
    let torrent_path = tmp.path().join("show.torrent");
    std::fs::write(&torrent_path, builder.build()).expect("write torrent");
    let fx =
        Fixture { torrent: torrent_path, data, name: "show".into(), piece_length: 256 * 1024, summary: String::new() };
    // About 4 s for the whole torrent: the event stream sees it part way.
    let opts = SeedOpts { upload_rate: Some(MIB), ..SeedOpts::default() };
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 2, PORT), &opts, tmp.path());
    let serve = Serve::start(BLOCK, PORT, tmp.path());
    let http = serve.http.clone();
    let seen = watch_events(&http);

    // Add: the magnet's metadata comes from the seeder within the request's wait.
    let magnet = magnet_for(&fx, &[&seeder.endpoint]);
    let body = json!({"link": magnet, "title": "My Show", "category": "tv", "data": "{\"k\":1}"});
    let added = json_of(&http, "POST", "/api/v1/torrents", Some(&body), 201);
    let hash = added["info_hash"].as_str().expect("info_hash").to_owned();
    assert_eq!(
        (&added["name"], &added["title"], &added["pending"]),
        (&json!("show"), &json!("My Show"), &json!(false))
    );
    assert_eq!(added["files"].as_array().map(Vec::len), Some(4), "{added}");

    let list = json_of(&http, "GET", "/api/v1/torrents", None, 200);
    let list = list["torrents"].as_array().expect("torrents").clone();
    assert_eq!(list.len(), 1);
    assert_eq!((&list[0]["info_hash"], &list[0]["category"]), (&json!(hash), &json!("tv")));
    assert_eq!(list[0]["length"].as_u64(), Some(files.iter().map(|(_, b)| b.len() as u64).sum()));

    let got = json_of(&http, "GET", &format!("/api/v1/torrents/{hash}"), None, 200);
    assert_eq!(got["state"], "running", "{got}");
    let listed = json_of(&http, "GET", &format!("/api/v1/torrents/{hash}/files"), None, 200);
    assert_eq!(listed["files"], got["files"]);
    let file = |name: &str| {
        let all = listed["files"].as_array().expect("files");
        all.iter().find(|f| f["path"] == format!("show/{name}").as_str()).unwrap_or_else(|| panic!("{name}")).clone()
    };
    let mkv = file("Show.E1.mkv");
    assert_eq!(mkv["stream_url"], format!("/api/v1/torrents/{hash}/files/0/stream/Show.E1.mkv").as_str());

    // A range from the middle of the video.
    let content = &files[0].1;
    let (from, to) = (content.len() / 2, content.len() / 2 + 300_000);
    let url = mkv["stream_url"].as_str().expect("url").to_owned();
    let (status, head, body) = request(&http, "GET", &url, None, &format!("Range: bytes={from}-{to}\r\n"));
    assert_eq!(status, 206, "{head}");
    assert!(body == content[from..=to], "ranged body differs");

    // The whole video while the settings change: the stream goes on.
    let whole = {
        let (http, url) = (http.clone(), url.clone());
        std::thread::spawn(move || request(&http, "GET", &url, None, ""))
    };
    std::thread::sleep(Duration::from_millis(300));
    let patch = json!({"focus_cap": 0, "disconnect_timeout": 90});
    let settings = json_of(&http, "PATCH", "/api/v1/settings", Some(&patch), 200);
    assert_eq!((&settings["focus_cap"], &settings["disconnect_timeout"]), (&json!(0), &json!(90)));
    let (status, _, body) = whole.join().expect("stream thread");
    assert_eq!(status, 200);
    assert!(body == *content, "the whole stream differs");
    assert_eq!(json_of(&http, "GET", "/api/v1/settings", None, 200), settings);

    // The event stream showed the download part way and then further.
    let started = Instant::now();
    let progress = loop {
        let p: Vec<f64> = events(&seen, "torrent")
            .iter()
            .filter(|t| t["info_hash"] == hash.as_str())
            .filter_map(|t| t["progress"].as_f64())
            .collect();
        if p.iter().any(|&x| x > 0.0 && x < 1.0) && p.last().is_some_and(|&l| l > p[0]) {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no progress events: {p:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(progress.windows(2).all(|w| w[0] <= w[1] + 1e-9), "progress went back: {progress:?}");

    // The playlist: the video with its subtitle and audio as input-slaves, on our Host.
    let (status, head, body) = request(&http, "GET", &format!("/api/v1/torrents/{hash}/playlist.m3u"), None, "");
    assert_eq!(status, 200, "{head}");
    let m3u = String::from_utf8(body).expect("text");
    assert!(head.to_ascii_lowercase().contains("content-type: audio/x-mpegurl"), "{head}");
    let slaves = m3u.lines().find_map(|l| l.strip_prefix("#EXTVLCOPT:input-slave=")).expect("input-slave").to_owned();
    let slaves: Vec<&str> = slaves.split('#').collect();
    assert_eq!(slaves.len(), 2, "{m3u}");
    assert!(m3u.lines().any(|l| l == format!("http://{http}{url}")), "{m3u}");
    assert!(!m3u.contains("notes.txt"), "{m3u}");
    let srt = slaves.iter().find(|s| s.ends_with(".en.srt")).expect("the subtitle");
    let path = srt.strip_prefix(&format!("http://{http}")).expect("absolute on our host");
    let (status, _, body) = request(&http, "GET", path, None, "");
    assert!(status == 200 && body == files[1].1, "the subtitle through the playlist link");
    let (status, _, all) = request(&http, "GET", "/api/v1/playlist.m3u", None, "");
    assert_eq!((status, String::from_utf8(all).expect("text")), (200, m3u));

    let (status, _, doc) = request(&http, "GET", "/api/v1/openapi.json", None, "");
    assert!(status == 200 && serde_json::from_slice::<Value>(&doc).is_ok_and(|d| d["openapi"] == "3.1.0"));
    let err = json_of(&http, "GET", "/api/v1/nothing", None, 404);
    assert_eq!(err["error"]["code"], "not_found");

    // Delete with the files: the list empties, the event stream says so, the files go.
    let served = tmp.path().join("served-data/show");
    assert!(served.join("Show.E1.mkv").exists(), "the video was downloaded to {}", served.display());
    let (status, _, body) = request(&http, "DELETE", &format!("/api/v1/torrents/{hash}?delete_files=true"), None, "");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    let list = json_of(&http, "GET", "/api/v1/torrents", None, 200);
    assert_eq!(list["torrents"], json!([]));
    assert!(!served.join("Show.E1.mkv").exists() && !served.join("Show.E1.mka").exists(), "files left behind");
    assert!(
        wait_until(Duration::from_secs(5), || events(&seen, "removed").contains(&json!({"info_hash": hash}))),
        "no removed event"
    );
    let (status, _, _) = request(&http, "DELETE", &format!("/api/v1/torrents/{hash}"), None, "");
    assert_eq!(status, 404);
    assert!(!serve.proc.stderr().contains("panicked"));
}
