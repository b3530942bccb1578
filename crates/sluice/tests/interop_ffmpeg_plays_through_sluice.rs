//! Real players through `sluice serve`: ffmpeg decodes the first frame of an end-moov MP4 and
//! of a Matroska file streamed from rate-capped libtorrent seeders while they download, and
//! again after seeking to 30, 60 and 90 % of the duration.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_core::metainfo::TorrentBuilder;

const BLOCK: u8 = 22;
const PORT: u16 = 24000;
const SECONDS: u32 = 30;

fn ffmpeg_available() -> bool {
    Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success())
}

/// A SECONDS-long H.264/AAC test clip in `container` (mp4: moov at the end, ffmpeg's default).
fn make_clip(dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=640x360:rate=25:duration={SECONDS}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={SECONDS}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-b:v", "2M", "-c:a", "aac", "-shortest"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make {name}");
    std::fs::read(out).expect("read clip")
}

#[test]
fn ffmpeg_gets_frames_at_start_and_after_seeks() {
    let Some(tmp) = interop_tempdir("interop_ffmpeg_plays_through_sluice") else {
        return;
    };
    if !ffmpeg_available() {
        eprintln!("SKIPPED interop_ffmpeg_plays_through_sluice: ffmpeg is not installed");
        return;
    }
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("media")).expect("mkdir");
    let mp4 = make_clip(&data.join("media"), "clip.mp4");
    let mkv = make_clip(&data.join("media"), "clip.mkv");
    let piece_length = 256 * 1024;
    let torrent =
        TorrentBuilder::new("media", piece_length as u32).file(&["clip.mp4"], mp4).file(&["clip.mkv"], mkv).build();
    let torrent_path = tmp.path().join("media.torrent");
    std::fs::write(&torrent_path, &torrent).expect("write torrent");
    let fx = Fixture { torrent: torrent_path, data, name: "media".into(), piece_length, summary: String::new() };
    let seeders = start_seeders(
        &fx,
        BLOCK,
        2..=4,
        PORT,
        &SeedOpts { upload_rate: Some(2 * MIB), ..SeedOpts::default() },
        tmp.path(),
    );

    let serve = Serve::start(BLOCK, PORT, tmp.path());
    let http = serve.http.clone();
    let added = serve.add(&torrent, &seeders);
    let hash = added["info_hash"].as_str().expect("hash").to_owned();

    for (index, name) in [(0, "clip.mp4"), (1, "clip.mkv")] {
        let url = format!("http://{http}/api/v1/torrents/{hash}/files/{index}/stream/{name}");
        for percent in [0u32, 30, 60, 90] {
            let at = format!("{:.1}", f64::from(SECONDS * percent) / 100.0);
            let mut cmd = Command::new("ffmpeg");
            cmd.args(["-v", "error", "-nostdin", "-ss", &at, "-i", &url, "-frames:v", "1", "-f", "null", "-"]);
            let started = std::time::Instant::now();
            let mut p = Proc::spawn(&format!("ffmpeg-{index}-{percent}"), cmd, tmp.path(), false);
            let status = p.wait_exit(Duration::from_secs(120));
            eprintln!("{name} at {percent:2} %: first frame after {:.2} s", started.elapsed().as_secs_f64());
            assert!(status.success(), "ffmpeg failed on {name} at {percent} %:\n{}", tail(&p.stderr(), 20));
        }
    }
    assert!(!serve.proc.stderr().contains("panicked"));
}
