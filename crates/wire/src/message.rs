//! Peer messages: framing, ids and exact payload lengths.
//!
//! A frame is a big-endian `u32` length followed by that many bytes: an id byte and the
//! payload. Length zero is a keep-alive. Ids we do not know are surfaced as
//! [`Message::Unknown`] so new extensions from other clients never break a connection.

use crate::WireError;

mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 0x0D;
    pub const HAVE_ALL: u8 = 0x0E;
    pub const HAVE_NONE: u8 = 0x0F;
    pub const REJECT: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// One peer message (BEP 3, BEP 6 fast extension, BEP 10 extension protocol, BEP 5 port).
/// Payloads borrow from the decoder's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// An id we do not know; skipped, not an error.
    Unknown {
        id: u8,
        payload: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Appends the framed message (length prefix included).
    ///
    /// `Unknown` is written as its id and payload, so encoding `Unknown` with a known id
    /// produces that known message. Panics only if a payload exceeds what a `u32` frame
    /// length can describe (4 GiB), which no caller can produce from a valid torrent.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Message::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
            Message::Choke => simple(out, id::CHOKE),
            Message::Unchoke => simple(out, id::UNCHOKE),
            Message::Interested => simple(out, id::INTERESTED),
            Message::NotInterested => simple(out, id::NOT_INTERESTED),
            Message::HaveAll => simple(out, id::HAVE_ALL),
            Message::HaveNone => simple(out, id::HAVE_NONE),
            Message::Have(i) => with_u32(out, id::HAVE, i),
            Message::Suggest(i) => with_u32(out, id::SUGGEST, i),
            Message::AllowedFast(i) => with_u32(out, id::ALLOWED_FAST, i),
            Message::Request { index, begin, length } => triple(out, id::REQUEST, index, begin, length),
            Message::Cancel { index, begin, length } => triple(out, id::CANCEL, index, begin, length),
            Message::Reject { index, begin, length } => triple(out, id::REJECT, index, begin, length),
            Message::Port(port) => {
                header(out, 3, id::PORT);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Bitfield(bits) => {
                header(out, frame_len(1, bits.len()), id::BITFIELD);
                out.extend_from_slice(bits);
            }
            Message::Piece { index, begin, data } => {
                header(out, frame_len(9, data.len()), id::PIECE);
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Extended { id: ext, payload } => {
                header(out, frame_len(2, payload.len()), id::EXTENDED);
                out.push(ext);
                out.extend_from_slice(payload);
            }
            Message::Unknown { id, payload } => {
                header(out, frame_len(1, payload.len()), id);
                out.extend_from_slice(payload);
            }
        }
    }

    /// Decodes one frame body: the bytes after the length prefix (id and payload). An empty
    /// body is a keep-alive.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let Some((&id, p)) = body.split_first() else {
            return Ok(Message::KeepAlive);
        };
        let bad = || WireError::BadLength { id, len: u32::try_from(p.len()).unwrap_or(u32::MAX) };
        let exact = |n: usize| if p.len() == n { Ok(()) } else { Err(bad()) };
        let msg = match id {
            id::CHOKE => exact(0).map(|()| Message::Choke)?,
            id::UNCHOKE => exact(0).map(|()| Message::Unchoke)?,
            id::INTERESTED => exact(0).map(|()| Message::Interested)?,
            id::NOT_INTERESTED => exact(0).map(|()| Message::NotInterested)?,
            id::HAVE_ALL => exact(0).map(|()| Message::HaveAll)?,
            id::HAVE_NONE => exact(0).map(|()| Message::HaveNone)?,
            id::HAVE => Message::Have(single(p).ok_or_else(bad)?),
            id::SUGGEST => Message::Suggest(single(p).ok_or_else(bad)?),
            id::ALLOWED_FAST => Message::AllowedFast(single(p).ok_or_else(bad)?),
            id::REQUEST => {
                let [index, begin, length] = three(p).ok_or_else(bad)?;
                Message::Request { index, begin, length }
            }
            id::CANCEL => {
                let [index, begin, length] = three(p).ok_or_else(bad)?;
                Message::Cancel { index, begin, length }
            }
            id::REJECT => {
                let [index, begin, length] = three(p).ok_or_else(bad)?;
                Message::Reject { index, begin, length }
            }
            id::PORT => {
                let b: [u8; 2] = p.try_into().map_err(|_| bad())?;
                Message::Port(u16::from_be_bytes(b))
            }
            id::BITFIELD => Message::Bitfield(p),
            id::PIECE => {
                let (head, data) = p.split_first_chunk::<8>().ok_or_else(bad)?;
                Message::Piece { index: be(&head[..4]), begin: be(&head[4..]), data }
            }
            id::EXTENDED => {
                let (&ext, payload) = p.split_first().ok_or_else(bad)?;
                Message::Extended { id: ext, payload }
            }
            _ => Message::Unknown { id, payload: p },
        };
        Ok(msg)
    }
}

/// Appends the length prefix, id, index and begin of a `piece` message whose `data_len`
/// bytes of block data the caller appends next, so a block can go from storage to the
/// socket buffer without an intermediate [`Message`].
pub fn encode_piece_header(index: u32, begin: u32, data_len: u32, out: &mut Vec<u8>) {
    header(out, frame_len(9, data_len as usize), id::PIECE);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&begin.to_be_bytes());
}

