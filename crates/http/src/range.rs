//! `Range` and `If-Range` evaluation (RFC 9110 §14.1–14.2, §13.1.5): pure functions of the
//! header bytes, the file length and the file's validators.
//!
//! Decisions, all permitted by the RFC:
//! - A malformed `Range` (unknown unit, bad syntax, `last < first`) is ignored: the client gets
//!   the whole file with 200, which every client must handle.
//! - Several ranges are coalesced into one 206 covering all satisfiable ones (their hull).
//!   Players ask for one range; this keeps the server free of multipart bodies while sending
//!   less than the whole file, and the client learns what it got from `Content-Range`.
//! - Numbers too large for `u64` saturate: a huge `last-pos` still means "to the end" and a
//!   huge `first-pos` is simply unsatisfiable.
//!
//! Parsing never allocates: the header is validated in one pass and re-walked lazily.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One `range-spec` as the client wrote it, before it meets the file length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`, both inclusive.
    FromTo { first: u64, last: u64 },
    /// `first-`: to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// A non-empty byte slice `start..end` (end exclusive) of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The `Content-Range` value of a 206 for a file of `total` bytes.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end - 1, total)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("no `=` after the range unit")]
    NoUnit,
    #[error("range unit is not `bytes`")]
    Unit,
    #[error("malformed range-spec")]
    Syntax,
    #[error("range-spec with last-pos before first-pos")]
    Reversed,
    #[error("empty range set")]
    Empty,
}

/// A syntactically valid `bytes=` range set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeSet<'a> {
    set: &'a [u8],
}

impl<'a> RangeSet<'a> {
    pub fn specs(&self) -> impl Iterator<Item = RangeSpec> + 'a {
        elements(self.set).filter_map(|e| parse_spec(e).ok())
    }

    /// The slice to serve for a file of `len` bytes, or `None` when no spec is satisfiable
    /// (416).
    pub fn resolve(&self, len: u64) -> Option<ByteRange> {
        self.specs()
            .filter_map(|s| s.resolve(len))
            .reduce(|a, b| ByteRange { start: a.start.min(b.start), end: a.end.max(b.end) })
    }
}

impl RangeSpec {
    /// The satisfiable part of this spec for a file of `len` bytes (RFC 9110 §14.1.1).
    pub fn resolve(self, len: u64) -> Option<ByteRange> {
        match self {
            RangeSpec::FromTo { first, last } if first < len => {
                Some(ByteRange { start: first, end: last.min(len - 1) + 1 })
            }
            RangeSpec::From(first) if first < len => Some(ByteRange { start: first, end: len }),
            RangeSpec::Suffix(n) if n > 0 && len > 0 => Some(ByteRange { start: len - n.min(len), end: len }),
            _ => None,
        }
    }
}

/// Parses a `Range` header value.
pub fn parse_range(value: &[u8]) -> Result<RangeSet<'_>, RangeError> {
    let eq = value.iter().position(|&b| b == b'=').ok_or(RangeError::NoUnit)?;
    if !trim_ows(&value[..eq]).eq_ignore_ascii_case(b"bytes") {
        return Err(RangeError::Unit);
    }
    let set = &value[eq + 1..];
    let mut any = false;
    for element in elements(set) {
        parse_spec(element)?;
        any = true;
    }
    if any { Ok(RangeSet { set }) } else { Err(RangeError::Empty) }
}

