//! RAM-only storage: a file larger than the budget streams through it whole, the cache never
//! holds more than its budget, and bytes it evicted are fetched again when read again.

use std::time::Duration;

use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, RamCache, Session, SessionConfig, StartMode};
use tokio::io::AsyncReadExt;

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_budget_streams_and_evicted_bytes_come_back() {
    let body: Vec<u8> = (0..40 * MIB as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let meta = Metainfo::from_bytes(&TorrentBuilder::single_file("clip.bin", 64 * 1024, body.clone()).build()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("clip.bin"), &body).unwrap();

    let seeder = Session::start(SessionConfig::loopback()).await.unwrap();
    let seeding = seeder
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: tmp.path().to_path_buf(),
            state_dir: tmp.path().join("state"),
            mode: StartMode::Recheck,
        })
        .await
        .unwrap();

    let budget = 24 * MIB;
    let cache = RamCache::new(budget);
    let leecher =
        Session::start(SessionConfig { ram: Some(cache.clone()), ..SessionConfig::loopback() }).await.unwrap();
    let unused = tmp.path().join("never-created");
    let leeching = leecher
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: unused.clone(),
            state_dir: unused.join("state"),
            mode: StartMode::Resume,
        })
        .await
        .unwrap();
    leeching.add_peers(vec![seeder.listen_addr().unwrap()]).await.unwrap();

    let read = |range: std::ops::Range<u64>| {
        let mut reader = leeching.open_reader(0, range).unwrap();
        async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        }
    };
    let whole = tokio::time::timeout(Duration::from_secs(60), read(0..body.len() as u64)).await.expect("whole file");
    assert!(whole == body, "the file read back differs");
    let after_first = cache.stats();
    println!("after the whole file: {after_first:?}");
    assert!(after_first.peak <= budget, "cache held {} bytes, budget {budget}", after_first.peak);
    assert!(after_first.evictions > 0, "a file larger than the budget evicted nothing");

    // The middle of the file was evicted while the playhead moved on: read again, it is fetched again.
    let again = tokio::time::timeout(Duration::from_secs(60), read(12 * MIB..14 * MIB)).await.expect("re-read");
    assert!(again == body[12 * MIB as usize..14 * MIB as usize], "re-read bytes differ");
    let end = cache.stats();
    assert!(end.peak <= budget);
    assert!(!unused.exists(), "RAM mode wrote to disk");
    let mut progress = leeching.watch();
    let refetched = progress.wait_for(|p| p.stats.downloaded > body.len() as u64);
    assert!(tokio::time::timeout(Duration::from_secs(5), refetched).await.is_ok(), "nothing was fetched twice");
    leeching.shutdown().await;
    seeding.shutdown().await;
}
