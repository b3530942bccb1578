//! Bencode. CONTRACT STUB: the API below is fixed, the implementation is being written.

/// A decoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Keys in the order found (lenient: unsorted and duplicate keys accepted; `get` returns the
    /// first). `raw` is the exact encoded bytes of the whole dictionary.
    Dict { entries: Vec<(&'a [u8], Value<'a>)>, raw: &'a [u8] },
}
