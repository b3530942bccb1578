//! Arbitrary bytes into the bencode decoder.
//!
//! Besides "no panic": a prefix decode agrees with a whole decode of the bytes it used, every
//! dictionary's raw span decodes to the same dictionary, and the canonical re-encoding of any
//! accepted value decodes back to the same owned value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_bencode::{Value, decode, decode_prefix};

fuzz_target!(|data: &[u8]| {
    let Ok((value, used)) = decode_prefix(data) else {
        assert!(decode(data).is_err());
        return;
    };
    assert_eq!(decode(&data[..used]).as_ref(), Ok(&value));
    assert_eq!(decode(data).is_ok(), used == data.len());
    check_raw_spans(&value);
    let owned = value.to_owned_value();
    let canonical = owned.encode();
    let again = decode(&canonical).expect("canonical encoding decodes");
    assert_eq!(again.to_owned_value(), owned);
    assert_eq!(again.to_owned_value().encode(), canonical);
});

fn check_raw_spans(v: &Value<'_>) {
    match v {
        Value::Dict { entries, raw } => {
            assert_eq!(decode(raw).as_ref(), Ok(v));
            entries.iter().for_each(|(_, v)| check_raw_spans(v));
        }
        Value::List(items) => items.iter().for_each(check_raw_spans),
        Value::Int(_) | Value::Bytes(_) => {}
    }
}
