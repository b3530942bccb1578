//! MSE/PE on real sockets: the policy, the sniff that tells an inbound plaintext handshake from
//! an encrypted one, and the loops that run [`sluice_mse::Handshake`] over a peer stream (TCP
//! or uTP alike).
//!
//! Outbound, the setup runs in the connection's writer task after the engine was told
//! `Connected`, and holds the engine's first bytes (its BitTorrent handshake) until it knows how
//! the peer wants to talk: they travel as MSE's initial payload, or in the clear. Nothing reaches
//! the engine before that is settled, so a failed first attempt can redial the other way (over
//! the same transport) and replay those bytes without the engine noticing.
//!
//! The default is [`Encryption::Allow`], plaintext first, because MSE costs two more round trips
//! before the first request, and a seeder with an upload cap (libtorrent's rate limiter hands out
//! quota per tick) delays each of its handshake replies: against six capped libtorrent seeders on
//! loopback the encrypted handshakes completed 0.6-1.5 s after the dial, the plaintext ones within
//! 0.1-0.4 s, which cost ~2 s of time to first frame. Peers that insist on encryption close a
//! plaintext handshake at once, and are redialled with MSE.

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use sluice_core::InfoHash;
use sluice_mse::{Allowed, Cipher, Handshake, MseError, SkeyLookup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::transport::{Dialer, PeerStream, Transport};

/// How peer connections use Message Stream Encryption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Outbound: plaintext, redialled with MSE (RC4 preferred) when the peer closes the
    /// plaintext handshake unanswered. Inbound: both.
    #[default]
    Allow,
    /// Outbound: try MSE (RC4 preferred), redial in plaintext if that fails. Inbound: both.
    Prefer,
    /// MSE with RC4 only, both ways; plaintext peers are refused.
    Require,
    /// Plaintext only; encrypted inbound connections are refused.
    Off,
}

impl Encryption {
    fn allowed(self) -> Allowed {
        match self {
            Self::Require => Allowed::Rc4Only,
            Self::Allow | Self::Prefer | Self::Off => Allowed::PreferRc4,
        }
    }
}

/// The first bytes of a plaintext BitTorrent handshake; anything else inbound is MSE.
pub(crate) const PLAINTEXT_HEAD: &[u8; 20] = b"\x13BitTorrent protocol";

/// How long an MSE handshake may take (the engine's own handshake timer runs meanwhile).
const MSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read at once while handshaking (a step is at most ~600 bytes, IA aside).
const READ: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("MSE: {0}")]
    Mse(#[from] MseError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the MSE handshake timed out")]
    Timeout,
    #[error("the peer closed the connection during the handshake")]
    Eof,
    #[error("the peer closed before its BitTorrent handshake")]
    Closed,
}

/// A connection ready for the peer wire protocol.
pub(crate) struct Ready {
    pub(crate) stream: PeerStream,
    pub(crate) cipher: Option<Cipher>,
    /// Payload the peer sent right behind its handshake, already decrypted.
    pub(crate) leftover: Vec<u8>,
}

/// Outbound: the connection set up under `encryption` with `first` (the engine's first bytes)
/// on the wire when this returns `Ok`: plaintext alone under [`Encryption::Off`], otherwise
/// plaintext or MSE first with a redial the other way over the same transport.
pub(crate) async fn initiate(
    mut stream: PeerStream,
    dialer: &Dialer,
    addr: SocketAddr,
    info_hash: InfoHash,
    encryption: Encryption,
    first: &[u8],
) -> Result<Ready, HandshakeError> {
    if encryption == Encryption::Off {
        stream.write_all(first).await?;
        return Ok(Ready { stream, cipher: None, leftover: Vec::new() });
    }
    let transport = stream.transport();
    let allowed = encryption.allowed();
    if encryption == Encryption::Allow {
        return match tokio::time::timeout(MSE_TIMEOUT, plaintext_initiate(stream, first)).await {
            Ok(Ok(ready)) => Ok(ready),
            Ok(Err(err)) => {
                tracing::debug!(%addr, ?transport, error = %err, "plaintext handshake refused; redialling with MSE");
                let stream = redial(dialer, addr, transport).await?;
                tokio::time::timeout(MSE_TIMEOUT, mse_initiate(stream, info_hash, allowed, first))
                    .await
                    .map_err(|_| HandshakeError::Timeout)?
            }
            Err(_) => Err(HandshakeError::Timeout),
        };
    }
    let attempt = tokio::time::timeout(MSE_TIMEOUT, mse_initiate(stream, info_hash, allowed, first));
    let err = match attempt.await {
        Ok(Ok(ready)) => return Ok(ready),
        Ok(Err(e)) => e,
        Err(_) => HandshakeError::Timeout,
    };
    if encryption != Encryption::Prefer {
        return Err(err);
    }
    tracing::debug!(%addr, error = %err, "MSE failed; redialling in plaintext");
    let mut stream = redial(dialer, addr, transport).await?;
    stream.write_all(first).await?;
    Ok(Ready { stream, cipher: None, leftover: Vec::new() })
}

