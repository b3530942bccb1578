//! TorrServer restarts its engine when settings change, cutting every stream; Sluice must
//! not: a player reads a file slowly through `/stream?..&play` while `/settings set` changes
//! `CacheSize` and other fields several times, and every byte arrives, in order and correct.

mod common;
mod ts_client;

use std::time::Duration;

use common::*;
use serde_json::json;
use ts_client::*;

const BLOCK: u8 = 90;
const PORT: u16 = 29200;

#[test]
fn settings_changes_do_not_interrupt_a_stream() {
    let Some(tmp) = interop_tempdir("interop_settings_while_streaming") else {
        return;
    };
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec {
            name: "steady",
            size: 12 * MIB + 123,
            seed: 904,
            files: 1,
            piece_length: 256 * 1024,
            hybrid: false,
        },
    );
    let seeder = LtSeeder::start(
        &fx,
        &peer_addr(BLOCK, 2, PORT),
        &SeedOpts { upload_rate: Some(4 * MIB), ..SeedOpts::default() },
        tmp.path(),
    );
    let serve = Serve::start(BLOCK, PORT + 10, tmp.path());
    let http = serve.http.clone();
    let added = post_json(
        &http,
        "/torrents",
        &json!({"action": "add", "link": magnet_for(&fx, &[&seeder.endpoint]), "save_to_db": true}),
    );
    let hash = added["hash"].as_str().expect("hash").to_owned();
    let status = wait_status(&http, &hash, Duration::from_secs(60), |s| {
        s["file_stats"].as_array().is_some_and(|f| !f.is_empty())
    });
    let path = status["file_stats"][0]["path"].as_str().expect("path");
    let content = std::fs::read(fx.data.join(path)).expect("source file");

    let base = post_json(&http, "/settings", &json!({"action": "get"}));
    let changes = [
        json!({"CacheSize": 16 << 20, "PreloadCache": 10, "ReaderReadAHead": 50}),
        json!({"CacheSize": 512 << 20, "ConnectionsLimit": 10, "TorrentDisconnectTimeout": 1}),
        json!({"CacheSize": 32 << 20, "DownloadRateLimit": 0, "UploadRateLimit": 100, "RetrackersMode": 2}),
        json!({"CacheSize": 64 << 20, "ResponsiveMode": true, "EnableDebug": true, "PreloadCache": 80}),
    ];
    let started = std::time::Instant::now();
    let mut applied = 0;
    let mut last = base.clone();
    // 64 KiB per read, 25 ms apart: at most ~2.5 MiB/s, a few seconds for the file; a
    // settings change every 24 reads (1.5 MiB).
    let body =
        slow_get(&http, &format!("/stream?link={hash}&index=1&play"), 64 * 1024, Duration::from_millis(25), |reads| {
            if reads % 24 == 0 && applied < changes.len() {
                let mut sets = base.clone();
                for (k, v) in changes[applied].as_object().expect("object") {
                    sets[k] = v.clone();
                }
                let (code, _) = post(&http, "/settings", &json!({"action": "set", "sets": sets}));
                assert_eq!(code, 200);
                last = post_json(&http, "/settings", &json!({"action": "get"}));
                applied += 1;
            }
        });
    eprintln!(
        "{} bytes streamed in {:.1} s across {applied} settings changes",
        body.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(applied, changes.len(), "the stream ended before every change was applied");
    assert_eq!(body.len(), content.len(), "the stream was cut short");
    if let Some(i) = body.iter().zip(&content).position(|(a, b)| a != b) {
        panic!("streamed byte {i} differs from the file");
    }
    assert_eq!(last["CacheSize"], 64 << 20, "{last}");
    assert_eq!(post_json(&http, "/settings", &json!({"action": "get"})), last);
    assert!(!serve.proc.stderr().contains("panicked"));
}
