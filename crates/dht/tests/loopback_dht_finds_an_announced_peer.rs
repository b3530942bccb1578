//! A hermetic DHT on loopback (mainline's test network on 127.0.0.1): one Sluice DHT node
//! announces a torrent, another finds the announced peer; the routing table survives a save.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::InfoHash;
use sluice_dht::{Dht, DhtConfig, MainlineDht, parse_state};

fn config(bootstrap: &[String], state_file: Option<std::path::PathBuf>) -> DhtConfig {
    DhtConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        bootstrap: Some(bootstrap.to_vec()),
        state_file,
        loopback_only: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_peer_is_found_by_another_node() {
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(8).build().unwrap()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-dht-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("dht.nodes");
    let a = MainlineDht::start(&config(&testnet.bootstrap, Some(state.clone()))).unwrap();
    let b = MainlineDht::start(&config(&testnet.bootstrap, None)).unwrap();
    let hash = InfoHash([0x5a; 20]);

    let announce = tokio::time::timeout(Duration::from_secs(30), a.announce(hash, 45678)).await;
    assert!(matches!(announce, Ok(Ok(()))), "announce: {announce:?}");
    let want: SocketAddr = "127.0.0.1:45678".parse().unwrap();
    let mut found = Vec::new();
    for _ in 0..5 {
        found = b.get_peers(hash).await;
        if found.contains(&want) {
            break;
        }
    }
    assert!(found.contains(&want), "found {found:?}");

    a.save().await;
    let saved = parse_state(&std::fs::read_to_string(&state).unwrap());
    assert!(!saved.is_empty() && saved.iter().all(|n| n.ip().is_loopback()), "saved {saved:?}");
    // A restart with no configured node bootstraps from what was saved.
    let again = MainlineDht::start(&config(&[], Some(state))).unwrap();
    let found = again.get_peers(hash).await;
    assert!(found.contains(&want), "after a restart found {found:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
