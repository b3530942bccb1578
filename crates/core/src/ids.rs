//! 20-byte identifiers: the v1 info-hash and the peer id.

use std::fmt;

/// SHA-1 of the raw bencoded `info` dictionary (BEP 3), or the truncated v2 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, the form every API and log line uses.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The 20-byte id a client sends in its handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// An Azureus-style id (`-SL0100-` followed by twelve bytes the caller chose at random).
    pub fn sluice(random: [u8; 12]) -> Self {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-SL0100-");
        id[8..].copy_from_slice(&random);
        Self(id)
    }

    /// `prefix` (a client's Azureus-style `-XX1234-`, or anything up to 20 bytes; longer is cut)
    /// followed by as much of `random` as fills the 20 bytes.
    pub fn prefixed(prefix: &[u8], random: [u8; 20]) -> Self {
        let mut id = random;
        let n = prefix.len().min(20);
        id[..n].copy_from_slice(&prefix[..n]);
        Self(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Client prefixes are printable; the random tail is shown as hex.
        let printable = self.0.iter().take_while(|b| b.is_ascii_graphic()).count().min(8);
        let head = String::from_utf8_lossy(&self.0[..printable]);
        write!(f, "PeerId({head}{})", hex::encode(&self.0[printable..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hash_hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex("zz"), None);
    }

    #[test]
    fn prefixed_peer_id_keeps_the_prefix_and_fills_the_rest() {
        let id = PeerId::prefixed(b"-qB4390-", [7; 20]);
        assert_eq!(&id.0[..8], b"-qB4390-");
        assert_eq!(&id.0[8..], &[7; 12]);
        assert_eq!(PeerId::prefixed(&[1; 25], [0; 20]), PeerId([1; 20]));
        assert_eq!(PeerId::prefixed(b"-SL0100-", [3; 20]), PeerId::sluice([3; 12]));
    }
}
