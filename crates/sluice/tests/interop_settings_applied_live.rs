//! TorrServer's `/settings set` reaches the running node without interrupting a stream:
//! against a real `sluice serve` and libtorrent seeders, a player reads a file while
//! `DownloadRateLimit` is lowered (the download slows to it) and lifted (it recovers),
//! `ConnectionsLimit` drops a peer, `TorrentDisconnectTimeout` shows in `/api/v1/settings`
//! (and a PATCH there shows in `/settings`), and with `--storage ram` a `CacheSize` below
//! what the cache holds evicts down to it at once; every stream ends whole and correct.
//! Then a restart: an option given on the command line wins over the stored value for that
//! run only.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const BLOCK: u8 = 106;

fn exchange(http: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(body).expect("json");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, _, body) = http_exchange(http, &head, &body);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post(http: &str, path: &str, body: &Value) -> Value {
    let (status, json) = exchange(http, "POST", path, body);
    assert_eq!(status, 200, "POST {path} {body}: {json}");
    json
}

fn get(http: &str, path: &str) -> Value {
    let head = format!("GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n");
    let (status, _, body) = http_exchange(http, &head, &[]);
    assert_eq!(status, 200, "GET {path}");
    serde_json::from_slice(&body).expect("json")
}

/// `/settings set` with the current document changed by `change`; returns `get`'s answer.
fn set(http: &str, change: Value) -> Value {
    let mut sets = post(http, "/settings", &json!({"action": "get"}));
    for (k, v) in change.as_object().expect("object") {
        sets[k] = v.clone();
    }
    let (status, _) = exchange(http, "POST", "/settings", &json!({"action": "set", "sets": sets}));
    assert_eq!(status, 200);
    post(http, "/settings", &json!({"action": "get"}))
}

fn status(http: &str, hash: &str) -> Value {
    post(http, "/torrents", &json!({"action": "get", "hash": hash}))
}

/// Verified bytes per second over `window`, after `settle` (requests sent before a change
/// still arrive).
fn rate(http: &str, hash: &str, settle: Duration, window: Duration) -> f64 {
    std::thread::sleep(settle);
    let start = (Instant::now(), status(http, hash)["loaded_size"].as_u64().unwrap_or(0));
    std::thread::sleep(window);
    let end = status(http, hash)["loaded_size"].as_u64().unwrap_or(0);
    (end - start.1) as f64 / start.0.elapsed().as_secs_f64()
}

/// A player: reads `path` whole in a thread, pausing `pause` between 64 KiB reads; counts
/// the bytes in `read`. Joins to the body.
fn play(http: &str, path: String, pause: Duration, read: Arc<AtomicU64>) -> std::thread::JoinHandle<Vec<u8>> {
    let http = http.to_owned();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n").expect("request");
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf).expect("stream read");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            read.store(raw.len() as u64, Ordering::SeqCst);
            std::thread::sleep(pause);
        }
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head") + 4;
        assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw[..split]));
        raw.split_off(split)
    })
}

fn assert_same(body: &[u8], want: &[u8]) {
    assert_eq!(body.len(), want.len(), "the stream was cut short");
    if let Some(i) = body.iter().zip(want).position(|(a, b)| a != b) {
        panic!("streamed byte {i} differs from the file");
    }
}

