//! Swarms of engines: leechers must upload to each other for everyone to finish in time.

mod common;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_sim::{EngineSpec, NetProfile, NodeId, Sim, SimConfig};

#[test]
fn one_seeder_twenty_leechers() {
    for_seeds("one_seeder_twenty_leechers", &[7, 8], |seed| {
        let total = 4 * MIB;
        let content = content(total, 64 * KIB, seed);
        let mut sim = sim(seed);
        let seeder = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(30, Some(2_000_000))));
        let mut rng = SmallRng::seed_from_u64(seed);
        let leechers: Vec<NodeId> = (0..20)
            .map(|_| {
                let net = NetProfile::new(rng.random_range(5..80), Some(1_000_000)).with_jitter(2);
                sim.add_engine(&content, EngineSpec::leecher(net))
            })
            .collect();
        for &l in &leechers {
            sim.introduce(l, seeder);
            for &other in &leechers {
                if other != l {
                    sim.introduce(l, other);
                }
            }
        }
        ok(sim.run_until_complete(&leechers));
        for &l in &leechers {
            assert_complete(&sim, l);
        }
        let last = leechers.iter().map(|&l| sim.metrics(l).completion_time().unwrap()).max().unwrap();
        let from_seeder = sim.messages_from(seeder).piece_bytes;
        let from_leechers: u64 = leechers.iter().map(|&l| sim.messages_from(l).piece_bytes).sum();
        println!(
            "  all done in {:.2}s; seeder sent {:.1} MiB, leechers {:.1} MiB",
            secs(last),
            from_seeder as f64 / MIB as f64,
            from_leechers as f64 / MIB as f64
        );
        // The seeder alone would need 20 × 4 MiB / 2 MB/s = 42 s.
        assert!(secs(last) < 20.0, "swarm too slow: {last:?}");
        assert!(from_leechers > from_seeder, "leechers barely shared: {from_leechers} vs {from_seeder}");
    });
}

#[test]
fn two_hundred_peer_swarm() {
    for_seeds("two_hundred_peer_swarm", &[11], |seed| {
        let total = 2 * MIB;
        let content = content(total, 64 * KIB, seed);
        let cfg = SimConfig { invariant_interval: 16, ..config() };
        let mut sim = Sim::new(seed, cfg);
        let mut rng = SmallRng::seed_from_u64(seed);
        let seeders: Vec<NodeId> = (0..3)
            .map(|_| sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(20, Some(4_000_000)))))
            .collect();
        let leechers: Vec<NodeId> = (0..197)
            .map(|_| {
                let net = NetProfile::new(rng.random_range(5..100), Some(rng.random_range(200_000..2_000_000)));
                sim.add_engine(&content, EngineSpec::leecher(net))
            })
            .collect();
        // A tracker hands each peer the seeders' addresses and a random 30 others.
        for &l in &leechers {
            for &s in &seeders {
                sim.introduce(l, s);
            }
            for _ in 0..30 {
                let other = leechers[rng.random_range(0..leechers.len())];
                if other != l {
                    sim.introduce(l, other);
                }
            }
        }
        ok(sim.run_until_complete(&leechers));
        for &l in &leechers {
            assert_complete(&sim, l);
        }
        let last = leechers.iter().map(|&l| sim.metrics(l).completion_time().unwrap()).max().unwrap();
        println!("  200 peers done in {:.2}s simulated, {} steps", secs(last), sim.steps());
        // Seeders alone: 197 × 2 MiB / 12 MB/s = 34 s.
        assert!(secs(last) < 30.0, "swarm too slow: {last:?}");
    });
}
