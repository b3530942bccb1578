//! Feeds arbitrary bytes to the NAT-PMP decoders (byte 0: bit 0 decodes a request instead of a
//! gateway's reply). Besides "no panic", a decoded packet re-encodes to bytes that decode back
//! to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_natpmp::{Request, Response};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, packet)) = data.split_first() else { return };
    if flags & 1 == 0 {
        if let Ok(r) = Response::decode(packet) {
            assert_eq!(Response::decode(&r.encode()), Ok(r));
        }
    } else if let Ok(r) = Request::decode(packet) {
        assert_eq!(Request::decode(&r.encode()), Ok(r));
    }
});
