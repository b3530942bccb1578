//! A player opening a file reads its head and then its tail (an MP4's `moov`, a Matroska
//! file's Cues), so the server reads both at once: each piece under a playhead is asked of
//! every seeder at once, in shares, however short the request queues are kept otherwise.
//! Capped seeders (libtorrent) send in bursts; a block asked for after a burst waits for the
//! next one, so every urgent block must be queued before the first.

mod common;

use std::time::Duration;

use common::stream::{Player, Swarm, rtt_max};
use common::*;
use sluice_core::{ByteOffset, PieceIndex};
use sluice_engine::Priority;

const BITRATE: u64 = 1_000_000;

#[test]
fn stream_head_and_tail_pieces_are_requested_at_once_from_every_seeder() {
    for_seeds("stream_head_and_tail_pieces_are_requested_at_once_from_every_seeder", &[321, 322], |seed| {
        let total = 96 * MIB;
        let mut swarm = Swarm::new(seed, total, 2 * MIB, Priority::Skip);
        let leecher = swarm.leecher;
        let mut head = Player::open(&mut swarm.sim, leecher, 0..total, 0, BITRATE);
        let tail_at = total - 512 * 1024;
        swarm.sim.command(leecher, |t, now| t.open_reader(0..total, tail_at, now));

        // Every seeder has unchoked us (interest and unchoke take a round trip); the first
        // blocks are only arriving from the nearest ones.
        ok(swarm.sim.run_for(Duration::from_secs_f64(rtt_max() + 0.01)));
        let lengths = swarm.content.lengths;
        let urgent = [0, tail_at].map(|b| lengths.piece_at(ByteOffset(b)).unwrap());
        let blocks: u64 = urgent.iter().map(|&p| u64::from(lengths.blocks_in_piece(p))).sum();
        let asked: Vec<u64> = swarm.seeders.iter().map(|&s| swarm.sim.messages(leecher, s).request).collect();
        println!("  requests per seeder right after opening: {asked:?} ({blocks} blocks under the playheads)");
        assert!(asked.iter().sum::<u64>() >= blocks, "not every urgent block was requested at once: {asked:?}");
        let fair = blocks.div_ceil(asked.len() as u64);
        // The nearest seeders deliver a few blocks before the farthest unchokes us, and take
        // a few more of what is left.
        assert!(
            asked.iter().all(|&n| 2 * n >= fair && n <= fair + 16),
            "urgent blocks not spread evenly (about {fair} each): {asked:?}"
        );

        swarm.play(&mut [&mut head], Duration::from_secs(3));
        let done: Vec<f64> = urgent
            .iter()
            .map(|&p: &PieceIndex| {
                secs(swarm.verified_at(p).expect("urgent piece verified").saturating_since(head.started_at))
            })
            .collect();
        let ideal = 2.0 * swarm.piece_length() as f64 / swarm.aggregate_rate() as f64;
        let bound = 2.0 * rtt_max() + 1.5 * ideal;
        println!("  head and tail verified after {done:.3?} s (both pieces at the aggregate rate: {ideal:.3} s)");
        assert!(done.iter().all(|&t| t < bound), "head/tail verified after {done:?} s (bound {bound:.3} s)");
    });
}
