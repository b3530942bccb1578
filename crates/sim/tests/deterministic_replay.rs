//! One seed, one run: the trace hash of a busy scenario repeats exactly, and changes with
//! the seed.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use sluice_sim::{Behaviour, Corruption, EngineSpec, NetProfile, WirePeer};

fn run(seed: u64) -> (u64, Duration, u64) {
    let content = content(2 * MIB, 32 * KIB, seed);
    let mut sim = sim(seed);
    let seeder = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(20, Some(1_000_000)).with_jitter(10)));
    let liar = sim.add_script(
        NetProfile::new(5, Some(3_000_000)),
        Box::new(WirePeer::new(Rc::clone(&content), Behaviour::BadData(Corruption::EveryNth(2)), 0xdd)),
    );
    let leechers: Vec<_> = (0..4)
        .map(|i| {
            sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(10 + 15 * i, Some(500_000)).with_jitter(8)))
        })
        .collect();
    for &l in &leechers {
        sim.introduce(l, seeder);
        sim.introduce(l, liar);
        for &o in &leechers {
            if o != l {
                sim.introduce(l, o);
            }
        }
    }
    sim.schedule_drop(Duration::from_millis(900), leechers[0], seeder);
    ok(sim.run_until_complete(&leechers));
    let last = leechers.iter().map(|&l| sim.metrics(l).completion_time().unwrap()).max().unwrap();
    (sim.trace_hash(), last, sim.steps())
}

#[test]
fn same_seed_same_trace() {
    for_seeds("same_seed_same_trace", &[101, 102], |seed| {
        let a = run(seed);
        let b = run(seed);
        println!("  trace {:#018x}, done at {:?}, {} steps", a.0, a.1, a.2);
        assert_eq!(a, b, "two runs of seed {seed} diverged");
        let c = run(seed + 1000);
        assert_ne!(a.0, c.0, "seeds {seed} and {} gave the same trace", seed + 1000);
    });
}
