//! Sluice downloads a hybrid v1+v2 torrent whose layout has pad files: the result is byte-identical
//! and no pad file is written to disk.

mod common;

use common::*;
use std::ffi::OsString;
use std::time::Duration;

const BLOCK: u8 = 12;
const PORT: u16 = 21200;

#[test]
fn downloads_hybrid_torrent_with_pad_files() {
    if skip_without_libtorrent("interop_hybrid_torrent") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec {
            name: "hybrid",
            size: 12 * MIB + 777,
            seed: 12,
            files: 5,
            piece_length: 64 * 1024,
            hybrid: true,
        },
    );
    assert!(fx.summary.contains("\"pad\": true"), "fixture should have pad files: {}", fx.summary);
    let seeders: Vec<LtSeeder> = (2..=3)
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
    expect_success(&mut sluice, Duration::from_secs(180));
    // Exact file set: pad files (".pad/N") must not appear.
    assert_same_tree(&fx.content_dir(), &out.join(&fx.name));
}
