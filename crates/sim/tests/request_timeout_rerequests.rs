//! A peer that unchokes, accepts requests and never answers: its blocks time out and are
//! fetched from someone else long before endgame could rescue them.

mod common;

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use sluice_core::{BlockRef, PieceIndex, Timestamp};
use sluice_sim::{Behaviour, EngineSpec, NetProfile, WirePeer};

struct Run {
    took: Duration,
    asked: Vec<(Timestamp, BlockRef)>,
    verified: Vec<(PieceIndex, Timestamp)>,
}

const TIMEOUT: Duration = Duration::from_secs(3);

fn run(seed: u64) -> Run {
    let content = content(8 * MIB, 64 * KIB, seed);
    let mut sim = sim(seed);
    let leecher = sim
        .add_engine(&content, EngineSpec::leecher(NetProfile::new(10, None)).config(|c| c.request_timeout = TIMEOUT));
    let silent =
        sim.add_script(NetProfile::new(1, None), Box::new(WirePeer::new(Rc::clone(&content), Behaviour::Silent, 0x51)));
    let honest = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(30, Some(600_000))));
    sim.introduce(leecher, silent);
    sim.introduce(leecher, honest);
    ok(sim.run_until_complete(&[leecher]));
    assert_complete(&sim, leecher);
    let asked = sim.script_as::<WirePeer>(silent).unwrap().requests.clone();
    if std::env::var_os("SIM_LOG").is_some() {
        for (t, b) in &asked {
            eprintln!("silent peer asked at {:.3}s for {b:?}", secs(since_start(*t)));
        }
    }
    let took = sim.metrics(leecher).completion_time().unwrap();
    println!("  completed in {:.2}s; {} requests to the silent peer", secs(took), asked.len());
    Run { took, asked, verified: sim.metrics(leecher).verified.clone() }
}

fn since_start(t: Timestamp) -> Duration {
    t.saturating_since(Timestamp::ZERO)
}

#[test]
fn silent_peer_does_not_block_completion() {
    for_seeds("silent_peer_does_not_block_completion", &[91, 92], |seed| {
        let r = run(seed);
        assert!(!r.asked.is_empty(), "the silent peer was never asked: the scenario tests nothing");
        // 8 MiB at 600 KB/s is 14 s.
        assert!(r.took < Duration::from_secs(25), "too slow: {:?}", r.took);
    });
}

/// The blocks first asked of the silent peer must be given to the honest peer once
/// `request_timeout` passes, not only in endgame at the very end.
#[test]
fn timed_out_blocks_go_to_another_peer() {
    for_seeds("timed_out_blocks_go_to_another_peer", &[91, 92, 93], |seed| {
        let r = run(seed);
        let first_ask = r.asked.first().expect("the silent peer was never asked").0;
        let stuck: BTreeSet<PieceIndex> =
            r.asked.iter().filter(|(t, _)| *t == first_ask).map(|(_, b)| b.piece).collect();
        let last_stuck = stuck
            .iter()
            .map(|p| r.verified.iter().find(|(q, _)| q == p).expect("every piece verified").1)
            .max()
            .unwrap();
        println!(
            "  the {} pieces first asked of the silent peer were all verified by {:.2}s",
            stuck.len(),
            secs(since_start(last_stuck))
        );
        assert!(r.took > Duration::from_secs(10), "finished too fast for endgame to be ruled out");
        assert!(
            since_start(last_stuck) < since_start(first_ask) + TIMEOUT + Duration::from_secs(3),
            "blocks stuck at the silent peer were not re-requested elsewhere after the timeout"
        );
    });
}
