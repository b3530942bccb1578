//! A peer corrupting every other piece among three honest seeders: pieces are fetched from
//! several peers at once, so a failed piece has honest contributors too. Only the liar is
//! banned, no corrupt piece is ever verified, and the download completes.

mod common;

use std::rc::Rc;

use common::*;
use sluice_engine::{DisconnectReason, Event};
use sluice_sim::{Behaviour, Corruption, EngineSpec, NetProfile, WirePeer};

/// `max_pipeline`: requests in flight per peer at most; below a piece's block count, every
/// piece is shared among peers.
fn run(seed: u64, piece_length: u64, max_pipeline: Option<usize>) {
    let content = content(8 * MIB, piece_length, seed);
    let mut sim = sim(seed);
    let spec = EngineSpec::leecher(NetProfile::new(10, None)).config(|c| {
        if let Some(max) = max_pipeline {
            c.max_pipeline = max;
            c.initial_pipeline = max;
            c.min_pipeline = c.min_pipeline.min(max);
        }
    });
    let leecher = sim.add_engine(&content, spec);
    let liar = sim.add_script(
        NetProfile::new(5, Some(4_000_000)),
        Box::new(WirePeer::new(Rc::clone(&content), Behaviour::BadData(Corruption::EveryNth(2)), 0xbd)),
    );
    let honest: Vec<_> = [(5, 4_000_000), (20, 2_000_000), (40, 3_000_000)]
        .into_iter()
        .map(|(lat, rate)| sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(lat, Some(rate)))))
        .collect();
    for &h in &honest {
        sim.introduce(leecher, h);
    }
    sim.introduce(leecher, liar);
    ok(sim.run_until_complete(&[leecher]));
    assert_complete(&sim, leecher);

    let bans = banned(&sim, leecher);
    let m = sim.metrics(leecher);
    println!(
        "  completed in {:.2}s; {} pieces failed; banned {bans:?}",
        secs(m.completion_time().unwrap()),
        m.pieces_failed
    );
    assert!(m.pieces_failed > 0, "the liar never got a piece checked");
    let shared =
        sim.events_of(leecher).filter(|e| matches!(e, Event::HashFailed { peers, .. } if peers.len() > 1)).count();
    println!("  {shared} failed pieces had several contributors");
    if max_pipeline.is_some() {
        assert!(shared > 0, "no failed piece was shared with an honest peer");
    }
    assert_eq!(bans, vec![sim.addr(liar)], "exactly the liar must be banned");
    for &h in &honest {
        assert!(
            !disconnects_from(&sim, leecher, sim.addr(h)).contains(&DisconnectReason::Banned),
            "honest peer {} disconnected as banned",
            sim.addr(h)
        );
    }
    // Every verified piece is byte-identical to the source (checked by assert_complete) and
    // the engine never claims a piece the driver rejected (the simulator checks each claim).
}

#[test]
fn liar_sharing_pieces_with_honest_peers_is_the_only_one_banned() {
    for_seeds("liar_sharing_pieces_with_honest_peers_is_the_only_one_banned", &[61, 62, 63], |seed| {
        run(seed, 256 * KIB, Some(8))
    });
}

#[test]
fn liar_among_honest_peers_with_default_pipelines_is_the_only_one_banned() {
    for_seeds("liar_among_honest_peers_with_default_pipelines_is_the_only_one_banned", &[64, 65], |seed| {
        run(seed, MIB, None)
    });
}