#[test]
fn rate_and_peer_limits_and_timeouts_change_under_a_playing_stream() {
    let Some(tmp) = interop_tempdir("interop_settings_applied_live") else {
        return;
    };
    let port = 29600;
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec {
            name: "limits",
            size: 32 * MIB + 77,
            seed: 106,
            files: 1,
            piece_length: 256 * 1024,
            hybrid: false,
        },
    );
    // Two seeders at 1 MiB/s each: the download runs at about 2 MiB/s until changed.
    let seeders =
        start_seeders(&fx, BLOCK, 2..=3, port, &SeedOpts { upload_rate: Some(MIB), ..SeedOpts::default() }, tmp.path());
    let serve = Serve::start(BLOCK, port + 10, tmp.path());
    let http = serve.http.clone();
    let hash = serve.add(&std::fs::read(&fx.torrent).expect("torrent"), &seeders)["info_hash"]
        .as_str()
        .expect("info_hash")
        .to_owned();
    let content = std::fs::read(fx.content_dir().join("file0.bin")).expect("source");
    let read = Arc::new(AtomicU64::new(0));
    let player = play(&http, format!("/stream?link={hash}&index=1&play"), Duration::ZERO, read.clone());

    let free = rate(&http, &hash, Duration::from_secs(1), Duration::from_secs(2));
    let sets = set(&http, json!({"DownloadRateLimit": 256}));
    assert_eq!(sets["DownloadRateLimit"], 256);
    let limited = rate(&http, &hash, Duration::from_millis(1500), Duration::from_secs(3));
    let at_limit = read.load(Ordering::SeqCst);
    set(&http, json!({"DownloadRateLimit": 0}));
    let lifted = rate(&http, &hash, Duration::from_millis(500), Duration::from_secs(2));
    eprintln!("download rate: {free:.0} B/s free, {limited:.0} B/s at 256 KB/s, {lifted:.0} B/s lifted");
    // Relative figures only: a loaded machine slows everything, never the limit's effect.
    assert!(free > 2.0 * 256.0 * 1024.0, "the free download is not clearly above the limit to come: {free}");
    assert!(limited < 2.0 * 256.0 * 1024.0, "the limit did not slow the download: {limited}");
    assert!(lifted > 3.0 * limited, "the download did not recover: {lifted}");
    assert!(read.load(Ordering::SeqCst) > at_limit, "the stream stopped reading");

    assert_eq!(status(&http, &hash)["active_peers"], 2);
    let sets = set(&http, json!({"ConnectionsLimit": 1, "TorrentDisconnectTimeout": 7}));
    assert_eq!((&sets["ConnectionsLimit"], &sets["TorrentDisconnectTimeout"]), (&json!(1), &json!(7)));
    assert!(
        wait_until(Duration::from_secs(5), || status(&http, &hash)["active_peers"] == 1),
        "{}",
        status(&http, &hash)
    );
    assert_eq!(get(&http, "/api/v1/settings")["disconnect_timeout"], 7);
    let (code, patched) = exchange(&http, "PATCH", "/api/v1/settings", &json!({"disconnect_timeout": 9}));
    assert_eq!(code, 200, "{patched}");
    let sets = post(&http, "/settings", &json!({"action": "get"}));
    assert_eq!((&sets["TorrentDisconnectTimeout"], &sets["ConnectionsLimit"]), (&json!(9), &json!(1)));
    let one_peer = rate(&http, &hash, Duration::from_millis(500), Duration::from_secs(2));
    eprintln!("with one peer: {one_peer:.0} B/s");
    assert_eq!(status(&http, &hash)["active_peers"], 1);
    set(&http, json!({"ConnectionsLimit": 25}));

    let body = player.join().expect("player");
    assert_same(&body, &content);
    assert!(!serve.proc.stderr().contains("panicked"));
}

