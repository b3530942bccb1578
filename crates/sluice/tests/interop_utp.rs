//! uTP (BEP 29) against real libtorrent peers that speak only uTP (TCP neither accepted nor
//! dialled): Sluice downloads from such a seeder, and such a leecher downloads from `sluice
//! seed`; both byte-identical. Each also runs over TCP alone, and the test prints both
//! transfers' throughput (`uTP ... MB/s` lines) for comparison.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// This test's loopback addresses are 127.0.0.55 to 127.0.0.59.
const BLOCK: u8 = 0;
const PORT: u16 = 27550;
const SIZE: u64 = 48 * MIB + 1_234;

fn spec(name: &str, seed: u64) -> TorrentSpec<'_> {
    TorrentSpec { name, size: SIZE, seed, files: 3, piece_length: 256 * 1024, hybrid: false }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// `sluice download` from `seeder` to completion: its wall time.
fn sluice_download(fx: &Fixture, seeder: &LtSeeder, listen: &str, tmp: &std::path::Path) -> Duration {
    let out = tmp.join(format!("out-{}", listen.replace([':', '.'], "_")));
    let download = DownloadCmd::new(fx, &out, listen).peers([seeder]);
    let started = Instant::now();
    let mut sluice = download.spawn(&format!("sluice-download-{}", listen.replace([':', '.'], "_")), tmp);
    expect_success(&mut sluice, Duration::from_secs(240));
    let took = started.elapsed();
    fx.assert_copied_to(&out);
    took
}

#[test]
fn downloads_from_a_utp_only_libtorrent_seeder() {
    let Some(tmp) = interop_tempdir("interop_utp (download)") else {
        return;
    };
    let fx = make_torrent(tmp.path(), &spec("utp-down", 55));
    let utp_only = SeedOpts { transport: Some("utp"), ..SeedOpts::default() };
    let seeder = LtSeeder::start(&fx, &addr(BLOCK, 55, PORT), &utp_only, tmp.path());

    // Control: over TCP alone Sluice reaches nothing, so what follows went over uTP.
    let no_utp_out = tmp.path().join("no-utp");
    let mut tcp_only = DownloadCmd::new(&fx, &no_utp_out, &addr(BLOCK, 56, PORT))
        .peers([&seeder])
        .args(["--no-utp"])
        .spawn("sluice-no-utp", tmp.path());
    std::thread::sleep(Duration::from_secs(3));
    assert!(tcp_only.try_status().is_none(), "a TCP-only download ended:\n{}", tail(&tcp_only.stderr(), 20));
    tcp_only.kill9();
    assert_eq!(seeder.uploaded(), 0, "the uTP-only seeder served Sluice over TCP");

    let utp = sluice_download(&fx, &seeder, &addr(BLOCK, 56, PORT + 1), tmp.path());
    drop(seeder);

    // The same download from a TCP-only seeder, for comparison.
    let tcp_seeder = LtSeeder::start(&fx, &addr(BLOCK, 57, PORT + 2), &SeedOpts::default(), tmp.path());
    let tcp = sluice_download(&fx, &tcp_seeder, &addr(BLOCK, 56, PORT + 3), tmp.path());

    let bytes = fx.total_size();
    eprintln!(
        "uTP download: {bytes} bytes in {:.2} s = {:.1} MB/s (TCP: {:.2} s = {:.1} MB/s; wall time of `sluice download`)",
        utp.as_secs_f64(),
        mb_per_s(bytes, utp),
        tcp.as_secs_f64(),
        mb_per_s(bytes, tcp)
    );
}

/// Runs `lt_peer.py leech --transport <transport>` from `seed` to completion; returns the
/// seconds from its first payload byte to completion (its report's `seconds` count from its
/// start, session start-up included).
fn lt_leech_over(fx: &Fixture, seed: &str, listen: &str, transport: &str, tmp: &std::path::Path) -> f64 {
    let out = tmp.join(format!("lt-out-{transport}"));
    let log = LtLeechCmd::new(fx, &out, listen, Duration::from_secs(240))
        .peers(&[seed])
        .args(&["--transport", transport])
        .run(&format!("lt-leech-{transport}"), tmp);
    fx.assert_copied_to(&out);
    let report = log.lines().rev().find(|l| l.starts_with('{')).expect("the leecher's JSON report");
    let json: serde_json::Value = serde_json::from_str(report).expect("leech report is JSON");
    let first_byte = json["first_byte_seconds"].as_f64().expect("first byte");
    json["seconds"].as_f64().expect("seconds") - first_byte
}

#[test]
fn utp_only_libtorrent_leecher_completes_from_sluice_seed() {
    let Some(tmp) = interop_tempdir("interop_utp (seed)") else {
        return;
    };
    let fx = make_torrent(tmp.path(), &spec("utp-up", 56));
    let listen = addr(BLOCK, 58, PORT + 10);
    let mut sluice = SeedCmd::new(&fx, &listen).start(tmp.path());

    let utp = lt_leech_over(&fx, &listen, &addr(BLOCK, 59, PORT + 11), "utp", tmp.path());
    let tcp = lt_leech_over(&fx, &listen, &addr(BLOCK, 59, PORT + 12), "tcp", tmp.path());
    sluice.assert_running();

    let bytes = fx.total_size();
    let rate = |s: f64| bytes as f64 / 1e6 / s;
    eprintln!(
        "uTP upload to libtorrent: {bytes} bytes in {utp:.2} s = {:.1} MB/s (TCP: {tcp:.2} s = {:.1} MB/s; libtorrent's first byte to completion)",
        rate(utp),
        rate(tcp)
    );
}
