use std::collections::BTreeSet;

use proptest::prelude::*;
use sluice_core::{Bitfield, Lengths, PieceIndex, Timestamp};

use super::*;
use crate::{Config, Priority};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn lengths(total: u64, piece: u64) -> Lengths {
    Lengths::new(total, piece, total.div_ceil(piece)).unwrap()
}

fn at(secs: f64) -> Timestamp {
    Timestamp::from_micros((secs * 1e6) as u64)
}

fn cfg() -> StreamConfig {
    StreamConfig::new(&Config::default())
}

fn tiers(w: &Window, n: u32) -> Vec<Option<Priority>> {
    (0..n).map(|p| w.tier(p)).collect()
}

fn touched_set(ranges: &[Range<u32>]) -> BTreeSet<u32> {
    ranges.iter().flat_map(|r| r.clone()).collect()
}

/// Pieces whose effective tier differs from `base` (the readers' footprint).
fn demanded(s: &Streams) -> Vec<u32> {
    s.lengths.pieces().filter(|&p| s.effective(p).0 != Priority::Normal).map(PieceIndex::get).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The window lies in the file, is ordered, starts under the playhead and reaches as far
    /// as asked (or the file's end).
    #[test]
    fn layout_stays_in_the_file(
        piece_kib in 16u64..4096,
        pieces in 1u64..400,
        file_a in 0.0f64..1.0,
        file_b in 0.0f64..1.0,
        pos_f in 0.0f64..1.1,
        window in 1u64..64 * MIB,
        next in 0u64..8 * MIB,
    ) {
        let piece = piece_kib * KIB;
        let total = piece * pieces - piece / 3;
        let l = lengths(total, piece);
        let (a, b) = ((file_a * total as f64) as u64, (file_b * total as f64) as u64);
        let file = a.min(b)..a.max(b).max(a.min(b) + 1).min(total);
        prop_assume!(file.start < file.end);
        let pos = file.start + ((file.end - file.start) as f64 * pos_f) as u64;
        let w = layout(&l, &file, pos, window, next);
        if pos >= file.end {
            prop_assert!(w.is_empty());
            return Ok(());
        }
        let b = w.b;
        prop_assert!(b.windows(2).all(|x| x[0] <= x[1]), "{b:?}");
        let first = l.piece_at(ByteOffset(file.start)).unwrap().get();
        let last = l.piece_at(ByteOffset(file.end - 1)).unwrap().get() + 1;
        prop_assert!(b[0] >= first && b[4] <= last, "{b:?} outside {first}..{last}");
        prop_assert_eq!(b[0], l.piece_at(ByteOffset(pos)).unwrap().get());
        prop_assert_eq!(b[1], b[0] + 1);
        prop_assert!(b[2] == last || b[2] > b[1]);
        let end_of = |p: u32| if p == 0 { 0 } else { l.piece_start(PieceIndex::new_unchecked(p - 1)).0 + u64::from(l.piece_len(PieceIndex::new_unchecked(p - 1))) };
        prop_assert!(end_of(b[3]) >= (pos + window).min(file.end), "readahead short: {b:?}");
        prop_assert!(end_of(b[4]) >= (pos + 2 * window).min(file.end), "high short: {b:?}");
        prop_assert!(end_of(b[2]) >= (pos + next).min(file.end), "next short: {b:?}");
    }

    /// The window's byte length is clamped and grows with the rate.
    #[test]
    fn window_bytes_are_clamped(rate in 0u64..1_000_000_000, rate2 in 0u64..1_000_000_000, piece_kib in 16u64..32768) {
        let c = cfg();
        let piece = (piece_kib * KIB) as u32;
        let w = window_bytes(&c, rate, piece);
        let lo = (4 * MIB).max(2 * u64::from(piece));
        let hi = (128 * MIB).max(lo);
        prop_assert!(lo <= w && w <= hi);
        if rate <= rate2 {
            prop_assert!(w <= window_bytes(&c, rate2, piece));
        }
    }

    /// `diff` covers every piece whose tier changed, and touches O(pieces moved): at most
    /// five per piece the playhead moved (each boundary moves that far), or both windows on
    /// a jump.
    #[test]
    fn diff_is_complete_and_proportional(
        pos in 0u64..200 * MIB,
        step in 0u64..64 * MIB,
        back: bool,
        window in 4 * MIB..40 * MIB,
        window2 in 4 * MIB..40 * MIB,
        next in prop::sample::select(vec![0, 4 * MIB]),
    ) {
        let l = lengths(256 * MIB, MIB);
        let file = 0..256 * MIB;
        let pos2 = if back { pos.saturating_sub(step) } else { pos + step };
        let old = layout(&l, &file, pos, window, next);
        let new = layout(&l, &file, pos2, window2, next);
        let touched = diff(&old, &new);
        let set = touched_set(&touched);
        let (a, b) = (tiers(&old, 256), tiers(&new, 256));
        for p in 0..256u32 {
            if a[p as usize] != b[p as usize] {
                prop_assert!(set.contains(&p), "{p} changed tier but was not touched");
            }
        }
        let moved = u64::from(old.b[0].abs_diff(new.b[0]));
        // Readahead's end moves by the change, High's by twice that.
        let resized = window.abs_diff(window2).div_ceil(MIB) * 3;
        let total: u64 = touched.iter().map(|r| u64::from(r.end - r.start)).sum();
        let both = u64::from(old.b[4] - old.b[0] + new.b[4] - new.b[0]);
        prop_assert!(total <= 5 * moved + resized + 5 || total <= both, "touched {total} for {moved} pieces moved");
    }
}

