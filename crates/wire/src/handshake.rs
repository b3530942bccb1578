//! The fixed 68-byte handshake both sides send first.

use sluice_core::{InfoHash, PeerId};

use crate::{WireError, reserved};

/// `pstrlen` followed by `pstr`: the first 20 bytes of every valid handshake.
pub(crate) const PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// The 68-byte opening of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    pub const LEN: usize = 68;

    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Self { reserved: reserved::SLUICE, info_hash, peer_id }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(Self::LEN);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.info_hash.0);
        out.extend_from_slice(&self.peer_id.0);
    }

    /// Parses exactly [`Handshake::LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_prefix(bytes)?;
        let bytes: &[u8; Self::LEN] = bytes.try_into().map_err(|_| WireError::BadHandshake("not 68 bytes long"))?;
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&bytes[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&bytes[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Self { reserved, info_hash: InfoHash(info_hash), peer_id: PeerId(peer_id) })
    }

    pub fn supports(&self, bit: (usize, u8)) -> bool {
        self.reserved[bit.0] & bit.1 != 0
    }
}

/// Checks as much of the protocol prefix as `bytes` holds, so a decoder can reject a
/// stranger after its first byte instead of waiting for 68.
pub(crate) fn check_prefix(bytes: &[u8]) -> Result<(), WireError> {
    let n = bytes.len().min(PREFIX.len());
    if n > 0 && bytes[0] != PREFIX[0] {
        return Err(WireError::BadHandshake("protocol string length is not 19"));
    }
    if bytes[..n] != PREFIX[..n] {
        return Err(WireError::BadHandshake("protocol string is not \"BitTorrent protocol\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        Handshake::new(InfoHash([0xaa; 20]), PeerId::sluice([7; 12]))
    }

    #[test]
    fn encodes_exact_bytes() {
        let mut out = vec![0xff];
        sample().encode(&mut out);
        assert_eq!(out.len(), 1 + Handshake::LEN);
        assert_eq!(out[1], 19);
        assert_eq!(&out[2..21], b"BitTorrent protocol");
        assert_eq!(&out[21..29], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&out[29..49], &[0xaa; 20]);
        assert_eq!(&out[49..57], b"-SL0100-");
        assert_eq!(&out[57..69], &[7; 12]);
    }

    #[test]
    fn round_trips_and_reports_bits() {
        let hs = sample();
        let mut out = Vec::new();
        hs.encode(&mut out);
        let back = Handshake::decode(&out).unwrap();
        assert_eq!(back, hs);
        assert!(back.supports(reserved::EXTENSION_PROTOCOL));
        assert!(back.supports(reserved::FAST));
        assert!(!back.supports(reserved::DHT));
    }

    #[test]
    fn rejects_bad_input() {
        let mut good = Vec::new();
        sample().encode(&mut good);
        assert!(Handshake::decode(&good[..67]).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(Handshake::decode(&longer).is_err());
        let mut bad_len = good.clone();
        bad_len[0] = 18;
        assert_eq!(Handshake::decode(&bad_len), Err(WireError::BadHandshake("protocol string length is not 19")));
        let mut bad_pstr = good.clone();
        bad_pstr[5] = b'x';
        assert!(matches!(Handshake::decode(&bad_pstr), Err(WireError::BadHandshake(_))));
        assert!(Handshake::decode(&[]).is_err());
    }
}
