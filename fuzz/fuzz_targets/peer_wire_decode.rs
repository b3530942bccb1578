//! Feeds arbitrary bytes to the peer wire decoder in arbitrary splits.
//!
//! Input layout: byte 0 holds flags (bit 0: expect a handshake first), bytes 1–2 the frame
//! limit, bytes 3–10 a cycle of chunk sizes; the rest is the stream. Besides "no panic", every
//! decoded message must re-encode to bytes that decode back to it, and every extended
//! handshake must survive an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_wire::{Decoder, ExtendedHandshake, Message};

const HEADER: usize = 11;

fuzz_target!(|data: &[u8]| {
    let Some((header, stream)) = data.split_first_chunk::<HEADER>() else { return };
    let max_frame = u32::from(u16::from_be_bytes([header[1], header[2]]));
    let sizes = &header[3..];
    let mut dec = if header[0] & 1 == 1 {
        Decoder::new(max_frame)
    } else {
        Decoder::without_handshake(max_frame)
    };
    let mut need_handshake = header[0] & 1 == 1;

    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let size = (usize::from(sizes[i % sizes.len()]) + 1).min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        dec.push(chunk);
        if need_handshake {
            match dec.next_handshake() {
                Ok(Some(_)) => need_handshake = false,
                Ok(None) => continue,
                Err(_) => return,
            }
        }
        loop {
            match dec.next_message() {
                Ok(Some(msg)) => check(&msg),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(dec.buffered() <= chunk.len() + 4 + max_frame as usize);
    }
});

fn check(msg: &Message<'_>) {
    let mut out = Vec::new();
    msg.encode(&mut out);
    assert_eq!(Message::decode(&out[4..]).as_ref(), Ok(msg));
    if let Message::Extended { id: 0, payload } = *msg {
        if let Ok(mut hs) = ExtendedHandshake::decode(payload) {
            let mut enc = Vec::new();
            hs.encode(&mut enc);
            let mut again = ExtendedHandshake::decode(&enc).expect("own encoding decodes");
            hs.extensions.sort();
            again.extensions.sort();
            assert_eq!(again, hs);
        }
    }
}
