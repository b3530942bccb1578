use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

const HASH: InfoHash = InfoHash([7; 20]);
const OTHER: InfoHash = InfoHash([9; 20]);

fn lookup(known: &[InfoHash]) -> SkeyLookup {
    let table: Vec<([u8; 20], InfoHash)> = known.iter().map(|h| (skey_hash(h), *h)).collect();
    Box::new(move |req2| table.iter().find(|(k, _)| k == req2).map(|(_, h)| *h))
}

/// One end of an in-memory connection.
struct Side {
    hs: Option<Handshake>,
    est: Option<Established>,
    err: Option<MseError>,
    /// What this side sends once established (plaintext), and what arrived after its handshake.
    payload: Vec<u8>,
    received: Vec<u8>,
}

impl Side {
    fn new(hs: Handshake, payload: &[u8]) -> Self {
        Self { hs: Some(hs), est: None, err: None, payload: payload.to_vec(), received: Vec::new() }
    }

    /// Everything this side has to write now.
    fn transmit(&mut self) -> Vec<u8> {
        let Some(hs) = &mut self.hs else {
            return Vec::new();
        };
        let mut out = hs.take_transmit();
        if hs.is_done() {
            let mut est = self.hs.take().and_then(Handshake::established).expect("established");
            let mut payload = std::mem::take(&mut self.payload);
            if let Some(c) = &mut est.cipher {
                c.send.apply(&mut payload);
            }
            out.extend_from_slice(&payload);
            self.est = Some(est);
        }
        out
    }

    fn deliver(&mut self, data: &[u8]) {
        if self.err.is_some() {
            return;
        }
        let Some(hs) = &mut self.hs else {
            self.received.extend_from_slice(data);
            return;
        };
        match hs.receive(data) {
            Ok(n) => {
                assert!(n == data.len() || hs.is_done(), "unused bytes before the handshake ended");
                self.received.extend_from_slice(&data[n..]);
            }
            Err(e) => self.err = Some(e),
        }
    }

    /// The payload the peer sent, decrypted.
    fn payload_received(&mut self) -> Vec<u8> {
        let mut data = self.received.clone();
        if let Some(Established { cipher: Some(c), .. }) = &mut self.est {
            c.recv.apply(&mut data);
        }
        data
    }
}

/// Runs both ends to completion, delivering at most `chunk` bytes per read.
fn pump(a: &mut Side, b: &mut Side, chunk: usize) {
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    for _ in 0..100_000 {
        to_b.extend(a.transmit());
        to_a.extend(b.transmit());
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        let n = chunk.min(to_b.len());
        b.deliver(&to_b[..n]);
        to_b.drain(..n);
        let n = chunk.min(to_a.len());
        a.deliver(&to_a[..n]);
        to_a.drain(..n);
    }
    panic!("no end to the exchange");
}

fn pair(a_allowed: Allowed, b_allowed: Allowed, seed: u64) -> (Side, Side) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let a = Handshake::initiator(HASH, a_allowed, b"\x13BitTorrent protocol...", &mut rng).expect("initiator");
    let b = Handshake::responder(b_allowed, lookup(&[OTHER, HASH]), &mut rng);
    (Side::new(a, b"payload from A"), Side::new(b, b"payload from B"))
}

fn assert_established(a: &mut Side, b: &mut Side, rc4: bool) {
    assert_eq!((a.err.clone(), b.err.clone()), (None, None));
    let (ea, eb) = (a.est.as_ref().expect("A done"), b.est.as_ref().expect("B done"));
    assert_eq!(ea.info_hash, HASH);
    assert_eq!(eb.info_hash, HASH);
    assert_eq!(ea.cipher.is_some(), rc4);
    assert_eq!(eb.cipher.is_some(), rc4);
    assert!(ea.initial_payload.is_empty());
    assert_eq!(eb.initial_payload, b"\x13BitTorrent protocol...");
    assert_eq!(b.payload_received(), b"payload from A");
    assert_eq!(a.payload_received(), b"payload from B");
}

