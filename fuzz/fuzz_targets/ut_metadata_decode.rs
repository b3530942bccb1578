//! Arbitrary bytes as the payload of a BEP 9 `ut_metadata` message.
//!
//! Besides "no panic": a decoded message re-encodes to bytes that decode back to it, and a
//! data message's bytes are the input's tail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_wire::MetadataMsg;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = MetadataMsg::decode(data) else { return };
    if let MetadataMsg::Data { data: piece, .. } = msg {
        assert!(data.ends_with(piece));
    }
    let mut out = Vec::new();
    msg.encode(&mut out);
    assert_eq!(MetadataMsg::decode(&out), Ok(msg));
});
