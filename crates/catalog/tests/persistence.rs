//! What survives a restart, and what a removal leaves behind (nothing).

mod common;

use std::time::Duration;

use common::*;
use sluice_catalog::{FileId, Focus, Meta, MetaUpdate, Source, Stat};
use sluice_core::magnet::Magnet;
use sluice_db::{Db, TorrentSource};
use tokio::io::AsyncReadExt;

const MIB: usize = 1 << 20;

/// Close the catalog, open a new one (new session) on the same database: torrents come back
/// closed with their fields, added time, a fetched magnet's metainfo, viewed marks and
/// settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_brings_back_torrents_marks_and_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let file = content(MIB, 4);
    let (file_bytes, _) = torrent("file.mkv", 64 * 1024, &file);
    let fetched = content(MIB / 2, 5);
    let (_, fetched_meta) = torrent("fetched.mp4", 32 * 1024, &fetched);
    let seeder = Seeder::start(tmp.path(), None, &[(&fetched_meta, &fetched)]).await;
    let options = options(tmp.path(), Duration::from_secs(30), Focus::Off);

    let catalog = open_catalog(tmp.path(), options.clone()).await;
    let meta = Meta {
        title: "T".into(),
        poster: "http://127.0.0.1/p.jpg".into(),
        category: "movie".into(),
        data: r#"{"lampa":1}"#.into(),
    };
    let t = catalog.add(Source::Torrent(file_bytes.clone()), meta).await.unwrap().snapshot;
    // A magnet nobody can resolve: kept as the link.
    let lost_hash = sluice_core::InfoHash([7; 20]);
    let link = format!("magnet:?xt=urn:btih:{}&dn=Some_Show_rutor.info", lost_hash.to_hex());
    let lost = catalog.add(Source::Link(link), Meta::default()).await.unwrap().snapshot;
    assert_eq!((lost.title.as_str(), lost.stat, lost.info.is_none()), ("Some Show", Stat::GettingInfo, true));
    // A magnet the seeder resolves: kept as its metainfo from then on.
    let mut magnet = Magnet::from_info_hash(fetched_meta.info_hash);
    magnet.peers.push(seeder.addr());
    magnet.trackers.push("udp://127.0.0.1:1/announce".into());
    let r = catalog.add(Source::Link(magnet.to_uri()), Meta::default()).await.unwrap().snapshot;
    let resolved = wait_for(&catalog, r.info_hash, Duration::from_secs(30), "metadata", |s| s.info.is_some()).await;
    assert_eq!(resolved.title, "fetched.mp4");

    catalog.set(t.info_hash, MetaUpdate { title: Some("T2".into()), ..MetaUpdate::default() }).await.unwrap();
    catalog.set_viewed(t.info_hash, FileId(1), Duration::from_millis(90_500)).await.unwrap();
    catalog.mark_viewed(r.info_hash, FileId(1)).await.unwrap();
    let settings = serde_json::json!({ "CacheSize": 67108864, "PreloadCache": 50 });
    catalog.set_settings("BitTorr", settings.clone()).await.unwrap();
    assert!(matches!(
        catalog.set_viewed(sluice_core::InfoHash([9; 20]), FileId(1), Duration::ZERO).await,
        Err(sluice_catalog::CatalogError::UnknownTorrent)
    ));
    let before = catalog.list();
    catalog.close().await;
    drop(catalog);

    let catalog = open_catalog(tmp.path(), options).await;
    let after = catalog.list();
    assert_eq!(after.len(), 3);
    assert_eq!(catalog.stats().active, 0, "nothing starts on open");
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (a.info_hash, &a.title, &a.poster, &a.category, &a.data, a.added_at),
            (b.info_hash, &b.title, &b.poster, &b.category, &b.data, b.added_at)
        );
        assert_eq!(a.stat, Stat::InDb);
        assert_eq!(a.info, b.info);
    }
    let t2 = catalog.status(t.info_hash).unwrap();
    assert_eq!((t2.title.as_str(), t2.category.as_str(), t2.data.as_str()), ("T2", "movie", r#"{"lampa":1}"#));
    assert_eq!(t2.info.as_ref().unwrap().files[0].path, "file.mkv");
    assert_eq!(catalog.status(r.info_hash).unwrap().info.unwrap().name, "fetched.mp4");
    assert!(catalog.status(lost_hash).unwrap().info.is_none());
    let marks = catalog.viewed(None).await.unwrap();
    assert_eq!(marks.len(), 2);
    assert!(marks.iter().any(|m| m.info_hash == t.info_hash && m.timecode == Duration::from_millis(90_500)));
    assert_eq!(catalog.settings("BitTorr").await.unwrap(), Some(settings));
    catalog.close().await;
    drop(catalog);

    let db = Db::open(db_path(tmp.path())).unwrap();
    match db.torrent(r.info_hash).unwrap().unwrap().source {
        TorrentSource::Metainfo(bytes) => {
            let m = sluice_core::metainfo::Metainfo::from_bytes(&bytes).unwrap();
            assert_eq!(m.info_bytes, fetched_meta.info_bytes);
            assert_eq!(m.trackers, [["udp://127.0.0.1:1/announce"]]);
        }
        TorrentSource::Magnet(m) => panic!("still a magnet: {m}"),
    }
    assert!(matches!(db.torrent(lost_hash).unwrap().unwrap().source, TorrentSource::Magnet(_)));
    assert!(matches!(db.torrent(t.info_hash).unwrap().unwrap().source, TorrentSource::Metainfo(b) if b == file_bytes));
}

/// Removal deletes the resume journal, the database row and its marks, and the downloaded
/// files only when asked; drop keeps everything but stops the torrent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_deletes_every_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let one = content(MIB, 6);
    let two = content(MIB, 7);
    let (one_bytes, one_meta) = torrent("one.mkv", 64 * 1024, &one);
    let (two_bytes, two_meta) = torrent("two.mkv", 64 * 1024, &two);
    let seeder = Seeder::start(tmp.path(), None, &[(&one_meta, &one), (&two_meta, &two)]).await;
    let catalog = open_catalog(tmp.path(), options(tmp.path(), Duration::from_secs(30), Focus::Off)).await;
    let data = tmp.path().join("data");
    let journal = |h: &sluice_core::InfoHash| data.join(".sluice").join(format!("{}.resume", h.to_hex()));

    let mut hashes = Vec::new();
    for (bytes, len) in [(one_bytes, one.len()), (two_bytes, two.len())] {
        let h = catalog.add(Source::Torrent(bytes), Meta::default()).await.unwrap().snapshot.info_hash;
        catalog.add_peers(h, vec![seeder.addr()]).await.unwrap();
        let mut all = Vec::new();
        catalog.open_reader(h, 0, 0..len as u64).unwrap().read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), len);
        catalog.set_viewed(h, FileId(1), Duration::from_secs(5)).await.unwrap();
        hashes.push(h);
    }
    let (h1, h2) = (hashes[0], hashes[1]);
    catalog.drop(h1).await.unwrap();
    assert_eq!(catalog.status(h1).unwrap().stat, Stat::Closed);
    assert!(journal(&h1).exists() && data.join("one.mkv").exists());

    assert!(catalog.remove(h1, true).await.unwrap());
    assert!(catalog.remove(h2, false).await.unwrap());
    assert!(!catalog.remove(h2, false).await.unwrap());
    assert!(!journal(&h1).exists() && !journal(&h2).exists());
    assert!(!data.join("one.mkv").exists(), "asked to delete the files");
    assert!(std::fs::read(data.join("two.mkv")).unwrap() == two, "files kept");
    assert!(std::fs::read_dir(data.join(".sluice")).unwrap().next().is_none(), "state folder not empty");
    let stats = catalog.stats();
    assert_eq!((stats.known, stats.active, stats.readers, stats.pending_tasks), (0, 0, 0, 0));
    assert!(catalog.list().is_empty() && catalog.viewed(None).await.unwrap().is_empty());
    let db = Db::open(db_path(tmp.path())).unwrap();
    assert!(db.torrents().unwrap().is_empty());
    assert!(db.resume(h1).unwrap().is_none());
}