#[test]
fn every_policy_pair() {
    use Allowed::*;
    // (initiator, responder, Some(rc4?) when they agree, None when the responder refuses).
    let cases = [
        (Rc4Only, Rc4Only, Some(true)),
        (Rc4Only, PreferRc4, Some(true)),
        (Rc4Only, PlaintextOnly, None),
        (PreferRc4, Rc4Only, Some(true)),
        (PreferRc4, PreferRc4, Some(true)),
        (PreferRc4, PlaintextOnly, Some(false)),
        (PlaintextOnly, Rc4Only, None),
        (PlaintextOnly, PreferRc4, Some(false)),
        (PlaintextOnly, PlaintextOnly, Some(false)),
    ];
    for (i, (ia, rb, want)) in cases.into_iter().enumerate() {
        let (mut a, mut b) = pair(ia, rb, i as u64);
        pump(&mut a, &mut b, 4096);
        match want {
            Some(rc4) => assert_established(&mut a, &mut b, rc4),
            None => {
                let offered = ia.bits();
                assert_eq!(b.err, Some(MseError::NoCommonMethod { offered }), "{ia:?} -> {rb:?}");
                assert!(a.est.is_none());
            }
        }
    }
}

#[test]
fn initiator_refuses_a_method_it_did_not_offer() {
    let (mut a, mut b) = pair(Allowed::Rc4Only, Allowed::PlaintextOnly, 1);
    let m1 = a.transmit();
    b.deliver(&m1);
    let m2 = b.transmit();
    a.deliver(&m2);
    let mut m3 = a.transmit();
    // Turn crypto_provide 0x02 into 0x03 in transit (RC4 keeps a flipped bit in place): the
    // responder then picks plaintext, which the initiator never offered.
    m3[20 + 20 + 8 + 3] ^= 0x01;
    b.deliver(&m3);
    let m4 = b.transmit();
    a.deliver(&m4);
    assert_eq!(a.err, Some(MseError::BadSelect { selected: CRYPTO_PLAINTEXT }));
}

#[test]
fn one_byte_at_a_time_and_every_chunk_size() {
    for chunk in (1..=40).chain([95, 96, 97, 511, 512, 513, 531, 532, 533, 700]) {
        let (mut a, mut b) = pair(Allowed::PreferRc4, Allowed::PreferRc4, chunk as u64);
        pump(&mut a, &mut b, chunk);
        assert_established(&mut a, &mut b, true);
    }
}

/// A fresh initiator/responder pair, the same for the same seed.
fn fresh(seed: u64) -> (Handshake, Handshake) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let a = Handshake::initiator(HASH, Allowed::PreferRc4, b"ia", &mut rng).expect("initiator");
    (a, Handshake::responder(Allowed::PreferRc4, lookup(&[HASH]), &mut rng))
}

#[test]
fn split_at_every_byte_of_each_message() {
    let (mut a, mut b) = fresh(42);
    let m1 = a.take_transmit();
    assert_eq!(b.receive(&m1), Ok(m1.len()));
    let m2 = b.take_transmit();
    assert_eq!(a.receive(&m2), Ok(m2.len()));
    let m3 = a.take_transmit();
    assert_eq!(b.receive(&m3), Ok(m3.len()));
    let m4 = b.take_transmit();
    assert!(b.is_done());
    // Each message again, in two reads split at every possible point.
    let messages = [(&m1, false), (&m2, true), (&m3, false), (&m4, true)];
    for (i, (msg, to_initiator)) in messages.into_iter().enumerate() {
        for k in 0..=msg.len() {
            let (mut a2, mut b2) = fresh(42);
            let _ = a2.take_transmit();
            // Replay the messages before this one, then this one split at k.
            for (earlier, to_a) in &messages[..i] {
                let side = if *to_a { &mut a2 } else { &mut b2 };
                assert_eq!(side.receive(earlier), Ok(earlier.len()));
                let _ = side.take_transmit();
            }
            let side = if to_initiator { &mut a2 } else { &mut b2 };
            let n = side.receive(&msg[..k]).expect("first part");
            let rest = side.receive(&msg[n..]).expect("second part");
            assert_eq!(n + rest, msg.len(), "message {i} split at {k}");
            assert_eq!(side.is_done(), i >= 2, "message {i} split at {k}");
        }
    }
}

#[test]
fn payload_right_behind_the_handshake_is_left_to_the_caller() {
    let (mut a, mut b) = pair(Allowed::Rc4Only, Allowed::Rc4Only, 3);
    // Whole messages at once: the responder's step 4 and its payload arrive in one read.
    pump(&mut a, &mut b, usize::MAX);
    assert_established(&mut a, &mut b, true);
}

