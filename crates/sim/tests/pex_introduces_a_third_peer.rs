//! Peer exchange (BEP 11) introduces a third peer: a leecher told only of a slow relay reaches
//! the fast seeder the relay is connected to through the relay's PEX message, and gets most of
//! the torrent from it. In a private torrent nobody is introduced and the relay is all there is.

mod common;

use std::time::Duration;

use common::*;
use sluice_engine::Event;
use sluice_sim::{EngineSpec, NetProfile, NodeId, Sim};

const RELAY_RATE: u64 = 200_000;

/// Leecher, relay (uploads at 200 kB/s) and seeder (2 MB/s); the leecher knows only the relay,
/// the relay only the seeder.
fn swarm(seed: u64, private: bool) -> (Sim, u64, [NodeId; 3]) {
    let content = content(8 * MIB, 128 * KIB, seed);
    let mut sim = sim(seed);
    let spec = |s: EngineSpec| s.config(|c| c.private = private);
    let leecher = sim.add_engine(&content, spec(EngineSpec::leecher(NetProfile::new(15, None))));
    let relay = sim.add_engine(&content, spec(EngineSpec::leecher(NetProfile::new(20, Some(RELAY_RATE)))));
    let seeder = sim.add_engine(&content, spec(EngineSpec::seeder(NetProfile::new(25, Some(2_000_000)))));
    sim.introduce(relay, seeder);
    sim.introduce(leecher, relay);
    (sim, content.data.len() as u64, [leecher, relay, seeder])
}

/// When `node` first completed a handshake with a peer on `other`'s host (either side may
/// have dialled: PEX tells both).
fn first_met(sim: &Sim, node: NodeId, other: NodeId) -> Option<Duration> {
    let ip = sim.addr(other).ip();
    sim.events().iter().find_map(|(t, n, e)| match e {
        Event::PeerConnected { addr, .. } if *n == node && addr.ip() == ip => {
            Some(t.saturating_since(Default::default()))
        }
        _ => None,
    })
}

#[test]
fn pex_introduces_a_third_peer() {
    for_seeds("pex_introduces_a_third_peer", &[61, 62, 63], |seed| {
        let (mut sim, total, [leecher, relay, seeder]) = swarm(seed, false);
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        let met = first_met(&sim, leecher, seeder).expect("the leecher never met the seeder");
        let done = sim.metrics(leecher).completion_time().unwrap();
        let from_seeder = sim.messages(seeder, leecher).piece_bytes;
        println!(
            "  met the seeder at {:.2}s, complete at {:.2}s, {:.0}% from the seeder",
            secs(met),
            secs(done),
            100.0 * from_seeder as f64 / total as f64
        );
        // The relay's first PEX message goes out 3 s after the extended handshakes, behind the
        // blocks already queued on its 200 kB/s uplink (about 4 s of them).
        assert!(met < Duration::from_secs(10), "met the seeder only at {met:?}");
        assert!(from_seeder > total / 2, "only {from_seeder} of {total} bytes from the seeder");
        // The relay alone would need total / RELAY_RATE (42 s).
        assert!(done < Duration::from_secs(total / RELAY_RATE / 2), "complete only at {done:?}");
        assert!(sim.messages(relay, leecher).other > 0, "no extended messages from the relay");
    });
}

#[test]
fn a_private_torrent_introduces_nobody() {
    for_seeds("a_private_torrent_introduces_nobody", &[61], |seed| {
        let (mut sim, total, [leecher, relay, seeder]) = swarm(seed, true);
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        assert_eq!(first_met(&sim, leecher, seeder), None);
        assert_eq!(sim.messages(seeder, leecher).piece_bytes, 0);
        assert_eq!(sim.messages(relay, leecher).piece_bytes, total);
        let done = sim.metrics(leecher).completion_time().unwrap();
        println!("  complete at {:.2}s from the relay alone", secs(done));
    });
}
