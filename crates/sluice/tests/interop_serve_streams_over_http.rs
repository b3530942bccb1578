//! `sluice serve`: a torrent POSTed to the API streams over HTTP while it downloads from
//! rate-capped libtorrent seeders; ranged and full reads return exactly the file's bytes, and
//! `/metrics` shows the streams and the torrent in Prometheus' format.

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

    let (status, head, body) =
        http_exchange(&http_addr, "GET /metrics HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n", b"");
    assert_eq!(status, 200, "{head}");
    let text = String::from_utf8(body).expect("metrics are text");
    let value = |line_start: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("{line_start}:\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    // One ranged read and one full read of every file, each with a first byte.
    assert_eq!(value("sluice_stream_first_byte_seconds_count"), (1 + files.len()) as f64);
    assert!(value("sluice_piece_wait_seconds_count") >= 1.0, "the first reads waited for pieces");
    assert_eq!(value("sluice_streams_active"), 0.0);
    // Per-file series exist for every streamed file (values depend on timing).
    for name in ["sluice_stream_stalls_total", "sluice_stream_buffered_ahead_bytes"] {
        let series = text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count();
        assert_eq!(series, files.len(), "{name}:\n{text}");
    }
    let served: f64 = text
        .lines()
        .filter(|l| l.starts_with("sluice_stream_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let sizes: u64 = files.iter().map(|f| f["length"].as_u64().expect("length")).sum();
    assert_eq!(served, (sizes + (to - from + 1) as u64) as f64);
    assert_eq!(value(&format!("sluice_torrent_pieces{{torrent=\"{hash}\"}}")), 48.0);
    // Every file was read whole, so every piece is verified.
    assert_eq!(value(&format!("sluice_torrent_pieces_verified{{torrent=\"{hash}\"}}")), 48.0);
    assert!(value(&format!("sluice_torrent_downloaded_bytes{{torrent=\"{hash}\"}}")) >= (12 * MIB) as f64);
    assert!(!serve.proc.stderr().contains("panicked"));
}
