//! Peers found only through the DHT: a loopback DHT (mainline's test network on 127.0.0.1)
//! is the only thing `sluice seed` and `sluice download` are told about; the seeder announces
//! itself there, the downloader looks the torrent up, connects and downloads, and keeps the
//! DHT's routing table in its state folder for the next start.

mod common;

use std::time::Duration;

use common::*;
use sluice_core::metainfo::TorrentBuilder;

const BLOCK: u8 = 27;

#[test]
fn a_download_finds_its_seeder_through_the_dht_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let testnet = mainline::Testnet::builder(6).build().expect("loopback DHT");
    let bootstrap = testnet.bootstrap.join(",");
    assert!(bootstrap.starts_with("127.0.0.1:"), "{bootstrap}");

    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    let torrent = tmp.path().join("dht.torrent");
    std::fs::write(&torrent, TorrentBuilder::single_file("dht.bin", 256 * 1024, data.clone()).build())
        .expect("torrent");
    let seed_dir = tmp.path().join("seed");
    std::fs::create_dir_all(&seed_dir).expect("mkdir");
    std::fs::write(seed_dir.join("dht.bin"), &data).expect("data");

    let seed_listen = addr(BLOCK, 2, 24001);
    let args = [
        "seed",
        torrent.to_str().unwrap(),
        "--data",
        seed_dir.to_str().unwrap(),
        "--listen",
        &seed_listen,
        "--loopback-only",
        "--dht-bootstrap",
        &bootstrap,
    ];
    let seed = spawn_sluice("sluice-seed", &args, tmp.path());
    assert!(
        wait_until(Duration::from_secs(30), || seed.stderr().contains("listening on")),
        "seed did not start:\n{}",
        tail(&seed.stderr(), 20)
    );

    let out = tmp.path().join("out");
    let args = [
        "download",
        torrent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--listen",
        &addr(BLOCK, 3, 24002),
        "--loopback-only",
        "--dht-bootstrap",
        &bootstrap,
    ];
    let mut download = spawn_sluice("sluice-download", &args, tmp.path());
    expect_success(&mut download, Duration::from_secs(90));
    assert!(std::fs::read(out.join("dht.bin")).expect("downloaded file") == data, "downloaded bytes differ");
    let nodes = std::fs::read_to_string(out.join(".sluice/dht.nodes")).expect("routing table saved");
    assert!(nodes.lines().any(|l| l.starts_with("127.0.0.1:")), "{nodes}");
}
