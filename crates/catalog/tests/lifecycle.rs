//! Idle disconnect and revival, and focus mode, against a real Sluice seeder on loopback.

mod common;

use std::time::Duration;

use common::*;
use sluice_catalog::{Focus, Meta, Source, Stat};
use tokio::io::AsyncReadExt;

const MIB: usize = 1 << 20;

/// A player reads half a file, pauses (its connection closes), the torrent idles out and is
/// shut down; the next request at the same position revives it and reads verified bytes
/// to the end. While a reader is open, however long it sits, nothing is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_disconnect_then_revival_mid_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let data = content(8 * MIB, 1);
    let (bytes, meta) = torrent("film.mkv", 256 * 1024, &data);
    // Capped, so the second half is still missing when the reader pauses.
    let seeder = Seeder::start(tmp.path(), Some(MIB as u64), &[(&meta, &data)]).await;
    let timeout = Duration::from_millis(400);
    let catalog = open_catalog(tmp.path(), options(tmp.path(), timeout, Focus::Off)).await;

    let title = Meta { title: "Film".into(), ..Meta::default() };
    let added = catalog.add(Source::Torrent(bytes), title).await.unwrap();
    assert!(added.created);
    let hash = added.snapshot.info_hash;
    assert_eq!(added.snapshot.info.as_ref().map(|i| i.size), Some(data.len() as u64));
    catalog.add_peers(hash, vec![seeder.addr()]).await.unwrap();

    let half = data.len() / 2;
    let mut reader = catalog.open_reader(hash, 0, 0..data.len() as u64).unwrap();
    let mut got = vec![0u8; half];
    tokio::time::timeout(Duration::from_secs(60), reader.read_exact(&mut got)).await.unwrap().unwrap();
    assert!(got == data[..half], "first half differs");
    // An open reader that reads nothing keeps the torrent up past the timeout.
    tokio::time::sleep(timeout * 4).await;
    assert_eq!(catalog.status(hash).unwrap().stat, Stat::Working);
    let before = catalog.status(hash).unwrap();
    assert!(before.pieces_have < meta.lengths.num_pieces(), "download finished too early: {before:?}");

    drop(reader);
    let closed_at = tokio::time::Instant::now();
    let s = wait_for(&catalog, hash, Duration::from_secs(10), "idle close", closed).await;
    let idle_for = closed_at.elapsed();
    assert!(idle_for >= timeout, "closed after {idle_for:?}");
    assert_eq!((s.peers_connected, s.download_rate), (0, 0), "{s:?}");
    assert_eq!(catalog.stats().active, 0);
    assert!(catalog.verified(hash).is_none());

    let mut reader = catalog.open_reader(hash, 0, half as u64..data.len() as u64).unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest == data[half..], "second half differs after the revival");
    let s = catalog.status(hash).unwrap();
    assert_eq!(s.stat, Stat::Working);
    // The resume journal brought back what the first run had verified.
    assert!(s.pieces_have >= before.pieces_have, "{s:?} vs {before:?}");
    assert_eq!(s.title, "Film");
    eprintln!("closed {idle_for:?} after the reader went (timeout {timeout:?}); revived and read {} bytes", rest.len());
    drop(reader);
    catalog.close().await;
}

/// While a stream reads from A, B (downloading) is held back; it resumes when the stream
/// ends, and when the streamed torrent is removed with its reader still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focus_mode_holds_other_downloads_back_until_the_stream_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let a = content(3 * MIB, 2);
    let b = content(12 * MIB, 3);
    let (a_bytes, a_meta) = torrent("a.mkv", 256 * 1024, &a);
    let (b_bytes, b_meta) = torrent("b.mkv", 256 * 1024, &b);
    let seeder = Seeder::start(tmp.path(), Some(MIB as u64), &[(&a_meta, &a), (&b_meta, &b)]).await;
    let catalog = open_catalog(tmp.path(), options(tmp.path(), Duration::from_secs(30), Focus::Cap(0))).await;

    let b_hash = catalog.add(Source::Torrent(b_bytes), Meta::default()).await.unwrap().snapshot.info_hash;
    catalog.add_peers(b_hash, vec![seeder.addr()]).await.unwrap();
    let a_hash = catalog.add(Source::Torrent(a_bytes), Meta::default()).await.unwrap().snapshot.info_hash;
    catalog.add_peers(a_hash, vec![seeder.addr()]).await.unwrap();
    wait_for(&catalog, b_hash, Duration::from_secs(30), "B downloading", |s| s.bytes_have >= MIB as u64).await;

    // Phase 1: streaming A caps B.
    let mut reader = catalog.open_reader(a_hash, 0, 0..a.len() as u64).unwrap();
    wait_for(&catalog, b_hash, Duration::from_secs(5), "B capped", |s| s.capped).await;
    let capped_at = catalog.status(b_hash).unwrap().bytes_have;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut got));
    read.await.unwrap().unwrap();
    assert!(got == a, "A's stream differs");
    // Requests sent before the cap still arrive (about a second of the seeder's rate); then
    // B stands still while the reader stays open.
    let mut held = catalog.status(b_hash).unwrap().bytes_have;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = catalog.status(b_hash).unwrap().bytes_have;
        if now == held {
            break;
        }
        held = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = catalog.status(b_hash).unwrap();
    assert!(still.capped && !still.complete, "{still:?}");
    let crept = still.bytes_have - held;
    assert!(crept <= 64 * 1024, "B downloaded {crept} bytes in 2 s while capped");
    // Settings change focus live, the stream still open: off lifts the cap, on restores it.
    catalog.set_focus(Focus::Off);
    wait_for(&catalog, b_hash, Duration::from_secs(5), "B uncapped by focus off", |s| !s.capped).await;
    catalog.set_focus(Focus::Cap(0));
    wait_for(&catalog, b_hash, Duration::from_secs(5), "B capped by focus on", |s| s.capped).await;

    // Phase 2: the stream ends, B goes on.
    drop(reader);
    let s = wait_for(&catalog, b_hash, Duration::from_secs(5), "B uncapped", |s| !s.capped).await;
    wait_for(&catalog, b_hash, Duration::from_secs(20), "B moving again", |x| x.bytes_have > s.bytes_have).await;

    // Phase 3: stream A again, then remove A with its reader still open: B goes on.
    let reader = catalog.open_reader(a_hash, 0, 0..a.len() as u64).unwrap();
    let capped = wait_for(&catalog, b_hash, Duration::from_secs(5), "B capped again", |s| s.capped || s.complete).await;
    assert!(catalog.remove(a_hash, true).await.unwrap());
    wait_for(&catalog, b_hash, Duration::from_secs(5), "B uncapped after removal", |s| !s.capped).await;
    let done = wait_for(&catalog, b_hash, Duration::from_secs(60), "B completes", |s| s.complete).await;
    assert_eq!(catalog.stats().capped, 0);
    eprintln!(
        "B capped at {capped_at} bytes, settled at {held} (requests in flight), crept {crept} bytes in 2 s; capped again at {} bytes; completed {} bytes",
        capped.bytes_have, done.bytes_have
    );
    drop(reader);
    catalog.close().await;
    assert!(std::fs::read(tmp.path().join("data/b.mkv")).unwrap() == b);
}
