//! With a slow disk and a small buffer budget, buffered piece bytes never exceed the budget
//! (or a single piece, when one piece is larger than the whole budget) and nothing deadlocks.

mod common;

use std::time::Duration;

use common::*;
use sluice_sim::{EngineSpec, NetProfile};

fn run(seed: u64, piece_length: u64, budget: u64) {
    let content = content(6 * MIB, piece_length, seed);
    let mut sim = sim(seed);
    let spec = EngineSpec {
        verify_delay: Duration::from_millis(150),
        ..EngineSpec::leecher(NetProfile::new(5, None)).config(|c| c.buffer_budget = budget)
    };
    let leecher = sim.add_engine(&content, spec);
    for lat in [5, 10, 20] {
        let s = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(lat, Some(5_000_000))));
        sim.introduce(leecher, s);
    }
    ok(sim.run_until_complete(&[leecher]));
    assert_complete(&sim, leecher);

    let m = sim.metrics(leecher);
    let stats = sim.torrent(leecher).stats();
    let limit = budget.max(piece_length);
    println!(
        "  completed in {:.2}s; buffered max {} (engine peak {}), in verification max {}, limit {limit}",
        secs(m.completion_time().unwrap()),
        m.max_buffered_bytes,
        stats.buffered_bytes_peak,
        m.max_verify_outstanding_bytes
    );
    assert!(m.max_buffered_bytes <= limit, "buffered {} > {limit}", m.max_buffered_bytes);
    assert!(stats.buffered_bytes_peak <= limit, "engine peak {} > {limit}", stats.buffered_bytes_peak);
    assert!(m.max_verify_outstanding_bytes <= limit, "{} bytes awaiting verification", m.max_verify_outstanding_bytes);
    assert!(m.max_buffered_bytes > 0);
    assert_eq!(stats.buffered_bytes, 0, "buffers left reserved after completion");
}

#[test]
fn budget_of_a_few_pieces() {
    for_seeds("budget_of_a_few_pieces", &[81, 82], |seed| run(seed, 64 * KIB, 4 * 64 * KIB));
}

#[test]
fn piece_larger_than_budget() {
    for_seeds("piece_larger_than_budget", &[83, 84], |seed| run(seed, 1024 * KIB, 256 * KIB));
}
