//! Every pair of encryption policies between two Sluice nodes: which pairs transfer, which
//! refuse, and whether the bytes on the wire are plaintext. A recording proxy between leecher and
//! seeder tells the last: on the connection that carried the data, a plaintext handshake shows
//! "BitTorrent protocol" in the clear (a refused first attempt in the other mode may show it too).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Encryption, Session, SessionConfig, StartMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of each connection's start, per direction, that the proxy keeps.
const RECORD: usize = 4096;

/// What the proxy saw of one direction of one connection.
#[derive(Debug, Clone, Default)]
struct Seen {
    head: Vec<u8>,
    total: usize,
}

type Record = Arc<Mutex<Vec<Seen>>>;

/// Forwards every connection to `target`, keeping the first bytes each way.
async fn proxy(target: std::net::SocketAddr) -> (std::net::SocketAddr, Record) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, record.clone()));
            tokio::spawn(pipe(sr, cw, record.clone()));
        }
    });
    (addr, seen)
}

async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, record: Record) {
    // Recorded before forwarding, so the bytes are there when the transfer they carry ends
    // (the connection itself may still be closing when the test looks).
    let slot = {
        let mut r = record.lock().unwrap();
        r.push(Seen::default());
        r.len() - 1
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut r = record.lock().unwrap();
            let seen = &mut r[slot];
            seen.total += n;
            if seen.head.len() < RECORD {
                let take = n.min(RECORD - seen.head.len());
                seen.head.extend_from_slice(&buf[..take]);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Plaintext,
    Encrypted,
    Refused,
}

async fn transfer(leecher: Encryption, seeder: Encryption, meta: Metainfo, data: Vec<u8>) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(seed_dir.join("t")).unwrap();
    std::fs::write(seed_dir.join("t/file.bin"), &data).unwrap();
    let seed_session = Session::start(SessionConfig { encryption: seeder, ..SessionConfig::loopback() }).await.unwrap();
    let seeding = seed_session
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: seed_dir,
            state_dir: tmp.path().join("seed-state"),
            mode: StartMode::Recheck,
        })
        .await
        .unwrap();
    let (via, seen) = proxy(seed_session.listen_addr().unwrap()).await;
    let leech_session =
        Session::start(SessionConfig { encryption: leecher, ..SessionConfig::loopback() }).await.unwrap();
    let leeching = leech_session
        .add_torrent(AddTorrent {
            meta: meta.clone(),
            data_dir: tmp.path().join("leech"),
            state_dir: tmp.path().join("leech-state"),
            mode: StartMode::Resume,
        })
        .await
        .unwrap();
    leeching.add_peers(vec![via]).await.unwrap();
    let mut watch = leeching.watch();
    // Refusals are immediate; a pair that could talk has finished well within this.
    let done = tokio::time::timeout(Duration::from_secs(8), watch.wait_for(|p| p.complete)).await.is_ok();
    leeching.shutdown().await;
    seeding.shutdown().await;
    if !done {
        return Outcome::Refused;
    }
    assert_eq!(std::fs::read(tmp.path().join("leech/t/file.bin")).unwrap(), data);
    let pipes = seen.lock().unwrap().clone();
    let data = pipes.iter().max_by_key(|p| p.total).unwrap();
    let clear = data.head.windows(19).any(|w| w == b"BitTorrent protocol");
    if clear { Outcome::Plaintext } else { Outcome::Encrypted }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_pair_between_two_nodes() {
    use Encryption::*;
    use Outcome::*;
    let data: Vec<u8> = (0..700_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let meta =
        Metainfo::from_bytes(&TorrentBuilder::new("t", 32 * 1024).file(&["file.bin"], data.clone()).build()).unwrap();
    // (leecher, seeder, outcome): the leecher dials.
    let cases = [
        (Allow, Allow, Plaintext),
        (Allow, Prefer, Plaintext),
        (Allow, Require, Encrypted),
        (Allow, Off, Plaintext),
        (Prefer, Allow, Encrypted),
        (Require, Allow, Encrypted),
        (Off, Allow, Plaintext),
        (Prefer, Prefer, Encrypted),
        (Prefer, Require, Encrypted),
        (Prefer, Off, Plaintext),
        (Require, Prefer, Encrypted),
        (Require, Require, Encrypted),
        (Require, Off, Refused),
        (Off, Prefer, Plaintext),
        (Off, Require, Refused),
        (Off, Off, Plaintext),
    ];
    let runs = cases.iter().map(|&(l, s, _)| transfer(l, s, meta.clone(), data.clone()));
    let got = futures_join(runs).await;
    for ((l, s, want), got) in cases.iter().zip(got) {
        assert_eq!(&got, want, "leecher {l:?}, seeder {s:?}");
    }
}

async fn futures_join<F: std::future::Future<Output = Outcome> + Send + 'static>(
    runs: impl Iterator<Item = F>,
) -> Vec<Outcome> {
    let handles: Vec<_> = runs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
