//! Sluice downloads a multi-file torrent (≥ 64 MiB) from three libtorrent seeders and the result is
//! byte-identical.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 11;
const PORT: u16 = 21100;

#[test]
fn downloads_multi_file_torrent_from_three_libtorrent_seeders() {
    let Some(tmp) = interop_tempdir("interop_download_from_three_seeders") else {
        return;
    };
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
    let seeders = start_seeders(&fx, BLOCK, 2..=4, PORT, &SeedOpts::default(), tmp.path());

    let out = out_dir(tmp.path());
    let mut sluice =
        DownloadCmd::new(&fx, &out, &addr(BLOCK, 1, PORT)).peers(&seeders).spawn("sluice-download", tmp.path());
    expect_success(&mut sluice, Duration::from_secs(300));
    fx.assert_copied_to(&out);

    // With three equally fast seeders, more than one of them should have served data.
    let contributed = || seeders.iter().filter(|s| s.uploaded() > 0).count();
    wait_until(Duration::from_secs(3), || contributed() >= 2);
    let uploads: Vec<u64> = seeders.iter().map(LtSeeder::uploaded).collect();
    assert!(contributed() >= 2, "only one seeder served data: {uploads:?}");
}
