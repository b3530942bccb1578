//! Iterative decoder with an explicit stack.

use crate::Value;

/// Resource bounds for one decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries (the top-level value counts as depth 1).
    /// Decoding never recurses, but dropping, comparing or converting a [`Value`] does, so
    /// keep this modest.
    pub max_depth: usize,
    /// Most values (including dictionary keys) one input may hold.
    pub max_items: usize,
}

impl Limits {
    /// Depth 64 is far beyond any real torrent or extension message; 2 million items matches
    /// the token budget mainstream clients give a `.torrent` file.
    pub const DEFAULT: Limits = Limits { max_depth: 64, max_items: 2_000_000 };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why decoding failed, and at which byte of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {pos}")]
pub struct Error {
    pub pos: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unexpected end of input")]
    UnexpectedEof,
    #[error("unexpected byte '{}'", .0.escape_ascii())]
    UnexpectedByte(u8),
    #[error("integer has no digits")]
    EmptyInteger,
    #[error("integer does not fit in 64 bits")]
    IntegerOverflow,
    #[error("string length {len} exceeds the {available} bytes left")]
    StringTooLong { len: u64, available: usize },
    #[error("dictionary key is not a byte string")]
    KeyNotString,
    #[error("dictionary key has no value")]
    MissingValue,
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("more than {0} items")]
    TooManyItems(usize),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// Decodes `input`, which must hold exactly one value, with [`Limits::DEFAULT`].
pub fn decode(input: &[u8]) -> Result<Value<'_>, Error> {
    decode_with_limits(input, Limits::DEFAULT)
}

/// Decodes `input`, which must hold exactly one value.
pub fn decode_with_limits(input: &[u8], limits: Limits) -> Result<Value<'_>, Error> {
    let (value, used) = decode_prefix_with_limits(input, limits)?;
    if used != input.len() {
        return Err(Error { pos: used, kind: ErrorKind::TrailingBytes(input.len() - used) });
    }
    Ok(value)
}

/// Decodes the value at the start of `input` and returns it with the number of bytes it used
/// (extension messages such as `ut_metadata` carry raw data after a dictionary).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), Error> {
    decode_prefix_with_limits(input, Limits::DEFAULT)
}

