//! The last blocks sit with a very slow peer; endgame duplicates them to a fast peer, so the
//! download ends long before the slow peer could deliver, and the duplicates are cancelled.

mod common;

use common::*;
use sluice_sim::{EngineSpec, NetProfile};

#[test]
fn endgame_finishes() {
    for_seeds("endgame_finishes", &[71, 72, 73], |seed| {
        let total = 4 * MIB;
        let content = content(total, 64 * KIB, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(10, None)));
        let fast_rate = 4_000_000;
        let slow_rate = 10_000;
        let fast = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(10, Some(fast_rate))));
        let slow = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(10, Some(slow_rate))));
        sim.introduce(leecher, slow);
        sim.introduce(leecher, fast);
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);

        let took = sim.metrics(leecher).completion_time().unwrap();
        let to_slow = sim.messages(leecher, slow);
        let from_slow = sim.messages(slow, leecher);
        println!(
            "  completed in {:.2}s; slow peer got {} requests, {} cancels, delivered {} blocks",
            secs(took),
            to_slow.request,
            to_slow.cancel,
            from_slow.piece
        );
        println!("  slow seeder's largest send queue: {} KiB", sim.metrics(slow).max_send_queue / KIB);
        assert!(to_slow.request > 0, "the slow peer was never asked: the scenario tests nothing");
        // Every block the slow peer was asked for and never delivered took 1.6 s at its rate;
        // waiting for even one would blow this bound.
        let ideal = total as f64 / fast_rate as f64;
        assert!(secs(took) < ideal + 1.0, "endgame did not rescue the slow blocks: {took:?}");
        assert!(sim.metrics(leecher).endgame_seen, "endgame never entered");
        assert!(to_slow.cancel > 0, "no CANCEL sent for duplicated blocks");
    });
}
