//! A session listening on a specific address dials peers from it too: over TCP as over uTP
//! (which shares the listener's socket), so a session bound to one interface (a VPN's, say)
//! never reaches peers around it, and peers see the address trackers were told.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Encryption, Session, SessionConfig, StartMode};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_see_the_session_dial_from_its_listen_address() {
    let tmp = tempfile::tempdir().unwrap();
    let meta =
        Metainfo::from_bytes(&TorrentBuilder::new("t", 16 * 1024).file(&["f"], vec![1; 40_000]).build()).unwrap();
    let listen: SocketAddr = "127.0.0.71:0".parse().unwrap();
    let config = SessionConfig { listen: Some(listen), encryption: Encryption::Off, ..SessionConfig::loopback() };
    let session = Session::start(config).await.unwrap();
    let torrent = session
        .add_torrent(AddTorrent {
            meta,
            data_dir: tmp.path().join("d"),
            state_dir: tmp.path().join("s"),
            mode: StartMode::Resume,
        })
        .await
        .unwrap();
    let peer = TcpListener::bind("127.0.0.72:0").await.unwrap();
    torrent.add_peers(vec![peer.local_addr().unwrap()]).await.unwrap();
    let (_, from) = tokio::time::timeout(Duration::from_secs(10), peer.accept()).await.expect("dialled").unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.71", "dialled from {from}");
    torrent.shutdown().await;
}
