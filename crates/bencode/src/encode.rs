//! Canonical encoding: dictionaries are sorted maps, so output is canonical by construction.

use std::collections::BTreeMap;

/// An owned value to encode (messages we send, torrents we build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Dict(Dict),
}

impl OwnedValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            OwnedValue::Bytes(b) => encode_bytes(b, out),
            OwnedValue::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            OwnedValue::Dict(dict) => dict.encode_into(out),
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// A dictionary builder with keys kept sorted:
/// `Dict::new().with("m", Dict::new().with("ut_metadata", 3)).with("v", "Sluice").encode()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dict(BTreeMap<Vec<u8>, OwnedValue>);

impl Dict {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` (replacing an earlier value) and returns the dictionary, for chaining.
    pub fn with(mut self, key: impl AsRef<[u8]>, value: impl Into<OwnedValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds `key`, replacing an earlier value.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<OwnedValue>) -> &mut Self {
        self.0.insert(key.as_ref().to_vec(), value.into());
        self
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&OwnedValue> {
        self.0.get(key.as_ref())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &OwnedValue)> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(b'd');
        for (k, v) in &self.0 {
            encode_bytes(k, out);
            v.encode_into(out);
        }
        out.push(b'e');
    }
}

impl From<Dict> for OwnedValue {
    fn from(d: Dict) -> Self {
        OwnedValue::Dict(d)
    }
}

impl From<Vec<OwnedValue>> for OwnedValue {
    fn from(items: Vec<OwnedValue>) -> Self {
        OwnedValue::List(items)
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(b: Vec<u8>) -> Self {
        OwnedValue::Bytes(b)
    }
}

impl From<&[u8]> for OwnedValue {
    fn from(b: &[u8]) -> Self {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for OwnedValue {
    fn from(b: &[u8; N]) -> Self {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> Self {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for OwnedValue {
    fn from(s: String) -> Self {
        OwnedValue::Bytes(s.into_bytes())
    }
}

macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl From<$t> for OwnedValue {
            fn from(i: $t) -> Self {
                OwnedValue::Int(i64::from(i))
            }
        }
    )*};
}
int_from!(i64, i32, u32, u16, u8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_keys_are_sorted() {
        let d = Dict::new()
            .with("v", "Sluice")
            .with("m", Dict::new().with("ut_pex", 2).with("ut_metadata", 1))
            .with("reqq", 250)
            .with(b"\x00bin", vec![OwnedValue::Int(-1), "x".into()]);
        assert_eq!(d.encode(), b"d4:\x00binli-1e1:xe1:md11:ut_metadatai1e6:ut_pexi2ee4:reqqi250e1:v6:Sluicee".to_vec());
        assert_eq!(d.len(), 4);
        assert_eq!(d.get("reqq"), Some(&OwnedValue::Int(250)));
    }

    #[test]
    fn scalars_encode_canonically() {
        assert_eq!(OwnedValue::from(0).encode(), b"i0e");
        assert_eq!(OwnedValue::Int(i64::MIN).encode(), b"i-9223372036854775808e");
        assert_eq!(OwnedValue::from("").encode(), b"0:");
        assert_eq!(OwnedValue::List(vec![]).encode(), b"le");
        assert_eq!(Dict::new().encode(), b"de");
    }

    #[test]
    fn non_canonical_input_re_encodes_canonically() {
        let v = crate::decode(b"d1:bi007e1:ai-0e1:bi9ee").unwrap();
        assert_eq!(v.to_owned_value().encode(), b"d1:ai0e1:bi7ee");
    }
}
