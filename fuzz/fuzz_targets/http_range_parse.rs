//! Arbitrary bytes into the `Range` and `If-Range` evaluation.
//!
//! Input: 8 bytes of file length (little-endian), then the `Range` value, then optionally a
//! newline and the `If-Range` value. Besides "no panic": a served range lies inside the file
//! and is the hull of the satisfiable specs; the specs of a valid header re-render to a header
//! that parses to the same specs; an entity-tag keeps its quotes; `decide` agrees with the
//! parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_http::range::{IfRange, RangeDecision, RangeSpec, Validators, decide, parse_if_range, parse_range};

fuzz_target!(|data: &[u8]| {
    let (len, rest) = data.split_at(data.len().min(8));
    let mut le = [0u8; 8];
    le[..len.len()].copy_from_slice(len);
    let len = u64::from_le_bytes(le) >> (le[0] % 64);
    let (range, if_range) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };

    let validators = Validators { etag: "\"e\"", last_modified: None };
    let if_range_matches = if_range.map(|v| parse_if_range(v).is_ok_and(|v| v.matches(&validators)));
    if let Some(Ok(IfRange::EntityTag { opaque, .. })) = if_range.map(parse_if_range) {
        assert!(opaque.len() >= 2 && opaque.starts_with(b"\"") && opaque.ends_with(b"\""));
    }

    let decision = decide(Some(range), if_range, &validators, len);
    let Ok(set) = parse_range(range) else {
        assert_eq!(decision, RangeDecision::Full);
        return;
    };
    let specs: Vec<RangeSpec> = set.specs().collect();
    assert!(!specs.is_empty());
    let rendered = format!("bytes={}", specs.iter().map(render).collect::<Vec<_>>().join(","));
    let again = parse_range(rendered.as_bytes()).expect("re-rendered specs parse");
    assert!(again.specs().eq(specs.iter().copied()));

    let parts: Vec<_> = specs.iter().filter_map(|s| s.resolve(len)).collect();
    let hull = set.resolve(len);
    match hull {
        None => assert!(parts.is_empty()),
        Some(h) => {
            assert!(h.start < h.end && h.end <= len);
            assert!(parts.iter().all(|p| h.start <= p.start && p.end <= h.end));
            assert!(parts.iter().any(|p| p.start == h.start) && parts.iter().any(|p| p.end == h.end));
        }
    }
    let expected = match (if_range_matches, hull) {
        (Some(false), _) => RangeDecision::Full,
        (_, Some(h)) => RangeDecision::Partial(h),
        (_, None) => RangeDecision::Unsatisfiable,
    };
    assert_eq!(decision, expected);
});

fn render(s: &RangeSpec) -> String {
    match s {
        RangeSpec::FromTo { first, last } => format!("{first}-{last}"),
        RangeSpec::From(first) => format!("{first}-"),
        RangeSpec::Suffix(n) => format!("-{n}"),
    }
}
