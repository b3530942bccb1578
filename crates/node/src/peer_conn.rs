//! One peer connection: a reader task and a writer task around a peer stream (TCP or uTP).
//!
//! The reader forwards whatever the socket gives as [`PeerEvent::Data`] over the torrent's
//! bounded event channel, so a busy torrent task slows the reader and TCP flow control pushes
//! back on the peer. The writer drains a queue of byte batches whose size is counted: the
//! engine bounds the piece data it queues by the [`PeerEvent::Sent`] reports, and everything
//! else (rejects, haves) is small, so a queue past [`MAX_QUEUED`] means a peer that asks and
//! never reads, and it is dropped. Dropping [`PeerIo`] aborts both tasks and closes the socket.
//!
//! Read buffers go round: the torrent task hands each one back ([`PeerIo::recycle`]) once the
//! engine has consumed it, so a busy connection reads without allocating. An encrypted
//! connection decrypts each read buffer and encrypts each queued batch in place.
//!
//! An outbound connection ([`Setup::Dialled`]) starts in the writer task: it takes the engine's
//! first batch (its BitTorrent handshake), sends it over every transport that connected (in the
//! clear or as MSE's initial payload, with a redial the other way over the same transport as
//! the policy says), keeps the first one on which the peer's handshake arrives, then hands the
//! read half (the peer's handshake in its leftover, and the receiving cipher) to the reader
//! task, which waits for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_core::InfoHash;
use sluice_engine::PeerKey;
use sluice_mse::{Cipher, Rc4Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use crate::encryption::{Encryption, HandshakeError, Ready, await_peer_handshake, initiate};
use crate::limits::{Slot, Slots};
use crate::transport::{Dialer, Dialled, PeerStream, ReadHalf};

/// How much one socket read may take at once.
const READ_CHUNK: usize = 64 * 1024;
/// Read buffers a connection keeps for reuse at most (more are in the event queue at times).
const SPARE_BUFFERS: usize = 4;
/// Bytes queued for a peer's socket at most before the peer is dropped.
pub(crate) const MAX_QUEUED: usize = 8 * 1024 * 1024;
/// How long a dial's second transport may still take to connect once the first has failed its
/// handshake. Both started together, and the failed one took a round trip to connect and
/// another to be refused, so a peer that answers the second at all has mostly done so by then.
const LATE_CONNECT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) enum PeerEvent {
    Connected { peer: PeerKey, addr: SocketAddr, dialled: Dialled, slot: Slot },
    Data { peer: PeerKey, bytes: Vec<u8> },
    Sent { peer: PeerKey, bytes: usize },
    Closed { peer: PeerKey },
}

/// How a connection gets ready for the peer wire protocol.
#[derive(Debug)]
pub(crate) enum Setup {
    /// Inbound, its handshake read: plaintext, or with the MSE handshake already done.
    Accepted { stream: PeerStream, cipher: Option<Box<Cipher>> },
    /// Outbound: the handshakes (plaintext first or MSE first under `encryption`, see
    /// [`crate::encryption`]) race over the transports [`Dialer::dial`] connected.
    Dialled { dialled: Dialled, addr: SocketAddr, dialer: Dialer, info_hash: InfoHash, encryption: Encryption },
}

/// What the writer hands the reader once the connection is ready.
type ReadSide = (ReadHalf, Option<Rc4Stream>, Vec<u8>);

#[derive(Debug)]
pub(crate) struct PeerIo {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    spare: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// The connection's share of the session's limit, held as long as the connection.
    _slot: Slot,
}

