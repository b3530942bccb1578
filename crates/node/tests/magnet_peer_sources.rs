//! A pending magnet's metadata comes from every peer source: a magnet naming only a tracker
//! resolves through it (and its dictionary is saved, so the magnet resolves again with no peer
//! at all after a restart); a magnet with no peer source at all resolves when a seeder dials
//! us (inbound connections are routed to the fetch).

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::magnet::Magnet;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddMagnet, AddTorrent, Session, SessionConfig, StartMode, TorrentHandle};

fn session_on(ip: [u8; 4]) -> SessionConfig {
    SessionConfig { listen: Some(SocketAddr::from((ip, 0))), ..SessionConfig::loopback() }
}

fn torrent(seed: u32) -> (Metainfo, Vec<u8>) {
    let data: Vec<u8> =
        (0..300_000u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let meta = Metainfo::from_bytes(&TorrentBuilder::single_file("clip.mp4", 16384, data.clone()).build()).unwrap();
    (meta, data)
}

async fn seed(session: &Session, meta: &Metainfo, data: &[u8], dir: &Path) -> TorrentHandle {
    std::fs::create_dir_all(dir.join("seed")).unwrap();
    std::fs::write(dir.join("seed/clip.mp4"), data).unwrap();
    let add = AddTorrent {
        meta: meta.clone(),
        data_dir: dir.join("seed"),
        state_dir: dir.join("seed-state"),
        mode: StartMode::Recheck,
    };
    session.add_torrent(add).await.unwrap()
}

/// An HTTP tracker on `listener` that answers every announce with `peer`; counts announces.
fn tracker(listener: TcpListener, peer: SocketAddrV4) -> Arc<Mutex<usize>> {
    let announces = Arc::new(Mutex::new(0));
    let seen = announces.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            *seen.lock().unwrap() += 1;
            let mut body = b"d8:intervali60e5:peers6:".to_vec();
            body.extend_from_slice(&peer.ip().octets());
            body.extend_from_slice(&peer.port().to_be_bytes());
            body.push(b'e');
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(reply.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    announces
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("an IPv4 listen address"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_with_only_a_tracker_resolves_and_is_saved_for_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, data) = torrent(1);
    let seeder = Session::start(session_on([127, 0, 0, 74])).await.unwrap();
    let seeding = seed(&seeder, &meta, &data, tmp.path()).await;
    let listener = TcpListener::bind("127.0.0.76:0").unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let announces = tracker(listener, v4(seeder.listen_addr().unwrap()));

    let mut magnet = Magnet::from_info_hash(meta.info_hash);
    magnet.trackers.push(url.clone());
    let add = AddMagnet {
        magnet,
        data_dir: tmp.path().join("leech"),
        state_dir: tmp.path().join("leech-state"),
        mode: StartMode::Resume,
    };
    let leecher = Session::start(session_on([127, 0, 0, 75])).await.unwrap();
    let pending = leecher.add_magnet(add.clone()).unwrap();
    let torrent = tokio::time::timeout(Duration::from_secs(30), pending.wait()).await.expect("metadata").unwrap();
    assert_eq!(torrent.metainfo().info_bytes, meta.info_bytes);
    assert!(*announces.lock().unwrap() >= 1);

    let saved = tmp.path().join(format!("leech-state/{}.torrent", meta.info_hash.to_hex()));
    let file = Metainfo::from_bytes(&std::fs::read(&saved).expect("the fetched metadata is saved")).unwrap();
    assert_eq!((file.info_hash, &file.info_bytes), (meta.info_hash, &meta.info_bytes));
    assert_eq!(file.trackers, [[url.clone()]]);
    torrent.shutdown().await;
    drop(leecher);
    seeding.shutdown().await;
    drop(seeder);

    // A restart: no seeder, no tracker answering; the saved file is enough.
    let mut again = add.clone();
    again.magnet.trackers = vec!["http://127.0.0.79:1/announce".into()];
    let leecher = Session::start(session_on([127, 0, 0, 75])).await.unwrap();
    let pending = leecher.add_magnet(again).unwrap();
    let torrent = tokio::time::timeout(Duration::from_secs(5), pending.wait()).await.expect("no fetch").unwrap();
    assert_eq!(torrent.metainfo().info_bytes, meta.info_bytes);
    assert_eq!(torrent.metainfo().trackers, [["http://127.0.0.79:1/announce"]]);
    torrent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_magnet_takes_the_metadata_from_a_peer_that_dials_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, data) = torrent(2);
    let leecher = Session::start(session_on([127, 0, 0, 77])).await.unwrap();
    let add = AddMagnet {
        magnet: Magnet::from_info_hash(meta.info_hash),
        data_dir: tmp.path().join("leech"),
        state_dir: tmp.path().join("leech-state"),
        mode: StartMode::Resume,
    };
    let pending = leecher.add_magnet(add).unwrap();

    let seeder = Session::start(session_on([127, 0, 0, 78])).await.unwrap();
    let seeding = seed(&seeder, &meta, &data, tmp.path()).await;
    seeding.add_peers(vec![leecher.listen_addr().unwrap()]).await.unwrap();
    let torrent = tokio::time::timeout(Duration::from_secs(30), pending.wait()).await.expect("metadata").unwrap();
    assert_eq!(torrent.metainfo().info_bytes, meta.info_bytes);

    let mut progress = torrent.watch();
    let done = async {
        while !progress.borrow_and_update().complete {
            progress.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), done).await.expect("download completes");
    torrent.shutdown().await;
    seeding.shutdown().await;
    assert!(std::fs::read(tmp.path().join("leech/clip.mp4")).unwrap() == data, "content differs");
}
