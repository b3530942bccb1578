//! One of three libtorrent seeders serves corrupted pieces; Sluice rejects them, fetches those
//! pieces again from the honest seeders, and its result is byte-identical.

mod common;

use common::*;
use std::ffi::OsString;
use std::time::Duration;

const BLOCK: u8 = 14;
const PORT: u16 = 21400;

#[test]
fn corrupted_pieces_are_refetched_from_honest_seeders() {
    if skip_without_libtorrent("interop_corrupt_seeder") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
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
        &addr(BLOCK, 2, PORT + 2),
        &SeedOpts { corrupt_pieces: &bad, ..SeedOpts::default() },
        tmp.path(),
    );
    let honest: Vec<LtSeeder> = (3..=4)
        .map(|h| {
            let ep = addr(BLOCK, h, PORT + u16::from(h));
            LtSeeder::start(&fx, &ep, &SeedOpts::default(), tmp.path())
        })
        .collect();

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir out");
    let mut args: Vec<OsString> = vec![
        "download".into(),
        fx.torrent.clone().into(),
        "--out".into(),
        out.clone().into(),
        "--listen".into(),
        addr(BLOCK, 1, PORT).into(),
        "--loopback-only".into(),
    ];
    // The liar first, so it is not merely ignored.
    for s in std::iter::once(&liar).chain(&honest) {
        args.push("--peer".into());
        args.push(s.endpoint.clone().into());
    }
    let mut sluice = spawn_sluice("sluice-download", &args, tmp.path());
    expect_success(&mut sluice, Duration::from_secs(120));
    assert_same_tree(&fx.content_dir(), &out.join(&fx.name));
    // Only the liar is banned: honest seeders that shared failed pieces with it are cleared
    // when those pieces verify (smart ban), never convicted for sharing.
    let log = sluice.stderr();
    let banned: Vec<&str> = log.lines().filter(|l| l.contains("peer banned")).collect();
    assert!(banned.iter().any(|l| l.contains(&liar.endpoint)), "the liar was not banned:\n{}", tail(&log, 40));
    for h in &honest {
        assert!(!banned.iter().any(|l| l.contains(&h.endpoint)), "honest seeder {} banned:\n{}", h.endpoint, banned.join("\n"));
    }
    eprintln!(
        "liar uploaded {} bytes, honest {:?}",
        liar.uploaded(),
        honest.iter().map(LtSeeder::uploaded).collect::<Vec<_>>()
    );
}
