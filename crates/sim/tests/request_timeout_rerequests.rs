//! A peer that unchokes, accepts requests and never answers: its blocks time out and are
//! fetched from someone else.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use sluice_sim::{Behaviour, EngineSpec, NetProfile, WirePeer};

#[test]
fn request_timeout_rerequests() {
    for_seeds("request_timeout_rerequests", &[91, 92, 93], |seed| {
        let content = content(4 * MIB, 64 * KIB, seed);
        let mut sim = sim(seed);
        let timeout = Duration::from_secs(5);
        let leecher = sim.add_engine(
            &content,
            EngineSpec::leecher(NetProfile::new(10, None)).config(|c| c.request_timeout = timeout),
        );
        let silent = sim.add_script(
            NetProfile::new(1, None),
            Box::new(WirePeer::new(Rc::clone(&content), Behaviour::Silent, 0x51)),
        );
        let honest = sim.add_engine(
            &content,
            EngineSpec::seeder(NetProfile::new(30, Some(2_000_000))),
        );
        sim.introduce(leecher, silent);
        sim.introduce(leecher, honest);
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);

        let took = sim.metrics(leecher).completion_time().unwrap();
        let to_silent = sim.messages(leecher, silent).request;
        let to_honest = sim.messages(leecher, honest).request;
        let blocks = 4 * MIB / (16 * KIB);
        println!(
            "  completed in {:.2}s; requests: {to_silent} to the silent peer, {to_honest} to the honest",
            secs(took)
        );
        assert!(
            to_silent > 0,
            "the silent peer was never asked: the scenario tests nothing"
        );
        assert!(
            to_honest >= blocks,
            "honest peer got {to_honest} requests for {blocks} blocks"
        );
        // 2.1 s of transfer plus at most a few timeouts.
        assert!(took < 4 * timeout, "too slow: {took:?}");
    });
}
