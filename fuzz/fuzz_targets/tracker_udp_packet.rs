//! Feeds arbitrary bytes to the BEP 15 decoders (announce requests with their BEP 41 options;
//! byte 0: bit 0 picks the IPv6 peer layout, bit 1 decodes a request instead of a reply). Besides
//! "no panic", a decoded packet re-encodes to bytes that decode back to it (error texts aside:
//! they are cleaned when decoded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_tracker::udp::{Request, Response};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, packet)) = data.split_first() else { return };
    let ipv6 = flags & 1 == 1;
    if flags & 2 == 0 {
        match Response::decode(packet, ipv6) {
            Ok(Response::Error { .. }) | Err(_) => {}
            Ok(r) => assert_eq!(Response::decode(&r.encode(), ipv6), Ok(r)),
        }
    } else if let Ok(r) = Request::decode(packet) {
        assert_eq!(Request::decode(&r.encode()), Ok(r));
    }
});
