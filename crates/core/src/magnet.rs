//! Magnet links (BEP 9) and bare info-hashes: what a user pastes instead of a `.torrent`.
//!
//! A magnet carries only the info-hash plus hints (name, trackers, peers); the info
//! dictionary itself comes from peers later. Parsing is lenient about the hints, because
//! links are copied through chat clients and web pages that mangle them: unknown parameters,
//! `ws` web seeds, peers that are not literal `ip:port` (no name lookups happen here) and
//! malformed escapes are skipped or kept literally. Only the info-hash is required; a link
//! without a usable one is an error that says why. Input is capped at [`MAX_LEN`] bytes, so
//! nothing here allocates more than a small multiple of that.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::InfoHash;

/// Longest magnet link accepted, in bytes.
pub const MAX_LEN: usize = 64 * 1024;

/// A parsed magnet link or bare info-hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: display name, until the metadata names the torrent.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to ask for the metadata and the data, without duplicates.
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("not a magnet link (magnet:?xt=urn:btih:...) nor a 40-digit hex info-hash")]
    NotMagnet,
    #[error("the magnet link is {len} bytes long; at most {MAX_LEN} are accepted")]
    TooLong { len: usize },
    #[error("the magnet link has no BitTorrent info-hash (xt=urn:btih:...)")]
    NoInfoHash,
    #[error("the magnet link only has a v2 info-hash (urn:btmh), which is not supported yet")]
    V2Only,
    #[error("bad info-hash {0:?}: expected 40 hex digits or 32 base32 characters")]
    BadInfoHash(String),
}

impl Magnet {
    /// A magnet with nothing but the hash.
    pub fn from_info_hash(info_hash: InfoHash) -> Self {
        Self { info_hash, name: None, trackers: Vec::new(), peers: Vec::new() }
    }

