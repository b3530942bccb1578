//! IPv6 end to end on ::1: a seeder listening on an IPv6 address, found through an HTTP
//! tracker's compact `peers6` (BEP 7) and dialled over IPv6 by the leecher.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Session, SessionConfig, StartMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP tracker on ::1 answering every announce with `peer` in `peers6` (and an empty
/// `peers`). On ::1 because a session listening on an IPv6 address announces over IPv6 (from
/// that address, so the tracker records one peers can reach).
async fn tracker_with_peers6(peer: SocketAddr) -> String {
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let SocketAddr::V6(v6) = peer else { panic!("an IPv6 peer") };
    let mut body = b"d8:intervali1800e5:peers0:6:peers618:".to_vec();
    body.extend_from_slice(&v6.ip().octets());
    body.extend_from_slice(&v6.port().to_be_bytes());
    body.push(b'e');
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_on_ipv6_found_through_peers6_is_downloaded_from() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let seed_meta =
        Metainfo::from_bytes(&TorrentBuilder::new("t", 32 * 1024).file(&["f.bin"], data.clone()).build()).unwrap();
    std::fs::create_dir_all(tmp.path().join("seed/t")).unwrap();
    std::fs::write(tmp.path().join("seed/t/f.bin"), &data).unwrap();
    let v6_loopback: SocketAddr = "[::1]:0".parse().unwrap();
    let seed_session =
        Session::start(SessionConfig { listen: Some(v6_loopback), ..SessionConfig::loopback() }).await.unwrap();
    let seed_addr = seed_session.listen_addr().unwrap();
    assert!(seed_addr.is_ipv6());
    let seeding = seed_session
        .add_torrent(AddTorrent {
            meta: seed_meta,
            data_dir: tmp.path().join("seed"),
            state_dir: tmp.path().join("seed-state"),
            mode: StartMode::Recheck,
        })
        .await
        .unwrap();

    let tracker = tracker_with_peers6(seed_addr).await;
    let leech_meta = Metainfo::from_bytes(
        &TorrentBuilder::new("t", 32 * 1024).file(&["f.bin"], data.clone()).tracker(tracker).build(),
    )
    .unwrap();
    let leech_session =
        Session::start(SessionConfig { listen: Some(v6_loopback), ..SessionConfig::loopback() }).await.unwrap();
    let leeching = leech_session
        .add_torrent(AddTorrent {
            meta: leech_meta,
            data_dir: tmp.path().join("leech"),
            state_dir: tmp.path().join("leech-state"),
            mode: StartMode::Resume,
        })
        .await
        .unwrap();
    let mut watch = leeching.watch();
    tokio::time::timeout(Duration::from_secs(20), watch.wait_for(|p| p.complete))
        .await
        .expect("downloaded from the IPv6 seeder")
        .unwrap();
    assert_eq!(std::fs::read(tmp.path().join("leech/t/f.bin")).unwrap(), data);
    leeching.shutdown().await;
    seeding.shutdown().await;
}
