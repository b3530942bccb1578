//! Arbitrary bytes as a saved DHT routing table (and as bootstrap entries): the glue between
//! what Sluice stores or is told and what reaches the DHT crate. Besides "no panic": at most
//! `MAX_STATE_NODES` addresses, none with port 0, no duplicates; under loopback-only nothing
//! but loopback literals gets through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_dht::{MAX_STATE_NODES, bootstrap_list, parse_state};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let nodes = parse_state(&text);
    assert!(nodes.len() <= MAX_STATE_NODES);
    assert!(nodes.iter().all(|a| a.port() != 0));
    for (i, a) in nodes.iter().enumerate() {
        assert!(!nodes[..i].contains(a));
    }
    let configured: Vec<String> = text.lines().take(8).map(str::to_owned).collect();
    if let Ok(list) = bootstrap_list(Some(&configured), &nodes, true) {
        for entry in list {
            let addr: std::net::SocketAddrV4 = entry.parse().expect("only literals pass under loopback-only");
            assert!(addr.ip().is_loopback());
        }
    }
});
