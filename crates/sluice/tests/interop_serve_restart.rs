//! `sluice serve` keeps everything across restarts: torrents added through the TorrServer
//! routes (upload, magnet) and the own API with their title, poster, category and data,
//! viewed marks and settings survive `kill -9`; the torrent that was downloading when it was
//! killed resumes without fetching its verified pieces again and streams; a graceful stop
//! (SIGTERM with a stream still open, then TorrServer's `/shutdown`) flushes the resume data,
//! so a completed torrent comes back complete without a byte downloaded.

mod common;
mod ts_client;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use ts_client::*;

const BLOCK: u8 = 89;
const PORT: u16 = 28900;

fn torrent_bytes(fx: &Fixture) -> Vec<u8> {
    std::fs::read(&fx.torrent).expect("read torrent")
}

fn hash_of(fx: &Fixture) -> String {
    sluice_core::metainfo::Metainfo::from_bytes(&torrent_bytes(fx)).expect("torrent").info_hash.to_hex()
}

fn list(http: &str) -> Vec<Value> {
    post_json(http, "/torrents", &json!({"action": "list"})).as_array().expect("list").clone()
}

fn entry<'a>(list: &'a [Value], hash: &str) -> &'a Value {
    list.iter().find(|t| t["hash"] == hash).unwrap_or_else(|| panic!("{hash} not listed: {list:?}"))
}

fn client_fields(v: &Value) -> [String; 4] {
    ["title", "poster", "category", "data"].map(|k| v[k].as_str().unwrap_or("").to_owned())
}

fn viewed(http: &str) -> Vec<(String, i64, f64)> {
    let all = post_json(http, "/viewed", &json!({"action": "list"}));
    let mut marks: Vec<_> = all
        .as_array()
        .expect("viewed")
        .iter()
        .map(|v| {
            let hash = v["hash"].as_str().expect("hash").to_owned();
            (hash, v["file_index"].as_i64().expect("id"), v["timecode"].as_f64().unwrap_or(0.0))
        })
        .collect();
    marks.sort_by(|a, b| a.partial_cmp(b).expect("ordered"));
    marks
}

fn complete(s: &Value) -> bool {
    s["stat"] == 3 && u64_of(s, "torrent_size") > 0 && u64_of(s, "loaded_size") == u64_of(s, "torrent_size")
}

fn sigterm(proc: &Proc) {
    let status = std::process::Command::new("kill").args(["-TERM", &proc.pid().to_string()]).status().expect("kill");
    assert!(status.success());
}

/// Every piece of the state that must survive a restart, as the APIs show it.
#[derive(Debug, PartialEq)]
struct Saved {
    torrents: Vec<(String, [String; 4])>,
    viewed: Vec<(String, i64, f64)>,
    settings: Value,
}

fn saved(http: &str, hashes: &[&str]) -> Saved {
    let all = list(http);
    assert_eq!(all.len(), hashes.len(), "{all:?}");
    Saved {
        torrents: hashes.iter().map(|h| (h.to_string(), client_fields(entry(&all, h)))).collect(),
        viewed: viewed(http),
        settings: post_json(http, "/settings", &json!({"action": "get"})),
    }
}