#[test]
fn moving_within_a_piece_touches_nothing() {
    let l = lengths(64 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let (id, change) = s.open(0..64 * MIB, 10 * MIB + 5, at(0.0));
    assert!(change.jumped);
    s.set_bitrate(id, 1_000_000, at(0.0));
    for k in 1..100u64 {
        let c = s.seek(id, 10 * MIB + 5 + k * 1000, at(k as f64 * 0.001));
        assert!(c.touched.iter().all(Range::is_empty) && !c.jumped, "{c:?}");
    }
}

#[test]
fn playing_at_the_bitrate_touches_a_few_pieces_per_piece_played() {
    let l = lengths(512 * MIB, 256 * KIB);
    let mut s = Streams::new(l, &Config::default());
    let rate = 1_000_000u64;
    let (id, _) = s.open(0..512 * MIB, 0, at(0.0));
    s.set_bitrate(id, rate, at(0.0));
    let mut touched = 0u64;
    // 100 s of playback in 10 ms reads, past the boost.
    for k in 1..=10_000u64 {
        let t = k as f64 * 0.01;
        let c = s.seek(id, (t * rate as f64) as u64, at(t));
        assert!(!c.jumped);
        touched += c.touched.iter().map(|r| u64::from(r.end - r.start)).sum::<u64>();
    }
    let pieces_played = 100 * rate / (256 * KIB);
    println!("{touched} pieces touched for {pieces_played} played");
    // Five boundaries move per piece played, plus the boost ending.
    assert!(touched <= 5 * pieces_played + 40, "{touched} touched for {pieces_played} pieces played");
}

#[test]
fn effective_is_the_highest_demand_and_the_earliest_deadline() {
    let l = lengths(64 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    s.set_base(0..64, Priority::Skip);
    s.set_base(40..41, Priority::Now);
    let (a, _) = s.open(0..64 * MIB, 10 * MIB, at(0.0));
    let (b, _) = s.open(0..64 * MIB, 12 * MIB, at(1.0));
    let p = |i| PieceIndex::new_unchecked(i);
    assert_eq!(s.effective(p(10)).0, Priority::Now);
    assert_eq!(s.effective(p(12)).0, Priority::Now, "b's Now beats a's Next/Readahead");
    assert_eq!(s.effective(p(40)).0, Priority::Now, "the base wins when higher");
    assert_eq!(s.effective(p(5)).0, Priority::Skip);
    // a's timeline puts piece 12 at 2 MiB / 1 MB/s after 0 s; b's at 1 s: the earlier wins.
    let (_, d) = s.effective(p(12));
    assert!(d.unwrap() <= at(1.0), "{d:?}");
    assert!(s.window(a).unwrap().readahead.contains(&20));
    s.close(a);
    s.close(b);
    let left: Vec<u32> =
        l.pieces().filter(|&p| s.effective(p) != (Priority::Skip, None)).map(PieceIndex::get).collect();
    assert_eq!(left, [40], "only the base is left");
}

#[test]
fn two_readers_at_nearly_the_same_offset_share_one_window() {
    let l = lengths(512 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let (a, _) = s.open(0..512 * MIB, 100 * MIB, at(0.0));
    s.set_bitrate(a, 1_000_000, at(0.0));
    let alone = demanded(&s).len();
    let (b, _) = s.open(0..512 * MIB, 100 * MIB + 1_500_000, at(0.0));
    s.set_bitrate(b, 1_000_000, at(0.0));
    let shared = demanded(&s).len();
    assert!(shared <= alone + 3, "{alone} pieces for one reader, {shared} for two");
}

#[test]
fn closing_releases_the_window_and_protection_at_once() {
    let l = lengths(64 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let (id, _) = s.open(8 * MIB..60 * MIB, 0, at(0.0));
    let c = s.protect(id, &[0..100, 50 * MIB..52 * MIB - 1]);
    assert_eq!(touched_set(&c.touched), BTreeSet::from([8, 58, 59]));
    assert_eq!(s.effective(PieceIndex::new_unchecked(58)).0, Priority::High);
    let c = s.close(id);
    let set = touched_set(&c.touched);
    assert!(set.contains(&58) && set.contains(&8) && set.contains(&20));
    assert!(demanded(&s).is_empty());
    assert!(!s.any_awake());
}

#[test]
fn an_idle_reader_goes_dormant_while_another_reads_and_wakes_on_its_next_read() {
    let l = lengths(256 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let mut have = Bitfield::new(256);
    for i in 0..256 {
        have.set(PieceIndex::new_unchecked(i));
    }
    let (a, _) = s.open(0..128 * MIB, 0, at(0.0));
    let (b, _) = s.open(128 * MIB..256 * MIB, 0, at(0.0));
    s.refresh_idle_at(&have);
    assert_eq!(s.idle_at(), None, "nobody read after anybody");
    s.seek(b, 1000, at(1.0));
    s.refresh_idle_at(&have);
    assert_eq!(s.idle_at(), Some(at(60.0)));
    s.tick(at(59.9), &have);
    assert!(!s.window(a).unwrap().dormant);
    let c = s.tick(at(60.0), &have);
    s.refresh_idle_at(&have);
    assert!(s.window(a).unwrap().dormant);
    assert!(touched_set(&c.touched).contains(&0));
    assert!(demanded(&s).iter().all(|&p| p >= 128), "a's window is released");
    assert_eq!(s.idle_at(), None, "b alone does not sleep");
    let c = s.seek(a, 5 * MIB, at(70.0));
    assert!(c.jumped && !s.window(a).unwrap().dormant);
    assert_eq!(s.window(a).unwrap().now, 5..6);
}

#[test]
fn a_reader_waiting_for_its_data_never_sleeps_and_keeps_others_awake_only_while_busy() {
    let l = lengths(256 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let have = Bitfield::new(256);
    let (a, _) = s.open(0..128 * MIB, 0, at(0.0));
    let (_b, _) = s.open(128 * MIB..256 * MIB, 0, at(1.0));
    s.refresh_idle_at(&have);
    assert_eq!(s.idle_at(), None, "both wait for the piece under their playhead");
    s.tick(at(500.0), &have);
    assert!(!s.window(a).unwrap().dormant);
}

#[test]
fn a_lone_paused_reader_keeps_its_window() {
    let l = lengths(64 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let mut have = Bitfield::new(64);
    have.set(PieceIndex::new_unchecked(0));
    let (a, _) = s.open(0..64 * MIB, 0, at(0.0));
    s.refresh_idle_at(&have);
    s.tick(at(1000.0), &have);
    assert!(!s.window(a).unwrap().dormant);
}

#[test]
fn the_measured_rate_grows_the_window() {
    let l = lengths(1024 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let (id, _) = s.open(0..1024 * MIB, 0, at(0.0));
    s.set_bitrate(id, 500_000, at(0.0));
    let before = s.window(id).unwrap().window_bytes;
    assert_eq!(before, 15_000_000);
    // The playhead advances at 2 MB/s for 20 s.
    for k in 1..=200u64 {
        s.seek(id, k * 200_000, at(k as f64 * 0.1));
    }
    let after = s.window(id).unwrap().window_bytes;
    assert_eq!(after, 60_000_000, "30 s at the measured 2 MB/s");
}

#[test]
fn a_seek_boosts_next_briefly() {
    let l = lengths(512 * MIB, 256 * KIB);
    let mut s = Streams::new(l, &Config::default());
    let (id, _) = s.open(0..512 * MIB, 0, at(0.0));
    s.set_bitrate(id, 1_000_000, at(0.0));
    let boosted = s.window(id).unwrap().next.len();
    assert!(boosted >= 15, "4 s of media is 16 pieces: {boosted}");
    s.tick(at(6.0), &Bitfield::new(2048));
    assert_eq!(s.window(id).unwrap().next.len(), 1);
    s.seek(id, 300 * MIB, at(7.0));
    assert_eq!(s.window(id).unwrap().next.len(), boosted);
}

#[test]
fn a_reader_opening_on_a_verified_piece_is_held_to_it_briefly() {
    let l = lengths(64 * MIB, MIB);
    let mut s = Streams::new(l, &Config::default());
    let mut have = Bitfield::new(64);
    have.set(PieceIndex::new_unchecked(0));
    // On a verified piece: nothing beyond it is demanded while held.
    let (probe, _) = s.open(0..64 * MIB, 100, at(0.0));
    let c = s.hold_if_verified(probe, &have, at(0.0));
    assert_eq!(touched_set(&c.touched).into_iter().min(), Some(1), "the window beyond piece 0 is released");
    assert_eq!(demanded(&s), vec![0]);
    assert_eq!(s.idle_at(), None, "refreshed below");
    s.refresh_idle_at(&have);
    assert_eq!(s.idle_at(), Some(at(0.0) + HOLD_TIME));
    // The hold ends on time, and the whole window comes back.
    s.tick(at(0.0) + HOLD_TIME, &have);
    let w = s.window(probe).unwrap();
    assert!(!w.next.is_empty() && !w.readahead.is_empty() && !w.high.is_empty(), "{w:?}");

    // A read into the next piece ends the hold at once.
    let (player, _) = s.open(0..64 * MIB, 0, at(1.0));
    s.close(probe);
    s.hold_if_verified(player, &have, at(1.0));
    assert!(s.window(player).unwrap().readahead.is_empty());
    s.seek(player, MIB + 10, at(1.05));
    assert!(!s.window(player).unwrap().readahead.is_empty());

    // On a missing piece the window is whole at once: the player waits on it.
    let (seeker, _) = s.open(0..64 * MIB, 40 * MIB, at(2.0));
    assert!(s.hold_if_verified(seeker, &have, at(2.0)).touched.is_empty());
    assert!(!s.window(seeker).unwrap().readahead.is_empty());
}
