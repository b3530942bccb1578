//! A peer that floods requests and never reads what it asked for cannot make Sluice allocate
//! without bound: the bytes queued for it are capped, then it is dropped, and Sluice keeps
//! seeding.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sluice_core::metainfo::{Metainfo, TorrentBuilder};

#[test]
fn request_flood_without_reading_is_capped_and_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let torrent = TorrentBuilder::single_file("flood.bin", 256 * 1024, data.clone()).build();
    let meta = Metainfo::from_bytes(&torrent).expect("own torrent parses");
    let torrent_path = tmp.path().join("flood.torrent");
    std::fs::write(&torrent_path, &torrent).expect("write torrent");
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("mkdir");
    std::fs::write(data_dir.join("flood.bin"), &data).expect("write data");

    let listen = addr(20, 1, 22001);
    let args = ["seed", torrent_path.to_str().unwrap(), "--data", data_dir.to_str().unwrap(), "--listen", &listen];
    let mut seed = spawn_sluice("sluice-seed", &args, tmp.path());
    assert!(
        wait_until(Duration::from_secs(30), || seed.stderr().contains("listening on")),
        "seed did not start:\n{}",
        tail(&seed.stderr(), 20)
    );

    let mut sock = TcpStream::connect(&listen).expect("connect");
    let mut hello = Vec::with_capacity(68 + 5);
    hello.push(19);
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x04]); // fast extension: every request is answered
    hello.extend_from_slice(&meta.info_hash.0);
    hello.extend_from_slice(b"-XX0000-floodfloodfl");
    hello.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
    sock.write_all(&hello).expect("handshake");

    // 2.4 M requests (41 MB): their 41 MB of answers cannot all fit in socket buffers (a few
    // MiB each way), so Sluice's queue for us must pass its cap unless it drops us.
    let mut batch = Vec::with_capacity(17 * 10_000);
    for i in 0..10_000u32 {
        batch.extend_from_slice(&[0, 0, 0, 13, 6]);
        batch.extend_from_slice(&(i % 16).to_be_bytes());
        batch.extend_from_slice(&0u32.to_be_bytes());
        batch.extend_from_slice(&16384u32.to_be_bytes());
    }
    let mut dropped = false;
    for _ in 0..240 {
        if sock.write_all(&batch).is_err() {
            dropped = true;
            break;
        }
    }
    // Never read; keep writing keep-alives until the reset from Sluice's close shows up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dropped && Instant::now() < deadline {
        dropped = sock.write_all(&[0, 0, 0, 0]).is_err();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dropped, "a peer that never reads was not dropped");
    assert!(seed.stderr().contains("does not read what it asks for"), "{}", tail(&seed.stderr(), 20));

    let status = std::fs::read_to_string(format!("/proc/{}/status", seed.pid())).expect("seed still running");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(peak_kib < 64 * 1024, "seed peaked at {peak_kib} KiB of memory");
    assert!(seed.try_status().is_none(), "seed exited:\n{}", tail(&seed.stderr(), 20));
    assert!(!seed.stderr().contains("panicked"));
}
