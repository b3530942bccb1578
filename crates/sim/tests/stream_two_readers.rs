//! Two players stream two different files of one torrent at once (stream-only): both start
//! quickly and both play without stalling, neither starving the other.

mod common;

use std::time::Duration;

use common::stream::{Player, Swarm};
use common::*;
use sluice_engine::Priority;

#[test]
fn stream_two_readers() {
    for_seeds("stream_two_readers", &[331, 332], |seed| {
        let mut swarm = Swarm::new(seed, 128 * MIB, MIB, Priority::Skip);
        let bitrate = 2_000_000;
        let mut a = Player::open(&mut swarm.sim, swarm.leecher, 0..64 * MIB, 0, bitrate);
        let mut b = Player::open(&mut swarm.sim, swarm.leecher, 64 * MIB..128 * MIB, 10 * MIB, bitrate);
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(15));
        for (name, p, from) in [("a", &a, 0.0), ("b", &b, 10.0 * MIB as f64)] {
            let played = p.played - from;
            println!(
                "  {name}: playing after {:.3}s, {:.1} MB played, stalls {:?}",
                secs(p.time_to_play().expect("never started")),
                played / 1e6,
                p.stalls
            );
            assert!(p.time_to_play().unwrap() < Duration::from_secs(2), "{name} started late");
            assert!(p.stalls.is_empty(), "{name} stalled: {:?}", p.stalls);
            // About 13 s of media each.
            assert!(played > 24e6, "{name} played only {played}");
        }
    });
}
