//! Message Stream Encryption (MSE, also called PE): the obfuscated handshake many BitTorrent
//! peers insist on, as a sans-IO state machine.
//!
//! Why it exists: some networks throttle or cut recognisable BitTorrent traffic, and many
//! clients (libtorrent with `pe_forced`, Vuze, qBittorrent set to "require encryption") refuse
//! plaintext peers. MSE hides the handshake behind a Diffie-Hellman exchange and, if both sides
//! choose, the whole stream behind RC4. It is obfuscation, not security: there is no
//! authentication, and RC4 is broken as a cipher. It only has to look random.
//!
//! The exchange (A initiates, B responds; `S` the DH secret, `SKEY` the info-hash):
//!
//! 1. A→B `Ya`, `PadA`
//! 2. B→A `Yb`, `PadB`
//! 3. A→B `HASH('req1', S)`, `HASH('req2', SKEY) xor HASH('req3', S)`,
//!    `ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA))`, `ENCRYPT(IA)`
//! 4. B→A `ENCRYPT(VC, crypto_select, len(PadD), PadD)`, then the payload stream
//! 5. A→B the payload stream
//!
//! Paddings have random lengths (0..=512), so each side finds the next field by searching for
//! a synchronisation pattern (`HASH('req1', S)` for B, the encrypted `VC` for A) within a
//! bounded window; nothing here buffers more than that window, a pad, or `IA` (at most 64 KiB,
//! a `u16` length). `IA`, the initial payload, lets the initiator send its BitTorrent
//! handshake without waiting a round trip.
//!
//! The crate is pure: randomness (private keys, padding) comes from the caller's RNG, there is
//! no clock and no I/O. The driver feeds received bytes to [`Handshake::receive`], writes out
//! [`Handshake::take_transmit`], and once [`Handshake::is_done`] takes the [`Established`]
//! result: the info-hash, and an RC4 [`Cipher`] pair to apply to every later byte (or `None`
//! when plaintext was selected).

use num_bigint::BigUint;
use rand::RngCore;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};
use sluice_core::InfoHash;

/// The 768-bit prime of the MSE Diffie-Hellman group (generator 2).
const PRIME: [u8; KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34, 0xC4, 0xC6, 0x62,
    0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74, 0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13,
    0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD, 0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30,
    0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37, 0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76,
    0x62, 0x5E, 0x7E, 0xC6, 0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05,
    0x63,
];
/// Public keys and the shared secret are 96-byte big-endian numbers.
pub const KEY_LEN: usize = 96;
/// Private keys: the spec asks for at least 128 bits and sees no gain past 180.
const PRIVATE_LEN: usize = 20;
/// Longest padding the spec allows.
pub const MAX_PAD: usize = 512;
/// The verification constant: eight zero bytes, encrypted.
const VC: [u8; 8] = [0; 8];
/// RC4's first keystream bytes leak key material; MSE drops this many.
const DISCARD: usize = 1024;
/// B looks for `HASH('req1', S)` at most this far past `Ya` (the spec's 532 bytes).
pub const REQ1_WINDOW: usize = MAX_PAD + 20;
/// A looks for the encrypted `VC` at most this far past `Yb`.
pub const VC_WINDOW: usize = MAX_PAD + VC.len();

const CRYPTO_PLAINTEXT: u32 = 0x01;
const CRYPTO_RC4: u32 = 0x02;

/// Which payload methods a side accepts once the handshake is through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// RC4 only: a peer that cannot do RC4 is refused.
    Rc4Only,
    /// RC4 when the peer offers it, else plaintext.
    PreferRc4,
    /// Only the handshake is obfuscated; the payload goes in plaintext.
    PlaintextOnly,
}