fn cached_bytes(http: &str, hash: &str) -> (u64, u64) {
    let cache = post(http, "/cache", &json!({"action": "get", "hash": hash}));
    let held = cache["Pieces"].as_object().map_or(0, |p| p.values().map(|v| v["Length"].as_u64().unwrap_or(0)).sum());
    (held, cache["Capacity"].as_u64().unwrap_or(0))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_ram_budget_lowered_below_use_evicts_at_once_and_the_stream_goes_on() {
    let Some(tmp) = interop_tempdir("interop_settings_applied_live_ram") else {
        return;
    };
    let port = 29700;
    let piece = 512 * 1024;
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec { name: "ram", size: 48 * MIB + 5, seed: 107, files: 1, piece_length: piece, hybrid: false },
    );
    let seeders = start_seeders(&fx, BLOCK, 2..=2, port, &SeedOpts::default(), tmp.path());
    let serve = Serve::start_with(BLOCK, port + 10, tmp.path(), &["--storage", "ram", "--ram-budget", "64MiB"]);
    let http = serve.http.clone();
    let hash = serve.add(&std::fs::read(&fx.torrent).expect("torrent"), &seeders)["info_hash"]
        .as_str()
        .expect("info_hash")
        .to_owned();
    assert_eq!(post(&http, "/settings", &json!({"action": "get"}))["CacheSize"], 64 * MIB);
    let content = std::fs::read(fx.content_dir().join("file0.bin")).expect("source");
    let read = Arc::new(AtomicU64::new(0));
    // About 6 MiB/s: the cache fills with what was read and the window ahead.
    let player = play(&http, format!("/stream?link={hash}&index=1&play"), Duration::from_millis(10), read.clone());
    assert!(wait_until(Duration::from_secs(60), || read.load(Ordering::SeqCst) >= 20 * MIB), "the stream is stuck");
    let (before, capacity) = cached_bytes(&http, &hash);
    let rss_before = rss_kib(serve.proc.pid());
    assert_eq!(capacity, 64 * MIB);
    let budget = 24 * MIB;
    assert!(before > budget, "the cache holds only {before} bytes: not enough to lower below");
    let sets = set(&http, json!({"CacheSize": budget}));
    let (after, capacity) = cached_bytes(&http, &hash);
    eprintln!(
        "cache: {before} bytes held, budget 64 MiB; after CacheSize {budget}: {after} held; RSS {rss_before} KiB then {} KiB",
        rss_kib(serve.proc.pid())
    );
    assert_eq!((sets["CacheSize"].as_u64(), capacity), (Some(budget), budget));
    // Pieces a reader is copying at that moment may stay a little longer.
    assert!(after <= budget + 2 * piece, "{after} bytes held over a budget of {budget}");
    let during = read.load(Ordering::SeqCst);
    let body = player.join().expect("player");
    assert!(body.len() as u64 > during);
    assert_same(&body, &content);
    let (end, _) = cached_bytes(&http, &hash);
    assert!(end <= budget, "{end} bytes held at the end over a budget of {budget}");
    assert!(!serve.proc.stderr().contains("panicked"));
}

fn stop(serve: &mut Serve) {
    let head = "GET /shutdown HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n";
    let (status, _, _) = http_exchange(&serve.http, head, &[]);
    assert_eq!(status, 200);
    assert!(serve.proc.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn an_option_given_at_start_wins_over_the_stored_value_for_that_run_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = 29800;
    let mut first = Serve::start(BLOCK, port, tmp.path());
    let (code, _) = exchange(&first.http, "PATCH", "/api/v1/settings", &json!({"disconnect_timeout": 77}));
    assert_eq!(code, 200);
    set(&first.http, json!({"DownloadRateLimit": 300, "ConnectionsLimit": 9}));
    stop(&mut first);

    let flags = ["--disconnect-timeout", "45", "--peers-per-torrent", "12"];
    let mut second = Serve::start_with(BLOCK, port, tmp.path(), &flags);
    let own = get(&second.http, "/api/v1/settings");
    let sets = post(&second.http, "/settings", &json!({"action": "get"}));
    assert_eq!(own["disconnect_timeout"], 45, "the flag wins: {own}");
    assert_eq!(sets["TorrentDisconnectTimeout"], 45);
    assert_eq!(sets["ConnectionsLimit"], 12, "the flag wins: {sets}");
    assert_eq!(sets["DownloadRateLimit"], 300, "no flag: the stored value applies");
    let log = second.proc.stderr();
    assert!(log.contains("disconnect timeout (s): 45 from the command line, over the stored 77"), "{log}");
    assert!(log.contains("download limit (B/s): Some(307200) from the stored settings"), "{log}");
    stop(&mut second);

    let mut third = Serve::start(BLOCK, port, tmp.path());
    assert_eq!(get(&third.http, "/api/v1/settings")["disconnect_timeout"], 77, "the flag was for that run only");
    let sets = post(&third.http, "/settings", &json!({"action": "get"}));
    assert_eq!((&sets["ConnectionsLimit"], &sets["DownloadRateLimit"]), (&json!(9), &json!(300)));
    stop(&mut third);
}
