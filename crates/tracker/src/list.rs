//! An extra tracker list applied to every torrent, with TorrServer's four "retrackers" modes.
//!
//! Users of streaming servers keep a list of well-known public trackers to find peers for
//! torrents whose own trackers are dead, or want a private torrent's trackers left alone.

use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrackerMode {
    /// The torrent's own trackers only; the extra list is unused.
    #[default]
    Keep,
    /// The torrent's trackers, then the extra list as one more tier.
    Add,
    /// No trackers at all (DHT, PEX and given peers only).
    Remove,
    /// The extra list instead of the torrent's trackers.
    Replace,
}

/// The tiers a torrent announces to: `own` (its metainfo's BEP 12 tiers) combined with
/// `extra` under `mode`. URLs are trimmed, empty ones dropped, and each URL appears once (its
/// first place wins); empty tiers are dropped.
pub fn apply_mode(mode: TrackerMode, own: &[Vec<String>], extra: &[String]) -> Vec<Vec<String>> {
    let extra_tier = || vec![extra.to_vec()];
    let tiers: Vec<Vec<String>> = match mode {
        TrackerMode::Keep => own.to_vec(),
        TrackerMode::Add => own.iter().cloned().chain(extra_tier()).collect(),
        TrackerMode::Remove => Vec::new(),
        TrackerMode::Replace => extra_tier(),
    };
    let mut seen: HashSet<String> = HashSet::new();
    tiers
        .into_iter()
        .map(|tier| {
            tier.iter()
                .map(|u| u.trim())
                .filter(|u| !u.is_empty() && seen.insert(u.to_string()))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|t| t.iter().map(|u| u.to_string()).collect()).collect()
    }

    #[test]
    fn the_four_modes() {
        let own = s(&[&["http://a/announce", "udp://b:1"], &["http://c/announce"]]);
        let extra: Vec<String> = vec!["udp://b:1".into(), " http://d/announce ".into(), "".into()];
        assert_eq!(apply_mode(TrackerMode::Keep, &own, &extra), own);
        assert_eq!(
            apply_mode(TrackerMode::Add, &own, &extra),
            s(&[&["http://a/announce", "udp://b:1"], &["http://c/announce"], &["http://d/announce"]])
        );
        assert!(apply_mode(TrackerMode::Remove, &own, &extra).is_empty());
        assert_eq!(apply_mode(TrackerMode::Replace, &own, &extra), s(&[&["udp://b:1", "http://d/announce"]]));
        assert!(apply_mode(TrackerMode::Replace, &own, &[]).is_empty());
        assert_eq!(apply_mode(TrackerMode::Add, &[], &extra), s(&[&["udp://b:1", "http://d/announce"]]));
    }
}
