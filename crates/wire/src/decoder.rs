//! Incremental decoding of one connection's inbound byte stream.
//!
//! Bytes live in a single `Vec` read through a cursor. Consumed bytes are dropped lazily in
//! [`Decoder::push`] (the only place no decoded message can still borrow the buffer): the
//! buffer is cleared when everything was consumed, and otherwise the unread tail is moved to
//! the front once the consumed prefix is both past a small threshold and at least as long as
//! the tail. Each byte is therefore moved at most a constant number of times on average, and
//! the buffer settles at a capacity of a few frames, after which decoding allocates nothing.

use crate::handshake::{self, Handshake};
use crate::{Message, WireError};

/// Consumed bytes below this are not worth a move.
const COMPACT_MIN: usize = 4096;

/// Incremental decoder for one connection: the handshake first, then length-prefixed frames.
/// Bytes may be pushed split at any point.
///
/// Errors do not consume input: asking again returns the same error. After an error the
/// connection must be dropped.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    max_frame: u32,
    awaiting_handshake: bool,
}

impl Decoder {
    /// `max_frame`: the largest frame payload accepted; larger frames are an error. It is
    /// compared with the frame's length prefix, which counts the id byte: a 16 KiB block
    /// arrives in a frame of `16384 + 9` bytes.
    pub fn new(max_frame: u32) -> Self {
        Self { buf: Vec::new(), pos: 0, max_frame, awaiting_handshake: true }
    }

