//! Arbitrary bytes as the payload of a BEP 11 `ut_pex` message.
//!
//! Besides "no panic": a decoded message stays within the entry limits and re-encodes to bytes
//! that decode back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_wire::{PEX_MAX_ENTRIES, PexMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = PexMessage::decode(data) else { return };
    assert!(msg.added.len() <= PEX_MAX_ENTRIES && msg.dropped.len() <= PEX_MAX_ENTRIES);
    let mut out = Vec::new();
    msg.encode(&mut out);
    assert_eq!(PexMessage::decode(&out), Ok(msg));
});
