//! `sluice seed` serves a torrent that a libtorrent leecher downloads byte-identically.

mod common;

use common::*;
use std::ffi::OsString;
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
    let args: Vec<OsString> = vec![
        "seed".into(),
        fx.torrent.clone().into(),
        "--data".into(),
        fx.data.clone().into(),
        "--listen".into(),
        listen.clone().into(),
        "--loopback-only".into(),
    ];
    let mut sluice = spawn_sluice("sluice-seed", &args, tmp.path());
    let up = wait_until(Duration::from_secs(120), || {
        sluice.stderr().contains("listening on") || sluice.try_status().is_some()
    });
    let stderr = sluice.stderr();
    assert!(up && sluice.try_status().is_none(), "sluice seed did not start listening; stderr:\n{}", tail(&stderr, 40));
    let seeding = stderr
        .lines()
        .find_map(|l| l.split("seeding:").nth(1).map(str::trim).map(str::to_owned))
        .unwrap_or_else(|| panic!("no 'seeding: N/M pieces' line in:\n{stderr}"));
    let counts: Vec<&str> = seeding.split_whitespace().next().unwrap_or("").split('/').collect();
    assert!(counts.len() == 2 && counts[0] == counts[1], "sluice should have all pieces: seeding: {seeding}");

    let out = tmp.path().join("out");
    lt_leech(&fx, &out, &[&listen], &peer_addr(BLOCK, 2, PORT), Duration::from_secs(180));
    fx.assert_copied_to(&out);
    assert!(sluice.try_status().is_none(), "sluice seed exited while serving; stderr:\n{}", tail(&sluice.stderr(), 40));
    assert!(!sluice.stderr().contains("panicked"));
}