async fn redial(dialer: &Dialer, addr: SocketAddr, transport: Transport) -> Result<PeerStream, HandshakeError> {
    Ok(tokio::time::timeout(MSE_TIMEOUT, dialer.connect(addr, transport))
        .await
        .map_err(|_| HandshakeError::Timeout)??)
}

/// Sends `first` in the clear and waits for the peer's first bytes: a peer that requires
/// encryption closes (or resets) the connection instead, which is the error returned.
async fn plaintext_initiate(mut stream: PeerStream, first: &[u8]) -> Result<Ready, HandshakeError> {
    stream.write_all(first).await?;
    let mut leftover = vec![0u8; READ];
    let n = stream.read(&mut leftover).await?;
    if n == 0 {
        return Err(HandshakeError::Eof);
    }
    leftover.truncate(n);
    Ok(Ready { stream, cipher: None, leftover })
}

async fn mse_initiate(
    mut stream: PeerStream,
    info_hash: InfoHash,
    allowed: Allowed,
    first: &[u8],
) -> Result<Ready, HandshakeError> {
    // IA carries the BitTorrent handshake only, the rest follows once the link is
    // established: libtorrent refuses an IA longer than the handshake, and the engine's first
    // write may one day hold messages behind it.
    let (ia, rest) = first.split_at(first.len().min(sluice_wire::Handshake::LEN));
    let mut hs = Handshake::initiator(info_hash, allowed, ia, &mut rand::rngs::StdRng::from_os_rng())?;
    let leftover = drive(&mut stream, &mut hs, &[]).await?;
    let Some(est) = hs.established() else {
        return Err(HandshakeError::Mse(MseError::Failed));
    };
    let mut ready = Ready { stream, cipher: est.cipher, leftover };
    if !rest.is_empty() {
        let mut rest = rest.to_vec();
        if let Some(c) = &mut ready.cipher {
            c.send.apply(&mut rest);
        }
        ready.stream.write_all(&rest).await?;
    }
    if let Some(c) = &mut ready.cipher {
        c.recv.apply(&mut ready.leftover);
    }
    Ok(ready)
}

/// Inbound MSE, after `head` (the sniffed bytes) was read: returns the torrent, the cipher and
/// what the peer sent first (its initial payload and anything behind it), decrypted.
pub(crate) async fn respond(
    stream: &mut PeerStream,
    head: &[u8],
    encryption: Encryption,
    lookup: SkeyLookup,
) -> Result<(InfoHash, Vec<u8>, Option<Box<Cipher>>), HandshakeError> {
    let run = async {
        let mut hs = Handshake::responder(encryption.allowed(), lookup, &mut rand::rngs::StdRng::from_os_rng());
        let mut leftover = drive(stream, &mut hs, head).await?;
        let Some(mut est) = hs.established() else {
            return Err(HandshakeError::Mse(MseError::Failed));
        };
        if let Some(c) = &mut est.cipher {
            c.recv.apply(&mut leftover);
        }
        let mut first = est.initial_payload;
        first.extend_from_slice(&leftover);
        Ok((est.info_hash, first, est.cipher.map(Box::new)))
    };
    tokio::time::timeout(MSE_TIMEOUT, run).await.map_err(|_| HandshakeError::Timeout)?
}

/// Runs `hs` to its end over `stream`, `already` being bytes read before it started. Returns
/// the bytes read past the handshake (still as they came off the wire).
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut Handshake,
    already: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    let mut buf = vec![0u8; READ.max(already.len())];
    let mut pending = already.len();
    buf[..pending].copy_from_slice(already);
    loop {
        let used = hs.receive(&buf[..pending])?;
        let out = hs.take_transmit();
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if hs.is_done() {
            return Ok(buf[used..pending].to_vec());
        }
        pending = stream.read(&mut buf).await?;
        if pending == 0 {
            return Err(HandshakeError::Eof);
        }
    }
}

/// Reads (and decrypts) until `ready.leftover` holds at least a whole BitTorrent handshake:
/// the proof that the peer accepted us on this connection.
pub(crate) async fn await_peer_handshake(ready: &mut Ready) -> Result<(), HandshakeError> {
    while ready.leftover.len() < sluice_wire::Handshake::LEN {
        let start = ready.leftover.len();
        ready.leftover.resize(start + READ, 0);
        let n = ready.stream.read(&mut ready.leftover[start..]).await?;
        ready.leftover.truncate(start + n);
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        if let Some(c) = &mut ready.cipher {
            c.recv.apply(&mut ready.leftover[start..]);
        }
    }
    Ok(())
}
