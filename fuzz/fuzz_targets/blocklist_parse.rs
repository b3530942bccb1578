//! Arbitrary text as a P2P-format IP blocklist. Besides "no panic": every line counts as a
//! range or a skipped line, and an address inside a listed IPv4 line is blocked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::blocklist::Blocklist;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (list, stats) = Blocklist::parse(&text);
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"));
    assert!(stats.skipped_lines <= lines.count());
    assert_eq!(list.is_empty(), stats.ranges == 0);
    for line in text.lines().take(64) {
        if let Some((a, b)) = line.trim().split_once('-')
            && let (Ok(a), Ok(b)) = (a.parse::<std::net::Ipv4Addr>(), b.parse::<std::net::Ipv4Addr>())
            && a <= b
        {
            assert!(list.contains(a.into()) && list.contains(b.into()));
        }
    }
});
