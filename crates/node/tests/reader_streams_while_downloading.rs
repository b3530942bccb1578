//! A reader opened before any byte is downloaded waits for pieces to be verified and then
//! returns exactly the file's bytes; another reads a range in the middle of a file.

use std::time::Duration;

use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Session, SessionConfig, StartMode};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_returns_verified_bytes_as_they_arrive() {
    let a: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let b: Vec<u8> = (0..1_234_567u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    let builder =
        TorrentBuilder::new("show", 64 * 1024).file(&["s01", "e01.mkv"], a.clone()).file(&["e02.mp4"], b.clone());
    let meta = Metainfo::from_bytes(&builder.build()).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(seed_dir.join("show/s01")).unwrap();
    std::fs::write(seed_dir.join("show/s01/e01.mkv"), &a).unwrap();
    std::fs::write(seed_dir.join("show/e02.mp4"), &b).unwrap();

    let seeder = Session::start(SessionConfig::loopback()).await.unwrap();
    let seeding = seeder
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: seed_dir,
            state_dir: tmp.path().join("seed-state"),
            mode: StartMode::Recheck,
        })
        .await
        .unwrap();
    assert!(seeding.progress().complete || seeding.progress().stats.pieces_have == meta.lengths.num_pieces());

    let leecher = Session::start(SessionConfig::loopback()).await.unwrap();
    let leeching = leecher
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: tmp.path().join("leech"),
            state_dir: tmp.path().join("leech-state"),
            mode: StartMode::Resume,
        })
        .await
        .unwrap();
    // Readers first: nothing is downloaded yet, so they must wait rather than end early.
    let mut whole = leeching.open_reader(0, 0..a.len() as u64).unwrap();
    let mut middle = leeching.open_reader(1, 100_000..900_001).unwrap();
    assert!(leeching.open_reader(1, 0..b.len() as u64 + 1).is_none());
    leeching.add_peers(vec![seeder.listen_addr().unwrap()]).await.unwrap();

    let read_all = async {
        let mut got_a = Vec::new();
        whole.read_to_end(&mut got_a).await.unwrap();
        let mut got_b = Vec::new();
        middle.read_to_end(&mut got_b).await.unwrap();
        (got_a, got_b)
    };
    let (got_a, got_b) = tokio::time::timeout(Duration::from_secs(60), read_all).await.expect("reads finish");
    assert!(got_a == a, "file 0 differs");
    assert!(got_b == b[100_000..900_001], "file 1 range differs");
    leeching.shutdown().await;
    seeding.shutdown().await;
}
