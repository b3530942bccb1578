//! The simulator's own guarantees: a run that cannot finish ends in an error naming its seed,
//! and connecting to an address nobody listens on fails cleanly.

mod common;

use std::time::Duration;

use common::*;
use sluice_sim::{EngineSpec, NetProfile, Sim, SimConfig};

#[test]
fn unreachable_goal_fails_with_the_seed() {
    let seed = 5;
    let content = content(256 * KIB, 16 * KIB, seed);
    let cfg = SimConfig { max_time: Duration::from_secs(300), ..config() };
    let mut sim = Sim::new(seed, cfg);
    let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::default()));
    // Nobody listens at 127.0.0.200; the engine keeps trying with backoff.
    sim.command(leecher, |t, now| t.add_peer("127.0.0.200:6881".parse().unwrap(), now));
    let err = sim.run_until_complete(&[leecher]).expect_err("nothing to download from");
    let msg = err.to_string();
    println!("  {msg}");
    assert!(msg.contains("time limit"), "{msg}");
    assert!(msg.ends_with("reproduce with seed=5"), "{msg}");
    assert!(sim.metrics(leecher).connects >= 2, "the engine gave up after one failed attempt");
    assert_eq!(sim.torrent(leecher).stats().peers_connected, 0);
}

#[test]
fn step_limit_fails_with_the_seed() {
    let seed = 6;
    let content = content(MIB, 64 * KIB, seed);
    let cfg = SimConfig { max_steps: 200, ..config() };
    let mut sim = Sim::new(seed, cfg);
    let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::default()));
    let seeder = sim.add_engine(&content, EngineSpec::seeder(NetProfile::default()));
    sim.introduce(leecher, seeder);
    let err = sim.run_until_complete(&[leecher]).expect_err("200 steps cannot move 1 MiB");
    assert!(err.to_string().contains("step limit"), "{err}");
    assert_eq!(err.seed, seed);
}
