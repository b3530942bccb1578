//! What a peer learns about us: the peer id's client prefix and the extended handshake's `v`,
//! Sluice's own by default and another client's when configured (as `--masquerade` does).

use std::time::Duration;

use sluice_core::PeerId;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Encryption, EngineConfig, Session, SessionConfig, StartMode};
use sluice_wire::{Decoder, ExtendedHandshake, Handshake, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Lets a session dial a raw peer on 127.0.0.63 and returns the peer id and client name it
/// presented.
async fn seen_by_a_peer(peer_id: PeerId, engine: EngineConfig) -> (PeerId, Option<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let meta =
        Metainfo::from_bytes(&TorrentBuilder::new("t", 16 * 1024).file(&["f"], vec![1; 40_000]).build()).unwrap();
    let info_hash = meta.info_hash;
    let config = SessionConfig { peer_id, engine, encryption: Encryption::Off, ..SessionConfig::loopback() };
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
    let listener = TcpListener::bind("127.0.0.63:0").await.unwrap();
    torrent.add_peers(vec![listener.local_addr().unwrap()]).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; Handshake::LEN];
        stream.read_exact(&mut head).await.unwrap();
        let theirs = Handshake::decode(&head).unwrap();
        let mut ours = Vec::new();
        Handshake::new(info_hash, PeerId([9; 20])).encode(&mut ours);
        stream.write_all(&ours).await.unwrap();
        let mut decoder = Decoder::without_handshake(1 << 20);
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(msg) = decoder.next_message().unwrap() {
                if let Message::Extended { id: 0, payload } = msg {
                    return (theirs.peer_id, ExtendedHandshake::decode(payload).unwrap().client);
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the extended handshake");
            decoder.push(&buf[..n]);
        }
    })
    .await
    .expect("dialled and handshaken");
    torrent.shutdown().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_says_what_it_is_by_default() {
    let (id, client) = seen_by_a_peer(sluice_node::random_peer_id(), EngineConfig::default()).await;
    assert_eq!(&id.0[..8], b"-SL0100-");
    assert_eq!(client.as_deref(), Some(concat!("Sluice ", env!("CARGO_PKG_VERSION"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_identity_is_what_peers_see() {
    let id = sluice_node::random_peer_id_with_prefix(b"-qB4390-");
    let engine = EngineConfig { client_name: "qBittorrent/4.3.9".into(), ..EngineConfig::default() };
    let (seen, client) = seen_by_a_peer(id, engine).await;
    assert_eq!(seen, id);
    assert_eq!(&seen.0[..8], b"-qB4390-");
    assert_eq!(client.as_deref(), Some("qBittorrent/4.3.9"));
}
