//! Peer exchange (BEP 11) against real libtorrent, both ways, with peers each side can only have
//! learned through `ut_pex`:
//!
//! - Sluice is told only of libtorrent seeder A (127.0.0.50), to which libtorrent leecher B
//!   (.51, its own PEX off, so it never dials Sluice) is connected: Sluice dials B's listen
//!   address, which only A's PEX message named.
//! - libtorrent leecher L (.53) is told only of Sluice (.52): L gets to know A with PEX as its
//!   source, which only Sluice's PEX message could give it. (Sluice's PEX also tells A of L, so
//!   at times A dials L first; L's entry for A then has both the incoming and the PEX bit.)
//!
//! A uploads at 1 MiB/s so nobody finishes before the checks; the processes are killed after.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const BLOCK: u8 = 0;
const PORT: u16 = 26500;
/// libtorrent's `peer_info.source` bit for peers learned from PEX.
const SOURCE_PEX: u64 = 4;

/// A libtorrent leecher in the background, printing the peers it gets to know.
fn lt_leecher(name: &str, fx: &Fixture, listen: &str, peers: &[&str], extra: &[&str], dir: &Path) -> Proc {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("mkdir");
    LtLeechCmd::new(fx, &out, listen, Duration::from_secs(300))
        .args(&["--report-peers"])
        .args(extra)
        .peers(peers)
        .spawn(name, dir)
}

/// When the leecher's report first named a peer on `endpoint`'s IP (any port: it may have
/// dialled us) with all of `source`'s bits.
fn reported_at(report: &str, endpoint: &str, source: u64) -> Option<f64> {
    let ip = endpoint.rsplit_once(':').map_or(endpoint, |(ip, _)| ip);
    report.lines().find_map(|line| {
        let rest = line.strip_prefix("peer ")?.strip_prefix(ip)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace().skip(1);
        if words.next()? != "source" {
            return None;
        }
        let bits: u64 = words.next()?.parse().ok()?;
        let at = words.last()?.parse().ok()?;
        (bits & source == source).then_some(at)
    })
}

#[test]
fn peers_learned_only_through_pex_are_connected_both_ways() {
    let Some(tmp) = interop_tempdir("interop_pex") else {
        return;
    };
    let spec =
        TorrentSpec { name: "exchanged", size: 24 * MIB, seed: 11, files: 2, piece_length: 256 * 1024, hybrid: false };
    let fx = make_torrent(tmp.path(), &spec);
    let a = LtSeeder::start(
        &fx,
        &peer_addr(BLOCK, 50, PORT),
        &SeedOpts { upload_rate: Some(MIB), ..SeedOpts::default() },
        tmp.path(),
    );
    let b_addr = peer_addr(BLOCK, 51, PORT);
    let b = lt_leecher("lt-leech-b", &fx, &b_addr, &[&a.endpoint], &["--no-pex"], tmp.path());
    // B's peer list names A while it is still connecting; A only puts an incoming peer in its
    // PEX messages once that peer's handshakes are done (its listen port known), and a peer
    // left out of A's first message waits for the next one a minute later. Data from A means
    // the handshakes are done.
    let b_has_data = |report: &str| {
        report.lines().any(|l| {
            l.strip_prefix("progress ")
                .and_then(|r| r.split('%').next())
                .and_then(|p| p.parse::<f64>().ok())
                .is_some_and(|p| p > 0.0)
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || reported_at(&b.stderr(), &a.endpoint, 0).is_some()
            && b_has_data(&b.stderr())),
        "B never downloaded from A:\n{}",
        tail(&b.stderr(), 20)
    );

    let sluice_addr = addr(BLOCK, 52, PORT);
    let download = DownloadCmd::new(&fx, &out_dir(tmp.path()), &sluice_addr)
        .peers([&a])
        .env("SLUICE_LOG", "sluice=info,sluice_node::torrent_task=debug,warn");
    let start = Instant::now();
    let sluice = download.spawn("sluice-pex", tmp.path());
    let l = lt_leecher("lt-leech-l", &fx, &peer_addr(BLOCK, 53, PORT), &[&sluice_addr], &[], tmp.path());

    // Sluice's only way to B's listen address is A's PEX message (B dials nobody but A).
    let dialled_b = format!("addr={b_addr}");
    // Normally seconds; up to A's next PEX message (60 s later) if its first one missed B.
    let sluice_met_b = wait_until(Duration::from_secs(150), || {
        sluice.stderr().lines().any(|l| l.contains("peer connected") && l.contains(&dialled_b))
    });
    let t_b = start.elapsed();
    assert!(sluice_met_b, "Sluice never connected to B ({b_addr}); stderr:\n{}", tail(&sluice.stderr(), 40));

    // L's only way to A is Sluice's PEX message (A learns of L from nobody else either).
    let l_knows_a = wait_until(Duration::from_secs(60), || reported_at(&l.stderr(), &a.endpoint, SOURCE_PEX).is_some());
    assert!(l_knows_a, "L never learned A through PEX; its report:\n{}", tail(&l.stderr(), 40));
    let t_a = reported_at(&l.stderr(), &a.endpoint, SOURCE_PEX).unwrap_or_default();
    println!(
        "Sluice connected to B (learned from A's PEX) {:.2}s after it started; \
         L had A from Sluice's PEX {t_a:.2}s after L started",
        t_b.as_secs_f64()
    );
    println!("L's peers:\n{}", l.stderr().lines().filter(|l| l.starts_with("peer ")).collect::<Vec<_>>().join("\n"));
    println!("B's peers:\n{}", b.stderr().lines().filter(|l| l.starts_with("peer ")).collect::<Vec<_>>().join("\n"));
    assert!(!sluice.stderr().contains("panicked"));
}
