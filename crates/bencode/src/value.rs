//! The borrowed value tree produced by the decoder.

use crate::encode::{Dict, OwnedValue};

/// A decoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Keys in the order found (lenient: unsorted and duplicate keys accepted; `get` returns the
    /// first). `raw` is the exact encoded bytes of the whole dictionary.
    Dict {
        entries: Vec<(&'a [u8], Value<'a>)>,
        raw: &'a [u8],
    },
}

impl<'a> Value<'a> {
    /// The value under `key` if this is a dictionary (first occurrence wins).
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.as_dict()?.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match self {
            Value::Dict { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The exact input bytes of a dictionary (what an info-hash is computed over).
    pub fn raw(&self) -> Option<&'a [u8]> {
        match self {
            Value::Dict { raw, .. } => Some(raw),
            _ => None,
        }
    }

    /// A short noun for error messages ("expected a list, found an integer").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Bytes(_) => "a byte string",
            Value::List(_) => "a list",
            Value::Dict { .. } => "a dictionary",
        }
    }

    /// Copies the tree into an [`OwnedValue`]; duplicate keys keep their first value, so the
    /// result encodes canonically and agrees with [`Value::get`].
    pub fn to_owned_value(&self) -> OwnedValue {
        match self {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(items) => OwnedValue::List(items.iter().map(Value::to_owned_value).collect()),
            Value::Dict { entries, .. } => {
                let mut dict = Dict::new();
                for (k, v) in entries {
                    if dict.get(k).is_none() {
                        dict.insert(*k, v.to_owned_value());
                    }
                }
                OwnedValue::Dict(dict)
            }
        }
    }
}
