//! Connections break mid-transfer; the leecher finishes through the peers left and by
//! reconnecting.

mod common;

use std::time::Duration;

use common::*;
use sluice_engine::Event;
use sluice_sim::{EngineSpec, NetProfile, Sim};

#[test]
fn drops_and_outages_are_survived() {
    for_seeds("drops_and_outages_are_survived", &[21, 22, 23], |seed| {
        let content = content(8 * MIB, 128 * KIB, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(15, None)));
        let seeders: Vec<_> = [(10, 2_000_000), (30, 1_000_000), (60, 1_000_000)]
            .into_iter()
            .map(|(lat, rate)| sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(lat, Some(rate)))))
            .collect();
        for &s in &seeders {
            sim.introduce(leecher, s);
        }
        sim.schedule_drop(Duration::from_millis(700), leecher, seeders[0]);
        sim.schedule_drop(Duration::from_millis(1500), leecher, seeders[1]);
        sim.schedule_offline(seeders[2], Duration::from_millis(900), Duration::from_secs(4));
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        let m = sim.metrics(leecher);
        println!("  completed in {:.2}s after {} connection attempts", secs(m.completion_time().unwrap()), m.connects);
        assert!(m.connects > seeders.len() as u64, "never reconnected");
    });
}

#[test]
fn only_seeder_drops_and_comes_back() {
    for_seeds("only_seeder_drops_and_comes_back", &[31, 32], |seed| {
        let content = content(4 * MIB, 64 * KIB, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(15, None)));
        let seeder = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(25, Some(1_000_000))));
        sim.introduce(leecher, seeder);
        sim.schedule_drop(Duration::from_millis(800), leecher, seeder);
        // Once the leecher is back (after its reconnect backoff), take the seeder away
        // for a while.
        let connected = |sim: &Sim| sim.events_of(leecher).filter(|e| matches!(e, Event::PeerConnected { .. })).count();
        ok(sim.run_until(|sim| connected(sim) == 2));
        let back = sim.elapsed();
        sim.schedule_offline(seeder, back + Duration::from_millis(300), back + Duration::from_millis(1300));
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        let m = sim.metrics(leecher);
        println!(
            "  reconnected at {:.2}s, completed in {:.2}s after {} connection attempts",
            secs(back),
            secs(m.completion_time().unwrap()),
            m.connects
        );
        assert!(connected(&sim) >= 3, "never reconnected after the outage");
        assert!(
            m.verified
                .iter()
                .any(|&(_, t)| t.saturating_since(sluice_core::Timestamp::ZERO) > back + Duration::from_millis(1300)),
            "finished before the outage: the scenario tests nothing"
        );
    });
}
