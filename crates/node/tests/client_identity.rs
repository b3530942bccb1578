//! What a peer learns about us: the peer id's client prefix and the extended handshake's `v`,
//! Sluice's own by default and another client's when configured (as `--masquerade` does), and
//! the address we dial from: the listen address when it names one IP, over TCP as over uTP
//! (which shares the listener's socket), so a session bound to one interface (a VPN's, say)
//! never reaches peers around it and peers see the address trackers were told.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::PeerId;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};
use sluice_node::{AddTorrent, Encryption, EngineConfig, Session, SessionConfig, StartMode};
use sluice_wire::{Decoder, ExtendedHandshake, Handshake, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a raw peer on 127.0.0.63 saw when the session dialled it: the peer id, the client name
/// and the address the connection came from.
struct Seen {
    peer_id: PeerId,
    client: Option<String>,
    from: SocketAddr,
}

/// Lets a session (listening on `listen`, else the loopback default) dial a raw peer on
/// 127.0.0.63 and returns what the peer saw.
async fn seen_by_a_peer(peer_id: PeerId, engine: EngineConfig, listen: Option<SocketAddr>) -> Seen {
    let tmp = tempfile::tempdir().unwrap();
    let meta =
        Metainfo::from_bytes(&TorrentBuilder::new("t", 16 * 1024).file(&["f"], vec![1; 40_000]).build()).unwrap();
    let info_hash = meta.info_hash;
    let mut config = SessionConfig { peer_id, engine, encryption: Encryption::Off, ..SessionConfig::loopback() };
    if listen.is_some() {
        config.listen = listen;
    }
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
        let (mut stream, from) = listener.accept().await.unwrap();
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
                    let client = ExtendedHandshake::decode(payload).unwrap().client;
                    return Seen { peer_id: theirs.peer_id, client, from };
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
    let seen = seen_by_a_peer(sluice_node::random_peer_id(), EngineConfig::default(), None).await;
    assert_eq!(&seen.peer_id.0[..8], b"-SL0100-");
    assert_eq!(seen.client.as_deref(), Some(concat!("Sluice ", env!("CARGO_PKG_VERSION"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_identity_is_what_peers_see() {
    let id = sluice_node::random_peer_id_with_prefix(b"-qB4390-");
    let engine = EngineConfig { client_name: "qBittorrent/4.3.9".into(), ..EngineConfig::default() };
    let seen = seen_by_a_peer(id, engine, None).await;
    assert_eq!(seen.peer_id, id);
    assert_eq!(&seen.peer_id.0[..8], b"-qB4390-");
    assert_eq!(seen.client.as_deref(), Some("qBittorrent/4.3.9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_see_the_session_dial_from_its_listen_address() {
    let listen = Some("127.0.0.71:0".parse().unwrap());
    let seen = seen_by_a_peer(sluice_node::random_peer_id(), EngineConfig::default(), listen).await;
    assert_eq!(seen.from.ip().to_string(), "127.0.0.71", "dialled from {}", seen.from);
}