/// The non-empty, OWS-trimmed elements of a `#rule` list.
fn elements(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

fn parse_spec(spec: &[u8]) -> Result<RangeSpec, RangeError> {
    let dash = spec.iter().position(|&b| b == b'-').ok_or(RangeError::Syntax)?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (first.is_empty(), last.is_empty()) {
        (true, true) => Err(RangeError::Syntax),
        (true, false) => Ok(RangeSpec::Suffix(digits(last)?)),
        (false, true) => Ok(RangeSpec::From(digits(first)?)),
        (false, false) => {
            let (first, last) = (digits(first)?, digits(last)?);
            if last < first { Err(RangeError::Reversed) } else { Ok(RangeSpec::FromTo { first, last }) }
        }
    }
}

fn digits(s: &[u8]) -> Result<u64, RangeError> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(RangeError::Syntax);
    }
    Ok(s.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// An `If-Range` validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfRange<'a> {
    /// `opaque` keeps its double quotes, so it compares directly with an `ETag` value.
    EntityTag {
        weak: bool,
        opaque: &'a [u8],
    },
    Date(SystemTime),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IfRangeError {
    #[error("neither an entity-tag nor an HTTP-date")]
    Syntax,
}

/// Parses an `If-Range` header value: an entity-tag or an HTTP-date.
pub fn parse_if_range(value: &[u8]) -> Result<IfRange<'_>, IfRangeError> {
    let value = trim_ows(value);
    let (weak, tag) = match value.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if let Some(rest) = tag.strip_prefix(b"\"") {
        let is_etagc = |&c: &u8| c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80;
        return match rest.strip_suffix(b"\"") {
            Some(inner) if inner.iter().all(is_etagc) => Ok(IfRange::EntityTag { weak, opaque: tag }),
            _ => Err(IfRangeError::Syntax),
        };
    }
    if weak {
        return Err(IfRangeError::Syntax);
    }
    let text = std::str::from_utf8(value).map_err(|_| IfRangeError::Syntax)?;
    httpdate::parse_http_date(text).map(IfRange::Date).map_err(|_| IfRangeError::Syntax)
}

/// The validators of the file being served.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// The full `ETag` value, quotes included; always strong here.
    pub etag: &'a str,
    /// Already truncated to whole seconds, as sent in `Last-Modified`.
    pub last_modified: Option<SystemTime>,
}

impl IfRange<'_> {
    /// Whether the client's copy is the current representation (RFC 9110 §13.1.5): a strong
    /// entity-tag match, or a date exactly equal to `Last-Modified`.
    pub fn matches(&self, v: &Validators<'_>) -> bool {
        match *self {
            IfRange::EntityTag { weak, opaque } => !weak && opaque == v.etag.as_bytes(),
            IfRange::Date(date) => v.last_modified == Some(date),
        }
    }
}

/// What to send for a GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeDecision {
    /// 200 with the whole file.
    Full,
    /// 206 with this slice.
    Partial(ByteRange),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Evaluates `Range` and `If-Range` of a GET for a file of `len` bytes. Only the first of
/// repeated headers is passed in; the caller treats repeated `Range` headers as malformed.
pub fn decide(range: Option<&[u8]>, if_range: Option<&[u8]>, validators: &Validators<'_>, len: u64) -> RangeDecision {
    let Some(Ok(set)) = range.map(parse_range) else { return RangeDecision::Full };
    if let Some(if_range) = if_range
        && !parse_if_range(if_range).is_ok_and(|v| v.matches(validators))
    {
        return RangeDecision::Full;
    }
    match set.resolve(len) {
        Some(r) => RangeDecision::Partial(r),
        None => RangeDecision::Unsatisfiable,
    }
}

