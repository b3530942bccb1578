//! `sluice serve`: a torrent POSTed to the API streams over HTTP while it downloads from
//! rate-capped libtorrent seeders; ranged and full reads return exactly the file's bytes.

mod common;

use common::*;

const BLOCK: u8 = 21;
const PORT: u16 = 23000;

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
    let serve = Serve::start(BLOCK, PORT, tmp.path());
    let http_addr = serve.http.clone();
    let added = serve.add(&std::fs::read(&fx.torrent).expect("torrent"), &seeders);
    let hash = added["info_hash"].as_str().expect("info_hash").to_owned();
    let files = added["files"].as_array().expect("files").clone();
    assert_eq!(added["name"], "served");

    // The largest file, ranged from its middle, then every file whole.
    let (largest, _) =
        files.iter().enumerate().max_by_key(|(_, f)| f["length"].as_u64().expect("length")).expect("a file");
    let path = |i: usize| fx.data.join(files[i]["path"].as_str().expect("path"));
    let content = std::fs::read(path(largest)).expect("source file");
    let (from, to) = (content.len() / 2 - 12_345, content.len() / 2 + 1_000_000);
    let head = format!(
        "GET /api/v1/torrents/{hash}/files/{largest}/stream HTTP/1.1\r\nHost: sluice\r\nRange: bytes={from}-{to}\r\nConnection: close\r\n\r\n"
    );
    let (status, head, body) = http_exchange(&http_addr, &head, b"");
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
        let (status, _, body) = http_exchange(&http_addr, &head, b"");
        assert_eq!(status, 200);
        assert!(body == std::fs::read(path(i)).expect("source file"), "file {i} differs");
    }
    assert!(!serve.proc.stderr().contains("panicked"));
}
