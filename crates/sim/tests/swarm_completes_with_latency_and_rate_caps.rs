//! One leecher downloads from five seeders with different latencies and upload caps.

mod common;

use common::*;
use sluice_sim::{EngineSpec, NetProfile};

#[test]
fn swarm_completes_with_latency_and_rate_caps() {
    for_seeds("swarm_completes_with_latency_and_rate_caps", &[1, 2, 3], |seed| {
        let total = 12 * MIB + 12_345;
        let content = content(total, 256 * KIB, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(20, None).with_jitter(5)));
        let links = [(5, 5_000_000), (40, 2_000_000), (80, 1_000_000), (120, 500_000), (150, 200_000)];
        let mut aggregate = 0;
        for (latency, rate) in links {
            let s = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(latency, Some(rate)).with_jitter(3)));
            sim.introduce(leecher, s);
            aggregate += rate;
        }
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);

        let took = sim.metrics(leecher).completion_time().unwrap();
        let ideal = total as f64 / aggregate as f64;
        println!("  completed in {:.2}s (ideal {ideal:.2}s)", secs(took));
        // The fastest seeder alone would need 2.6 s; all of them at full rate 1.5 s.
        assert!(secs(took) < 2.5 * ideal + 1.0, "too slow: {took:?} against an ideal of {ideal:.2}s");
        assert_eq!(hash_failures(&sim, leecher), 0);
    });
}