/// A closed torrent shows what its files hold (counted when it closed, then read from its
/// resume journal after a restart), not zero; with RAM storage, whose pieces go when the
/// torrent stops, a closed torrent holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_torrent_shows_what_its_files_hold() {
    let tmp = tempfile::tempdir().unwrap();
    // 16 whole pieces and a short last one.
    let file = content(MIB + 5000, 8);
    let (bytes, meta) = torrent("held.mkv", 64 * 1024, &file);
    let (never_bytes, _) = torrent("never.mkv", 64 * 1024, &content(MIB, 9));
    let seeder = Seeder::start(tmp.path(), None, &[(&meta, &file)]).await;
    let options = options(tmp.path(), Duration::from_secs(30), Focus::Off);
    let held = |s: &sluice_catalog::Snapshot| (s.pieces_have, s.bytes_have, s.complete);
    // The downloaded torrent holds all 17 pieces, the other nothing.
    let check = |catalog: &sluice_catalog::Catalog, h, never, stat| {
        let s = catalog.status(h).unwrap();
        assert_eq!(s.stat, stat);
        assert_eq!(held(&s), (17, file.len() as u64, true), "{stat:?}");
        assert_eq!(held(&catalog.status(never).unwrap()), (0, 0, false), "{stat:?}");
    };

    let catalog = open_catalog(tmp.path(), options.clone()).await;
    let h = catalog.add(Source::Torrent(bytes.clone()), Meta::default()).await.unwrap().snapshot.info_hash;
    let never = catalog.add(Source::Torrent(never_bytes), Meta::default()).await.unwrap().snapshot.info_hash;
    catalog.add_peers(h, vec![seeder.addr()]).await.unwrap();
    wait_for(&catalog, h, Duration::from_secs(30), "the download", |s| s.complete).await;
    catalog.drop(h).await.unwrap();
    catalog.drop(never).await.unwrap();
    check(&catalog, h, never, Stat::Closed);
    catalog.close().await;
    drop(catalog);

    let catalog = open_catalog(tmp.path(), options.clone()).await;
    check(&catalog, h, never, Stat::InDb);
    catalog.close().await;
    drop(catalog);

    // The same torrent with RAM storage: downloaded, closed, nothing held.
    let ram_dir = tmp.path().join("ram");
    std::fs::create_dir_all(&ram_dir).unwrap();
    let config =
        sluice_node::SessionConfig { ram: Some(sluice_storage::RamCache::new(64 << 20)), ..session_config(LEECHER_IP) };
    let session = sluice_node::Session::start(config).await.unwrap();
    assert!(!session.stores_on_disk());
    let db = Db::open(db_path(&ram_dir)).unwrap();
    let catalog =
        sluice_catalog::Catalog::open(session, db, common::options(&ram_dir, Duration::from_secs(30), Focus::Off))
            .await
            .unwrap();
    catalog.add(Source::Torrent(bytes), Meta::default()).await.unwrap();
    catalog.add_peers(h, vec![seeder.addr()]).await.unwrap();
    wait_for(&catalog, h, Duration::from_secs(30), "the download to RAM", |s| s.complete).await;
    catalog.drop(h).await.unwrap();
    assert_eq!(held(&catalog.status(h).unwrap()), (0, 0, false));
    catalog.close().await;
}
