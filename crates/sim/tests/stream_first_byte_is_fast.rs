//! A reader opened on a connected swarm gets the piece under its playhead about as fast as
//! the swarm can deliver it: two round trips (interest and unchoke, then the requests) plus
//! the piece spread over every seeder at once; on a busy torrent (everything `Normal`) the
//! requests already queued are cancelled, so only what the seeders had already handed to
//! their sockets comes first.

mod common;

use common::stream::{Player, SEEDER_RATE, Swarm, UPLOAD_BACKLOG, rtt_max};
use common::*;
use sluice_core::{ByteOffset, PieceIndex};
use sluice_engine::Priority;

const BITRATE: u64 = 1_000_000;

fn first_byte(seed: u64, base: Priority) -> (f64, f64) {
    let mut swarm = Swarm::new(seed, 96 * MIB, MIB, base);
    let file = 3 * MIB + 1234..90 * MIB;
    let offset = 20 * MIB + 777;
    let mut player = Player::open(&mut swarm.sim, swarm.leecher, file.clone(), offset, BITRATE);
    swarm.play(&mut [&mut player], std::time::Duration::from_secs(5));
    let piece: PieceIndex = swarm.content.lengths.piece_at(ByteOffset(file.start + offset)).unwrap();
    let verified = swarm.verified_at(piece).expect("the piece under the playhead was never verified");
    let ttfb = secs(verified.saturating_since(player.started_at));
    let ideal = swarm.piece_length() as f64 / swarm.aggregate_rate() as f64;
    println!(
        "  base {base:?}: piece under the playhead verified {ttfb:.3}s after open (one piece at the aggregate rate: {ideal:.3}s); player started after {:.3}s",
        secs(player.time_to_play().unwrap_or_default())
    );
    (ttfb, ideal)
}

#[test]
fn stream_first_byte_is_fast_on_an_idle_torrent() {
    for_seeds("stream_first_byte_is_fast_on_an_idle_torrent", &[301, 302], |seed| {
        let (ttfb, ideal) = first_byte(seed, Priority::Skip);
        let bound = 2.0 * rtt_max() + 2.0 * ideal;
        assert!(ttfb < bound, "first byte after {ttfb:.3}s (bound {bound:.3}s)");
    });
}

#[test]
fn stream_first_byte_is_fast_while_downloading_everything() {
    for_seeds("stream_first_byte_is_fast_while_downloading_everything", &[311, 312], |seed| {
        let (ttfb, ideal) = first_byte(seed, Priority::Normal);
        // Each seeder's socket backlog of background blocks cannot be recalled.
        let backlog = UPLOAD_BACKLOG as f64 / SEEDER_RATE as f64;
        let bound = backlog + 2.0 * rtt_max() + 2.0 * ideal;
        assert!(ttfb < bound, "first byte after {ttfb:.3}s (bound {bound:.3}s)");
    });
}