#[test]
fn serve_state_survives_kill9_and_graceful_stops() {
    let Some(tmp) = interop_tempdir("interop_serve_restart") else {
        return;
    };
    let dir = tmp.path();
    let spec =
        |name, size, seed, files| TorrentSpec { name, size, seed, files, piece_length: 256 * 1024, hybrid: false };
    let (da, db, dc, dd) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("d"));
    for d in [&da, &db, &dc, &dd] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let fa = make_torrent(&da, &spec("alpha", 4 * MIB + 333, 891, 2));
    let fb = make_torrent(&db, &spec("beta", 24 * MIB + 777, 892, 3));
    let fc = make_torrent(&dc, &spec("gamma", 2 * MIB, 893, 1));
    // Delta has no seeder: a stream of it waits for data, as a player on a stalled torrent.
    let fd = make_torrent(&dd, &spec("delta", MIB, 894, 1));
    let (ha, hb, hc, hd) = (hash_of(&fa), hash_of(&fb), hash_of(&fc), hash_of(&fd));
    let sa = LtSeeder::start(&fa, &peer_addr(BLOCK, 2, PORT), &SeedOpts::default(), dir);
    // Capped so the download is still going when the server is killed.
    let sb = LtSeeder::start(
        &fb,
        &peer_addr(BLOCK, 3, PORT),
        &SeedOpts { upload_rate: Some(3 * MIB), ..SeedOpts::default() },
        dir,
    );
    let sc = LtSeeder::start(&fc, &peer_addr(BLOCK, 4, PORT), &SeedOpts::default(), dir);
    let total_b = fb.total_size();

    // Run 1: add in three ways, mark, configure, download; kill -9 part-way through beta.
    let mut serve = Serve::start(BLOCK, PORT + 10, dir);
    let http = serve.http.clone();
    let up = upload(
        &http,
        &torrent_bytes(&fa),
        &[
            ("title", "Alpha"),
            ("poster", "http://img/a.jpg"),
            ("category", "movie"),
            ("data", "{\"a\":1}"),
            ("save", "true"),
        ],
    );
    assert_eq!(up["hash"], ha.as_str(), "{up}");
    give_peers(&http, &ha, &[&sa.endpoint]);
    let added = post_json(
        &http,
        "/torrents",
        &json!({"action": "add", "link": magnet_for(&fb, &[&sb.endpoint]), "title": "Beta", "poster": "http://img/b.png",
                "category": "tv", "data": "{\"b\":2}", "save_to_db": true}),
    );
    assert_eq!(added["hash"], hb.as_str(), "{added}");
    let own = serve.add(&torrent_bytes(&fc), std::slice::from_ref(&sc));
    assert_eq!(own["info_hash"], hc.as_str());
    let (code, _) = post(
        &http,
        "/torrents",
        &json!({"action": "set", "hash": hc, "title": "Gamma", "poster": "", "category": "music", "data": "{\"c\":3}"}),
    );
    assert_eq!(code, 200);
    let mut sets = post_json(&http, "/settings", &json!({"action": "get"}));
    sets["CacheSize"] = json!(96 << 20);
    sets["PreloadCache"] = json!(40);
    sets["TrackTimecode"] = json!(true);
    sets["FriendlyName"] = json!("living room");
    let (code, _) = post(&http, "/settings", &json!({"action": "set", "sets": sets}));
    assert_eq!(code, 200);
    for (h, id, t) in [(&ha, 1, 61.5), (&hb, 2, 0.0), (&hc, 1, 7.0)] {
        let (code, _) = post(&http, "/viewed", &json!({"action": "set", "hash": h, "file_index": id, "timecode": t}));
        assert_eq!(code, 200);
    }
    let before = saved(&http, &[&ha, &hb, &hc]);
    assert_eq!(before.torrents[0].1, ["Alpha", "http://img/a.jpg", "movie", "{\"a\":1}"].map(String::from));
    assert_eq!(before.torrents[1].1, ["Beta", "http://img/b.png", "tv", "{\"b\":2}"].map(String::from));
    assert_eq!(before.torrents[2].1, ["Gamma", "", "music", "{\"c\":3}"].map(String::from));
    assert_eq!(before.viewed.len(), 3, "{:?}", before.viewed);
    assert_eq!(before.settings["FriendlyName"], "living room");

    wait_status(&http, &ha, Duration::from_secs(60), complete);
    wait_status(&http, &hc, Duration::from_secs(60), complete);
    let partial = wait_status(&http, &hb, Duration::from_secs(120), |s| u64_of(s, "loaded_size") * 10 >= total_b * 4);
    let loaded_before_kill = u64_of(&partial, "loaded_size");
    assert!(loaded_before_kill < total_b, "beta completed before the kill: {partial}");
    serve.proc.kill9();
    // The seeder reports what it sent every 200 ms.
    std::thread::sleep(Duration::from_millis(600));
    let sent_before_kill = sb.uploaded();
    eprintln!("killed with beta at {loaded_before_kill} of {total_b} bytes (seeder sent {sent_before_kill})");

    // Run 2: everything is back; beta resumes from its verified pieces and streams.
    let serve = Serve::start(BLOCK, PORT + 20, dir);
    let http = serve.http.clone();
    let after = saved(&http, &[&ha, &hb, &hc]);
    assert_eq!(after, before, "state after kill -9");
    assert!(list(&http).iter().all(|t| t["stat"] == 5), "known torrents come back in the db only");
    // Closed, they still show what their files hold (read from their resume journals).
    let (code, _, body) = get(&http, "/api/v1/torrents", "");
    assert_eq!(code, 200);
    let own: Value = serde_json::from_slice(&body).expect("torrent list");
    let own = |h: &str| {
        own["torrents"]
            .as_array()
            .expect("torrents")
            .iter()
            .find(|t| t["info_hash"] == h)
            .cloned()
            .unwrap_or_else(|| panic!("{h} not listed"))
    };
    let (a, b) = (own(&ha), own(&hb));
    assert_eq!((a["state"].as_str(), a["verified_bytes"].as_u64()), (Some("closed"), Some(fa.total_size())), "{a}");
    assert!(a["progress"] == 1.0, "{a}");
    assert!(u64_of(&b, "verified_bytes") > 0 && u64_of(&b, "verified_bytes") < total_b, "{b}");
    // Alpha finished before the kill: complete from its resume data (it has no peers now),
    // nothing downloaded.
    let a = wait_status(&http, &ha, Duration::from_secs(30), complete);
    assert_eq!(u64_of(&a, "bytes_read_data"), 0, "{a}");
    give_peers(&http, &hb, &[&sb.endpoint]);
    let resumed = wait_status(&http, &hb, Duration::from_secs(30), |s| s["stat"] == 3 && u64_of(s, "loaded_size") > 0);
    let resumed_bytes = u64_of(&resumed, "loaded_size");
    assert!(resumed_bytes >= loaded_before_kill, "resumed {resumed_bytes} < {loaded_before_kill} before the kill");
    let done = wait_status(&http, &hb, Duration::from_secs(120), complete);
    let downloaded = u64_of(&done, "bytes_read_data");
    let piece = 256 * 1024;
    eprintln!("beta resumed with {resumed_bytes} bytes; downloaded {downloaded} more of {total_b}");
    assert!(
        downloaded + resumed_bytes <= total_b + 4 * piece,
        "verified pieces were fetched again: {downloaded} downloaded after resuming {resumed_bytes} of {total_b}"
    );
    // Seen from the seeder, blocks of pieces not complete at the kill are sent again too.
    let sent_after = sb.uploaded() - sent_before_kill;
    assert!(sent_after <= total_b - loaded_before_kill + 8 * piece, "the seeder sent {sent_after} after the restart");
    let files = done["file_stats"].as_array().expect("file_stats");
    let path = files[1]["path"].as_str().expect("path");
    let content = std::fs::read(fb.data.join(path)).expect("source");
    let (code, head, body) =
        get(&http, &format!("/stream?link={hb}&index=2&play"), &format!("Range: bytes=1000-{}\r\n", content.len() - 1));
    assert_eq!(code, 206, "{head}");
    assert!(body == content[1000..], "streamed bytes differ from the file");

    // SIGTERM while a player holds a stream open (waiting for data that will not come): the
    // stop still completes, after a grace period, and flushes.
    serve.add(&torrent_bytes(&fd), &[]);
    let mut held = std::net::TcpStream::connect(&http).expect("connect");
    held.write_all(format!("GET /play/{hd}/1 HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes()).expect("request");
    // The play request marks the file viewed before it waits.
    assert!(wait_until(Duration::from_secs(10), || viewed(&http).iter().any(|v| v.0 == hd)));
    let before = saved(&http, &[&ha, &hb, &hc, &hd]);
    let mut proc = serve.proc;
    let stopping = Instant::now();
    sigterm(&proc);
    let status = proc.wait_exit(Duration::from_secs(30));
    eprintln!("SIGTERM with a stream open: exited after {:.2} s", stopping.elapsed().as_secs_f64());
    let stderr = proc.stderr();
    assert!(status.success(), "{status}: {}", tail(&stderr, 20));
    assert!(stderr.contains("connections still open"), "{}", tail(&stderr, 20));
    assert!(stderr.contains("resume data flushed"), "{}", tail(&stderr, 20));
    drop(held);

    // Run 3: beta is complete from its resume data alone (no peers), then /shutdown.
    let serve = Serve::start(BLOCK, PORT + 30, dir);
    let http = serve.http.clone();
    let b = wait_status(&http, &hb, Duration::from_secs(30), complete);
    assert_eq!(u64_of(&b, "bytes_read_data"), 0, "downloaded after a graceful stop: {b}");
    assert_eq!(saved(&http, &[&ha, &hb, &hc, &hd]), before, "state after SIGTERM");
    let (code, _, _) = get(&http, "/shutdown", "");
    assert_eq!(code, 200);
    let mut proc = serve.proc;
    let status = proc.wait_exit(Duration::from_secs(30));
    assert!(status.success() && proc.stderr().contains("resume data flushed"), "{}", tail(&proc.stderr(), 20));

    // Run 4: after /shutdown, the same.
    let serve = Serve::start(BLOCK, PORT + 40, dir);
    let http = serve.http.clone();
    assert_eq!(saved(&http, &[&ha, &hb, &hc, &hd]), before, "state after /shutdown");
    for h in [&ha, &hb, &hc] {
        let s = wait_status(&http, h, Duration::from_secs(30), complete);
        assert_eq!(u64_of(&s, "bytes_read_data"), 0, "{s}");
    }
    assert!(!serve.proc.stderr().contains("panicked"));
}
