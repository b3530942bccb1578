//! libtorrent peers that require encryption (MSE/PE, RC4 only, pe_forced both ways): Sluice
//! downloads from such a seeder with its default policy (allow: the plaintext dial is refused,
//! the MSE redial is not), and `sluice seed --encryption
//! require` serves such a leecher; both byte-identical.

mod common;

use common::*;
use std::ffi::OsString;
use std::process::Command;
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
    let args: Vec<OsString> = vec![
        "download".into(),
        fx.torrent.clone().into(),
        "--out".into(),
        plain_out.into(),
        "--listen".into(),
        addr(BLOCK, 5, PORT).into(),
        "--peer".into(),
        seeder.endpoint.clone().into(),
        "--loopback-only".into(),
        "--encryption".into(),
        "off".into(),
    ];
    let mut plain = spawn_sluice("sluice-plaintext", &args, tmp.path());
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
    let args: Vec<OsString> = vec![
        "seed".into(),
        fx.torrent.clone().into(),
        "--data".into(),
        fx.data.clone().into(),
        "--listen".into(),
        listen.clone().into(),
        "--loopback-only".into(),
        "--encryption".into(),
        "require".into(),
    ];
    let mut sluice = spawn_sluice("sluice-seed", &args, tmp.path());
    let up = wait_until(Duration::from_secs(120), || {
        sluice.stderr().contains("listening on") || sluice.try_status().is_some()
    });
    assert!(up && sluice.try_status().is_none(), "sluice seed did not start; stderr:\n{}", tail(&sluice.stderr(), 40));

    let out = tmp.path().join("out");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(lt_peer_script())
        .arg("leech")
        .arg("--torrent")
        .arg(&fx.torrent)
        .arg("--out")
        .arg(&out)
        .args(["--listen", &peer_addr(BLOCK, 4, PORT + 10), "--peer", &listen, "--timeout", "180"])
        .args(["--encryption", "require"]);
    let mut leech = Proc::spawn("lt-leech", cmd, tmp.path(), false);
    let status = leech.wait_exit(Duration::from_secs(210));
    assert!(status.success(), "libtorrent leecher failed ({status}):\n{}", tail(&leech.stderr(), 40));
    fx.assert_copied_to(&out);
    assert!(sluice.try_status().is_none(), "sluice seed exited; stderr:\n{}", tail(&sluice.stderr(), 40));
    assert!(!sluice.stderr().contains("panicked"));
}