    /// Parses `magnet:?...` or a bare info-hash (40 hex digits or 32 base32 characters),
    /// ignoring surrounding whitespace. The first usable `xt=urn:btih:` wins.
    pub fn parse(input: &str) -> Result<Self, MagnetError> {
        if input.len() > MAX_LEN {
            return Err(MagnetError::TooLong { len: input.len() });
        }
        let input = input.trim();
        if let Some(hash) = parse_hash(input) {
            return Ok(Self::from_info_hash(hash));
        }
        let Some(query) = strip_prefix_ci(input, "magnet:") else {
            return Err(MagnetError::NotMagnet);
        };
        let query = query.strip_prefix('?').unwrap_or(query);
        let query = query.split_once('#').map_or(query, |(q, _)| q);

        let mut hash = None;
        let mut bad_hash = None;
        let mut v2 = false;
        let mut magnet = Self::from_info_hash(InfoHash([0; 20]));
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let key = percent_decode(key, false).to_ascii_lowercase();
            match base_key(&key) {
                "xt" => {
                    let value = percent_decode(value, false);
                    if let Some(h) = strip_prefix_ci(&value, "urn:btih:") {
                        match parse_hash(h) {
                            Some(h) => {
                                hash.get_or_insert(h);
                            }
                            None => {
                                bad_hash.get_or_insert_with(|| h.to_owned());
                            }
                        }
                    } else if strip_prefix_ci(&value, "urn:btmh:").is_some() {
                        v2 = true;
                    }
                }
                "dn" if magnet.name.is_none() => {
                    magnet.name = Some(percent_decode(value, true)).filter(|n| !n.trim().is_empty());
                }
                "tr" => {
                    let url = percent_decode(value, false);
                    let url = url.trim();
                    if !url.is_empty() && !magnet.trackers.iter().any(|t| t == url) {
                        magnet.trackers.push(url.to_owned());
                    }
                }
                "x.pe" => {
                    if let Ok(addr) = SocketAddr::from_str(percent_decode(value, false).trim())
                        && addr.port() != 0
                        && !magnet.peers.contains(&addr)
                    {
                        magnet.peers.push(addr);
                    }
                }
                _ => {}
            }
        }
        magnet.info_hash = match (hash, bad_hash) {
            (Some(h), _) => h,
            (None, Some(bad)) => return Err(MagnetError::BadInfoHash(bad)),
            (None, None) if v2 => return Err(MagnetError::V2Only),
            (None, None) => return Err(MagnetError::NoInfoHash),
        };
        Ok(magnet)
    }

    /// The link in canonical form: hex hash, then `dn`, `tr` and `x.pe`, percent-encoded.
    pub fn to_uri(&self) -> String {
        let mut out = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(name) = &self.name {
            out.push_str("&dn=");
            percent_encode(name, &mut out);
        }
        for tr in &self.trackers {
            out.push_str("&tr=");
            percent_encode(tr, &mut out);
        }
        for peer in &self.peers {
            out.push_str("&x.pe=");
            percent_encode(&peer.to_string(), &mut out);
        }
        out
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `tr.1`, `xt.2`: BEP 9's numbered variants of a key mean the same as the key.
fn base_key(key: &str) -> &str {
    match key.split_once('.') {
        Some((base @ ("tr" | "xt"), n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => key,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// 40 hex digits or 32 base32 characters (RFC 4648 alphabet, either case).
fn parse_hash(s: &str) -> Option<InfoHash> {
    match s.len() {
        40 => InfoHash::from_hex(s),
        32 => base32_20(s).map(InfoHash),
        _ => None,
    }
}

fn base32_20(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == 20).then_some(out)
}

/// `%XX` escapes become bytes (a malformed escape stays literal), and with `plus_is_space`
/// a `+` becomes a space (form encoding, common in `dn`). Invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |j: usize| bytes.get(j).and_then(|&c| char::from(c).to_digit(16));
        match b {
            b'%' if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes everything but RFC 3986's unreserved characters and `:`, `/`, `[`, `]`.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/[]".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    fn hash() -> InfoHash {
        InfoHash::from_hex(HEX).unwrap()
    }

    #[test]
    fn full_link() {
        let link = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2F127.0.0.1%3A6969&tr=http://127.0.0.1/a?x=1\
             &tr=udp%3A%2F%2F127.0.0.1%3A6969&x.pe=127.0.0.2:6881&x.pe=%5B%3A%3A1%5D%3A51413\
             &ws=http%3A%2F%2F127.0.0.1%2Ffile&xl=12345&so=0-3&foo"
        );
        let m = Magnet::parse(&link).unwrap();
        assert_eq!(m.info_hash, hash());
        assert_eq!(m.name.as_deref(), Some("Big Buck Bunny"));
        assert_eq!(m.trackers, ["udp://127.0.0.1:6969", "http://127.0.0.1/a?x=1"]);
        assert_eq!(m.peers, ["127.0.0.2:6881".parse().unwrap(), "[::1]:51413".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn base32_and_bare_hashes() {
        // The same 20 bytes in base32.
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        assert_eq!(Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}")).unwrap().info_hash, hash());
        assert_eq!(Magnet::parse(&format!("magnet:?xt=urn:btih:{}", b32.to_lowercase())).unwrap().info_hash, hash());
        assert_eq!(Magnet::parse(&format!("  {}\n", HEX.to_uppercase())).unwrap(), Magnet::from_info_hash(hash()));
        assert_eq!(Magnet::parse(b32).unwrap().info_hash, hash());
        assert_eq!(Magnet::parse(&format!("MAGNET:?XT=URN:BTIH:{HEX}")).unwrap().info_hash, hash());
        assert_eq!(Magnet::parse(&format!("magnet:?xt.1=urn:btih:{HEX}&tr.1=x")).unwrap().trackers, ["x"]);
    }

    #[test]
    fn bad_peers_are_skipped() {
        let link =
            format!("magnet:?xt=urn:btih:{HEX}&x.pe=example.org:80&x.pe=1.2.3.4&x.pe=1.2.3.4:0&x.pe=::1:5&x.pe=");
        assert!(Magnet::parse(&link).unwrap().peers.is_empty());
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(Magnet::parse(""), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("http://example.org/x.torrent"), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("c12fe1c06b"), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("magnet:?dn=x&tr=y"), Err(MagnetError::NoInfoHash));
        assert_eq!(Magnet::parse("magnet:"), Err(MagnetError::NoInfoHash));
        assert_eq!(Magnet::parse("magnet:?xt=urn:btih:zz"), Err(MagnetError::BadInfoHash("zz".into())));
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btih:0123456789012345678901234567890123456789x"),
            Err(MagnetError::BadInfoHash("0123456789012345678901234567890123456789x".into()))
        );
        assert_eq!(Magnet::parse("magnet:?xt=urn:btmh:1220abcd"), Err(MagnetError::V2Only));
        assert_eq!(Magnet::parse(&"a".repeat(MAX_LEN + 1)), Err(MagnetError::TooLong { len: MAX_LEN + 1 }));
        // A bad hash does not spoil a good one.
        let ok = format!("magnet:?xt=urn:btih:bad&xt=urn:btmh:1220ab&xt=urn:btih:{HEX}");
        assert_eq!(Magnet::parse(&ok).unwrap().info_hash, hash());
        let msg = Magnet::parse("magnet:?dn=x").unwrap_err().to_string();
        assert!(msg.contains("no BitTorrent info-hash"), "{msg}");
    }

    #[test]
    fn malformed_escapes_stay_literal() {
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=100%&dn=ignored&tr=%zz%4")).unwrap();
        assert_eq!(m.name.as_deref(), Some("100%"));
        assert_eq!(m.trackers, ["%zz%4"]);
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%FF%FE")).unwrap();
        assert_eq!(m.name.as_deref(), Some("\u{fffd}\u{fffd}"));
    }

    fn arb_magnet() -> impl Strategy<Value = Magnet> {
        (
            any::<[u8; 20]>(),
            proptest::option::of("[^\u{0}]{1,20}".prop_filter("not blank", |s: &String| !s.trim().is_empty())),
            proptest::collection::vec("[a-z]{1,5}://[ -~]{1,30}", 0..4),
            proptest::collection::vec(any::<(std::net::IpAddr, u16)>(), 0..4),
        )
            .prop_map(|(h, name, trackers, peers)| {
                let mut m = Magnet::from_info_hash(InfoHash(h));
                m.name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                for t in trackers {
                    let t = t.trim().to_owned();
                    if !m.trackers.contains(&t) {
                        m.trackers.push(t);
                    }
                }
                for (ip, port) in peers {
                    let a = SocketAddr::new(ip, port.max(1));
                    if !m.peers.contains(&a) {
                        m.peers.push(a);
                    }
                }
                m
            })
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(m in arb_magnet()) {
            prop_assert_eq!(Magnet::parse(&m.to_uri()), Ok(m));
        }

        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = Magnet::parse(&s);
            let _ = Magnet::parse(&format!("magnet:?{s}"));
        }
    }
}
