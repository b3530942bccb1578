//! A player at 2.5 MB/s (a high-bitrate film) with the default 30 s window plays 40 s
//! without a single stall once started, on a stream-only torrent and on one downloading
//! everything. Its reads (one every 20 ms) cost the picker in proportion to the pieces played,
//! not a pass over the window per read.

mod common;

use std::time::Duration;

use common::stream::{Player, Swarm};
use common::*;
use sluice_engine::Priority;

fn run(seed: u64, base: Priority) {
    let mut swarm = Swarm::new(seed, 128 * MIB, 2 * MIB, base);
    let bitrate = 2_500_000;
    let mut player = Player::open(&mut swarm.sim, swarm.leecher, MIB..127 * MIB, 0, bitrate);
    let before = swarm.sim.torrent(swarm.leecher).stats().pieces_reprioritised;
    swarm.play(&mut [&mut player], Duration::from_secs(42));
    let reprioritised = swarm.sim.torrent(swarm.leecher).stats().pieces_reprioritised - before;
    let pieces_played = (player.read / swarm.piece_length()).max(1);
    let start = player.time_to_play().expect("never started");
    let played = secs(swarm.sim.now().saturating_since(player.playing_since.unwrap()));
    println!(
        "  base {base:?}: playing after {:.3}s, {:.1} MB played in {played:.1}s, stalls {:?}",
        secs(start),
        player.played / 1e6,
        player.stalls
    );
    let reads = 42_000 / 20;
    println!("  {reprioritised} pieces reprioritised for {reads} reads over {pieces_played} pieces");
    assert!(
        reprioritised <= 10 * pieces_played + 200,
        "{reprioritised} pieces reprioritised for {pieces_played} pieces read"
    );
    assert!(start < Duration::from_secs(2), "slow start: {start:?}");
    assert!(player.stalls.is_empty(), "stalls: {:?}", player.stalls);
    assert!(player.played > 100e6, "played only {}", player.played);
}

#[test]
fn stream_playback_has_no_stalls() {
    for_seeds("stream_playback_has_no_stalls", &[361], |seed| run(seed, Priority::Skip));
}

#[test]
fn stream_playback_has_no_stalls_while_downloading_everything() {
    for_seeds("stream_playback_has_no_stalls_while_downloading_everything", &[363], |seed| run(seed, Priority::Normal));
}
