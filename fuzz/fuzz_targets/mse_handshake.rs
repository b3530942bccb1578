//! The MSE handshake against hostile peers, in arbitrary splits.
//!
//! Input layout: byte 0 picks the mode, bytes 1–8 seed both sides' RNG, byte 9 the read size;
//! the rest is the mode's data.
//! - mode 0 / 1: the data is the stream a responder / initiator reads (a random one cannot
//!   pass the sync search, so this exercises the key and window checks);
//! - mode 2: a genuine initiator and responder talk, and the data is a list of (offset, xor)
//!   triples corrupting the initiator's bytes in transit (mode 3: the responder's). RC4 keeps a
//!   flipped bit in place, so this reaches the length, VC and method checks behind the
//!   encryption. With no corruption the handshake must succeed.
//!
//! Besides "no panic": consumed counts never exceed what was fed, and a failed handshake stays
//! failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use sluice_core::InfoHash;
use sluice_mse::{Allowed, Handshake, SkeyLookup, skey_hash};

const HEADER: usize = 10;
const HASH: InfoHash = InfoHash([0x5a; 20]);

fn lookup() -> SkeyLookup {
    let known = skey_hash(&HASH);
    Box::new(move |req2| (*req2 == known).then_some(HASH))
}

/// Feeds `data` in reads of `chunk`; returns whether the handshake is still alive.
fn feed(hs: &mut Handshake, data: &[u8], chunk: usize) -> bool {
    for part in data.chunks(chunk) {
        match hs.receive(part) {
            Ok(n) => {
                assert!(n <= part.len());
                if hs.is_done() {
                    return true;
                }
                assert_eq!(n, part.len());
            }
            Err(_) => {
                assert!(hs.receive(b"x").is_err(), "a failed handshake came back");
                return false;
            }
        }
    }
    true
}

fn corrupt(bytes: &mut [u8], flips: &[(usize, u8)], sent_before: usize) {
    for &(at, x) in flips {
        if let Some(b) = at.checked_sub(sent_before).and_then(|i| bytes.get_mut(i)) {
            *b ^= x;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<HEADER>() else { return };
    let seed = u64::from_le_bytes(header[1..9].try_into().unwrap_or_default());
    let chunk = usize::from(header[9]) * 3 + 1;
    let mut rng = SmallRng::seed_from_u64(seed);
    let allowed = [Allowed::PreferRc4, Allowed::Rc4Only, Allowed::PlaintextOnly][usize::from(header[9] % 3)];
    match header[0] % 4 {
        0 => {
            let mut b = Handshake::responder(allowed, lookup(), &mut rng);
            feed(&mut b, rest, chunk);
        }
        1 => {
            let ia = &rest[..rest.len().min(1000)];
            let mut a = Handshake::initiator(HASH, allowed, ia, &mut rng).expect("short payload");
            feed(&mut a, rest, chunk);
        }
        mode => {
            let flips: Vec<(usize, u8)> =
                rest.chunks_exact(3).map(|t| (usize::from(u16::from_be_bytes([t[0], t[1]])), t[2])).collect();
            let mut a = Handshake::initiator(HASH, allowed, b"ia", &mut rng).expect("short payload");
            let mut b = Handshake::responder(Allowed::PreferRc4, lookup(), &mut rng);
            let (mut sent_a, mut sent_b) = (0, 0);
            for _ in 0..4 {
                let mut m = a.take_transmit();
                if mode == 2 {
                    corrupt(&mut m, &flips, sent_a);
                }
                sent_a += m.len();
                feed(&mut b, &m, chunk);
                let mut m = b.take_transmit();
                if mode == 3 {
                    corrupt(&mut m, &flips, sent_b);
                }
                sent_b += m.len();
                feed(&mut a, &m, chunk);
            }
            let clean = flips.iter().all(|&(_, x)| x == 0);
            if clean {
                assert!(a.is_done() && b.is_done(), "an untouched handshake failed");
            }
        }
    }
});