impl PeerIo {
    pub(crate) fn spawn(peer: PeerKey, slot: Slot, setup: Setup, events: mpsc::Sender<PeerEvent>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        let ev = events.clone();
        let (spare, mut spares) = mpsc::channel::<Vec<u8>>(SPARE_BUFFERS);
        let (read_side_tx, read_side) = oneshot::channel::<ReadSide>();
        let reader = tokio::spawn(async move {
            // No read side: the writer failed to set the connection up and reports it.
            let Ok((mut rd, mut cipher, leftover)) = read_side.await else {
                return;
            };
            if !leftover.is_empty() && ev.send(PeerEvent::Data { peer, bytes: leftover }).await.is_err() {
                return;
            }
            loop {
                let mut bytes = spares.try_recv().unwrap_or_else(|_| Vec::with_capacity(READ_CHUNK));
                bytes.clear();
                match rd.read_buf(&mut bytes).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(c) = &mut cipher {
                            c.apply(&mut bytes);
                        }
                        if ev.send(PeerEvent::Data { peer, bytes }).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = ev.send(PeerEvent::Closed { peer }).await;
        });
        let writer = tokio::spawn(async move {
            let (ready, first) = match setup {
                Setup::Accepted { stream, cipher } => {
                    (Ready { stream, cipher: cipher.map(|c| *c), leftover: Vec::new() }, None)
                }
                Setup::Dialled { dialled, addr, dialer, info_hash, encryption } => {
                    let Some(first) = rx.recv().await else {
                        return;
                    };
                    match establish(dialled, &dialer, addr, info_hash, encryption, &first).await {
                        Ok(r) => {
                            tracing::debug!(?peer, %addr, transport = ?r.stream.transport(), "handshake received");
                            dialer.learn(addr, r.stream.transport());
                            (r, Some(first.len()))
                        }
                        Err(e) => {
                            tracing::debug!(?peer, %addr, error = %e, "outbound handshake failed");
                            dialer.forget(addr);
                            let _ = events.send(PeerEvent::Closed { peer }).await;
                            return;
                        }
                    }
                }
            };
            let (rd, mut wr) = ready.stream.into_split();
            let (mut send, recv) = match ready.cipher {
                Some(Cipher { send, recv }) => (Some(send), Some(recv)),
                None => (None, None),
            };
            if read_side_tx.send((rd, recv, ready.leftover)).is_err() {
                return;
            }
            if let Some(n) = first {
                written.fetch_sub(n, Ordering::Relaxed);
                if events.send(PeerEvent::Sent { peer, bytes: n }).await.is_err() {
                    return;
                }
            }
            while let Some(mut data) = rx.recv().await {
                if let Some(c) = &mut send {
                    c.apply(&mut data);
                }
                if wr.write_all(&data).await.is_err() {
                    let _ = events.send(PeerEvent::Closed { peer }).await;
                    return;
                }
                written.fetch_sub(data.len(), Ordering::Relaxed);
                if events.send(PeerEvent::Sent { peer, bytes: data.len() }).await.is_err() {
                    return;
                }
            }
        });
        Self { tx, spare, queued, reader, writer, _slot: slot }
    }

    /// Hands a read buffer back for the next read (dropped if enough are spare).
    pub(crate) fn recycle(&self, bytes: Vec<u8>) {
        let _ = self.spare.try_send(bytes);
    }

    /// Queues bytes for the socket; `false` if the peer has more than [`MAX_QUEUED`] waiting
    /// (the caller drops it).
    #[must_use]
    pub(crate) fn send(&self, data: Vec<u8>) -> bool {
        if self.queued.fetch_add(data.len(), Ordering::Relaxed) + data.len() > MAX_QUEUED {
            return false;
        }
        // A closed writer has already reported Closed.
        let _ = self.tx.send(data);
        true
    }
}

impl Drop for PeerIo {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Sends `first` over every transport in `dialled` (each its own MSE or plaintext handshake)
/// and returns the first connection on which the peer's BitTorrent handshake arrives; the
/// others are dropped (closed). A transport still connecting when the other one has failed
/// gets [`LATE_CONNECT`] more, not the rest of the connect timeout: a dial to a peer that
/// closes its only transport frees its session slot soon after.
async fn establish(
    dialled: Dialled,
    dialer: &Dialer,
    addr: SocketAddr,
    info_hash: InfoHash,
    encryption: Encryption,
    first: &[u8],
) -> Result<Ready, HandshakeError> {
    let attempt = |stream: PeerStream| async move {
        let transport = stream.transport();
        let run = async {
            let mut ready = initiate(stream, dialer, addr, info_hash, encryption, first).await?;
            await_peer_handshake(&mut ready).await?;
            Ok(ready)
        };
        run.await.inspect_err(|e: &HandshakeError| tracing::debug!(%addr, ?transport, error = %e, "handshake failed"))
    };
    let a = attempt(dialled.first);
    let Some(mut other) = dialled.other else {
        return a.await;
    };
    tokio::pin!(a);
    let connected = tokio::select! {
        r = &mut a => {
            let err = match r {
                Ok(ready) => return Ok(ready),
                Err(e) => e,
            };
            return match tokio::time::timeout(LATE_CONNECT, other).await {
                Ok(Ok(stream)) => attempt(stream).await,
                _ => Err(err),
            };
        }
        s = &mut other => s,
    };
    let Ok(stream) = connected else {
        return a.await;
    };
    let b = attempt(stream);
    tokio::pin!(b);
    tokio::select! {
        r = &mut a => match r {
            Ok(ready) => Ok(ready),
            Err(_) => b.await,
        },
        r = &mut b => match r {
            Ok(ready) => Ok(ready),
            Err(_) => a.await,
        },
    }
}

/// Dials `addr` over the dialer's transports once `slots` has room and reports the first that
/// connects on the torrent's event channel. Aborting the returned handle gives up the dial
/// (and its wait for a slot).
pub(crate) fn spawn_connect(
    peer: PeerKey,
    addr: SocketAddr,
    slots: &Slots,
    dialer: Dialer,
    timeout: Duration,
    events: mpsc::Sender<PeerEvent>,
) -> AbortHandle {
    let slots = slots.clone();
    tokio::spawn(async move {
        let ev = match slots.dial(&dialer, addr, timeout).await {
            Ok((dialled, slot)) => PeerEvent::Connected { peer, addr, dialled, slot },
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                PeerEvent::Closed { peer }
            }
        };
        let _ = events.send(ev).await;
    })
    .abort_handle()
}

#[cfg(all(test, feature = "utp"))]
mod tests {
    use super::*;
    use crate::encryption::{PLAINTEXT_HEAD, respond};
    use crate::transport::Transport;
    use librqbit_utp::UtpSocketUdp;
    use sluice_core::PeerId;
    use sluice_wire::Handshake;
    use tokio::net::TcpListener;

