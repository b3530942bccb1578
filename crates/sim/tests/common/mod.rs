//! Helpers shared by the scenario tests. Each scenario runs a few fixed seeds; set
//! `SIM_SEED=<n>` to run only that seed (the seed a failure printed).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use sluice_engine::{DisconnectReason, Event, PeerKey};
use sluice_sim::{Content, NodeId, Sim, SimConfig, SimError};

pub mod stream;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

/// The seeds to run: `SIM_SEED` if set, else `default`.
pub fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.trim().parse().expect("SIM_SEED must be an integer")],
        Err(_) => default.to_vec(),
    }
}

/// Runs `scenario` once per seed, printing each seed first so a failure names it.
pub fn for_seeds(name: &str, default: &[u64], scenario: impl Fn(u64)) {
    for seed in seeds(default) {
        println!("{name}: seed={seed} (rerun alone with SIM_SEED={seed})");
        scenario(seed);
    }
}

pub fn content(total: u64, piece_length: u64, seed: u64) -> Rc<Content> {
    Rc::new(Content::random(total, piece_length as u32, seed))
}

/// The default configuration; `SIM_LOG=1` prints the run's timeline to stderr.
pub fn config() -> SimConfig {
    SimConfig { log: std::env::var_os("SIM_LOG").is_some(), ..SimConfig::default() }
}

pub fn sim(seed: u64) -> Sim {
    Sim::new(seed, config())
}

/// Unwraps a run, failing the test with the simulator's reproduction line.
pub fn ok(r: Result<(), SimError>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Asserts that `node` verified and stored every piece, byte-identical to the source.
pub fn assert_complete(sim: &Sim, node: NodeId) {
    assert!(sim.torrent(node).is_complete(), "{node:?} is not complete");
    assert!(sim.stored(node).is_full(), "{node:?} has not stored every piece");
    assert!(sim.content_matches(node), "{node:?} stored bytes that differ from the source");
    assert!(sim.metrics(node).completed_at.is_some(), "{node:?} never reported Complete");
}

/// The address each of `node`'s peer keys was connected to.
pub fn key_addr(sim: &Sim, node: NodeId, key: PeerKey) -> Option<SocketAddr> {
    sim.events_of(node).find_map(|e| match e {
        Event::PeerConnected { peer, addr } if *peer == key => Some(*addr),
        _ => None,
    })
}

/// Reasons `node` gave for disconnecting peers at `addr`.
pub fn disconnects_from(sim: &Sim, node: NodeId, addr: SocketAddr) -> Vec<DisconnectReason> {
    sim.events_of(node)
        .filter_map(|e| match e {
            Event::PeerDisconnected { peer, reason } if key_addr(sim, node, *peer) == Some(addr) => {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect()
}

pub fn banned(sim: &Sim, node: NodeId) -> Vec<SocketAddr> {
    sim.events_of(node)
        .filter_map(|e| match e {
            Event::PeerBanned { addr } => Some(*addr),
            _ => None,
        })
        .collect()
}

pub fn hash_failures(sim: &Sim, node: NodeId) -> usize {
    sim.events_of(node).filter(|e| matches!(e, Event::HashFailed { .. })).count()
}
