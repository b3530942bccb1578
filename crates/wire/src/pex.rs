//! BEP 11 `ut_pex` messages: the payload of the extended message a peer registered under the
//! name `ut_pex`, telling which peers it connected to (`added`, with a flags byte each in
//! `added.f`) and which it lost (`dropped`) since its last message, IPv4 and IPv6 apart
//! (`added6`, `added6.f`, `dropped6`) in the compact forms of BEP 23 and BEP 7.
//!
//! Peers are strangers' claims about other strangers, so decoding is strict about the shape
//! and the size and does not trust a count it has not checked: the payload is limited to
//! [`PEX_MAX_PAYLOAD`] bytes before it is parsed, a compact list whose length is not a
//! multiple of its entry size or a flags string of the wrong length is an error, and more than
//! [`PEX_MAX_ENTRIES`] added (or dropped) peers in one message is an error (BEP 11 asks for 50
//! at most; libtorrent sends up to 100). Missing lists are empty, a missing flags string means
//! no flags, unknown keys are ignored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use sluice_bencode::Dict;

/// The extension's name in the extended handshake's `m` dictionary.
pub const UT_PEX: &str = "ut_pex";
/// Added (or dropped) peers one message may carry, IPv4 and IPv6 together.
pub const PEX_MAX_ENTRIES: usize = 200;
/// Largest payload decoded: room for the most entries a message may carry, in IPv6.
pub const PEX_MAX_PAYLOAD: usize = 8 * 1024;

/// `added.f` flag bits (BEP 11).
pub mod pex_flags {
    /// The peer prefers encryption.
    pub const ENCRYPTION: u8 = 0x01;
    /// The peer is a seed (or only uploads).
    pub const SEED: u8 = 0x02;
    /// The peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// The peer supports `ut_holepunch`.
    pub const HOLEPUNCH: u8 = 0x08;
    /// The sender reached the peer with an outgoing connection.
    pub const REACHABLE: u8 = 0x10;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    #[error("ut_pex payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("ut_pex payload is not bencode: {0}")]
    Bencode(String),
    #[error("ut_pex payload is {0}, not a dictionary")]
    NotADictionary(&'static str),
    #[error("ut_pex key {key} is {found}, not a byte string")]
    NotAString { key: &'static str, found: &'static str },
    #[error("ut_pex key {key} has {len} bytes, not a multiple of {entry}")]
    BadLength { key: &'static str, len: usize, entry: usize },
    #[error("ut_pex key {key} has {flags} flags for {peers} peers")]
    FlagsMismatch { key: &'static str, flags: usize, peers: usize },
    #[error("ut_pex message with {count} {what} peers, more than {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
}

/// A peer someone tells us about, with its `added.f` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PexPeer {
    pub addr: SocketAddr,
    pub flags: u8,
}

/// One `ut_pex` message. Encoding writes IPv4 and IPv6 addresses to their own keys (an IPv4
/// address mapped into IPv6 stays IPv6); decoding returns IPv4 entries first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    pub added: Vec<PexPeer>,
    pub dropped: Vec<SocketAddr>,
}

const V4: usize = 6;
const V6: usize = 18;

impl PexMessage {
    /// Decodes the payload of an extended message (after the extended id byte). Bytes after
    /// the dictionary are ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, PexError> {
        if payload.len() > PEX_MAX_PAYLOAD {
            return Err(PexError::TooLarge { len: payload.len(), max: PEX_MAX_PAYLOAD });
        }
        let (root, _) = sluice_bencode::decode_prefix(payload).map_err(|e| PexError::Bencode(e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(PexError::NotADictionary(root.kind()));
        }
        let string = |key: &'static str| -> Result<&[u8], PexError> {
            match root.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(v) => v.as_bytes().ok_or(PexError::NotAString { key, found: v.kind() }),
            }
        };
        let compact = |key: &'static str, entry: usize| -> Result<&[u8], PexError> {
            let bytes = string(key)?;
            if bytes.len() % entry != 0 {
                return Err(PexError::BadLength { key, len: bytes.len(), entry });
            }
            Ok(bytes)
        };
        let (added4, added6) = (compact("added", V4)?, compact("added6", V6)?);
        let (dropped4, dropped6) = (compact("dropped", V4)?, compact("dropped6", V6)?);
        let added = added4.len() / V4 + added6.len() / V6;
        let dropped = dropped4.len() / V4 + dropped6.len() / V6;
        for (what, count) in [("added", added), ("dropped", dropped)] {
            if count > PEX_MAX_ENTRIES {
                return Err(PexError::TooMany { what, count, max: PEX_MAX_ENTRIES });
            }
        }
        let flags = |key: &'static str, peers: usize| -> Result<&[u8], PexError> {
            let f = string(key)?;
            if !f.is_empty() && f.len() != peers {
                return Err(PexError::FlagsMismatch { key, flags: f.len(), peers });
            }
            Ok(f)
        };
        let (flags4, flags6) = (flags("added.f", added4.len() / V4)?, flags("added6.f", added6.len() / V6)?);

        let mut msg = PexMessage { added: Vec::with_capacity(added), dropped: Vec::with_capacity(dropped) };
        for (i, entry) in added4.chunks_exact(V4).enumerate() {
            msg.added.push(PexPeer { addr: v4(entry), flags: flags4.get(i).copied().unwrap_or(0) });
        }
        for (i, entry) in added6.chunks_exact(V6).enumerate() {
            msg.added.push(PexPeer { addr: v6(entry), flags: flags6.get(i).copied().unwrap_or(0) });
        }
        msg.dropped.extend(dropped4.chunks_exact(V4).map(v4));
        msg.dropped.extend(dropped6.chunks_exact(V6).map(v6));
        Ok(msg)
    }

    /// Appends the bencoded dictionary (no framing), all six keys present. The caller keeps
    /// within the limits [`PexMessage::decode`] enforces.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let [mut a4, mut f4, mut a6, mut f6, mut d4, mut d6]: [Vec<u8>; 6] = Default::default();
        for p in &self.added {
            match p.addr {
                SocketAddr::V4(a) => {
                    put_v4(&mut a4, a);
                    f4.push(p.flags);
                }
                SocketAddr::V6(a) => {
                    put_v6(&mut a6, a);
                    f6.push(p.flags);
                }
            }
        }
        for d in &self.dropped {
            match *d {
                SocketAddr::V4(a) => put_v4(&mut d4, a),
                SocketAddr::V6(a) => put_v6(&mut d6, a),
            }
        }
        Dict::new()
            .with("added", a4)
            .with("added.f", f4)
            .with("added6", a6)
            .with("added6.f", f6)
            .with("dropped", d4)
            .with("dropped6", d6)
            .encode_into(out);
    }
}