fn frame_len(fixed: usize, var: usize) -> u32 {
    fixed
        .checked_add(var)
        .and_then(|n| u32::try_from(n).ok())
        .expect("message larger than a u32 frame length can describe")
}

fn header(out: &mut Vec<u8>, len: u32, id: u8) {
    out.extend_from_slice(&len.to_be_bytes());
    out.push(id);
}

fn simple(out: &mut Vec<u8>, id: u8) {
    header(out, 1, id);
}

fn with_u32(out: &mut Vec<u8>, id: u8, v: u32) {
    header(out, 5, id);
    out.extend_from_slice(&v.to_be_bytes());
}

fn triple(out: &mut Vec<u8>, id: u8, a: u32, b: u32, c: u32) {
    header(out, 13, id);
    for v in [a, b, c] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Big-endian `u32` from a slice the caller guarantees is 4 bytes long.
fn be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn single(p: &[u8]) -> Option<u32> {
    (p.len() == 4).then(|| be(p))
}

fn three(p: &[u8]) -> Option<[u32; 3]> {
    (p.len() == 12).then(|| [be(&p[..4]), be(&p[4..8]), be(&p[8..])])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(m: &Message<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    /// Every message with its exact wire bytes.
    fn cases() -> Vec<(Message<'static>, Vec<u8>)> {
        vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (Message::Have(0x0102_0304), vec![0, 0, 0, 5, 4, 1, 2, 3, 4]),
            (Message::Bitfield(&[0xf0, 0x01]), vec![0, 0, 0, 3, 5, 0xf0, 0x01]),
            (Message::Bitfield(&[]), vec![0, 0, 0, 1, 5]),
            (
                Message::Request { index: 1, begin: 0x4000, length: 0x4000 },
                vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece { index: 2, begin: 3, data: b"abc" },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 3, b'a', b'b', b'c'],
            ),
            (Message::Piece { index: 2, begin: 3, data: b"" }, vec![0, 0, 0, 9, 7, 0, 0, 0, 2, 0, 0, 0, 3]),
            (
                Message::Cancel { index: 1, begin: 2, length: 3 },
                vec![0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
            ),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::Suggest(7), vec![0, 0, 0, 5, 0x0d, 0, 0, 0, 7]),
            (Message::HaveAll, vec![0, 0, 0, 1, 0x0e]),
            (Message::HaveNone, vec![0, 0, 0, 1, 0x0f]),
            (
                Message::Reject { index: 9, begin: 8, length: 7 },
                vec![0, 0, 0, 13, 0x10, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 7],
            ),
            (Message::AllowedFast(5), vec![0, 0, 0, 5, 0x11, 0, 0, 0, 5]),
            (Message::Extended { id: 0, payload: b"de" }, vec![0, 0, 0, 4, 20, 0, b'd', b'e']),
            (Message::Extended { id: 3, payload: b"" }, vec![0, 0, 0, 2, 20, 3]),
            (Message::Unknown { id: 0x42, payload: b"xy" }, vec![0, 0, 0, 3, 0x42, b'x', b'y']),
            (Message::Unknown { id: 0xff, payload: b"" }, vec![0, 0, 0, 1, 0xff]),
        ]
    }

    #[test]
    fn encodes_and_decodes_exact_bytes() {
        for (msg, bytes) in cases() {
            assert_eq!(enc(&msg), bytes, "{msg:?}");
            assert_eq!(Message::decode(&bytes[4..]).unwrap(), msg, "{msg:?}");
        }
    }

    #[test]
    fn encode_appends() {
        let mut out = vec![9, 9];
        Message::Choke.encode(&mut out);
        Message::Have(1).encode(&mut out);
        assert_eq!(out, [9, 9, 0, 0, 0, 1, 0, 0, 0, 0, 5, 4, 0, 0, 0, 1]);
    }

    #[test]
    fn piece_header_matches_full_encoding() {
        let data = [0x5a; 100];
        let mut cheap = Vec::new();
        encode_piece_header(4, 0x8000, 100, &mut cheap);
        cheap.extend_from_slice(&data);
        assert_eq!(cheap, enc(&Message::Piece { index: 4, begin: 0x8000, data: &data }));
    }

    #[test]
    fn fixed_size_messages_check_their_length() {
        let wrong: &[(u8, &[usize])] = &[
            (0, &[1, 4]),
            (1, &[1]),
            (2, &[1]),
            (3, &[1]),
            (4, &[0, 3, 5]),
            (6, &[0, 11, 13]),
            (7, &[0, 7]),
            (8, &[11, 13]),
            (9, &[0, 1, 3]),
            (0x0d, &[3, 5]),
            (0x0e, &[1]),
            (0x0f, &[1]),
            (0x10, &[0, 12 + 1]),
            (0x11, &[0, 8]),
            (20, &[0]),
        ];
        for &(id, lens) in wrong {
            for &len in lens {
                let mut body = vec![id];
                body.resize(1 + len, 0);
                assert_eq!(
                    Message::decode(&body),
                    Err(WireError::BadLength { id, len: len as u32 }),
                    "id {id} len {len}"
                );
            }
        }
    }

    #[test]
    fn unknown_ids_are_not_errors() {
        for id in [10u8, 11, 12, 18, 19, 21, 100, 255] {
            let body = [id, 1, 2, 3];
            assert_eq!(Message::decode(&body), Ok(Message::Unknown { id, payload: &[1, 2, 3] }));
        }
    }
}
