//! In a bandwidth-limited swarm, pieces set to `High` are all verified before most `Normal`
//! pieces.

mod common;

use common::*;
use sluice_engine::Priority;
use sluice_sim::{EngineSpec, NetProfile};

#[test]
fn priority_tiers_first() {
    for_seeds("priority_tiers_first", &[111, 112, 113], |seed| {
        let content = content(8 * MIB, 64 * KIB, seed);
        let pieces = content.lengths.num_pieces();
        let high = pieces * 3 / 4..pieces;
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(10, None)));
        let high_range = high.clone();
        sim.command(leecher, |t, now| t.set_priority(high_range, Priority::High, now));
        for (lat, rate) in [(20, 500_000), (40, 700_000)] {
            let s = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(lat, Some(rate))));
            sim.introduce(leecher, s);
        }
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);

        let order: Vec<u32> = sim.metrics(leecher).verified.iter().map(|(p, _)| p.get()).collect();
        let last_high = order.iter().rposition(|p| high.contains(p)).unwrap();
        let normal_before = order[..last_high].iter().filter(|p| !high.contains(p)).count();
        let leading_high = order.iter().take_while(|p| high.contains(p)).count();
        println!(
            "  {} High pieces: the first {leading_high} verified are High, {normal_before} Normal ones slipped in before the last",
            high.len()
        );
        // Normal pieces may start only once every High block is requested, so only the
        // tail of the High tier can overlap with them.
        let slack = 8;
        assert!(leading_high + slack >= high.len(), "High pieces did not come first: {order:?}");
        assert!(normal_before <= slack, "{normal_before} Normal pieces verified before the last High one: {order:?}");
    });
}
