//! A peer that unchokes and never answers holds some blocks of the piece under the playhead;
//! they are asked of fast peers as soon as they are late (not after the 20 s request
//! timeout), and the silent peer's copies are cancelled when they arrive elsewhere.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::stream::{Player, Swarm};
use common::*;
use sluice_core::{ByteOffset, PieceIndex};
use sluice_engine::Priority;
use sluice_sim::{Behaviour, NetProfile, WirePeer};

#[test]
fn stream_late_block_is_raced() {
    for_seeds("stream_late_block_is_raced", &[351, 352], |seed| {
        let mut swarm = Swarm::new(seed, 64 * MIB, MIB, Priority::Skip);
        let silent = swarm.sim.add_script(
            NetProfile::new(5, None),
            Box::new(WirePeer::new(Rc::clone(&swarm.content), Behaviour::Silent, 0x51)),
        );
        swarm.sim.introduce(swarm.leecher, silent);
        ok(swarm.sim.run_for(Duration::from_secs(1)));
        let offset = 30 * MIB + 100;
        let piece: PieceIndex = swarm.content.lengths.piece_at(ByteOffset(offset)).unwrap();
        let mut player = Player::open(&mut swarm.sim, swarm.leecher, 0..64 * MIB, offset, 1_000_000);
        let opened = swarm.sim.now();
        swarm.play(&mut [&mut player], Duration::from_secs(5));

        let held: Vec<_> = swarm
            .sim
            .script_as::<WirePeer>(silent)
            .unwrap()
            .requests
            .iter()
            .filter(|(_, b)| b.piece == piece)
            .map(|(_, b)| b.offset)
            .collect();
        let t = swarm.verified_at(piece).expect("the piece under the playhead never came");
        let took = t.saturating_since(opened);
        let cancels = swarm.sim.messages(swarm.leecher, silent).cancel;
        println!(
            "  the silent peer held {} blocks of the Now piece; it verified after {:.3}s; {cancels} CANCELs to the silent peer",
            held.len(),
            secs(took)
        );
        assert!(!held.is_empty(), "the silent peer got no block of the Now piece: the scenario tests nothing");
        assert!(cancels > 0, "no raced block was cancelled at the silent peer");
        assert!(took < Duration::from_millis(1500), "the held blocks were not raced: {took:?}");
    });
}
