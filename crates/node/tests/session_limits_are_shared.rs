//! A session's download and upload limits hold for all its torrents together (as
//! TorrServer's `DownloadRateLimit` and `UploadRateLimit` do), not for each: two torrents
//! downloading at once from an unlimited seeder share 1 MiB/s, both progress, and lifting
//! the limit lets both finish. A seeder's upload limit holds its two torrents' uploads
//! together the same way.

use std::time::{Duration, Instant};

use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Session, SessionConfig, StartMode, TorrentHandle};

const MIB: u64 = 1 << 20;
const SIZE: usize = 6 << 20;

fn content(seed: u32) -> Vec<u8> {
    (0..SIZE as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

async fn add(session: &Session, meta: &Metainfo, dir: &std::path::Path, mode: StartMode) -> TorrentHandle {
    let add = AddTorrent { meta: meta.clone(), data_dir: dir.join("data"), state_dir: dir.join("state"), mode };
    session.add_torrent(add).await.unwrap()
}

/// Two 6 MiB torrents and a session seeding both (its upload limit `upload`).
async fn seeder(dir: &std::path::Path, upload: Option<u64>) -> (Session, Vec<TorrentHandle>, Vec<Metainfo>) {
    let mut metas = Vec::new();
    let seed_dir = dir.join("seed");
    std::fs::create_dir_all(seed_dir.join("data")).unwrap();
    for seed in [1, 2] {
        let data = content(seed);
        let bytes = TorrentBuilder::single_file(format!("f{seed}.mkv"), 256 * 1024, data.clone()).build();
        let meta = Metainfo::from_bytes(&bytes).unwrap();
        std::fs::write(seed_dir.join("data").join(&meta.name), data).unwrap();
        metas.push(meta);
    }
    let mut config = SessionConfig::loopback();
    config.engine.upload_rate_limit = upload;
    let session = Session::start(config).await.unwrap();
    let mut seeding = Vec::new();
    for meta in &metas {
        seeding.push(add(&session, meta, &seed_dir, StartMode::Recheck).await);
    }
    (session, seeding, metas)
}

/// Bytes both torrents moved together in `secs` may be at most the limit's worth, its
/// half-second burst and a grant of blocks per peer: far below two limits.
fn within_one_limit(total: u64, secs: f64) -> bool {
    total as f64 <= secs * MIB as f64 + 0.5 * MIB as f64 + 2.0 * 64.0 * 16384.0
}

/// The seeder's two torrents, started in `leecher` and given the seeder as their peer, after
/// 3 s: the handles and the seconds since they were given the peer.
async fn download_both(
    leecher: &Session,
    seeder: &Session,
    metas: &[Metainfo],
    dir: &std::path::Path,
) -> (TorrentHandle, TorrentHandle, f64) {
    let a = add(leecher, &metas[0], &dir.join("a"), StartMode::Resume).await;
    let b = add(leecher, &metas[1], &dir.join("b"), StartMode::Resume).await;
    let start = Instant::now();
    for t in [&a, &b] {
        t.add_peers(vec![seeder.listen_addr().unwrap()]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    (a, b, start.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_torrents_share_the_session_download_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (seeder, seeding, metas) = seeder(tmp.path(), None).await;
    let mut config = SessionConfig::loopback();
    config.engine.download_rate_limit = Some(MIB);
    let leecher = Session::start(config).await.unwrap();
    let (a, b, secs) = download_both(&leecher, &seeder, &metas, tmp.path()).await;
    let got: Vec<u64> = [&a, &b].iter().map(|t| t.progress().stats.downloaded).collect();
    let total: u64 = got.iter().sum();
    eprintln!("downloaded in {secs:.2} s: {got:?} ({:.2} MiB/s together)", total as f64 / secs / MIB as f64);
    assert!(within_one_limit(total, secs), "{got:?} in {secs:.2} s");
    assert!(got.iter().all(|&g| g >= MIB / 2), "one torrent starved: {got:?}");

    // Lifted: both finish.
    leecher.set_rate_limits(None, None).await;
    assert_eq!(leecher.limits().0, None);
    for t in [&a, &b] {
        let mut progress = t.watch();
        tokio::time::timeout(Duration::from_secs(30), progress.wait_for(|p| p.complete)).await.unwrap().unwrap();
    }
    for t in [a, b].into_iter().chain(seeding) {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_torrents_share_the_session_upload_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (seeder, seeding, metas) = seeder(tmp.path(), Some(MIB)).await;
    let leecher = Session::start(SessionConfig::loopback()).await.unwrap();
    let (a, b, secs) = download_both(&leecher, &seeder, &metas, tmp.path()).await;
    let sent: Vec<u64> = seeding.iter().map(|t| t.progress().stats.uploaded).collect();
    let total: u64 = sent.iter().sum();
    eprintln!("uploaded in {secs:.2} s: {sent:?} ({:.2} MiB/s together)", total as f64 / secs / MIB as f64);
    assert!(within_one_limit(total, secs), "{sent:?} in {secs:.2} s");
    assert!(sent.iter().all(|&g| g >= MIB / 2), "one torrent starved: {sent:?}");
    for t in [a, b].into_iter().chain(seeding) {
        t.shutdown().await;
    }
}
