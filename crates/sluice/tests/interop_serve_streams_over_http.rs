//! `sluice serve`: a torrent POSTed to the API streams over HTTP while it downloads from
//! rate-capped libtorrent seeders; ranged and full reads return exactly the file's bytes.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const BLOCK: u8 = 21;
const PORT: u16 = 23000;

/// One HTTP/1.1 exchange on a fresh connection: (status, head, body).
fn http(addr: &str, request_head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to sluice");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    s.write_all(request_head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().expect("status code");
    (status, head, raw[split + 4..].to_vec())
}

#[test]
fn posted_torrent_streams_ranges_while_downloading() {
    let Some(tmp) = interop_tempdir("interop_serve_streams_over_http") else {
        return;
    };
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec { name: "served", size: 12 * MIB, seed: 21, files: 3, piece_length: 256 * 1024, hybrid: false },
    );
    // Capped seeders: the reads below start long before the download ends.
    let seeders = start_seeders(
        &fx,
        BLOCK,
        2..=3,
        PORT,
        &SeedOpts { upload_rate: Some(3 * MIB), ..SeedOpts::default() },
        tmp.path(),
    );
    let http_addr = addr(BLOCK, 1, PORT);
    let data_dir = tmp.path().join("served-data");
    let args = [
        "serve",
        "--listen",
        &http_addr,
        "--peer-listen",
        &addr(BLOCK, 1, PORT + 1),
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--loopback-only",
    ];
    let serve = spawn_sluice("sluice-serve", &args, tmp.path());
    assert!(
        wait_until(Duration::from_secs(30), || serve.stderr().contains("http on")),
        "serve did not start:\n{}",
        tail(&serve.stderr(), 20)
    );

    let torrent = std::fs::read(&fx.torrent).expect("torrent");
    let head = format!(
        "POST /api/v1/torrents HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/x-bittorrent\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        torrent.len()
    );
    let (status, _, body) = http(&http_addr, &head, &torrent);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let added: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let hash = added["info_hash"].as_str().expect("info_hash").to_owned();
    let files = added["files"].as_array().expect("files").clone();
    assert_eq!(added["name"], "served");

    let peers: Vec<String> = seeders.iter().map(|s| s.endpoint.clone()).collect();
    let peers = serde_json::to_vec(&peers).expect("json");
    let head = format!(
        "POST /api/v1/torrents/{hash}/peers HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        peers.len()
    );
    assert_eq!(http(&http_addr, &head, &peers).0, 204);

    // The largest file, ranged from its middle, then every file whole.
    let (largest, _) =
        files.iter().enumerate().max_by_key(|(_, f)| f["length"].as_u64().expect("length")).expect("a file");
    let path = |i: usize| fx.data.join(files[i]["path"].as_str().expect("path"));
    let content = std::fs::read(path(largest)).expect("source file");
    let (from, to) = (content.len() / 2 - 12_345, content.len() / 2 + 1_000_000);
    let head = format!(
        "GET /api/v1/torrents/{hash}/files/{largest}/stream HTTP/1.1\r\nHost: sluice\r\nRange: bytes={from}-{to}\r\nConnection: close\r\n\r\n"
    );
    let (status, head, body) = http(&http_addr, &head, b"");
    assert_eq!(status, 206, "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("content-range: bytes {from}-{to}/{}", content.len())),
        "{head}"
    );
    assert!(body == content[from..=to], "ranged body differs from the file");

    for i in 0..files.len() {
        let head = format!(
            "GET /api/v1/torrents/{hash}/files/{i}/stream HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n"
        );
        let (status, _, body) = http(&http_addr, &head, b"");
        assert_eq!(status, 200);
        assert!(body == std::fs::read(path(i)).expect("source file"), "file {i} differs");
    }
    assert!(!serve.stderr().contains("panicked"));
}
