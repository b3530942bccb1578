//! Sluice and a libtorrent seeder find each other only through a tracker: Debian's opentracker
//! over HTTP (the torrent's own announce URL) and over UDP (an extra tracker replacing a dead
//! one); and a recording tracker checks the events Sluice sends (started, completed, stopped).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const OPENTRACKER: &str = "/usr/bin/opentracker";

fn skip_without_opentracker(test: &str) -> bool {
    if Path::new(OPENTRACKER).exists() {
        return false;
    }
    eprintln!("SKIPPED: {test} needs opentracker (./scripts/test installs it)");
    true
}

fn spec(name: &str, seed: u64) -> TorrentSpec<'_> {
    TorrentSpec { name, size: 6 * MIB + 4321, seed, files: 3, piece_length: 256 * 1024, hybrid: false }
}

fn info_hash(fx: &Fixture) -> String {
    let summary: serde_json::Value = serde_json::from_str(&fx.summary).expect("make-torrent json");
    summary["info_hash"].as_str().expect("info_hash").to_owned()
}

/// `%XX` for every byte of a hex info-hash.
fn escaped(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|c| format!("%{}", std::str::from_utf8(c).expect("hex"))).collect()
}

/// opentracker on `ip:port` (TCP and UDP), accepting only `hash`.
fn start_opentracker(ip: &str, port: u16, hash: &str, dir: &Path) -> Proc {
    let work = dir.join("opentracker");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::write(work.join("whitelist.txt"), format!("{hash}\n")).expect("whitelist");
    let mut cmd = Command::new(OPENTRACKER);
    let port = port.to_string();
    cmd.args(["-i", ip, "-p", &port, "-P", &port, "-d"]).arg(&work).args(["-w", "whitelist.txt"]);
    let proc = Proc::spawn("opentracker", cmd, dir, false);
    let addr = format!("{ip}:{port}");
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(&addr).is_ok()),
        "opentracker did not start:\n{}",
        proc.stderr()
    );
    proc
}

/// Waits until the tracker at `http` (ip:port) counts a seeder for `hash` (the libtorrent
/// seeder has announced).
fn wait_for_seeder(http: &str, hash: &str) {
    let head = format!("GET /scrape?info_hash={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", escaped(hash));
    let seeded = wait_until(Duration::from_secs(30), || {
        let (_, _, body) = http_exchange(http, &head, b"");
        let key = b"8:completei";
        let at = body.windows(key.len()).position(|w| w == key);
        at.and_then(|i| body.get(i + key.len())).is_some_and(|&d| d != b'0')
    });
    assert!(seeded, "the libtorrent seeder never announced to {http}");
}

fn download_via_opentracker(test: &str, block: u8, port: u16, udp: bool) {
    if skip_without_opentracker(test) {
        return;
    }
    let Some(tmp) = interop_tempdir(test) else {
        return;
    };
    let tracker_ip = format!("127.0.{block}.9");
    let http_url = format!("http://{tracker_ip}:{port}/announce");
    let udp_url = format!("udp://{tracker_ip}:{port}/announce");
    // The HTTP case uses the torrent's own announce URL; the UDP case replaces a dead one.
    let dead = format!("http://127.0.{block}.8:{port}/announce");
    let own = if udp { &dead } else { &http_url };
    let fx = make_torrent_announcing(tmp.path(), &spec(test, u64::from(block)), &[own.as_str()]);
    let hash = info_hash(&fx);
    let _tracker = start_opentracker(&tracker_ip, port, &hash, tmp.path());

    let seeder_trackers = [if udp { udp_url.as_str() } else { http_url.as_str() }];
    let opts = SeedOpts { trackers: &seeder_trackers, ..SeedOpts::default() };
    let _seeder = LtSeeder::start(&fx, &peer_addr(block, 2, port), &opts, tmp.path());
    wait_for_seeder(&format!("{tracker_ip}:{port}"), &hash);

    let out = out_dir(tmp.path());
    let mut args = vec![
        "download".to_owned(),
        fx.torrent.to_str().expect("utf-8").to_owned(),
        "--out".into(),
        out.to_str().expect("utf-8").into(),
        "--listen".into(),
        addr(block, 1, port + 1),
        "--loopback-only".into(),
    ];
    if udp {
        args.extend(["--tracker".into(), udp_url.clone(), "--tracker-mode".into(), "replace".into()]);
    }
    let mut sluice = spawn_sluice("sluice-download", &args, tmp.path());
    let stderr = expect_success(&mut sluice, Duration::from_secs(120));
    fx.assert_copied_to(&out);
    assert!(!stderr.contains(&dead), "a replaced tracker was contacted:\n{stderr}");
}

