//! One of three libtorrent seeders serves corrupted pieces; Sluice rejects them, fetches those
//! pieces again from the honest seeders, and its result is byte-identical.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 14;
const PORT: u16 = 21400;

#[test]
fn corrupted_pieces_are_refetched_from_honest_seeders() {
    let Some(tmp) = interop_tempdir("interop_corrupt_seeder") else {
        return;
    };
    let piece_length = 128 * 1024;
    let size = 16 * MIB + 999;
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec { name: "corrupt", size, seed: 14, files: 4, piece_length, hybrid: false },
    );
    let pieces = u32::try_from(size.div_ceil(piece_length)).expect("piece count");
    // Every other piece, plus the (short) last one, is bad at the liar.
    let mut bad: Vec<u32> = (0..pieces).step_by(2).collect();
    bad.push(pieces - 1);
    bad.dedup();

    let liar = LtSeeder::start(
        &fx,
        &peer_addr(BLOCK, 2, PORT),
        &SeedOpts { corrupt_pieces: &bad, ..SeedOpts::default() },
        tmp.path(),
    );
    let honest = start_seeders(&fx, BLOCK, 3..=4, PORT, &SeedOpts::default(), tmp.path());

    let out = out_dir(tmp.path());
    // The liar first, so it is not merely ignored.
    let mut sluice = DownloadCmd::new(&fx, &out, &addr(BLOCK, 1, PORT))
        .peers(std::iter::once(&liar).chain(&honest))
        .spawn("sluice-download", tmp.path());
    expect_success(&mut sluice, Duration::from_secs(120));
    fx.assert_copied_to(&out);
    // Only the liar is banned: honest seeders that shared failed pieces with it are cleared
    // when those pieces verify (smart ban), never convicted for sharing.
    let log = sluice.stderr();
    let banned: Vec<&str> = log.lines().filter(|l| l.contains("peer banned")).collect();
    assert!(banned.iter().any(|l| l.contains(&liar.endpoint)), "the liar was not banned:\n{}", tail(&log, 40));
    for h in &honest {
        assert!(
            !banned.iter().any(|l| l.contains(&h.endpoint)),
            "honest seeder {} banned:\n{}",
            h.endpoint,
            banned.join("\n")
        );
    }
    eprintln!(
        "liar uploaded {} bytes, honest {:?}",
        liar.uploaded(),
        honest.iter().map(LtSeeder::uploaded).collect::<Vec<_>>()
    );
}
