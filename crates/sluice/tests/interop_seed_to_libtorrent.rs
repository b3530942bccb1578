//! `sluice seed` serves a torrent that a libtorrent leecher downloads byte-identically.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 13;
const PORT: u16 = 21300;

#[test]
fn libtorrent_leecher_completes_from_sluice_seed() {
    let Some(tmp) = interop_tempdir("interop_seed_to_libtorrent") else {
        return;
    };
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec {
            name: "seeded",
            size: 24 * MIB + 4_321,
            seed: 13,
            files: 4,
            piece_length: 128 * 1024,
            hybrid: false,
        },
    );
    let listen = addr(BLOCK, 1, PORT);
    let mut sluice = SeedCmd::new(&fx, &listen).start(tmp.path());
    let stderr = sluice.stderr();
    let seeding = stderr
        .lines()
        .find_map(|l| l.split("seeding:").nth(1).map(str::trim).map(str::to_owned))
        .unwrap_or_else(|| panic!("no 'seeding: N/M pieces' line in:\n{stderr}"));
    let counts: Vec<&str> = seeding.split_whitespace().next().unwrap_or("").split('/').collect();
    assert!(counts.len() == 2 && counts[0] == counts[1], "sluice should have all pieces: seeding: {seeding}");

    let out = tmp.path().join("out");
    lt_leech(&fx, &out, &[&listen], &peer_addr(BLOCK, 2, PORT), Duration::from_secs(180));
    fx.assert_copied_to(&out);
    sluice.assert_running();
}
