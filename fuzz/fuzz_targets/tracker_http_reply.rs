//! Feeds arbitrary bytes to the HTTP tracker reply parsers (byte 0 picks announce or scrape).
//! Besides "no panic": what is kept stays within the caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_tracker::http::{MAX_SCRAPE_FILES, parse_announce_reply, parse_scrape_reply};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    if which & 1 == 0 {
        if let Ok(reply) = parse_announce_reply(body) {
            assert!(reply.peers.len() <= sluice_tracker::MAX_PEERS);
            assert!(reply.peers.iter().all(|p| p.port() != 0));
        }
    } else if let Ok(files) = parse_scrape_reply(body) {
        assert!(files.len() <= MAX_SCRAPE_FILES);
    }
});
