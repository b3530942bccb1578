//! Peers found only by local service discovery (BEP 14 multicast): inside a network namespace
//! this test creates (so no datagram reaches the host's interfaces), `sluice seed` and `sluice
//! download` are given no peer, no tracker and no DHT; the downloader's announce reaches the
//! seeder, which connects to it, and the download completes.

mod common;

use std::process::Command;

use common::*;
use sluice_core::metainfo::TorrentBuilder;

#[test]
fn a_download_finds_its_seeder_through_local_service_discovery() {
    if !Command::new("unshare").args(["--net", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot create a network namespace (unshare --net needs root)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let torrent = tmp.path().join("lsd.torrent");
    std::fs::write(&torrent, TorrentBuilder::single_file("lsd.bin", 256 * 1024, data.clone()).build())
        .expect("torrent");
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(&seed_dir).expect("mkdir");
    std::fs::write(seed_dir.join("lsd.bin"), &data).expect("data");
    let out = tmp.path().join("out");
    let logs = tmp.path();

    let script = r#"set -u
ip link set lo up
"$SLUICE" seed "$T" --data "$SEED" --listen 127.0.0.2:24101 --loopback-only --lsd --no-dht 2> "$LOGS/lsd-seed.stderr" &
seed=$!
for _ in $(seq 100); do grep -q "listening on" "$LOGS/lsd-seed.stderr" && break; sleep 0.1; done
timeout 60 "$SLUICE" download "$T" --out "$OUT" --listen 127.0.0.3:24102 --loopback-only --lsd --no-dht 2> "$LOGS/lsd-download.stderr"
rc=$?
kill $seed
wait $seed
exit $rc"#;
    let started = std::time::Instant::now();
    let status = Command::new("unshare")
        .args(["--net", "bash", "-c", script])
        .env("SLUICE", sluice_bin())
        .env("T", &torrent)
        .env("SEED", &seed_dir)
        .env("OUT", &out)
        .env("LOGS", logs)
        .env("SLUICE_LOOPBACK_ONLY", "1")
        .status()
        .expect("run the namespace script");
    let stderr = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    assert!(
        status.success(),
        "download failed ({status}):\n{}\nseed:\n{}",
        tail(&stderr("lsd-download.stderr"), 30),
        tail(&stderr("lsd-seed.stderr"), 30)
    );
    println!("found through LSD and downloaded in {:.2}s", started.elapsed().as_secs_f64());
    assert!(std::fs::read(out.join("lsd.bin")).expect("downloaded file") == data, "downloaded bytes differ");
    assert!(!stderr("lsd-download.stderr").contains("panicked") && !stderr("lsd-seed.stderr").contains("panicked"));
}
