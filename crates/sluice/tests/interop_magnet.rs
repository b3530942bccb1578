//! Magnet links against real libtorrent: Sluice fetches the metadata of a magnet that names
//! only a libtorrent seeder (`x.pe`) and downloads byte-identically, from the CLI and through
//! `POST /api/v1/torrents`, also when the seeder requires encryption (MSE/PE, RC4 only); and a
//! libtorrent leecher given a magnet naming `sluice seed` gets the metadata from Sluice and
//! downloads.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 41;
const PORT: u16 = 25100;

/// Small pieces, so the info dictionary spans two metadata pieces.
fn fixture(dir: &std::path::Path, name: &str, seed: u64) -> Fixture {
    make_torrent(
        dir,
        &TorrentSpec { name, size: 16 * MIB + 777, seed, files: 3, piece_length: 16 * 1024, hybrid: false },
    )
}

#[test]
fn magnet_with_only_a_peer_resolves_from_libtorrent_and_downloads() {
    let Some(tmp) = interop_tempdir("interop_magnet") else {
        return;
    };
    let fx = fixture(tmp.path(), "magnetic", 41);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 2, PORT), &SeedOpts::default(), tmp.path());
    let out = out_dir(tmp.path());
    let magnet = magnet_for(&fx, &[&seeder.endpoint]);
    let mut sluice = DownloadCmd::of(magnet.into(), &out, &addr(BLOCK, 1, PORT)).spawn("sluice-magnet", tmp.path());
    let stderr = expect_success(&mut sluice, Duration::from_secs(180));
    assert!(stderr.contains("metadata: magnetic"), "{}", tail(&stderr, 20));
    fx.assert_copied_to(&out);
}

#[test]
fn magnet_resolves_from_a_libtorrent_seeder_that_requires_encryption() {
    let Some(tmp) = interop_tempdir("interop_magnet_encrypted") else {
        return;
    };
    let fx = fixture(tmp.path(), "secret", 44);
    let opts = SeedOpts { encryption: Some("require"), ..SeedOpts::default() };
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 12, PORT), &opts, tmp.path());
    let out = out_dir(tmp.path());
    let magnet = magnet_for(&fx, &[&seeder.endpoint]);
    let mut sluice =
        DownloadCmd::of(magnet.into(), &out, &addr(BLOCK, 11, PORT)).spawn("sluice-magnet-mse", tmp.path());
    let stderr = expect_success(&mut sluice, Duration::from_secs(180));
    assert!(stderr.contains("metadata: secret"), "{}", tail(&stderr, 20));
    fx.assert_copied_to(&out);
}

#[test]
fn a_bare_info_hash_resolves_from_the_given_peer() {
    let Some(tmp) = interop_tempdir("interop_magnet_bare_hash") else {
        return;
    };
    let fx = fixture(tmp.path(), "bare", 42);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 4, PORT), &SeedOpts::default(), tmp.path());
    let out = out_dir(tmp.path());
    let hash = magnet_for(&fx, &[]).split("btih:").nth(1).and_then(|h| h.split('&').next()).unwrap().to_uppercase();
    let mut sluice =
        DownloadCmd::of(hash.into(), &out, &addr(BLOCK, 3, PORT)).peers([&seeder]).spawn("sluice-hash", tmp.path());
    expect_success(&mut sluice, Duration::from_secs(180));
    fx.assert_copied_to(&out);
}

#[test]
fn libtorrent_leecher_gets_the_metadata_from_sluice_seed() {
    let Some(tmp) = interop_tempdir("interop_magnet_lt_leech") else {
        return;
    };
    let fx = fixture(tmp.path(), "served", 43);
    let listen = addr(BLOCK, 5, PORT);
    let sluice = SeedCmd::new(&fx, &listen).start(tmp.path());
    let out = tmp.path().join("out");
    let magnet = magnet_for(&fx, &[&listen]);
    lt_leech_magnet(&magnet, &out, &[&listen], &peer_addr(BLOCK, 6, PORT), Duration::from_secs(180));
    fx.assert_copied_to(&out);
    assert!(!sluice.stderr().contains("panicked"));
}

#[test]
fn http_add_with_a_magnet_returns_the_files_once_the_metadata_is_known() {
    let Some(tmp) = interop_tempdir("interop_magnet_http") else {
        return;
    };
    let fx = fixture(tmp.path(), "posted", 44);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 8, PORT), &SeedOpts::default(), tmp.path());
    // HTTP on 127.0.42.1:PORT, peers on PORT + 1.
    let serve = Serve::start(BLOCK + 1, PORT, tmp.path());
    let (status, added) = serve.add_magnet(&magnet_for(&fx, &[&seeder.endpoint]));
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["name"], "posted");
    assert_eq!(added["files"].as_array().map(Vec::len), Some(3), "{added}");
    let (again, same) = serve.add_magnet(&magnet_for(&fx, &[]));
    assert_eq!((again, &same["files"]), (200, &added["files"]));
    let (bad, err) = serve.add_magnet("magnet:?dn=no-hash");
    assert_eq!(bad, 400, "{err}");
    assert!(err.to_string().contains("info-hash"), "{err}");
}
