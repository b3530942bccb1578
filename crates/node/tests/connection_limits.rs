//! The session's own limits and gate, seen from raw TCP peers: connections over the session's
//! limit are closed on accept, dials wait for a free slot, and blocklisted addresses are
//! neither dialled nor accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::blocklist::Blocklist;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, ConnectionLimits, Encryption, Session, SessionConfig, StartMode, TorrentHandle};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Connects to `to` from `from` (port picked by the system).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(addr(&format!("{from}:0"))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the other side closed `stream` within `wait` (instead of leaving it open).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the session sent bytes to a peer that said nothing"),
        Err(_) => false,
    }
}

type Accepts = mpsc::UnboundedSender<(SocketAddr, Instant)>;

/// A peer listening on `ip` that reports every connection it accepts (with its own address),
/// and closes each one after `hold`.
async fn fake_peer(ip: &str, hold: Duration, accepts: Accepts) -> SocketAddr {
    let listener = TcpListener::bind(addr(&format!("{ip}:0"))).await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = accepts.send((at, Instant::now()));
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                drop(stream);
            });
        }
    });
    at
}

async fn add_torrent(session: &Session, dir: &std::path::Path) -> TorrentHandle {
    let data = vec![7u8; 100_000];
    let meta = Metainfo::from_bytes(&TorrentBuilder::new("t", 16 * 1024).file(&["f.bin"], data).build()).unwrap();
    session
        .add_torrent(AddTorrent {
            meta,
            data_dir: dir.join("data"),
            state_dir: dir.join("state"),
            mode: StartMode::Resume,
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_over_the_session_limit_is_closed_at_once() {
    let limits = ConnectionLimits { connections: 2, half_open: 2 };
    let config = SessionConfig { listen: Some(addr("127.0.0.60:0")), limits, ..SessionConfig::loopback() };
    let session = Session::start(config).await.unwrap();
    let at = session.listen_addr().unwrap();
    let mut a = connect_from("127.0.0.63", at).await;
    let mut b = connect_from("127.0.0.63", at).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = connect_from("127.0.0.63", at).await;
    assert!(closed_within(&mut c, Duration::from_secs(2)).await, "a third connection is closed");
    assert!(!closed_within(&mut a, Duration::from_millis(300)).await, "the first two stay open");
    assert!(!closed_within(&mut b, Duration::from_millis(10)).await);
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut d = connect_from("127.0.0.63", at).await;
    assert!(!closed_within(&mut d, Duration::from_millis(500)).await, "a freed slot is taken again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_wait_for_a_slot_of_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits { connections: 1, half_open: 1 };
    let config = SessionConfig { limits, encryption: Encryption::Off, ..SessionConfig::loopback() };
    let session = Session::start(config).await.unwrap();
    let torrent = add_torrent(&session, tmp.path()).await;
    let hold = Duration::from_millis(1500);
    let (tx, mut accepted) = mpsc::unbounded_channel();
    let p1 = fake_peer("127.0.0.61", hold, tx.clone()).await;
    let p2 = fake_peer("127.0.0.62", hold, tx).await;
    torrent.add_peers(vec![p1, p2]).await.unwrap();
    let wait = Duration::from_secs(5);
    let (a1, t1) = tokio::time::timeout(wait, accepted.recv()).await.unwrap().unwrap();
    let (a2, t2) = tokio::time::timeout(wait, accepted.recv()).await.unwrap().unwrap();
    assert_ne!(a1, a2);
    let gap = t2.duration_since(t1);
    assert!(gap >= hold - Duration::from_millis(100), "the second dial started {gap:?} after the first");
    torrent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocklisted_addresses_are_never_dialled_nor_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (list, stats) = Blocklist::parse("# test\nsome range:127.0.0.64-127.0.0.64\n");
    assert_eq!(stats.ranges, 1);
    let config = SessionConfig {
        listen: Some(addr("127.0.0.60:0")),
        blocklist: Some(Arc::new(list)),
        encryption: Encryption::Off,
        ..SessionConfig::loopback()
    };
    let session = Session::start(config).await.unwrap();
    let torrent = add_torrent(&session, tmp.path()).await;
    let hold = Duration::from_secs(30);
    let (tx, mut accepted) = mpsc::unbounded_channel();
    let blocked = fake_peer("127.0.0.64", hold, tx.clone()).await;
    let allowed = fake_peer("127.0.0.62", hold, tx).await;
    torrent.add_peers(vec![blocked, allowed]).await.unwrap();
    let (first, _) = tokio::time::timeout(Duration::from_secs(5), accepted.recv()).await.unwrap().unwrap();
    assert_eq!(first, allowed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(accepted.try_recv().is_err(), "the blocked peer was dialled");

    let at = session.listen_addr().unwrap();
    let mut inbound_blocked = connect_from("127.0.0.64", at).await;
    let mut inbound_allowed = connect_from("127.0.0.62", at).await;
    assert!(closed_within(&mut inbound_blocked, Duration::from_secs(2)).await, "blocked inbound is closed");
    assert!(!closed_within(&mut inbound_allowed, Duration::from_millis(300)).await, "others are not");
    torrent.shutdown().await;
}