/// The latest instant an HTTP-date can express (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// `t` truncated to whole seconds, or `None` when no HTTP-date can express it.
pub fn http_date_precision(t: SystemTime) -> Option<SystemTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (secs <= LAST_HTTP_DATE).then(|| UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resolve(h: &str, len: u64) -> Result<Option<(u64, u64)>, RangeError> {
        parse_range(h.as_bytes()).map(|s| s.resolve(len).map(|r| (r.start, r.end)))
    }

    #[test]
    fn single_ranges() {
        assert_eq!(resolve("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(resolve("bytes=10-", 100), Ok(Some((10, 100))));
        assert_eq!(resolve("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(resolve("bytes=-1000", 100), Ok(Some((0, 100))));
        assert_eq!(resolve("bytes=50-1000", 100), Ok(Some((50, 100))));
        assert_eq!(resolve("bytes=99-99", 100), Ok(Some((99, 100))));
        assert_eq!(resolve("BYTES=0-0", 100), Ok(Some((0, 1))));
        assert_eq!(resolve("bytes=0-99999999999999999999999", 100), Ok(Some((0, 100))));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(resolve("bytes=100-", 100), Ok(None));
        assert_eq!(resolve("bytes=100-200", 100), Ok(None));
        assert_eq!(resolve("bytes=-0", 100), Ok(None));
        assert_eq!(resolve("bytes=0-", 0), Ok(None));
        assert_eq!(resolve("bytes=-5", 0), Ok(None));
        assert_eq!(resolve("bytes=99999999999999999999999-", 100), Ok(None));
    }

    #[test]
    fn malformed_ranges() {
        assert_eq!(resolve("bytes=5-1", 100), Err(RangeError::Reversed));
        assert_eq!(resolve("items=0-1", 100), Err(RangeError::Unit));
        assert_eq!(resolve("0-1", 100), Err(RangeError::NoUnit));
        for bad in
            ["bytes=", "bytes= , ,", "bytes=-", "bytes=a-b", "bytes=1-2-3", "bytes=+1-2", "bytes=0x1-", "bytes=1 -2"]
        {
            assert!(resolve(bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn several_ranges_are_coalesced() {
        assert_eq!(resolve("bytes=0-9, 20-29", 100), Ok(Some((0, 30))));
        assert_eq!(resolve("bytes=-5,10-19", 100), Ok(Some((10, 100))));
        assert_eq!(resolve("bytes=200-,10-19,,", 100), Ok(Some((10, 20))));
        assert_eq!(resolve("bytes=200-,300-", 100), Ok(None));
        assert_eq!(resolve("bytes=0-1,5-1", 100), Err(RangeError::Reversed));
    }

    #[test]
    fn if_range_forms() {
        let v = Validators { etag: "\"abc\"", last_modified: Some(UNIX_EPOCH + Duration::from_secs(784_111_777)) };
        let m = |h: &str| parse_if_range(h.as_bytes()).is_ok_and(|i| i.matches(&v));
        assert!(m("\"abc\""));
        assert!(!m("W/\"abc\""));
        assert!(!m("\"abd\""));
        assert!(m("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!m("Sun, 06 Nov 1994 08:49:38 GMT"));
        assert_eq!(parse_if_range(b"\"a"), Err(IfRangeError::Syntax));
        assert_eq!(parse_if_range(b"\""), Err(IfRangeError::Syntax));
        assert_eq!(parse_if_range(b"W/x"), Err(IfRangeError::Syntax));
        assert_eq!(parse_if_range(b"\"a b\""), Err(IfRangeError::Syntax));
        assert_eq!(parse_if_range(b"yesterday"), Err(IfRangeError::Syntax));
    }

    #[test]
    fn decide_combines_range_and_if_range() {
        let v = Validators { etag: "\"e\"", last_modified: None };
        let partial = RangeDecision::Partial(ByteRange { start: 0, end: 5 });
        assert_eq!(decide(Some(b"bytes=0-4"), None, &v, 10), partial);
        assert_eq!(decide(Some(b"bytes=0-4"), Some(b"\"e\""), &v, 10), partial);
        assert_eq!(decide(Some(b"bytes=0-4"), Some(b"\"f\""), &v, 10), RangeDecision::Full);
        assert_eq!(decide(Some(b"bytes=0-4"), Some(b"Sun, 06 Nov 1994 08:49:37 GMT"), &v, 10), RangeDecision::Full);
        assert_eq!(decide(Some(b"bytes=20-"), None, &v, 10), RangeDecision::Unsatisfiable);
        assert_eq!(decide(Some(b"bytes=20-"), Some(b"\"f\""), &v, 10), RangeDecision::Full);
        assert_eq!(decide(Some(b"bytes=x"), None, &v, 10), RangeDecision::Full);
        assert_eq!(decide(None, Some(b"\"e\""), &v, 10), RangeDecision::Full);
    }

    #[test]
    fn http_date_precision_truncates_and_bounds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(http_date_precision(t), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(http_date_precision(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(http_date_precision(UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE + 1)), None);
    }

    fn spec() -> impl Strategy<Value = RangeSpec> {
        prop_oneof![
            (0u64..300, 0u64..300).prop_map(|(a, b)| RangeSpec::FromTo { first: a.min(b), last: a.max(b) }),
            (0u64..300).prop_map(RangeSpec::From),
            (0u64..300).prop_map(RangeSpec::Suffix),
        ]
    }

    fn render(s: &RangeSpec) -> String {
        match s {
            RangeSpec::FromTo { first, last } => format!("{first}-{last}"),
            RangeSpec::From(first) => format!("{first}-"),
            RangeSpec::Suffix(n) => format!("-{n}"),
        }
    }

    /// The bytes a spec selects, by brute force over every offset.
    fn selected(s: &RangeSpec, len: u64, offset: u64) -> bool {
        match *s {
            RangeSpec::FromTo { first, last } => first <= offset && offset <= last,
            RangeSpec::From(first) => first <= offset,
            RangeSpec::Suffix(n) => offset + n >= len,
        }
    }

    proptest! {
        #[test]
        fn rendered_specs_parse_back(specs in prop::collection::vec(spec(), 1..5), sep in "[ \t]{0,2},[ \t]{0,2}") {
            let header = format!("bytes={}", specs.iter().map(render).collect::<Vec<_>>().join(&sep));
            let set = parse_range(header.as_bytes()).unwrap();
            prop_assert_eq!(set.specs().collect::<Vec<_>>(), specs);
        }

        #[test]
        fn resolve_matches_brute_force(s in spec(), len in 0u64..300) {
            let expected: Vec<u64> = (0..len).filter(|&o| selected(&s, len, o)).collect();
            match s.resolve(len) {
                Some(r) => {
                    prop_assert!(r.start < r.end && r.end <= len);
                    prop_assert_eq!((r.start..r.end).collect::<Vec<_>>(), expected);
                }
                None => prop_assert!(expected.is_empty()),
            }
        }

        #[test]
        fn hull_covers_every_satisfiable_spec(specs in prop::collection::vec(spec(), 1..5), len in 0u64..300) {
            let header = format!("bytes={}", specs.iter().map(render).collect::<Vec<_>>().join(","));
            let hull = parse_range(header.as_bytes()).unwrap().resolve(len);
            let parts: Vec<ByteRange> = specs.iter().filter_map(|s| s.resolve(len)).collect();
            prop_assert_eq!(hull.is_none(), parts.is_empty());
            if let Some(h) = hull {
                prop_assert!(h.end <= len);
                prop_assert!(parts.iter().all(|p| h.start <= p.start && p.end <= h.end));
                prop_assert!(parts.iter().any(|p| p.start == h.start) && parts.iter().any(|p| p.end == h.end));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), len in any::<u64>()) {
            if let Ok(set) = parse_range(&bytes)
                && let Some(r) = set.resolve(len)
            {
                prop_assert!(r.start < r.end && r.end <= len);
            }
            let _ = parse_if_range(&bytes);
        }

        #[test]
        fn arbitrary_text_headers_never_panic(h in "(bytes|BYTES|x)?=?[0-9 ,\t-]{0,24}", len in 0u64..50) {
            let v = Validators { etag: "\"e\"", last_modified: None };
            if let RangeDecision::Partial(r) = decide(Some(h.as_bytes()), None, &v, len) {
                prop_assert!(r.start < r.end && r.end <= len);
            }
        }
    }
}