#[test]
fn unknown_torrent_is_refused() {
    let mut rng = SmallRng::seed_from_u64(5);
    let a = Handshake::initiator(HASH, Allowed::PreferRc4, b"", &mut rng).expect("initiator");
    let b = Handshake::responder(Allowed::PreferRc4, lookup(&[OTHER]), &mut rng);
    let (mut a, mut b) = (Side::new(a, b""), Side::new(b, b""));
    pump(&mut a, &mut b, 1000);
    assert_eq!(b.err, Some(MseError::UnknownTorrent));
}

#[test]
fn plaintext_bittorrent_is_not_mse() {
    let mut b = Handshake::responder(Allowed::PreferRc4, lookup(&[HASH]), &mut SmallRng::seed_from_u64(1));
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.resize(2000, 0x41);
    // 96 bytes read as a public key, then no req1 within the window.
    assert_eq!(b.receive(&hs), Err(MseError::NoSync { window: REQ1_WINDOW }));
    assert_eq!(b.receive(b"more"), Err(MseError::Failed));
}

#[test]
fn degenerate_public_keys_are_refused() {
    let p = BigUint::from_bytes_be(&PRIME);
    for y in [BigUint::from(0u32), BigUint::from(1u32), &p - 1u32, p.clone(), BigUint::from_bytes_be(&[0xFF; KEY_LEN])]
    {
        let mut b = Handshake::responder(Allowed::PreferRc4, lookup(&[HASH]), &mut SmallRng::seed_from_u64(1));
        assert_eq!(b.receive(&to_key_bytes(&y)), Err(MseError::BadPublicKey));
    }
}

#[test]
fn initiator_gives_up_without_vc_in_window() {
    let mut rng = SmallRng::seed_from_u64(9);
    let mut a = Handshake::initiator(HASH, Allowed::PreferRc4, b"", &mut rng).expect("initiator");
    let mut b = Handshake::responder(Allowed::PreferRc4, lookup(&[HASH]), &mut rng);
    let m1 = a.take_transmit();
    b.receive(&m1).expect("Ya");
    let mut m2 = b.take_transmit()[..KEY_LEN].to_vec();
    m2.resize(KEY_LEN + 2000, 0);
    assert_eq!(a.receive(&m2), Err(MseError::NoSync { window: VC_WINDOW }));
}

#[test]
fn oversized_initial_payload_is_refused() {
    let r = Handshake::initiator(HASH, Allowed::PreferRc4, &[0; 65536], &mut SmallRng::seed_from_u64(1));
    assert_eq!(r.err(), Some(MseError::PayloadTooLong(65536)));
}

#[test]
fn pads_and_keys_come_from_the_callers_rng() {
    let first = |seed| {
        Handshake::initiator(HASH, Allowed::PreferRc4, b"", &mut SmallRng::seed_from_u64(seed))
            .expect("initiator")
            .take_transmit()
    };
    assert_eq!(first(1), first(1));
    assert_ne!(first(1), first(2));
    let lens: std::collections::HashSet<usize> = (0..20).map(|s| first(s).len()).collect();
    assert!(lens.len() > 10, "padding lengths should vary: {lens:?}");
    assert!(lens.iter().all(|&l| (KEY_LEN..=KEY_LEN + MAX_PAD).contains(&l)));
}

proptest! {
    #[test]
    fn random_chunking_and_policies(seed: u64, chunk in 1usize..2000, a in 0usize..3, b in 0usize..3) {
        let all = [Allowed::Rc4Only, Allowed::PreferRc4, Allowed::PlaintextOnly];
        let (mut sa, mut sb) = pair(all[a], all[b], seed);
        pump(&mut sa, &mut sb, chunk);
        let agree = all[a].bits() & all[b].bits();
        if agree == 0 {
            prop_assert!(sb.err.is_some());
        } else {
            assert_established(&mut sa, &mut sb, agree & CRYPTO_RC4 != 0);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1500), split in 0usize..1500) {
        let mut b = Handshake::responder(Allowed::PreferRc4, lookup(&[HASH]), &mut SmallRng::seed_from_u64(1));
        let k = split.min(data.len());
        if let Ok(n) = b.receive(&data[..k]) {
            prop_assert!(n <= k);
            let _ = b.receive(&data[n..]);
        }
        let mut a = Handshake::initiator(HASH, Allowed::PreferRc4, b"", &mut SmallRng::seed_from_u64(1)).expect("initiator");
        let _ = a.receive(&data);
        prop_assert!(a.buf.len() <= VC_WINDOW && b.buf.len() <= REQ1_WINDOW + usize::from(u16::MAX));
    }
}
