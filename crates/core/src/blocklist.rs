//! IP blocklists in the P2P (PeerGuardian text) format, as distributed for BitTorrent clients:
//!
//! ```text
//! # comment
//! Some organisation:1.2.3.0-1.2.3.255
//! 10.0.0.1-10.0.0.9
//! ```
//!
//! A line is an optional description up to its last `:`, then an IPv4 range `first-last`
//! (inclusive); IPv6 ranges `first-last` are read too. Lines that do not parse are counted
//! and skipped, never fatal: real lists carry stray lines. Ranges are merged, so a lookup is
//! one binary search whatever the list's size.

use std::net::IpAddr;

/// Lines read from one list at most (real lists have a few hundred thousand).
pub const MAX_LINES: usize = 4_000_000;
/// Longer lines are skipped (a range with a long description is under 200 bytes).
pub const MAX_LINE: usize = 512;

/// Merged, sorted address ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// What reading a list found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlocklistStats {
    pub ranges: usize,
    pub skipped_lines: usize,
}

impl Blocklist {
    /// Reads a P2P-format list; see the module docs.
    pub fn parse(text: &str) -> (Self, BlocklistStats) {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut stats = BlocklistStats::default();
        for line in text.lines().take(MAX_LINES).map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            if line.len() > MAX_LINE {
                stats.skipped_lines += 1;
                continue;
            }
            match parse_line(line) {
                Some((IpAddr::V4(a), IpAddr::V4(b))) if a <= b => v4.push((u32::from(a), u32::from(b))),
                Some((IpAddr::V6(a), IpAddr::V6(b))) if a <= b => v6.push((u128::from(a), u128::from(b))),
                _ => stats.skipped_lines += 1,
            }
        }
        let list = Self { v4: merge(v4, |x| x.saturating_add(1)), v6: merge(v6, |x| x.saturating_add(1)) };
        stats.ranges = list.v4.len() + list.v6.len();
        (list, stats)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` falls in a blocked range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => hit(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => hit(&self.v4, u32::from(v4)),
                None => hit(&self.v6, u128::from(v6)),
            },
        }
    }
}

fn parse_line(line: &str) -> Option<(IpAddr, IpAddr)> {
    // The description may contain ':' and '-', and IPv6 addresses contain ':': the range is
    // the part after the first ':' (or the whole line) that parses as one.
    let range = |r: &str| -> Option<(IpAddr, IpAddr)> {
        let (a, b) = r.split_once('-')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    std::iter::once(line)
        .chain(line.char_indices().filter(|&(_, c)| c == ':').map(|(i, _)| &line[i + 1..]))
        .find_map(range)
}

/// Sorts and merges overlapping or adjacent ranges (`next` is the saturating successor).
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: fn(T) -> T) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= next(last.1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.shrink_to_fit();
    out
}

fn hit<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.1 < x);
    ranges.get(i).is_some_and(|r| r.0 <= x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn p2p_lines_block_their_ranges() {
        let text = "# list\nEvil Corp: the bad one:1.2.3.0-1.2.3.255\n5.5.5.5-5.5.5.5\n\nbad line\n9.9.9.9-1.1.1.1\n\
                    v6 range:2001:db8::-2001:db8::ffff\n1.2.4.0-1.2.4.10\n";
        let (list, stats) = Blocklist::parse(text);
        assert_eq!(stats, BlocklistStats { ranges: 3, skipped_lines: 2 });
        for blocked in ["1.2.3.0", "1.2.3.255", "1.2.4.10", "5.5.5.5", "2001:db8::1", "::ffff:1.2.3.4"] {
            assert!(list.contains(ip(blocked)), "{blocked}");
        }
        for open in ["1.2.2.255", "1.2.4.11", "5.5.5.6", "2001:db8::1:0", "127.0.0.1"] {
            assert!(!list.contains(ip(open)), "{open}");
        }
    }

    proptest! {
        #[test]
        fn lookups_agree_with_the_ranges(ranges in proptest::collection::vec((any::<u32>(), 0u32..1000), 0..50), probe in any::<u32>()) {
            let text: String = ranges
                .iter()
                .map(|&(a, len)| format!("x:{}-{}\n", std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(a.saturating_add(len))))
                .collect();
            let (list, _) = Blocklist::parse(&text);
            let want = ranges.iter().any(|&(a, len)| a <= probe && probe <= a.saturating_add(len));
            prop_assert_eq!(list.contains(IpAddr::V4(probe.into())), want);
        }

        #[test]
        fn any_text_parses(text in ".{0,2000}") {
            let _ = Blocklist::parse(&text);
        }
    }
}
