//! RAM mode: two players stream a file four times larger than the cache, one seeks ahead and
//! then back into bytes long evicted. The cache never holds more than its budget, evicted
//! pieces are fetched again when a player returns to them, and both players keep playing.

mod common;

use std::time::Duration;

use common::stream::{LEECHER_LATENCY, Player, Swarm};
use common::*;
use sluice_core::ByteOffset;
use sluice_engine::Priority;
use sluice_sim::{EngineSpec, NetProfile};
use sluice_storage::RamCache;

#[test]
fn stream_ram_budget_is_never_exceeded() {
    for_seeds("stream_ram_budget_is_never_exceeded", &[511, 512], |seed| {
        let budget = 32 * MIB;
        let cache = RamCache::new(budget);
        let spec = EngineSpec::leecher(NetProfile::new(LEECHER_LATENCY, None))
            .ram(cache.clone())
            .config(|c| c.fit_ram_budget(budget));
        let mut swarm = Swarm::with_leecher(seed, 128 * MIB, MIB, Priority::Skip, spec);
        let node = swarm.leecher;
        let mut a = Player::open(&mut swarm.sim, node, 0..128 * MIB, 0, 1_000_000);
        let mut b = Player::open(&mut swarm.sim, node, 0..128 * MIB, 64 * MIB, 500_000);
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(40));
        assert!(a.read > 30 * MIB, "a did not get far: {} bytes", a.read);

        a.seek(&mut swarm.sim, node, 100 * MIB);
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(20));
        let early = swarm.content.lengths.piece_at(ByteOffset(5 * MIB)).unwrap();
        assert!(!swarm.sim.torrent(node).have().get(early), "piece {early} was never evicted");

        // Back to bytes evicted long ago: they are fetched again.
        a.seek(&mut swarm.sim, node, 5 * MIB);
        let back = swarm.sim.now();
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(20));
        let refetched: Vec<_> = swarm.sim.metrics(node).verified.iter().filter(|(p, _)| *p == early).collect();
        assert!(refetched.len() >= 2, "piece {early} was not fetched again: {refetched:?}");
        let ttfb = a.time_to_first_byte().expect("no byte after seeking back");
        println!("  seek back: first byte after {:.3}s (seeked at {:?})", secs(ttfb), back);

        let m = swarm.sim.metrics(node);
        println!(
            "  cache: peak {} of {} bytes, {} evictions; a read {} MiB, b read {} MiB",
            m.max_cache_bytes,
            budget,
            m.evicted,
            a.read / MIB,
            (b.read - 64 * MIB) / MIB
        );
        assert!(m.max_cache_bytes <= budget, "cache held {} bytes", m.max_cache_bytes);
        assert!(cache.stats().peak <= budget);
        assert!(m.evicted > 0);
        assert!(b.stalls.is_empty(), "b stalled: {:?}", b.stalls);
        assert!(ttfb < Duration::from_secs(2));
        assert!(swarm.sim.content_matches(node));
    });
}
