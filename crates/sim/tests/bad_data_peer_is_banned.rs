//! A peer serving corrupt blocks is banned; no corrupt piece is ever accepted and the
//! download completes from honest peers.

mod common;

use std::rc::Rc;

use common::*;
use sluice_sim::{Behaviour, Corruption, EngineSpec, NetProfile, WirePeer};

fn run(seed: u64, corruption: Corruption) {
    let content = content(6 * MIB, 64 * KIB, seed);
    let mut sim = sim(seed);
    let leecher = sim.add_engine(&content, EngineSpec::leecher(NetProfile::new(10, None)));
    // The liar is the fastest peer, so it gets a large share of the requests.
    let liar = sim.add_script(
        NetProfile::new(2, Some(10_000_000)),
        Box::new(WirePeer::new(Rc::clone(&content), Behaviour::BadData(corruption), 0xbd)),
    );
    let honest: Vec<_> = [(30, 1_000_000), (50, 1_500_000)]
        .into_iter()
        .map(|(lat, rate)| sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(lat, Some(rate)))))
        .collect();
    sim.introduce(leecher, liar);
    for &h in &honest {
        sim.introduce(leecher, h);
    }
    ok(sim.run_until_complete(&[leecher]));
    assert_complete(&sim, leecher);

    let liar_addr = sim.addr(liar);
    let bans = banned(&sim, leecher);
    let m = sim.metrics(leecher);
    println!(
        "  completed in {:.2}s; {} pieces failed; banned {bans:?}",
        secs(m.completion_time().unwrap()),
        m.pieces_failed
    );
    assert!(m.pieces_failed > 0, "the liar never got a piece checked");
    assert!(hash_failures(&sim, leecher) > 0);
    assert!(bans.contains(&liar_addr), "liar {liar_addr} not banned: {bans:?}");
    for &h in &honest {
        assert!(!bans.contains(&sim.addr(h)), "honest peer {} banned", sim.addr(h));
    }
    // Every verified piece is byte-identical to the source (checked by assert_complete) and
    // the engine never claims a piece the driver rejected (the simulator checks each claim).
}

#[test]
fn peer_corrupting_everything_is_banned() {
    for_seeds("peer_corrupting_everything_is_banned", &[51, 52, 53], |seed| run(seed, Corruption::All));
}

#[test]
fn peer_corrupting_some_pieces_is_banned() {
    for_seeds("peer_corrupting_some_pieces_is_banned", &[54, 55], |seed| run(seed, Corruption::EveryNth(3)));
}
