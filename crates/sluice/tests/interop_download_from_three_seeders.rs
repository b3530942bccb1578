//! Sluice downloads a multi-file torrent (≥ 64 MiB) from three libtorrent seeders and the result is
//! byte-identical.

mod common;

use common::*;
use std::ffi::OsString;
use std::time::Duration;

const BLOCK: u8 = 11;
const PORT: u16 = 21100;

#[test]
fn downloads_multi_file_torrent_from_three_libtorrent_seeders() {
    if skip_without_libtorrent("interop_download_from_three_seeders") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec {
            name: "three",
            size: 64 * MIB + 12_345,
            seed: 11,
            files: 5,
            piece_length: 256 * 1024,
            hybrid: false,
        },
    );
    let seeders: Vec<LtSeeder> = (2..=4)
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
    for s in &seeders {
        args.push("--peer".into());
        args.push(s.endpoint.clone().into());
    }
    let mut sluice = spawn_sluice("sluice-download", &args, tmp.path());
    expect_success(&mut sluice, Duration::from_secs(300));
    assert_same_tree(&fx.content_dir(), &out.join(&fx.name));

    // With three equally fast seeders, more than one of them should have served data.
    let contributed = || seeders.iter().filter(|s| s.uploaded() > 0).count();
    wait_until(Duration::from_secs(3), || contributed() >= 2);
    let uploads: Vec<u64> = seeders.iter().map(LtSeeder::uploaded).collect();
    assert!(contributed() >= 2, "only one seeder served data: {uploads:?}");
}
