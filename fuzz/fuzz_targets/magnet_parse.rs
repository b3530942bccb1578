//! Arbitrary text into the magnet parser.
//!
//! Besides "no panic": an accepted link keeps its parts within the input's size, and its
//! canonical form parses back to the same magnet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::magnet::{MAX_LEN, Magnet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(magnet) = Magnet::parse(text) else { return };
    assert!(magnet.trackers.iter().map(String::len).sum::<usize>() <= text.len());
    assert!(magnet.peers.len() <= text.len() / 8);
    let uri = magnet.to_uri();
    if uri.len() <= MAX_LEN {
        assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&magnet));
    }
});
