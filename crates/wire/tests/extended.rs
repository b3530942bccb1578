//! Property tests of the BEP 10 extended handshake codec.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_wire::ExtendedHandshake;

fn handshake() -> impl Strategy<Value = ExtendedHandshake> {
    (
        prop::collection::btree_map("[a-z_]{1,12}", any::<u8>(), 0..6),
        prop::option::of(1u16..),
        prop::option::of(".{0,20}"),
        prop::option::of(any::<u32>()),
        prop::option::of(0u64..=i64::MAX as u64),
        prop::option::of(prop_oneof![prop::collection::vec(any::<u8>(), 4), prop::collection::vec(any::<u8>(), 16)]),
    )
        .prop_map(
            |(m, listen_port, client, reqq, metadata_size, your_ip): (BTreeMap<String, u8>, _, _, _, _, _)| {
                ExtendedHandshake {
                    extensions: m.into_iter().collect(),
                    listen_port,
                    client,
                    reqq,
                    metadata_size,
                    your_ip,
                }
            },
        )
}

proptest! {
    #[test]
    fn round_trips(hs in handshake()) {
        let mut out = Vec::new();
        hs.encode(&mut out);
        prop_assert_eq!(ExtendedHandshake::decode(&out), Ok(hs));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..500)) {
        let _ = ExtendedHandshake::decode(&bytes);
    }

    #[test]
    fn mutated_handshakes_never_panic(hs in handshake(), at in any::<usize>(), byte in any::<u8>()) {
        let mut out = Vec::new();
        hs.encode(&mut out);
        let i = at % out.len();
        out[i] = byte;
        let _ = ExtendedHandshake::decode(&out);
    }
}
