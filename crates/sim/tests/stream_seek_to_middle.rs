//! A player seeks from the start of a file to its middle: the piece under the new playhead
//! arrives about as fast as after an open on a busy torrent, and the old window's requests
//! are cancelled (CANCEL sent at once, its pieces no longer fetched).

mod common;

use std::time::Duration;

use common::stream::{Player, SEEDER_RATE, Swarm, UPLOAD_BACKLOG, rtt_max};
use common::*;
use sluice_core::{ByteOffset, PieceIndex};
use sluice_engine::Priority;

#[test]
fn stream_seek_to_middle() {
    for_seeds("stream_seek_to_middle", &[321, 322], |seed| {
        let mut swarm = Swarm::new(seed, 192 * MIB, MIB, Priority::Skip);
        let file = 2 * MIB..190 * MIB;
        let len = file.end - file.start;
        let mut player = Player::open(&mut swarm.sim, swarm.leecher, file.clone(), 0, 1_500_000);
        swarm.play(&mut [&mut player], Duration::from_secs(5));
        assert!(player.playing_since.is_some(), "not playing before the seek");
        let old = swarm.sim.torrent(swarm.leecher).reader_window(player.id).unwrap();
        let cancels_before = swarm.sim.messages_from(swarm.leecher).cancel;
        let seek_at = swarm.sim.now();
        player.seek(&mut swarm.sim, swarm.leecher, len / 2);
        let cancelled = swarm.sim.messages_from(swarm.leecher).cancel - cancels_before;
        let new = swarm.sim.torrent(swarm.leecher).reader_window(player.id).unwrap();
        swarm.play(&mut [&mut player], Duration::from_secs(6));

        let lengths = swarm.content.lengths;
        let piece: PieceIndex = lengths.piece_at(ByteOffset(file.start + len / 2)).unwrap();
        let verified = swarm.verified_at(piece).expect("the piece under the new playhead was never verified");
        let ttfb = secs(verified.saturating_since(seek_at));
        let ideal = swarm.piece_length() as f64 / swarm.aggregate_rate() as f64;
        let old_after: Vec<u32> = swarm
            .sim
            .metrics(swarm.leecher)
            .verified
            .iter()
            .filter(|(p, t)| {
                let p = p.get();
                (old.now.start..old.high.end).contains(&p)
                    && !(new.now.start..new.high.end).contains(&p)
                    && *t > seek_at + Duration::from_secs(2)
            })
            .map(|(p, _)| p.get())
            .collect();
        println!(
            "  seek to 50%: piece under the playhead after {ttfb:.3}s (one piece at the aggregate rate {ideal:.3}s), playing again after {:.3}s; {cancelled} CANCELs at the seek; old window pieces verified later: {old_after:?}",
            secs(player.time_to_play().unwrap_or_default())
        );
        assert!(cancelled > 0, "no request of the old window was cancelled");
        let backlog = UPLOAD_BACKLOG as f64 / SEEDER_RATE as f64;
        let bound = backlog + 2.0 * rtt_max() + 2.0 * ideal;
        assert!(ttfb < bound, "first byte after the seek in {ttfb:.3}s (bound {bound:.3}s)");
        // Only pieces three quarters done at the seek may still be finished.
        assert!(old_after.len() <= 3, "the old window is still fetched: {old_after:?}");
        assert!(player.stalls.is_empty(), "stalls after the seek: {:?}", player.stalls);
    });
}