fn v4(b: &[u8]) -> SocketAddr {
    let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([b[4], b[5]])))
}

fn v6(b: &[u8]) -> SocketAddr {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&b[..16]);
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([b[16], b[17]]), 0, 0))
}

fn put_v4(out: &mut Vec<u8>, a: SocketAddrV4) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn put_v6(out: &mut Vec<u8>, a: SocketAddrV6) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn peer(s: &str, flags: u8) -> PexPeer {
        PexPeer { addr: s.parse().unwrap(), flags }
    }

    fn round_trip(msg: &PexMessage) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(&PexMessage::decode(&out).unwrap(), msg);
        out
    }

    #[test]
    fn encodes_compact_lists_by_family() {
        let msg = PexMessage {
            added: vec![peer("1.2.3.4:258", pex_flags::SEED), peer("[::1]:6881", pex_flags::REACHABLE)],
            dropped: vec!["10.0.0.1:80".parse().unwrap()],
        };
        let out = round_trip(&msg);
        let mut want = Vec::new();
        want.extend_from_slice(b"d5:added6:\x01\x02\x03\x04\x01\x027:added.f1:\x02");
        want.extend_from_slice(b"6:added618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1");
        want.extend_from_slice(b"8:added6.f1:\x10");
        want.extend_from_slice(b"7:dropped6:\x0a\x00\x00\x01\x00\x508:dropped60:e");
        assert_eq!(out, want);
        round_trip(&PexMessage::default());
    }

    #[test]
    fn decodes_what_libtorrent_sends() {
        // A first message: empty dropped lists, no IPv6.
        let msg = PexMessage::decode(b"d5:added12:\x7f\x00\x00\x33\x1a\xe1\x7f\x00\x00\x34\x1a\xe27:added.f2:\x02\x007:dropped0:6:added60:8:added6.f0:8:dropped60:e")
            .unwrap();
        assert_eq!(msg.added, [peer("127.0.0.51:6881", 2), peer("127.0.0.52:6882", 0)]);
        assert!(msg.dropped.is_empty());
    }

    #[test]
    fn lenient_about_missing_keys_flags_and_extras() {
        let msg = PexMessage::decode(b"d5:added6:\x01\x01\x01\x01\x00\x013:fooi1ee").unwrap();
        assert_eq!(msg.added, [peer("1.1.1.1:1", 0)]);
        assert_eq!(PexMessage::decode(b"de").unwrap(), PexMessage::default());
        assert_eq!(PexMessage::decode(b"dexyz").unwrap(), PexMessage::default());
    }

    type Expect = fn(&PexError) -> bool;

    #[test]
    fn rejects_malformed_lengths_and_shapes() {
        let cases: [(&[u8], Expect); 8] = [
            (b"", |e| matches!(e, PexError::Bencode(_))),
            (b"d5:added", |e| matches!(e, PexError::Bencode(_))),
            (b"le", |e| matches!(e, PexError::NotADictionary("a list"))),
            (b"d5:addedi1ee", |e| matches!(e, PexError::NotAString { key: "added", .. })),
            (b"d5:added5:abcdee", |e| matches!(e, PexError::BadLength { key: "added", len: 5, entry: 6 })),
            (b"d6:added67:abcdefge", |e| matches!(e, PexError::BadLength { key: "added6", len: 7, entry: 18 })),
            (b"d7:dropped7:abcdefge", |e| matches!(e, PexError::BadLength { key: "dropped", .. })),
            (b"d5:added6:abcdef7:added.f2:xye", |e| {
                matches!(e, PexError::FlagsMismatch { key: "added.f", flags: 2, peers: 1 })
            }),
        ];
        for (bytes, expected) in cases {
            let err = PexMessage::decode(bytes).unwrap_err();
            assert!(expected(&err), "{bytes:?}: {err:?}");
        }
    }

    #[test]
    fn rejects_floods() {
        let entries = |n: usize| {
            let added: Vec<PexPeer> = (0..n)
                .map(|i| PexPeer { addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1)), flags: 0 })
                .collect();
            let mut out = Vec::new();
            PexMessage { added: added.clone(), dropped: added.iter().map(|p| p.addr).collect() }.encode(&mut out);
            out
        };
        assert!(PexMessage::decode(&entries(PEX_MAX_ENTRIES)).is_ok());
        assert_eq!(
            PexMessage::decode(&entries(PEX_MAX_ENTRIES + 1)),
            Err(PexError::TooMany { what: "added", count: PEX_MAX_ENTRIES + 1, max: PEX_MAX_ENTRIES })
        );
        let mut dropped = Vec::new();
        let many: Vec<SocketAddr> =
            (0..=PEX_MAX_ENTRIES as u16).map(|p| SocketAddr::from(([10, 0, 0, 1], p))).collect();
        PexMessage { added: Vec::new(), dropped: many }.encode(&mut dropped);
        assert!(matches!(PexMessage::decode(&dropped), Err(PexError::TooMany { what: "dropped", .. })));
        // The most a message may carry, all IPv6, fits the payload limit.
        let v6: Vec<PexPeer> = (0..PEX_MAX_ENTRIES as u16)
            .map(|p| PexPeer { addr: SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], p)), flags: 0 })
            .collect();
        round_trip(&PexMessage { dropped: v6.iter().map(|p| p.addr).collect(), added: v6 });
        let big = vec![b'x'; PEX_MAX_PAYLOAD + 1];
        assert_eq!(
            PexMessage::decode(&big),
            Err(PexError::TooLarge { len: PEX_MAX_PAYLOAD + 1, max: PEX_MAX_PAYLOAD })
        );
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_sorted_by_family(
            added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..60),
            dropped in proptest::collection::vec(arb_addr(), 0..60),
        ) {
            let mut added: Vec<PexPeer> = added.into_iter().map(|(addr, flags)| PexPeer { addr, flags }).collect();
            let mut dropped = dropped;
            // Decoding returns IPv4 entries first, each family in order.
            added.sort_by_key(|p| p.addr.is_ipv6());
            dropped.sort_by_key(SocketAddr::is_ipv6);
            round_trip(&PexMessage { added, dropped });
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PexMessage::decode(&bytes);
        }
    }
}
