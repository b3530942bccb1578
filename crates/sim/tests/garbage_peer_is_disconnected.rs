//! A peer that sends random bytes after its handshake is disconnected for a protocol error.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use sluice_engine::DisconnectReason;
use sluice_sim::{Behaviour, EngineSpec, NetProfile, WirePeer};

#[test]
fn garbage_peer_is_disconnected() {
    for_seeds("garbage_peer_is_disconnected", &[61, 62, 63], |seed| {
        let content = content(2 * MIB, 64 * KIB, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(10, None)));
        let garbage = sim.add_script(
            NetProfile::new(5, None),
            Box::new(WirePeer::new(Rc::clone(&content), Behaviour::Garbage, 0x66)),
        );
        let honest = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(20, Some(2_000_000))));
        sim.introduce(leecher, garbage);
        sim.introduce(leecher, honest);
        ok(sim.run_for(Duration::from_millis(500)));
        let reasons = disconnects_from(&sim, leecher, sim.addr(garbage));
        println!("  after 0.5 s: disconnect reasons {reasons:?}");
        assert!(
            reasons.iter().any(|r| matches!(r, DisconnectReason::Protocol(_))),
            "garbage peer not disconnected for a protocol error: {reasons:?}"
        );
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        assert_eq!(hash_failures(&sim, leecher), 0);
    });
}
