//! BEP 9 `ut_metadata` messages: the payload of the extended message a peer registered
//! under the name `ut_metadata`, used to fetch a torrent's info dictionary in 16 KiB pieces.
//!
//! The payload is a bencoded dictionary, followed (in a data message only) by the piece's
//! bytes. Like the extended handshake, decoding ignores keys it does not know; unlike it,
//! the keys a message needs (`msg_type`, `piece`, and `total_size` for data) must be there
//! with sane values, because a request or a piece we cannot place is of no use. A
//! `msg_type` we do not know decodes as [`MetadataMsg::Other`], which BEP 9 says to ignore.

use sluice_bencode::{Dict, Value};

use crate::WireError;

/// The extension's name in the extended handshake's `m` dictionary.
pub const UT_METADATA: &str = "ut_metadata";
/// Bytes per metadata piece; the last piece may be shorter.
pub const METADATA_PIECE_LEN: u32 = 16 * 1024;

mod msg_type {
    pub const REQUEST: i64 = 0;
    pub const DATA: i64 = 1;
    pub const REJECT: i64 = 2;
}

/// One `ut_metadata` message; a data message's bytes borrow from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg<'a> {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u64,
        data: &'a [u8],
    },
    Reject {
        piece: u32,
    },
    /// A message type from a later revision of the extension: ignore it.
    Other {
        msg_type: i64,
    },
}

fn bad(why: impl Into<String>) -> WireError {
    WireError::BadMetadataMessage(why.into())
}

impl<'a> MetadataMsg<'a> {
    /// Decodes the payload of an extended message (after the extended id byte).
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let (root, used) = sluice_bencode::decode_prefix(payload).map_err(|e| bad(e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(bad(format!("expected a dictionary, found {}", root.kind())));
        }
        let msg_type = root.get(b"msg_type").and_then(Value::as_int).ok_or_else(|| bad("no integer msg_type"))?;
        if !matches!(msg_type, msg_type::REQUEST | msg_type::DATA | msg_type::REJECT) {
            return Ok(Self::Other { msg_type });
        }
        let piece = root
            .get(b"piece")
            .and_then(Value::as_int)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("no piece index in 0..2^32"))?;
        Ok(match msg_type {
            msg_type::REQUEST => Self::Request { piece },
            msg_type::REJECT => Self::Reject { piece },
            _ => {
                let total_size = root
                    .get(b"total_size")
                    .and_then(Value::as_int)
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or_else(|| bad("data without a non-negative total_size"))?;
                Self::Data { piece, total_size, data: &payload[used..] }
            }
        })
    }

    /// Appends the payload (dictionary, then a data message's bytes; no framing). `Other`
    /// writes just its `msg_type`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, piece) = match *self {
            Self::Request { piece } => (msg_type::REQUEST, piece),
            Self::Data { piece, .. } => (msg_type::DATA, piece),
            Self::Reject { piece } => (msg_type::REJECT, piece),
            Self::Other { msg_type } => {
                Dict::new().with("msg_type", msg_type).encode_into(out);
                return;
            }
        };
        let mut dict = Dict::new().with("msg_type", kind).with("piece", i64::from(piece));
        if let Self::Data { total_size, .. } = *self {
            // Sizes beyond i64 cannot be bencoded; callers never hold such metadata.
            dict.insert("total_size", i64::try_from(total_size).unwrap_or(i64::MAX));
        }
        dict.encode_into(out);
        if let Self::Data { data, .. } = *self {
            out.extend_from_slice(data);
        }
    }
}

/// Number of metadata pieces of a `size`-byte info dictionary.
pub fn metadata_pieces(size: u32) -> u32 {
    size.div_ceil(METADATA_PIECE_LEN)
}

/// Byte range of metadata piece `piece` in a `size`-byte info dictionary, `None` past the end.
pub fn metadata_piece_range(size: u32, piece: u32) -> Option<std::ops::Range<usize>> {
    let start = piece.checked_mul(METADATA_PIECE_LEN).filter(|&s| s < size)?;
    let end = start + METADATA_PIECE_LEN.min(size - start);
    Some(start as usize..end as usize)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(msg: &MetadataMsg<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(&MetadataMsg::decode(&out).unwrap(), msg);
        out
    }

    #[test]
    fn encodes_what_bep9_shows() {
        assert_eq!(round_trip(&MetadataMsg::Request { piece: 0 }), b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(round_trip(&MetadataMsg::Reject { piece: 3 }), b"d8:msg_typei2e5:piecei3ee");
        assert_eq!(
            round_trip(&MetadataMsg::Data { piece: 1, total_size: 20000, data: b"xyz" }),
            b"d8:msg_typei1e5:piecei1e10:total_sizei20000eexyz"
        );
    }

    #[test]
    fn lenient_about_extra_keys_and_unknown_types() {
        let m = MetadataMsg::decode(b"d3:fooi1e8:msg_typei0e5:piecei7e1:z0:e").unwrap();
        assert_eq!(m, MetadataMsg::Request { piece: 7 });
        assert_eq!(MetadataMsg::decode(b"d8:msg_typei9ee").unwrap(), MetadataMsg::Other { msg_type: 9 });
        // Bytes after a request's dictionary are ignored.
        assert_eq!(MetadataMsg::decode(b"d8:msg_typei2e5:piecei0eeXX").unwrap(), MetadataMsg::Reject { piece: 0 });
    }

    #[test]
    fn strict_about_what_a_message_needs() {
        for bad in [
            &b""[..],
            b"le",
            b"d8:msg_type1:0e",
            b"d5:piecei0ee",
            b"d8:msg_typei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_typei0e5:piecei4294967296ee",
            b"d8:msg_typei1e5:piecei0ee",
            b"d8:msg_typei1e5:piecei0e10:total_sizei-4ee",
            b"d8:msg_typei1e5:piecei0e10:total_size",
        ] {
            assert!(matches!(MetadataMsg::decode(bad), Err(WireError::BadMetadataMessage(_))), "{bad:?}");
        }
    }

    #[test]
    fn piece_ranges() {
        assert_eq!(metadata_pieces(1), 1);
        assert_eq!(metadata_pieces(16384), 1);
        assert_eq!(metadata_pieces(16385), 2);
        assert_eq!(metadata_piece_range(16385, 0), Some(0..16384));
        assert_eq!(metadata_piece_range(16385, 1), Some(16384..16385));
        assert_eq!(metadata_piece_range(16385, 2), None);
        assert_eq!(metadata_piece_range(0, 0), None);
        assert_eq!(metadata_piece_range(u32::MAX, u32::MAX), None);
    }

    proptest! {
        #[test]
        fn data_round_trips(piece in any::<u32>(), total in 0u64..1 << 40, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            round_trip(&MetadataMsg::Data { piece, total_size: total, data: &data });
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = MetadataMsg::decode(&bytes);
        }
    }
}
