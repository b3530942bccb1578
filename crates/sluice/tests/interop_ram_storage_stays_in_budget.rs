//! `sluice serve --storage ram`: a file larger than the RAM budget streams whole from
//! libtorrent seeders with 8 MiB and then 16 MiB pieces, and bytes evicted on the way come back
//! when read again, while the process's resident memory stays within the budget + 64 MiB and
//! nothing is written to the data folder.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

const BLOCK: u8 = 25;
const BUDGET: u64 = 256 * MIB;
const SIZE: u64 = 384 * MIB;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Streams bytes `from..` of file 0 and compares them with `source` as they arrive.
fn stream_and_compare(http: &str, hash: &str, source: &std::path::Path, from: u64, len: u64) {
    let mut s = std::net::TcpStream::connect(http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    let head = format!(
        "GET /api/v1/torrents/{hash}/files/0/stream HTTP/1.1\r\nHost: sluice\r\nRange: bytes={from}-{}\r\nConnection: close\r\n\r\n",
        from + len - 1
    );
    s.write_all(head.as_bytes()).expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 206"), "{}", String::from_utf8_lossy(&head));
    let mut file = std::fs::File::open(source).expect("source");
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(from)).expect("seek");
    let (mut got, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut left = len;
    while left > 0 {
        let n = s.read(&mut got[..(left.min(1 << 20)) as usize]).expect("body");
        assert!(n > 0, "body ended {left} bytes early");
        file.read_exact(&mut want[..n]).expect("source bytes");
        assert!(got[..n] == want[..n], "bytes differ at {}", from + len - left);
        left -= n as u64;
    }
}

#[test]
fn ram_mode_streams_a_file_larger_than_its_budget_within_budget_plus_64_mib() {
    let Some(tmp) = interop_tempdir("interop_ram_storage_stays_in_budget") else {
        return;
    };
    for (round, piece) in [8 * MIB, 16 * MIB].into_iter().enumerate() {
        let dir = tmp.path().join(format!("p{}", piece / MIB));
        std::fs::create_dir_all(&dir).expect("dir");
        let fx = make_torrent(
            &dir,
            &TorrentSpec { name: "big", size: SIZE, seed: 25, files: 1, piece_length: piece, hybrid: false },
        );
        let port = 23100 + 10 * round as u16;
        let seeders = start_seeders(&fx, BLOCK, 2..=3, port, &SeedOpts::default(), &dir);
        let serve = Serve::start_with(BLOCK, port, &dir, &["--storage", "ram", "--ram-budget", "256MiB"]);
        let added = serve.add(&std::fs::read(&fx.torrent).expect("torrent"), &seeders);
        let hash = added["info_hash"].as_str().expect("info_hash").to_owned();
        let source = fx.content_dir().join("file0.bin");

        let pid = serve.proc.pid();
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let sampler = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(status_kib(pid, "VmRSS:"), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let started = std::time::Instant::now();
        stream_and_compare(&serve.http, &hash, &source, 0, SIZE);
        let whole = started.elapsed();
        // The head went long ago to make room: it is fetched again.
        stream_and_compare(&serve.http, &hash, &source, MIB, 24 * MIB);
        stop.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler");
        let hwm = status_kib(pid, "VmHWM:") * 1024;
        let sampled = peak.load(Ordering::SeqCst) * 1024;
        println!(
            "{} MiB pieces: streamed {} MiB in {:.1}s; peak RSS {:.1} MiB (VmHWM), sampled {:.1} MiB; budget {} MiB",
            piece / MIB,
            SIZE / MIB,
            whole.as_secs_f64(),
            hwm as f64 / MIB as f64,
            sampled as f64 / MIB as f64,
            BUDGET / MIB
        );
        assert!(hwm <= BUDGET + 64 * MIB, "peak RSS {hwm} over budget + 64 MiB");
        let data = dir.join("served-data");
        // The catalog's database (torrents, settings) is the only file; no piece data.
        let written: Vec<_> = list_files(&data)
            .into_iter()
            .filter(|(rel, _)| !rel.to_string_lossy().starts_with(".sluice/sluice.db"))
            .collect();
        assert!(written.is_empty(), "RAM mode wrote files: {written:?}");
        assert!(!serve.proc.stderr().contains("panicked"));
    }
}