#[test]
fn interop_trackers_download_through_opentracker_over_http() {
    download_via_opentracker("interop_trackers_http", 41, 24400, false);
}

#[test]
fn interop_trackers_download_through_opentracker_over_udp() {
    download_via_opentracker("interop_trackers_udp", 42, 24500, true);
}

/// The query parameters of each announce a tiny HTTP tracker received; it answers every one
/// with `peers` (compact) and a 60 s interval.
fn recording_tracker(listener: TcpListener, peers: Vec<std::net::SocketAddrV4>) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(stream.try_clone().expect("clone")).read_line(&mut line).is_err() {
                continue;
            }
            let query = line.split_whitespace().nth(1).and_then(|t| t.split_once('?')).map(|(_, q)| q.to_owned());
            seen.lock().expect("log").push(query.unwrap_or_default());
            let mut compact = Vec::new();
            for p in &peers {
                compact.extend_from_slice(&p.ip().octets());
                compact.extend_from_slice(&p.port().to_be_bytes());
            }
            let mut body = format!("d8:intervali60e5:peers{}:", compact.len()).into_bytes();
            body.extend_from_slice(&compact);
            body.push(b'e');
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            let _ = stream.read(&mut [0u8; 1]);
        }
    });
    log
}

/// A percent-encoded binary parameter, as hex.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push_str(&hex.to_ascii_lowercase());
        } else {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn interop_trackers_events_reach_a_recording_tracker() {
    const BLOCK: u8 = 43;
    const PORT: u16 = 24600;
    let Some(tmp) = interop_tempdir("interop_trackers_events") else {
        return;
    };
    let fx = make_torrent(tmp.path(), &spec("events", 43));
    let hash = info_hash(&fx);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 2, PORT), &SeedOpts::default(), tmp.path());
    let tracker_addr = addr(BLOCK, 9, PORT);
    let listener = TcpListener::bind(&tracker_addr).expect("bind the recording tracker");
    let log = recording_tracker(listener, vec![seeder.endpoint.parse().expect("v4 endpoint")]);

    let out = out_dir(tmp.path());
    let listen = addr(BLOCK, 1, PORT + 1);
    let url = format!("http://{tracker_addr}/announce");
    let args = ["download", fx.torrent.to_str().expect("utf-8"), "--out", out.to_str().expect("utf-8")];
    let args = [&args[..], &["--listen", &listen, "--loopback-only", "--tracker", &url]].concat();
    let mut sluice = spawn_sluice("sluice-download", &args, tmp.path());
    expect_success(&mut sluice, Duration::from_secs(120));
    fx.assert_copied_to(&out);

    let log = log.lock().expect("log").clone();
    let events: Vec<&str> = log.iter().filter_map(|q| param(q, "event")).collect();
    assert_eq!(events, ["started", "completed", "stopped"], "announces: {log:#?}");
    for q in &log {
        assert_eq!(param(q, "compact"), Some("1"), "{q}");
        assert_eq!(param(q, "port"), Some(&*(PORT + 1).to_string()), "{q}");
        assert_eq!(param(q, "info_hash").map(unescape), Some(hash.clone()), "{q}");
    }
    let completed = log.iter().find(|q| param(q, "event") == Some("completed")).expect("completed");
    assert_eq!(param(completed, "left"), Some("0"));
    let downloaded: u64 = param(completed, "downloaded").and_then(|d| d.parse().ok()).expect("downloaded");
    assert!(downloaded >= fx.total_size(), "{completed}");
    let started = log.iter().find(|q| param(q, "event") == Some("started")).expect("started");
    assert_eq!(param(started, "left"), Some(&*fx.total_size().to_string()));
}
