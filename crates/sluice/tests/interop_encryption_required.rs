//! libtorrent peers that require encryption (MSE/PE, RC4 only, pe_forced both ways): Sluice
//! downloads from such a seeder with its default policy (allow: the plaintext dial is refused,
//! the MSE redial is not), and `sluice seed --encryption
//! require` serves such a leecher; both byte-identical.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 45;
const PORT: u16 = 26500;

fn spec(name: &str, seed: u64) -> TorrentSpec<'_> {
    TorrentSpec { name, size: 20 * MIB + 777, seed, files: 3, piece_length: 256 * 1024, hybrid: false }
}

#[test]
fn downloads_from_a_libtorrent_seeder_that_requires_encryption() {
    let Some(tmp) = interop_tempdir("interop_encryption_required (download)") else {
        return;
    };
    let fx = make_torrent(tmp.path(), &spec("enc-down", 45));
    let opts = SeedOpts { encryption: Some("require"), ..SeedOpts::default() };
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 2, PORT), &opts, tmp.path());

    // Control: with encryption off, the seeder refuses Sluice and nothing arrives.
    let plain_out = tmp.path().join("plain");
    let mut plain = DownloadCmd::new(&fx, &plain_out, &addr(BLOCK, 5, PORT))
        .peers([&seeder])
        .args(["--encryption", "off"])
        .spawn("sluice-plaintext", tmp.path());
    std::thread::sleep(Duration::from_secs(4));
    assert!(plain.try_status().is_none(), "a plaintext download ended:\n{}", tail(&plain.stderr(), 20));
    plain.kill9();
    assert_eq!(seeder.uploaded(), 0, "the seeder served a plaintext peer");

    let out = out_dir(tmp.path());
    let mut sluice =
        DownloadCmd::new(&fx, &out, &addr(BLOCK, 1, PORT)).peers([&seeder]).spawn("sluice-download", tmp.path());
    expect_success(&mut sluice, Duration::from_secs(180));
    fx.assert_copied_to(&out);
}

#[test]
fn libtorrent_leecher_that_requires_encryption_completes_from_sluice_seed() {
    let Some(tmp) = interop_tempdir("interop_encryption_required (seed)") else {
        return;
    };
    let fx = make_torrent(tmp.path(), &spec("enc-up", 46));
    let listen = addr(BLOCK, 3, PORT + 10);
    let mut sluice = SeedCmd::new(&fx, &listen).args(["--encryption", "require"]).start(tmp.path());

    let out = tmp.path().join("out");
    LtLeechCmd::new(&fx, &out, &peer_addr(BLOCK, 4, PORT + 10), Duration::from_secs(180))
        .peers(&[&listen])
        .args(&["--encryption", "require"])
        .run("lt-leech", tmp.path());
    fx.assert_copied_to(&out);
    sluice.assert_running();
}
