//! A peer that claims every piece but holds only half of them, and ignores requests for the
//! rest, must not keep the download from completing.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use sluice_sim::{Behaviour, EngineSpec, NetProfile, WirePeer, bitfield_without};

#[test]
fn lying_bitfield_peer_is_harmless() {
    for_seeds("lying_bitfield_peer_is_harmless", &[121, 122], |seed| {
        let content = content(4 * MIB, 64 * KIB, seed);
        let pieces = content.lengths.num_pieces();
        let mut sim = sim(seed);
        let leecher = sim.add_engine(
            &content,
            EngineSpec::leecher(NetProfile::new(10, None)).config(|c| c.request_timeout = Duration::from_secs(5)),
        );
        let holds = bitfield_without(pieces, (0..pieces).filter(|p| p % 2 == 1));
        let liar = sim.add_script(
            NetProfile::new(2, Some(4_000_000)),
            Box::new(WirePeer::new(Rc::clone(&content), Behaviour::LyingBitfield(holds), 0x1b)),
        );
        let honest = sim.add_engine(&content, EngineSpec::seeder(NetProfile::new(30, Some(1_000_000))));
        sim.introduce(leecher, liar);
        sim.introduce(leecher, honest);
        ok(sim.run_until_complete(&[leecher]));
        assert_complete(&sim, leecher);
        let took = sim.metrics(leecher).completion_time().unwrap();
        let from_liar = sim.script_as::<WirePeer>(liar).unwrap().requests.len();
        println!("  completed in {:.2}s; the liar was asked for {from_liar} blocks", secs(took));
        assert!(from_liar > 0, "the liar was never asked: the scenario tests nothing");
        // The honest peer alone needs 4.2 s.
        assert!(took < Duration::from_secs(15), "too slow: {took:?}");
    });
}
