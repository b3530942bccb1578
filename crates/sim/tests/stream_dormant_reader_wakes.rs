//! A player that stops reading for over a minute while another plays goes dormant (its
//! window is released) and wakes with a fresh window on its next read.

mod common;

use std::time::Duration;

use common::stream::{Player, Swarm};
use common::*;
use sluice_core::{ByteOffset, PieceIndex};
use sluice_engine::Priority;

#[test]
fn stream_dormant_reader_wakes() {
    for_seeds("stream_dormant_reader_wakes", &[341, 342], |seed| {
        let mut swarm = Swarm::new(seed, 128 * MIB, MIB, Priority::Skip);
        let node = swarm.leecher;
        let mut a = Player::open(&mut swarm.sim, node, 0..64 * MIB, 0, 500_000);
        let mut b = Player::open(&mut swarm.sim, node, 64 * MIB..128 * MIB, 0, 200_000);
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(5));
        a.paused = true;
        let paused_at = swarm.sim.now();
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(55));
        let w = swarm.sim.torrent(node).reader_window(a.id).unwrap();
        assert!(!w.dormant && !w.readahead.is_empty(), "asleep too early: {w:?}");
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(7));
        let w = swarm.sim.torrent(node).reader_window(a.id).unwrap();
        println!("  a after {:.1}s without a read: {w:?}", secs(swarm.sim.now().saturating_since(paused_at)));
        assert!(w.dormant && w.now.is_empty() && w.readahead.is_empty(), "a did not go dormant: {w:?}");
        assert!(!swarm.sim.torrent(node).reader_window(b.id).unwrap().dormant, "b went dormant");

        // A read far ahead wakes it: the piece there comes quickly.
        let target = 40 * MIB;
        a.paused = false;
        a.seek(&mut swarm.sim, node, target);
        let woke = swarm.sim.now();
        let w = swarm.sim.torrent(node).reader_window(a.id).unwrap();
        assert!(!w.dormant && !w.readahead.is_empty(), "a did not wake: {w:?}");
        swarm.play(&mut [&mut a, &mut b], Duration::from_secs(5));
        let piece: PieceIndex = swarm.content.lengths.piece_at(ByteOffset(target)).unwrap();
        let t = swarm.verified_at(piece).expect("the piece under the woken playhead never came");
        println!("  woken: piece under the playhead after {:.3}s", secs(t.saturating_since(woke)));
        assert!(t.saturating_since(woke) < Duration::from_millis(1500));
        assert!(a.playing_since.is_some() && b.stalls.is_empty());
    });
}