impl Allowed {
    fn bits(self) -> u32 {
        match self {
            Self::Rc4Only => CRYPTO_RC4,
            Self::PreferRc4 => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
            Self::PlaintextOnly => CRYPTO_PLAINTEXT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    #[error("the peer's public key is not in the group's range")]
    BadPublicKey,
    #[error("no synchronisation pattern within {window} bytes: not an MSE peer, or a corrupt stream")]
    NoSync { window: usize },
    #[error("the peer asked for a torrent we do not serve")]
    UnknownTorrent,
    #[error("verification constant mismatch (wrong key or corrupt stream)")]
    BadVerification,
    #[error("padding of {0} bytes is longer than the 512 allowed")]
    PadTooLong(u16),
    #[error("the peer offers crypto methods {offered:#x}, none of which we allow")]
    NoCommonMethod { offered: u32 },
    #[error("the peer selected crypto method {selected:#x}, which we did not offer")]
    BadSelect { selected: u32 },
    #[error("initial payload of {0} bytes is longer than the 65535 allowed")]
    PayloadTooLong(usize),
    #[error("the handshake failed earlier")]
    Failed,
}

/// What the driver looks up for an encrypted inbound connection: given `HASH('req2', SKEY)`,
/// the info-hash it stands for (see [`skey_hash`]), if we serve it.
pub type SkeyLookup = Box<dyn Fn(&[u8; 20]) -> Option<InfoHash> + Send + Sync>;

/// `HASH('req2', info_hash)`: how a responder recognises the torrent an initiator asks for.
pub fn skey_hash(info_hash: &InfoHash) -> [u8; 20] {
    hash(&[b"req2", &info_hash.0])
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// One direction of an RC4 stream, its first 1024 keystream bytes already dropped.
pub struct Rc4Stream(Rc4);

impl Rc4Stream {
    fn new(label: &[u8], secret: &[u8; KEY_LEN], skey: &InfoHash) -> Self {
        let key = hash(&[label, secret, &skey.0]);
        let mut rc4 = Rc4::new_from_slice(&key).expect("a 20-byte key is in RC4's 1..=256 range");
        let mut drop = [0u8; DISCARD];
        rc4.apply_keystream(&mut drop);
        Self(rc4)
    }

    /// Encrypts or decrypts `buf` in place, advancing the keystream.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

impl std::fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Stream")
    }
}

/// The RC4 pair of an established connection: `send` for every byte written, `recv` for every
/// byte read after the handshake.
#[derive(Debug)]
pub struct Cipher {
    pub send: Rc4Stream,
    pub recv: Rc4Stream,
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    pub info_hash: InfoHash,
    /// `None`: plaintext was selected; the payload goes as it is.
    pub cipher: Option<Cipher>,
    /// Responder: the initiator's initial payload (`IA`, decrypted; usually its BitTorrent
    /// handshake), to be read before anything else. Initiator: empty.
    pub initial_payload: Vec<u8>,
}

enum Role {
    Initiator { ia: Vec<u8> },
    Responder { lookup: SkeyLookup },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    // Initiator.
    PeerKeyB,
    SyncVc { enc_vc: [u8; 8] },
    Select,
    PadD { len: usize },
    // Responder.
    PeerKeyA,
    SyncReq1 { req1: [u8; 20] },
    Skey,
    Provide,
    PadC { len: usize },
    IaLen,
    Ia { len: usize },
    Done,
    Failed,
}

/// One side of an MSE handshake in progress.
pub struct Handshake {
    role: Role,
    allowed: Allowed,
    private: BigUint,
    /// The padding this side sends next (PadA/PadC or PadB/PadD), drawn up front.
    pads: [Vec<u8>; 2],
    state: State,
    /// The field being read: never longer than a sync window, a pad or `IA`.
    buf: Vec<u8>,
    out: Vec<u8>,
    secret: [u8; KEY_LEN],
    info_hash: Option<InfoHash>,
    send: Option<Rc4Stream>,
    recv: Option<Rc4Stream>,
    provide: u32,
    rc4: bool,
    initial_payload: Vec<u8>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Initiator { .. } => "initiator",
            Role::Responder { .. } => "responder",
        };
        f.debug_struct("Handshake")
            .field("role", &role)
            .field("allowed", &self.allowed)
            .field("state", &self.state)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The connecting side, which knows the torrent. `initial_payload` (at most 65535 bytes)
    /// goes encrypted in step 3, before the peer answers: typically the BitTorrent handshake.
    /// Step 1 is ready in [`Handshake::take_transmit`] at once.
    pub fn initiator(
        info_hash: InfoHash,
        allowed: Allowed,
        initial_payload: &[u8],
        rng: &mut impl RngCore,
    ) -> Result<Self, MseError> {
        if initial_payload.len() > usize::from(u16::MAX) {
            return Err(MseError::PayloadTooLong(initial_payload.len()));
        }
        let mut hs = Self::new(Role::Initiator { ia: initial_payload.to_vec() }, allowed, State::PeerKeyB, rng);
        hs.info_hash = Some(info_hash);
        hs.send_public_key();
        Ok(hs)
    }

    /// The accepting side: it learns the torrent from step 3 through `lookup`.
    pub fn responder(allowed: Allowed, lookup: SkeyLookup, rng: &mut impl RngCore) -> Self {
        Self::new(Role::Responder { lookup }, allowed, State::PeerKeyA, rng)
    }

    fn new(role: Role, allowed: Allowed, state: State, rng: &mut impl RngCore) -> Self {
        let mut private = [0u8; PRIVATE_LEN];
        rng.fill_bytes(&mut private);
        let pads = [random_pad(rng), random_pad(rng)];
        Self {
            role,
            allowed,
            private: BigUint::from_bytes_be(&private),
            pads,
            state,
            buf: Vec::new(),
            out: Vec::new(),
            secret: [0; KEY_LEN],
            info_hash: None,
            send: None,
            recv: None,
            provide: 0,
            rc4: false,
            initial_payload: Vec::new(),
        }
    }

    /// Bytes to write to the peer (empty when there are none), in order.
    pub fn take_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds bytes read from the peer; returns how many belong to the handshake. Once it is
    /// done, the rest of `data` is payload: pass it through the [`Cipher`]'s `recv` (if any)
    /// like everything read later. Write [`Handshake::take_transmit`] after every call.
    pub fn receive(&mut self, data: &[u8]) -> Result<usize, MseError> {
        let mut used = 0;
        loop {
            match self.step(&data[used..]) {
                Ok((n, progressed)) => {
                    used += n;
                    if !progressed || self.state == State::Done {
                        return Ok(used);
                    }
                }
                Err(e) => {
                    self.state = State::Failed;
                    self.buf = Vec::new();
                    return Err(e);
                }
            }
        }
    }

    /// The result, once [`Handshake::is_done`]; `None` before.
    pub fn established(self) -> Option<Established> {
        if self.state != State::Done {
            return None;
        }
        let info_hash = self.info_hash?;
        let cipher = match (self.rc4, self.send, self.recv) {
            (true, Some(send), Some(recv)) => Some(Cipher { send, recv }),
            _ => None,
        };
        Some(Established { info_hash, cipher, initial_payload: self.initial_payload })
    }

    /// Takes what the current field needs from `data`: (bytes used, whether the state moved).
    fn step(&mut self, data: &[u8]) -> Result<(usize, bool), MseError> {
        match self.state {
            State::Done => Ok((0, false)),
            State::Failed => Err(MseError::Failed),
            State::SyncVc { enc_vc } => Ok(self.sync(data, &enc_vc, VC_WINDOW)?),
            State::SyncReq1 { req1 } => Ok(self.sync(data, &req1, REQ1_WINDOW)?),
            fixed => {
                let need = match fixed {
                    State::PeerKeyA | State::PeerKeyB => KEY_LEN,
                    State::Select => 6,
                    State::Skey => 20,
                    State::Provide => 14,
                    State::IaLen => 2,
                    State::PadC { len } | State::PadD { len } | State::Ia { len } => len,
                    _ => 0,
                };
                let take = (need - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                if self.buf.len() < need {
                    return Ok((take, false));
                }
                let field = std::mem::take(&mut self.buf);
                self.field(field)?;
                Ok((take, true))
            }
        }
    }

    /// Scans for `pattern` byte by byte so nothing past it is taken.
    fn sync(&mut self, data: &[u8], pattern: &[u8], window: usize) -> Result<(usize, bool), MseError> {
        for (i, &b) in data.iter().enumerate() {
            self.buf.push(b);
            if self.buf.ends_with(pattern) {
                self.buf.clear();
                self.state = match self.state {
                    State::SyncVc { .. } => State::Select,
                    _ => State::Skey,
                };
                return Ok((i + 1, true));
            }
            if self.buf.len() >= window {
                return Err(MseError::NoSync { window });
            }
        }
        Ok((data.len(), false))
    }

    fn field(&mut self, mut field: Vec<u8>) -> Result<(), MseError> {
        match self.state {
            State::PeerKeyB => {
                self.agree(&field)?;
                self.send_req();
            }
            State::Select => {
                self.decrypt(&mut field);
                let selected = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                if !(selected == CRYPTO_RC4 || selected == CRYPTO_PLAINTEXT) || selected & self.allowed.bits() == 0 {
                    return Err(MseError::BadSelect { selected });
                }
                self.rc4 = selected == CRYPTO_RC4;
                self.state = State::PadD { len: pad_len(field[4], field[5])? };
            }
            State::PadD { .. } => {
                self.decrypt(&mut field);
                self.state = State::Done;
            }
            State::PeerKeyA => {
                self.agree(&field)?;
                self.send_public_key();
                self.state = State::SyncReq1 { req1: hash(&[b"req1", &self.secret]) };
            }
            State::Skey => {
                let req3 = hash(&[b"req3", &self.secret]);
                let mut req2 = [0u8; 20];
                for (o, (a, b)) in req2.iter_mut().zip(field.iter().zip(req3)) {
                    *o = a ^ b;
                }
                let Role::Responder { lookup } = &self.role else {
                    return Err(MseError::Failed);
                };
                let info_hash = lookup(&req2).ok_or(MseError::UnknownTorrent)?;
                self.info_hash = Some(info_hash);
                self.send = Some(Rc4Stream::new(b"keyB", &self.secret, &info_hash));
                self.recv = Some(Rc4Stream::new(b"keyA", &self.secret, &info_hash));
                self.state = State::Provide;
            }
            State::Provide => {
                self.decrypt(&mut field);
                if field[..8] != VC {
                    return Err(MseError::BadVerification);
                }
                self.provide = u32::from_be_bytes([field[8], field[9], field[10], field[11]]);
                self.state = State::PadC { len: pad_len(field[12], field[13])? };
            }
            State::PadC { .. } => {
                self.decrypt(&mut field);
                self.state = State::IaLen;
            }
            State::IaLen => {
                self.decrypt(&mut field);
                self.state = State::Ia { len: usize::from(u16::from_be_bytes([field[0], field[1]])) };
            }
            State::Ia { .. } => {
                self.decrypt(&mut field);
                self.initial_payload = field;
                self.select()?;
                self.state = State::Done;
            }
            State::SyncVc { .. } | State::SyncReq1 { .. } | State::Done | State::Failed => {}
        }
        Ok(())
    }

    fn decrypt(&mut self, buf: &mut [u8]) {
        if let Some(c) = &mut self.recv {
            c.apply(buf);
        }
    }

    fn send_public_key(&mut self) {
        let public = BigUint::from(2u32).modpow(&self.private, &BigUint::from_bytes_be(&PRIME));
        self.out.extend_from_slice(&to_key_bytes(&public));
        let pad = std::mem::take(&mut self.pads[0]);
        self.out.extend_from_slice(&pad);
    }

    /// Computes `S` from the peer's public key.
    fn agree(&mut self, peer_key: &[u8]) -> Result<(), MseError> {
        let prime = BigUint::from_bytes_be(&PRIME);
        let y = BigUint::from_bytes_be(peer_key);
        // 0, 1 and p-1 (and anything past p) would make S guessable.
        if y <= BigUint::from(1u32) || y >= &prime - 1u32 {
            return Err(MseError::BadPublicKey);
        }
        self.secret = to_key_bytes(&y.modpow(&self.private, &prime));
        Ok(())
    }

    /// Initiator, step 3.
    fn send_req(&mut self) {
        let Some(skey) = self.info_hash else {
            self.state = State::Failed;
            return;
        };
        let Role::Initiator { ia } = &mut self.role else {
            self.state = State::Failed;
            return;
        };
        let ia = std::mem::take(ia);
        self.out.extend_from_slice(&hash(&[b"req1", &self.secret]));
        let req2 = skey_hash(&skey);
        let req3 = hash(&[b"req3", &self.secret]);
        self.out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
        let mut send = Rc4Stream::new(b"keyA", &self.secret, &skey);
        let mut recv = Rc4Stream::new(b"keyB", &self.secret, &skey);
        let pad = std::mem::take(&mut self.pads[1]);
        let start = self.out.len();
        self.out.extend_from_slice(&VC);
        self.out.extend_from_slice(&self.allowed.bits().to_be_bytes());
        self.out.extend_from_slice(&(pad.len() as u16).to_be_bytes());
        self.out.extend_from_slice(&pad);
        self.out.extend_from_slice(&(ia.len() as u16).to_be_bytes());
        self.out.extend_from_slice(&ia);
        send.apply(&mut self.out[start..]);
        let mut enc_vc = VC;
        recv.apply(&mut enc_vc);
        self.send = Some(send);
        self.recv = Some(recv);
        self.state = State::SyncVc { enc_vc };
    }

    /// Responder, step 4: picks the payload method and answers.
    fn select(&mut self) -> Result<(), MseError> {
        let common = self.provide & self.allowed.bits();
        let selected = if common & CRYPTO_RC4 != 0 {
            CRYPTO_RC4
        } else if common & CRYPTO_PLAINTEXT != 0 {
            CRYPTO_PLAINTEXT
        } else {
            return Err(MseError::NoCommonMethod { offered: self.provide });
        };
        self.rc4 = selected == CRYPTO_RC4;
        let pad = std::mem::take(&mut self.pads[1]);
        let mut msg = Vec::with_capacity(14 + pad.len());
        msg.extend_from_slice(&VC);
        msg.extend_from_slice(&selected.to_be_bytes());
        msg.extend_from_slice(&(pad.len() as u16).to_be_bytes());
        msg.extend_from_slice(&pad);
        if let Some(c) = &mut self.send {
            c.apply(&mut msg);
        }
        self.out.extend_from_slice(&msg);
        Ok(())
    }
}

fn pad_len(hi: u8, lo: u8) -> Result<usize, MseError> {
    let len = u16::from_be_bytes([hi, lo]);
    if usize::from(len) > MAX_PAD {
        return Err(MseError::PadTooLong(len));
    }
    Ok(usize::from(len))
}

fn random_pad(rng: &mut impl RngCore) -> Vec<u8> {
    let len = (rng.next_u32() as usize) % (MAX_PAD + 1);
    let mut pad = vec![0u8; len];
    rng.fill_bytes(&mut pad);
    pad
}

fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    // Every value here is below the 96-byte prime.
    let start = KEY_LEN.saturating_sub(bytes.len());
    let tail = &bytes[bytes.len().saturating_sub(KEY_LEN)..];
    out[start..].copy_from_slice(tail);
    out
}

#[cfg(test)]
mod tests;
