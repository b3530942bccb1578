//! A magnet with only the info-hash and one peer: the metadata comes from a Sluice seeder that
//! was given a `.torrent` (so it serves its info dictionary), the torrent then downloads, and
//! adding the same magnet again is refused as a duplicate.

use std::time::Duration;

use sluice_core::magnet::Magnet;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddMagnet, AddTorrent, MagnetState, NodeError, Session, SessionConfig, StartMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_metadata_then_data_from_a_sluice_seeder() {
    // Many pieces, so the info dictionary spans several 16 KiB metadata pieces.
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let meta = Metainfo::from_bytes(&TorrentBuilder::single_file("film.mkv", 4096, data.clone()).build()).unwrap();
    assert!(meta.info_bytes.len() > 16384, "{}", meta.info_bytes.len());

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("seed")).unwrap();
    std::fs::write(tmp.path().join("seed/film.mkv"), &data).unwrap();
    let seeder = Session::start(SessionConfig::loopback()).await.unwrap();
    let seeding = seeder
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: tmp.path().join("seed"),
            state_dir: tmp.path().join("seed-state"),
            mode: StartMode::Recheck,
        })
        .await
        .unwrap();

    let leecher = Session::start(SessionConfig::loopback()).await.unwrap();
    let mut magnet = Magnet::from_info_hash(meta.info_hash);
    magnet.peers.push(seeder.listen_addr().unwrap());
    magnet.trackers.push("udp://127.0.0.1:1/announce".into());
    let add = AddMagnet {
        magnet,
        data_dir: tmp.path().join("leech"),
        state_dir: tmp.path().join("leech-state"),
        mode: StartMode::Resume,
    };
    let pending = leecher.add_magnet(add.clone()).unwrap();
    assert!(matches!(leecher.add_magnet(add), Err(NodeError::Duplicate(_))));
    let torrent =
        tokio::time::timeout(Duration::from_secs(30), pending.wait()).await.expect("metadata in time").unwrap();
    assert!(matches!(pending.state(), MagnetState::Ready(_)));
    assert_eq!(torrent.metainfo().info_bytes, meta.info_bytes);
    assert_eq!(torrent.metainfo().trackers, [["udp://127.0.0.1:1/announce"]]);

    let mut progress = torrent.watch();
    let done = async {
        while !progress.borrow_and_update().complete {
            progress.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), done).await.expect("download completes");
    torrent.shutdown().await;
    assert!(std::fs::read(tmp.path().join("leech/film.mkv")).unwrap() == data, "content differs");
    seeding.shutdown().await;
}