    /// A TCP port that accepts and closes at once (as libtorrent's does with incoming TCP off).
    async fn tcp_that_closes() -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = tcp.accept().await {
                drop(s);
            }
        });
        addr
    }

    fn handshake(info_hash: InfoHash, id: u8) -> Vec<u8> {
        let mut bytes = Vec::new();
        Handshake::new(info_hash, PeerId([id; 20])).encode(&mut bytes);
        bytes
    }

    /// A uTP-only peer that talks only encrypted (`encrypted`) or only plaintext: it closes
    /// each connection that starts the other way, and answers the first that starts its way.
    /// Returns what that connection sent first (decrypted) and how many it closed before.
    async fn utp_peer(
        socket: Arc<UtpSocketUdp>,
        info_hash: InfoHash,
        encrypted: bool,
        answer: Vec<u8>,
    ) -> (Vec<u8>, usize, PeerStream) {
        let mut refused = 0;
        loop {
            let mut s = PeerStream::Utp(socket.accept().await.unwrap());
            let mut head = [0u8; 20];
            if s.read_exact(&mut head).await.is_err() {
                continue;
            }
            if (&head != PLAINTEXT_HEAD) != encrypted {
                refused += 1;
                continue;
            }
            let mut answer = answer.clone();
            let got = if encrypted {
                let lookup =
                    Box::new(move |req2: &[u8; 20]| (sluice_mse::skey_hash(&info_hash) == *req2).then_some(info_hash));
                let (_, got, cipher) = respond(&mut s, &head, Encryption::Require, lookup).await.unwrap();
                cipher.unwrap().send.apply(&mut answer);
                got
            } else {
                let mut rest = [0u8; Handshake::LEN - 20];
                s.read_exact(&mut rest).await.unwrap();
                [&head[..], &rest[..]].concat()
            };
            s.write_all(&answer).await.unwrap();
            return (got, refused, s);
        }
    }

    /// A peer whose TCP port accepts and closes at once (as libtorrent's does with incoming TCP
    /// off) and whose uTP port answers the handshake: the dial keeps uTP, and learns it.
    #[tokio::test]
    async fn a_dial_keeps_the_transport_on_which_the_peer_answers_the_handshake() {
        let addr = tcp_that_closes().await;
        let peer_utp = UtpSocketUdp::new_udp(addr).await.unwrap();
        let info_hash = InfoHash([7; 20]);
        let mut theirs = Vec::new();
        Handshake::new(info_hash, PeerId([2; 20])).encode(&mut theirs);
        let answer = theirs.clone();
        let peer = tokio::spawn(async move {
            let mut s = peer_utp.accept().await.unwrap();
            let mut got = [0u8; Handshake::LEN];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(&answer).await.unwrap();
            // Held open until the test ends.
            (got, s, peer_utp)
        });

        let dialer = Dialer::with_utp(UtpSocketUdp::new_udp("127.0.0.1:0".parse().unwrap()).await.unwrap(), None);
        let mut ours = Vec::new();
        Handshake::new(info_hash, PeerId([1; 20])).encode(&mut ours);
        let dialled = dialer.dial(addr).await.unwrap();
        let ready = establish(dialled, &dialer, addr, info_hash, Encryption::Off, &ours).await.unwrap();
        assert_eq!(ready.stream.transport(), Transport::Utp);
        assert_eq!(ready.leftover, theirs);
        assert_eq!(peer.await.unwrap().0.as_slice(), ours.as_slice());
    }

    /// The policies' redials stay on the transport being tried: under `Allow` a uTP peer that
    /// closes the plaintext handshake is redialled over uTP with MSE, under `Prefer` one that
    /// closes the MSE handshake is redialled over uTP in plaintext (TCP closing all the while).
    #[tokio::test]
    async fn a_refused_handshake_is_redialled_the_other_way_over_the_same_transport() {
        for (encryption, peer_encrypts) in [(Encryption::Allow, true), (Encryption::Prefer, false)] {
            let addr = tcp_that_closes().await;
            let info_hash = InfoHash([9; 20]);
            let theirs = handshake(info_hash, 2);
            let ours = handshake(info_hash, 1);
            let socket = UtpSocketUdp::new_udp(addr).await.unwrap();
            let peer = tokio::spawn(utp_peer(socket, info_hash, peer_encrypts, theirs.clone()));

            let dialer = Dialer::with_utp(UtpSocketUdp::new_udp("127.0.0.1:0".parse().unwrap()).await.unwrap(), None);
            let dialled = dialer.dial(addr).await.unwrap();
            let ready = establish(dialled, &dialer, addr, info_hash, encryption, &ours).await.unwrap();
            assert_eq!(ready.stream.transport(), Transport::Utp, "{encryption:?}");
            assert_eq!(ready.cipher.is_some(), peer_encrypts, "{encryption:?}");
            assert_eq!(ready.leftover, theirs, "{encryption:?}");
            let (got, refused, _stream) = peer.await.unwrap();
            assert_eq!(got, ours, "{encryption:?}");
            assert_eq!(refused, 1, "{encryption:?}: the first attempt went the policy's first way");
        }
    }
}
