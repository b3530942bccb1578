//! Arbitrary datagrams as local service discovery announces. Besides "no panic": an accepted
//! announce has a port, between 1 and `MAX_HASHES` distinct hashes, and re-encodes to a
//! datagram that parses to the same announce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_lsd::{MAX_HASHES, encode, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(a) = parse(data) else { return };
    assert!(a.port != 0 && !a.hashes.is_empty() && a.hashes.len() <= MAX_HASHES);
    for (i, h) in a.hashes.iter().enumerate() {
        assert!(!a.hashes[..i].contains(h));
    }
    let cookie = a.cookie.clone().unwrap_or_default();
    let again = parse(&encode(a.port, &a.hashes, &cookie)).expect("re-encoded announce parses");
    assert_eq!((again.port, &again.hashes), (a.port, &a.hashes));
});