/// An open list or dictionary whose closing `e` has not been seen yet.
enum Frame<'a> {
    List { items: Vec<Value<'a>> },
    Dict { start: usize, entries: Vec<(&'a [u8], Value<'a>)>, key: Option<&'a [u8]> },
}

/// [`decode_prefix`] with explicit limits.
pub fn decode_prefix_with_limits(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), Error> {
    let mut p = Parser { input, pos: 0, items: 0, limits };
    let mut stack: Vec<Frame<'_>> = Vec::new();
    loop {
        if let Some(Frame::Dict { key: key @ None, .. }) = stack.last_mut() {
            match p.peek()? {
                b'e' => {}
                b'0'..=b'9' => {
                    p.count_item()?;
                    *key = Some(p.bytes()?);
                    continue;
                }
                _ => return Err(p.err(ErrorKind::KeyNotString)),
            }
        }
        let value = match p.peek()? {
            b'i' => {
                p.count_item()?;
                Value::Int(p.int()?)
            }
            b'0'..=b'9' => {
                p.count_item()?;
                Value::Bytes(p.bytes()?)
            }
            open @ (b'l' | b'd') => {
                if stack.len() >= limits.max_depth {
                    return Err(p.err(ErrorKind::TooDeep(limits.max_depth)));
                }
                p.count_item()?;
                stack.push(if open == b'l' {
                    Frame::List { items: Vec::new() }
                } else {
                    Frame::Dict { start: p.pos, entries: Vec::new(), key: None }
                });
                p.pos += 1;
                continue;
            }
            b'e' => match stack.pop() {
                Some(Frame::List { items }) => {
                    p.pos += 1;
                    Value::List(items)
                }
                Some(Frame::Dict { start, entries, key: None }) => {
                    p.pos += 1;
                    Value::Dict { entries, raw: &input[start..p.pos] }
                }
                Some(Frame::Dict { key: Some(_), .. }) => {
                    return Err(p.err(ErrorKind::MissingValue));
                }
                None => return Err(p.err(ErrorKind::UnexpectedByte(b'e'))),
            },
            other => return Err(p.err(ErrorKind::UnexpectedByte(other))),
        };
        match stack.last_mut() {
            None => return Ok((value, p.pos)),
            Some(Frame::List { items }) => items.push(value),
            Some(Frame::Dict { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, value)),
                None => return Err(p.err(ErrorKind::KeyNotString)),
            },
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: Limits,
}

impl<'a> Parser<'a> {
    fn err(&self, kind: ErrorKind) -> Error {
        Error { pos: self.pos, kind }
    }

    fn peek(&self) -> Result<u8, Error> {
        self.input.get(self.pos).copied().ok_or(self.err(ErrorKind::UnexpectedEof))
    }

    fn count_item(&mut self) -> Result<(), Error> {
        if self.items >= self.limits.max_items {
            return Err(self.err(ErrorKind::TooManyItems(self.limits.max_items)));
        }
        self.items += 1;
        Ok(())
    }

    /// Reads decimal digits up to `terminator` (leading zeros allowed) as a magnitude.
    /// Overflow is reported at `start`, the beginning of the whole token.
    fn digits(&mut self, terminator: u8, start: usize) -> Result<Option<u64>, Error> {
        let first = self.pos;
        let mut n: u64 = 0;
        loop {
            match self.peek()? {
                d @ b'0'..=b'9' => {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d - b'0')))
                        .ok_or(Error { pos: start, kind: ErrorKind::IntegerOverflow })?;
                    self.pos += 1;
                }
                b if b == terminator => {
                    let any = self.pos > first;
                    self.pos += 1;
                    return Ok(any.then_some(n));
                }
                other => return Err(self.err(ErrorKind::UnexpectedByte(other))),
            }
        }
    }

    /// `i<digits>e` with an optional `-`; the cursor is on the `i`.
    fn int(&mut self) -> Result<i64, Error> {
        let start = self.pos;
        self.pos += 1;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let magnitude = self.digits(b'e', start)?.ok_or(Error { pos: start, kind: ErrorKind::EmptyInteger })?;
        let value = if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
        value.ok_or(Error { pos: start, kind: ErrorKind::IntegerOverflow })
    }

    /// `<len>:<bytes>`; the cursor is on the first digit.
    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        let len = self.digits(b':', start)?.unwrap_or(0);
        let available = self.input.len() - self.pos;
        match usize::try_from(len) {
            Ok(n) if n <= available => {
                let s = &self.input[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(Error { pos: start, kind: ErrorKind::StringTooLong { len, available } }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(input: &[u8]) -> ErrorKind {
        decode(input).unwrap_err().kind
    }

    #[test]
    fn scalars() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-42e"), Ok(Value::Int(-42)));
        assert_eq!(decode(b"i007e"), Ok(Value::Int(7)));
        assert_eq!(decode(b"i-0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(decode(b"4:spam"), Ok(Value::Bytes(b"spam")));
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(b"")));
    }

    #[test]
    fn integer_errors() {
        assert_eq!(decode(b"i18446744073709551617e"), Err(Error { pos: 0, kind: ErrorKind::IntegerOverflow }));
        assert_eq!(kind(b"i9223372036854775808e"), ErrorKind::IntegerOverflow);
        assert_eq!(kind(b"i-9223372036854775809e"), ErrorKind::IntegerOverflow);
        assert_eq!(kind(b"i99999999999999999999999999999999e"), ErrorKind::IntegerOverflow);
        assert_eq!(kind(b"ie"), ErrorKind::EmptyInteger);
        assert_eq!(kind(b"i-e"), ErrorKind::EmptyInteger);
        assert_eq!(kind(b"i1x"), ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind(b"i12"), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn string_length_is_checked_before_use() {
        assert_eq!(decode(b"5:spam"), Err(Error { pos: 0, kind: ErrorKind::StringTooLong { len: 5, available: 4 } }));
        assert_eq!(kind(b"99999999999999999999999:x"), ErrorKind::IntegerOverflow);
        assert_eq!(kind(b"18446744073709551615:x"), ErrorKind::StringTooLong { len: u64::MAX, available: 1 });
        assert_eq!(kind(b"4"), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn containers() {
        let v = decode(b"d3:cow3:moo4:spaml1:ai1eee").unwrap();
        assert_eq!(v.get(b"cow").and_then(Value::as_str), Some("moo"));
        let list = v.get(b"spam").and_then(Value::as_list).unwrap();
        assert_eq!(list, &[Value::Bytes(b"a"), Value::Int(1)]);
        assert_eq!(v.get(b"nope"), None);
        assert_eq!(decode(b"le"), Ok(Value::List(vec![])));
    }

    #[test]
    fn lenient_dicts_keep_order_and_first_duplicate() {
        let v = decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
        let keys: Vec<&[u8]> = v.as_dict().unwrap().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [b"b".as_slice(), b"a", b"b"]);
        assert_eq!(v.get(b"b"), Some(&Value::Int(1)));
    }

    #[test]
    fn raw_spans_are_exact() {
        let input = b"d4:infod6:lengthi010e4:name1:xe3:zzzi1ee";
        let v = decode(input).unwrap();
        assert_eq!(v.raw(), Some(input.as_slice()));
        assert_eq!(v.get(b"info").and_then(Value::raw), Some(b"d6:lengthi010e4:name1:xe".as_slice()));
        let nested = b"l4:spamd1:ad1:bdeee1:xe";
        let v = decode(nested).unwrap();
        let outer = &v.as_list().unwrap()[1];
        assert_eq!(outer.raw(), Some(b"d1:ad1:bdeee".as_slice()));
        assert_eq!(outer.get(b"a").unwrap().get(b"b").unwrap().raw(), Some(b"de".as_slice()));
    }

    #[test]
    fn structural_errors() {
        assert_eq!(kind(b"di1ei2ee"), ErrorKind::KeyNotString);
        assert_eq!(kind(b"d1:ae"), ErrorKind::MissingValue);
        assert_eq!(kind(b"e"), ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(kind(b"l"), ErrorKind::UnexpectedEof);
        assert_eq!(kind(b""), ErrorKind::UnexpectedEof);
        assert_eq!(kind(b"x"), ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(decode(b"i1ei2e"), Err(Error { pos: 3, kind: ErrorKind::TrailingBytes(3) }));
    }

    #[test]
    fn prefix_reports_bytes_used() {
        let input = b"d8:msg_typei1e5:piecei0eeRAWDATA";
        let (v, used) = decode_prefix(input).unwrap();
        assert_eq!(&input[used..], b"RAWDATA");
        assert_eq!(v.get(b"msg_type"), Some(&Value::Int(1)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut input = vec![b'l'; 100_000];
        input.extend(std::iter::repeat_n(b'e', 100_000));
        assert_eq!(decode(&input), Err(Error { pos: 64, kind: ErrorKind::TooDeep(64) }));
        let limits = Limits { max_depth: 200_000, ..Limits::DEFAULT };
        let mut v = decode_with_limits(&input, limits).unwrap();
        let mut depth = 1;
        while let Value::List(mut items) = v {
            match items.pop() {
                Some(inner) => {
                    depth += 1;
                    v = inner;
                }
                None => break,
            }
        }
        assert_eq!(depth, 100_000);
    }

    #[test]
    fn item_limit() {
        let limits = Limits { max_depth: 4, max_items: 3 };
        assert!(decode_with_limits(b"li1ei2ee", limits).is_ok());
        assert_eq!(decode_with_limits(b"li1ei2ei3ee", limits), Err(Error { pos: 7, kind: ErrorKind::TooManyItems(3) }));
        assert_eq!(decode_with_limits(b"d1:ai1ee", limits).map(|v| v.get(b"a").cloned()), Ok(Some(Value::Int(1))));
        assert!(decode_with_limits(b"d1:ai1e1:be", limits).is_err());
    }

    #[test]
    fn errors_display_kind_and_position() {
        assert_eq!(decode(b"i1ex").unwrap_err().to_string(), "1 trailing bytes after the value at byte 3");
        assert_eq!(decode(b"l\x01").unwrap_err().to_string(), "unexpected byte '\\x01' at byte 1");
    }
}
