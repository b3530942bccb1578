//! ffmpeg plays what TorrServer's clients hand it: `/stream?link=<magnet>&index=1&play` (the
//! link Lampa builds, the magnet added on that very request) and the entries of the M3U
//! playlists (`/stream?link=..&m3u`, `/playlist?hash=..`), with MP4 and Matroska clips made
//! by ffmpeg and served by a real libtorrent seeder.

mod common;
mod ts_client;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use sluice_core::metainfo::TorrentBuilder;
use ts_client::*;

const BLOCK: u8 = 89;
const PORT: u16 = 29100;

fn ffmpeg_available() -> bool {
    Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success())
}

fn make_clip(dir: &Path, name: &str, seconds: u32) -> Vec<u8> {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-c:a", "aac", "-shortest"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make {name}");
    std::fs::read(out).expect("read clip")
}

/// Every byte but unreserved ones percent-encoded, as a client puts a link in a query.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `ffmpeg -i url -frames:v 1 -f null -`; panics with ffmpeg's output if it fails.
fn ffmpeg_first_frame(url: &str, name: &str, log_dir: &Path) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin", "-i", url, "-frames:v", "1", "-f", "null", "-"]);
    let started = std::time::Instant::now();
    let mut p = Proc::spawn(name, cmd, log_dir, false);
    let status = p.wait_exit(Duration::from_secs(120));
    eprintln!("{name}: first frame after {:.2} s from {url}", started.elapsed().as_secs_f64());
    assert!(status.success(), "ffmpeg failed on {url}:\n{}", tail(&p.stderr(), 20));
}

fn entries(m3u: &[u8]) -> Vec<String> {
    let text = String::from_utf8(m3u.to_vec()).expect("m3u is text");
    assert!(text.starts_with("#EXTM3U"), "{text}");
    text.lines().filter(|l| l.starts_with("http://")).map(str::to_owned).collect()
}

#[test]
fn ffmpeg_plays_stream_links_and_playlist_entries() {
    let Some(tmp) = interop_tempdir("interop_ffmpeg_torrserver_links") else {
        return;
    };
    if !ffmpeg_available() {
        eprintln!("SKIPPED interop_ffmpeg_torrserver_links: ffmpeg is not installed");
        return;
    }
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("show")).expect("mkdir");
    let mp4 = make_clip(&data.join("show"), "Episode 1.mp4", 12);
    let mkv = make_clip(&data.join("show"), "Episode 2.mkv", 8);
    let piece_length = 128 * 1024;
    let torrent = TorrentBuilder::new("show", piece_length as u32)
        .file(&["Episode 1.mp4"], mp4)
        .file(&["Episode 2.mkv"], mkv)
        .build();
    let torrent_path = tmp.path().join("show.torrent");
    std::fs::write(&torrent_path, &torrent).expect("write torrent");
    let fx = Fixture { torrent: torrent_path, data, name: "show".into(), piece_length, summary: String::new() };
    let seeder = LtSeeder::start(
        &fx,
        &peer_addr(BLOCK, 2, PORT),
        &SeedOpts { upload_rate: Some(4 * MIB), ..SeedOpts::default() },
        tmp.path(),
    );
    let hash = sluice_core::metainfo::Metainfo::from_bytes(&torrent).expect("torrent").info_hash.to_hex();

    let serve = Serve::start(BLOCK, PORT + 10, tmp.path());
    let http = serve.http.clone();

    // The magnet is unknown to the server: this request adds it, waits for the metadata,
    // and streams file 1.
    let magnet = query_escape(&magnet_for(&fx, &[&seeder.endpoint]));
    ffmpeg_first_frame(&format!("http://{http}/stream?link={magnet}&index=1&play"), "ffmpeg-stream-magnet", tmp.path());

    // The playlist of the torrent, as `&m3u` answers it: every entry plays.
    let (code, head, body) = get(&http, &format!("/stream?link={hash}&m3u"), "");
    assert_eq!(code, 200, "{head}");
    let listed = entries(&body);
    assert_eq!(listed.len(), 2, "{}", String::from_utf8_lossy(&body));
    for (i, url) in listed.iter().enumerate() {
        ffmpeg_first_frame(url, &format!("ffmpeg-m3u-{i}"), tmp.path());
    }
    // `/playlist?hash=` lists the same entries.
    let (code, head, body) = get(&http, &format!("/playlist?hash={hash}"), "");
    assert_eq!(code, 200, "{head}");
    assert_eq!(entries(&body), listed);
    assert!(!serve.proc.stderr().contains("panicked"));
}