    /// A decoder for a stream whose handshake was already read elsewhere (or that has none,
    /// as in tests): messages can be asked for at once.
    pub fn without_handshake(max_frame: u32) -> Self {
        Self { awaiting_handshake: false, ..Self::new(max_frame) }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= COMPACT_MIN && self.pos >= self.buf.len() - self.pos {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The handshake, once its 68 bytes are in. Call until it returns `Some` before
    /// asking for messages. Bytes that cannot start a handshake are rejected as soon as
    /// they arrive; calling again after the handshake was returned is an error.
    pub fn next_handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        if !self.awaiting_handshake {
            return Err(WireError::BadHandshake("handshake already decoded"));
        }
        let unread = &self.buf[self.pos..];
        handshake::check_prefix(unread)?;
        let Some(bytes) = unread.get(..Handshake::LEN) else {
            return Ok(None);
        };
        let hs = Handshake::decode(bytes)?;
        self.pos += Handshake::LEN;
        self.awaiting_handshake = false;
        Ok(Some(hs))
    }

    /// The next complete message, `None` if more bytes are needed. After an error the
    /// connection must be dropped.
    ///
    /// A length prefix above `max_frame` fails as soon as its four bytes are in, before any
    /// of the payload is waited for. Asking before the handshake was returned is an error.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, WireError> {
        if self.awaiting_handshake {
            return Err(WireError::BadHandshake("message requested before the handshake"));
        }
        let unread = &self.buf[self.pos..];
        let Some((prefix, rest)) = unread.split_first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len > self.max_frame {
            return Err(WireError::FrameTooLarge { len, max: self.max_frame });
        }
        let Some(body) = rest.get(..len as usize) else {
            return Ok(None);
        };
        let msg = Message::decode(body)?;
        self.pos += 4 + body.len();
        Ok(Some(msg))
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{InfoHash, PeerId};

    fn hs_bytes() -> (Handshake, Vec<u8>) {
        let hs = Handshake::new(InfoHash([1; 20]), PeerId([2; 20]));
        let mut out = Vec::new();
        hs.encode(&mut out);
        (hs, out)
    }

    #[test]
    fn handshake_then_messages_byte_by_byte() {
        let (hs, mut stream) = hs_bytes();
        Message::Unchoke.encode(&mut stream);
        Message::Piece { index: 1, begin: 2, data: b"hello" }.encode(&mut stream);
        Message::KeepAlive.encode(&mut stream);

        let mut dec = Decoder::new(1 << 15);
        let mut got_hs = None;
        let mut got = Vec::new();
        for &b in &stream {
            dec.push(&[b]);
            if got_hs.is_none() {
                got_hs = dec.next_handshake().unwrap();
                continue;
            }
            while let Some(m) = dec.next_message().unwrap() {
                got.push(format!("{m:?}"));
            }
        }
        assert_eq!(got_hs, Some(hs));
        assert_eq!(
            got,
            [
                format!("{:?}", Message::Unchoke),
                format!("{:?}", Message::Piece { index: 1, begin: 2, data: b"hello" }),
                format!("{:?}", Message::KeepAlive),
            ]
        );
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn handshake_and_first_message_in_one_push() {
        let (hs, mut stream) = hs_bytes();
        Message::HaveAll.encode(&mut stream);
        let mut dec = Decoder::new(100);
        dec.push(&stream);
        assert_eq!(dec.next_handshake(), Ok(Some(hs)));
        assert_eq!(dec.next_message(), Ok(Some(Message::HaveAll)));
        assert_eq!(dec.next_message(), Ok(None));
    }

    #[test]
    fn bad_handshake_fails_on_first_byte() {
        let mut dec = Decoder::new(100);
        dec.push(b"G");
        assert!(matches!(dec.next_handshake(), Err(WireError::BadHandshake(_))));
        let mut dec = Decoder::new(100);
        dec.push(b"\x13BitTorrent pro");
        assert_eq!(dec.next_handshake(), Ok(None));
        dec.push(b"xocol");
        assert!(matches!(dec.next_handshake(), Err(WireError::BadHandshake(_))));
    }

    #[test]
    fn order_is_enforced() {
        let mut dec = Decoder::new(100);
        assert!(dec.next_message().is_err());
        let (_, stream) = hs_bytes();
        dec.push(&stream);
        assert!(dec.next_handshake().unwrap().is_some());
        assert!(dec.next_handshake().is_err());
    }

    #[test]
    fn oversized_frame_fails_before_payload_arrives() {
        let mut dec = Decoder::without_handshake(16 * 1024 + 9);
        dec.push(&[0xff, 0xff]);
        assert_eq!(dec.next_message(), Ok(None));
        dec.push(&[0xff, 0xff]);
        let err = WireError::FrameTooLarge { len: u32::MAX, max: 16 * 1024 + 9 };
        assert_eq!(dec.next_message(), Err(err.clone()));
        assert_eq!(dec.next_message(), Err(err));
        assert_eq!(dec.buffered(), 4);
        assert!(dec.buf.capacity() < 64);
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let mut dec = Decoder::without_handshake(13);
        Message::Request { index: 1, begin: 2, length: 3 }.encode(&mut dec.buf);
        assert!(matches!(dec.next_message(), Ok(Some(Message::Request { .. }))));
        let mut dec = Decoder::without_handshake(12);
        Message::Request { index: 1, begin: 2, length: 3 }.encode(&mut dec.buf);
        assert!(matches!(dec.next_message(), Err(WireError::FrameTooLarge { len: 13, max: 12 })));
    }

    #[test]
    fn bad_length_is_reported_and_not_consumed() {
        let mut dec = Decoder::without_handshake(100);
        dec.push(&[0, 0, 0, 2, 4, 0]);
        let err = WireError::BadLength { id: 4, len: 1 };
        assert_eq!(dec.next_message(), Err(err.clone()));
        assert_eq!(dec.next_message(), Err(err));
        assert_eq!(dec.buffered(), 6);
    }

    #[test]
    fn steady_state_does_not_reallocate() {
        let block = vec![0x33; 16 * 1024];
        let mut stream = Vec::new();
        for i in 0..64 {
            Message::Have(i).encode(&mut stream);
            Message::Piece { index: i, begin: 0, data: &block }.encode(&mut stream);
        }
        let mut dec = Decoder::without_handshake(32 * 1024);
        let mut count = 0;
        let mut settled = None;
        for (n, chunk) in stream.chunks(10_000).enumerate() {
            dec.push(chunk);
            while dec.next_message().unwrap().is_some() {
                count += 1;
            }
            if n == 8 {
                settled = Some((dec.buf.capacity(), dec.buf.as_ptr()));
            }
            if n > 8 {
                assert_eq!(Some((dec.buf.capacity(), dec.buf.as_ptr())), settled);
            }
        }
        assert_eq!(count, 128);
        assert!(dec.buf.capacity() <= 64 * 1024, "{}", dec.buf.capacity());
    }
}
