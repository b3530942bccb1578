//! A peer that advertises everything and never unchokes must not stall the download.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use sluice_sim::{Behaviour, EngineSpec, NetProfile, WirePeer};

#[test]
fn choking_forever_peer_is_harmless() {
    for_seeds("choking_forever_peer_is_harmless", &[41, 42, 43], |seed| {
        let content = content(6 * MIB, 128 * KIB, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(10, None)));
        let choker = sim.add_script(
            NetProfile::new(2, None),
            Box::new(WirePeer::new(Rc::clone(&content), Behaviour::ChokingForever, 0xc0)),
        );
        let honest = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(40, Some(2_000_000))));
        sim.introduce(leecher, choker);
        sim.introduce(leecher, honest);
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        let took = sim.metrics(leecher).completion_time().unwrap();
        println!("  completed in {:.2}s", secs(took));
        // 6 MiB at 2 MB/s is 3.1 s; a choker must cost no more than a little slack.
        assert!(took < Duration::from_secs(6), "choking peer slowed the download: {took:?}");
        assert_eq!(sim.messages(leecher, choker).request, 0, "requested from a peer that never unchoked");
    });
}
