//! Property tests of the decoder against whole streams split at random points.

use proptest::prelude::*;
use sluice_core::{InfoHash, PeerId};
use sluice_wire::{Decoder, Handshake, Message, WireError};

/// A message's fields without the borrow, so proptest can own it.
#[derive(Debug, Clone)]
struct Spec {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
    bytes: Vec<u8>,
}

const KINDS: u8 = 18;

impl Spec {
    fn message(&self) -> Message<'_> {
        let (a, b, c, bytes) = (self.a, self.b, self.c, &self.bytes[..]);
        match self.kind {
            0 => Message::KeepAlive,
            1 => Message::Choke,
            2 => Message::Unchoke,
            3 => Message::Interested,
            4 => Message::NotInterested,
            5 => Message::Have(a),
            6 => Message::Bitfield(bytes),
            7 => Message::Request { index: a, begin: b, length: c },
            8 => Message::Piece { index: a, begin: b, data: bytes },
            9 => Message::Cancel { index: a, begin: b, length: c },
            10 => Message::Port(a as u16),
            11 => Message::Suggest(a),
            12 => Message::HaveAll,
            13 => Message::HaveNone,
            14 => Message::Reject { index: a, begin: b, length: c },
            15 => Message::AllowedFast(a),
            16 => Message::Extended { id: a as u8, payload: bytes },
            // Ids 21..=255 are unknown to us.
            _ => Message::Unknown { id: 21 + (a % 235) as u8, payload: bytes },
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (0..KINDS, any::<u32>(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(kind, a, b, c, bytes)| Spec { kind, a, b, c, bytes })
}

/// Splits `stream` at the given fractions and returns the chunks.
fn chunks<'s>(stream: &'s [u8], cuts: &[u16]) -> Vec<&'s [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c as usize * stream.len() / u16::MAX as usize).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(&stream[start..p]);
        start = p;
    }
    out
}

proptest! {
    #[test]
    fn random_streams_decode_identically_across_splits(
        specs in prop::collection::vec(spec(), 0..40),
        cuts in prop::collection::vec(any::<u16>(), 0..60),
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
    ) {
        let hs = Handshake::new(InfoHash(info_hash), PeerId(peer_id));
        let mut stream = Vec::new();
        hs.encode(&mut stream);
        let mut expected = Vec::new();
        for s in &specs {
            let mut one = Vec::new();
            s.message().encode(&mut one);
            stream.extend_from_slice(&one);
            expected.push(one);
        }

        let mut dec = Decoder::new(400);
        let mut got_hs = None;
        let mut got = Vec::new();
        for chunk in chunks(&stream, &cuts) {
            dec.push(chunk);
            if got_hs.is_none() {
                got_hs = dec.next_handshake().unwrap();
                if got_hs.is_none() {
                    continue;
                }
            }
            while let Some(msg) = dec.next_message().unwrap() {
                let mut one = Vec::new();
                msg.encode(&mut one);
                got.push(one);
            }
        }
        prop_assert_eq!(got_hs, Some(hs));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<u16>(), 0..20),
        max_frame in 0u32..3000,
        handshake_first in any::<bool>(),
    ) {
        let mut dec =
            if handshake_first { Decoder::new(max_frame) } else { Decoder::without_handshake(max_frame) };
        let mut need_hs = handshake_first;
        'feed: for chunk in chunks(&bytes, &cuts) {
            dec.push(chunk);
            if need_hs {
                match dec.next_handshake() {
                    Ok(Some(_)) => need_hs = false,
                    Ok(None) => continue,
                    Err(_) => break,
                }
            }
            loop {
                match dec.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(dec.buffered() <= chunk.len() + 4 + max_frame as usize);
        }
    }

    #[test]
    fn oversized_length_errors_as_soon_as_the_prefix_is_in(
        max_frame in 0u32..1 << 20,
        excess in 1u32..1 << 20,
    ) {
        let len = max_frame + excess;
        let mut dec = Decoder::without_handshake(max_frame);
        dec.push(&len.to_be_bytes());
        prop_assert_eq!(dec.next_message(), Err(WireError::FrameTooLarge { len, max: max_frame }));
        prop_assert_eq!(dec.buffered(), 4);
    }

    #[test]
    fn any_frame_decodes_to_itself_or_a_length_error(
        id in any::<u8>(),
        payload in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut frame = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(id);
        frame.extend_from_slice(&payload);
        match Message::decode(&frame[4..]) {
            Ok(msg) => {
                let mut again = Vec::new();
                msg.encode(&mut again);
                prop_assert_eq!(again, frame);
            }
            Err(e) => prop_assert_eq!(e, WireError::BadLength { id, len: payload.len() as u32 }),
        }
    }
}
