//! Bencode (BEP 3): a zero-copy decoder for untrusted input and a canonical encoder.
//!
//! Decoding is lenient where real torrents are sloppy and strict where leniency would be
//! dangerous. Leading zeros, `-0`, unsorted and duplicate dictionary keys are accepted, because
//! widely shared `.torrent` files contain them and the info-hash must be computed over the
//! bytes exactly as found ([`Value::raw`]), not over a re-encoding. Everything an attacker could
//! use to exhaust resources is bounded: the decoder keeps an explicit stack instead of
//! recursing, so nesting depth costs heap, not call stack, and is capped by [`Limits`];
//! string lengths are checked against the remaining input before slicing; the total number of
//! decoded items is capped; integers that do not fit in an `i64` are errors, not wrap-arounds.
//!
//! Encoding goes through [`OwnedValue`] and [`Dict`], whose keys live in a sorted map, so every
//! message or torrent we produce is canonical by construction.

mod decode;
mod encode;
mod value;

pub use decode::{Error, ErrorKind, Limits, decode, decode_prefix, decode_prefix_with_limits, decode_with_limits};
pub use encode::{Dict, OwnedValue};
pub use value::Value;
