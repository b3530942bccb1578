use proptest::prelude::*;
use sluice_bencode::{Dict, OwnedValue, Value, decode, decode_prefix};

fn owned_value() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..8), inner), 0..8).prop_map(
                |entries| {
                    let mut d = Dict::new();
                    for (k, v) in entries {
                        d.insert(k, v);
                    }
                    OwnedValue::Dict(d)
                }
            ),
        ]
    })
}

/// Every dictionary's raw span must re-decode to the same dictionary.
fn check_raw_spans(v: &Value<'_>) {
    match v {
        Value::Dict { entries, raw } => {
            assert_eq!(&decode(raw).unwrap(), v);
            entries.iter().for_each(|(_, v)| check_raw_spans(v));
        }
        Value::List(items) => items.iter().for_each(check_raw_spans),
        _ => {}
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trip(v in owned_value()) {
        let bytes = v.encode();
        let decoded = decode(&bytes).unwrap();
        prop_assert_eq!(decoded.to_owned_value(), v);
        check_raw_spans(&decoded);
    }

    #[test]
    fn prefix_decode_stops_at_the_value(v in owned_value(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = v.encode();
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let (decoded, used) = decode_prefix(&bytes).unwrap();
        prop_assert_eq!(used, len);
        prop_assert_eq!(decoded.to_owned_value(), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = decode(&bytes) {
            check_raw_spans(&v);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(v in owned_value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = v.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(v) = decode(&bytes) {
            check_raw_spans(&v);
        }
    }
}
