//! A peer that floods requests and never reads what it asked for cannot make Sluice allocate
//! without bound: the bytes queued for it are capped, then it is dropped, and Sluice keeps
//! seeding.

mod common;

use common::*;
use std::io::{Read, Write};
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

    // 800k requests (13.6 MB), about 13 MB of answers if Sluice queued them all.
    let mut batch = Vec::with_capacity(17 * 10_000);
    for i in 0..10_000u32 {
        batch.extend_from_slice(&[0, 0, 0, 13, 6]);
        batch.extend_from_slice(&(i % 16).to_be_bytes());
        batch.extend_from_slice(&0u32.to_be_bytes());
        batch.extend_from_slice(&16384u32.to_be_bytes());
    }
    let mut write_error = None;
    for _ in 0..80 {
        if let Err(e) = sock.write_all(&batch) {
            write_error = Some(e);
            break;
        }
    }
    // Read what is buffered: Sluice must have closed the connection at the end of it.
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let closed = loop {
        if Instant::now() >= deadline {
            break false;
        }
        match sock.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received += n as u64,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                break false;
            }
            Err(_) => break true,
        }
    };
    eprintln!("write error: {write_error:?}; read {received} bytes before the close");
    assert!(closed, "a peer that never reads was not dropped (read {received} bytes, then silence)");
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
