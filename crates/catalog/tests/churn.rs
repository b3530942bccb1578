//! Adding and removing 1000 torrents leaves nothing behind: no entries, no rows, no state
//! files, no tasks, and the process's memory back near where it started.

mod common;

use std::time::Duration;

use common::*;
use sluice_catalog::{Focus, Meta, Source};
use sluice_db::Db;

const ROUNDS: usize = 10;
const PER_ROUND: usize = 100;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn small_torrent(i: usize) -> Vec<u8> {
    let data = content(40_000 + i, i as u32);
    torrent(&format!("churn-{i}.bin"), 16 * 1024, &data).0
}

async fn round(catalog: &sluice_catalog::Catalog, from: usize) {
    let mut hashes = Vec::with_capacity(PER_ROUND);
    for i in from..from + PER_ROUND {
        let meta = Meta { title: format!("churn {i}"), data: "x".repeat(200), ..Meta::default() };
        hashes.push(catalog.add(Source::Torrent(small_torrent(i)), meta).await.unwrap().snapshot.info_hash);
    }
    // Half of them also go through a drop first.
    for h in hashes.iter().step_by(2) {
        catalog.drop(*h).await.unwrap();
    }
    for h in hashes {
        assert!(catalog.remove(h, true).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_remove_churn_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = open_catalog(tmp.path(), options(tmp.path(), Duration::from_secs(30), Focus::Cap(0))).await;
    let metrics = tokio::runtime::Handle::current().metrics();

    // Warm-up: allocator arenas, SQLite's page cache, the runtime's worker state.
    round(&catalog, 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (base_rss, base_tasks) = (rss_kib(), metrics.num_alive_tasks());

    let started = std::time::Instant::now();
    let mut peak = base_rss;
    for r in 0..ROUNDS {
        round(&catalog, r * PER_ROUND).await;
        peak = peak.max(rss_kib());
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (end_rss, end_tasks) = (rss_kib(), metrics.num_alive_tasks());

    let stats = catalog.stats();
    assert_eq!((stats.known, stats.active, stats.readers, stats.capped, stats.pending_tasks), (0, 0, 0, 0, 0));
    assert!(catalog.list().is_empty());
    assert_eq!(end_tasks, base_tasks, "tasks left running");
    let state = tmp.path().join("data/.sluice");
    let left: Vec<_> = std::fs::read_dir(&state).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "state files left: {left:?}");
    let data_left =
        std::fs::read_dir(tmp.path().join("data")).unwrap().flatten().filter(|e| e.file_name() != ".sluice").count();
    assert_eq!(data_left, 0);
    let db = Db::open(db_path(tmp.path())).unwrap();
    assert!(db.torrents().unwrap().is_empty() && db.all_viewed().unwrap().is_empty());

    eprintln!(
        "{} torrents added and removed in {took:?}; RSS baseline {base_rss} KiB, peak {peak} KiB, end {end_rss} KiB ({:+} KiB); tasks {base_tasks} -> {end_tasks}",
        ROUNDS * PER_ROUND,
        end_rss as i64 - base_rss as i64
    );
    assert!(end_rss < base_rss + 16 * 1024, "RSS grew from {base_rss} KiB to {end_rss} KiB");
}
