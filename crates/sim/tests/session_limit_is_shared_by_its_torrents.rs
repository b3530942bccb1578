//! Three torrents of one server draw from its one download limit (a `SharedLimit`, as the
//! node's session gives them) while fetching from seeders with latency and jitter: together
//! they stay under the limit, each gets a fair part of it, and once it is lifted all three
//! finish.

mod common;

use std::time::Duration;

use common::*;
use sluice_engine::SharedLimit;
use sluice_sim::{EngineSpec, NetProfile};

#[test]
fn session_limit_is_shared_by_its_torrents() {
    for_seeds("session_limit_is_shared_by_its_torrents", &[1, 2, 3], |seed| {
        let content = content(8 * MIB, 256 * KIB, seed);
        let mut sim = sim(seed);
        let rate = 512 * KIB;
        let limit = SharedLimit::new(Some(rate), sim.now());
        let leechers: Vec<_> = (0..3)
            .map(|_| {
                let net = NetProfile::new(10, None).with_jitter(3);
                let spec = EngineSpec::leecher(net).config(|c| c.shared_download_limit = Some(limit.clone()));
                sim.add_engine(&content, spec)
            })
            .collect();
        for (latency, up) in [(20, 4_000_000), (60, 2_000_000)] {
            let s = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(latency, Some(up)).with_jitter(5)));
            for &l in &leechers {
                sim.introduce(l, s);
            }
        }
        let span = Duration::from_secs(6);
        ok(sim.run_for(span));
        let got: Vec<u64> = leechers.iter().map(|&l| sim.torrent(l).stats().downloaded).collect();
        let total: u64 = got.iter().sum();
        println!("  {got:?} in {:.1} s: {:.0} KiB/s together", secs(span), total as f64 / secs(span) / KIB as f64);
        // The limit over the span, its half-second burst and a grant of blocks per torrent.
        let bound = rate * 6 + rate / 2 + 3 * 64 * 16 * KIB;
        assert!(total <= bound, "{got:?}: {total} > {bound}");
        assert!(total >= rate * 5, "the limit was not used: {got:?}");
        assert!(got.iter().all(|&g| g * 5 >= total), "unfair split: {got:?}");

        // Lifted: every torrent finishes.
        let now = sim.now();
        limit.set_rate(None, now);
        for &l in &leechers {
            sim.command(l, |t, now| t.shared_limits_changed(now));
        }
        ok(sim.run_until_complete(&leechers));
        for &l in &leechers {
            assert_complete(&sim, l);
        }
    });
}
