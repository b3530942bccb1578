//! Sluice downloads a hybrid v1+v2 torrent whose layout has pad files: the result is byte-identical
//! and no pad file is written to disk.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 12;
const PORT: u16 = 21200;

#[test]
fn downloads_hybrid_torrent_with_pad_files() {
    let Some(tmp) = interop_tempdir("interop_hybrid_torrent") else {
        return;
    };
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
    let seeders = start_seeders(&fx, BLOCK, 2..=3, PORT, &SeedOpts::default(), tmp.path());

    let out = out_dir(tmp.path());
    let mut sluice =
        DownloadCmd::new(&fx, &out, &addr(BLOCK, 1, PORT)).peers(&seeders).spawn("sluice-download", tmp.path());
    expect_success(&mut sluice, Duration::from_secs(180));
    // Exact file set: pad files (".pad/N") must not appear.
    fx.assert_copied_to(&out);
}
