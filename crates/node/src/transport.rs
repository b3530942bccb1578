//! What a peer connection runs over: a TCP stream or a uTP stream (BEP 29), and how an
//! outbound connection picks one.
//!
//! uTP shares the peer listen port with TCP (a UDP socket bound to the TCP listener's
//! address), so the one port peers learn from trackers, the DHT and PEX reaches both.
//!
//! Dialling an address we know nothing about races the two: both connect at once, each runs
//! its own MSE/plaintext handshake carrying the engine's first bytes, and the first to receive
//! the peer's BitTorrent handshake is kept ([`crate::peer_conn`] drives that). Racing costs a
//! second connection attempt, but never delays a TCP-only peer behind a uTP timeout (uTP SYNs
//! to a peer that does not answer them are not retried, only timed out) nor a uTP-only peer
//! (whose TCP port may accept and then close) behind a TCP failure; and a peer that accepts
//! both keeps the one it answered. The transport that won is remembered per address, so
//! later dials to it use that one alone; if it fails, the address is forgotten and the next
//! dial races again.
//!
//! When the session listens on a specific address, TCP dials go out from it too (uTP does
//! already, sharing the listener's socket): a session bound to a VPN's address never reaches
//! peers around it through the default route, and peers see the address trackers were told.
//! A peer of the other IP family is then not dialled over TCP at all.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// The two ways to reach a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    #[cfg(feature = "utp")]
    Utp,
}

/// A connected peer stream.
pub(crate) enum PeerStream {
    Tcp(TcpStream),
    #[cfg(feature = "utp")]
    Utp(librqbit_utp::UtpStream),
}

/// The halves of a [`PeerStream`], for the reader and writer tasks.
pub(crate) enum ReadHalf {
    Tcp(OwnedReadHalf),
    #[cfg(feature = "utp")]
    Utp(librqbit_utp::UtpStreamReadHalf),
}

pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
    #[cfg(feature = "utp")]
    Utp(librqbit_utp::UtpStreamWriteHalf),
}

impl PeerStream {
    pub(crate) fn tcp(stream: TcpStream) -> Self {
        // Latency of small messages (requests, haves) matters more than packet count.
        let _ = stream.set_nodelay(true);
        Self::Tcp(stream)
    }

    pub(crate) fn transport(&self) -> Transport {
        match self {
            Self::Tcp(_) => Transport::Tcp,
            #[cfg(feature = "utp")]
            Self::Utp(_) => Transport::Utp,
        }
    }

    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            #[cfg(feature = "utp")]
            Self::Utp(s) => {
                let (r, w) = s.split();
                (ReadHalf::Utp(r), WriteHalf::Utp(w))
            }
        }
    }
}

macro_rules! debug_variant {
    ($t:ty) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Self::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
                    #[cfg(feature = "utp")]
                    Self::Utp(_) => f.write_str("Utp"),
                }
            }
        }
    };
}

macro_rules! delegate_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
                    #[cfg(feature = "utp")]
                    Self::Utp(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

macro_rules! delegate_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                    #[cfg(feature = "utp")]
                    Self::Utp(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_flush(cx),
                    #[cfg(feature = "utp")]
                    Self::Utp(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                    #[cfg(feature = "utp")]
                    Self::Utp(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

debug_variant!(PeerStream);
debug_variant!(ReadHalf);
debug_variant!(WriteHalf);
delegate_read!(PeerStream);
delegate_read!(ReadHalf);
delegate_write!(PeerStream);
delegate_write!(WriteHalf);

/// A connection attempt still under way.
pub(crate) type Pending = Pin<Box<dyn Future<Output = io::Result<PeerStream>> + Send>>;

/// The outcome of dialling: the first transport that connected, and the other attempt if it
/// is still running (the handshakes race on both).
pub(crate) struct Dialled {
    pub(crate) first: PeerStream,
    pub(crate) other: Option<Pending>,
}

impl std::fmt::Debug for Dialled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialled").field("first", &self.first).field("other", &self.other.is_some()).finish()
    }
}

/// Addresses remembered at most; past that an arbitrary one is forgotten (a peer list is
/// attacker-given).
const LEARNED_MAX: usize = 4096;

/// Opens outbound connections over the transports this session has.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    #[cfg(feature = "utp")]
    utp: Option<Arc<librqbit_utp::UtpSocketUdp>>,
    /// The address TCP dials go out from (the listen address, when it is a specific one).
    source: Option<IpAddr>,
    learned: Arc<Mutex<HashMap<SocketAddr, Transport>>>,
}

impl Dialer {
    /// TCP only, from `source` if given (an unspecified address means any).
    pub(crate) fn tcp(source: Option<IpAddr>) -> Self {
        Self {
            #[cfg(feature = "utp")]
            utp: None,
            source: source.filter(|ip| !ip.is_unspecified()),
            learned: Arc::default(),
        }
    }

    /// TCP from `source` as [`Dialer::tcp`], and uTP from `socket`.
    #[cfg(feature = "utp")]
    pub(crate) fn with_utp(socket: Arc<librqbit_utp::UtpSocketUdp>, source: Option<IpAddr>) -> Self {
        Self { utp: Some(socket), ..Self::tcp(source) }
    }

    /// The transports to try for `addr`: the one that worked last time, else all.
    fn plan(&self, addr: SocketAddr) -> Vec<Transport> {
        #[cfg(feature = "utp")]
        if self.utp.is_some() {
            return match self.learned.lock().unwrap_or_else(|p| p.into_inner()).get(&addr) {
                Some(t) => vec![*t],
                None => vec![Transport::Utp, Transport::Tcp],
            };
        }
        let _ = addr;
        vec![Transport::Tcp]
    }

    /// Remembers that `addr` completed a handshake over `transport`.
    pub(crate) fn learn(&self, addr: SocketAddr, transport: Transport) {
        if self.plan_is_fixed() {
            return;
        }
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        if learned.len() >= LEARNED_MAX
            && !learned.contains_key(&addr)
            && let Some(k) = learned.keys().next().copied()
        {
            learned.remove(&k);
        }
        learned.insert(addr, transport);
    }

    /// Forgets what worked for `addr` (it failed): the next dial tries every transport.
    pub(crate) fn forget(&self, addr: SocketAddr) {
        self.learned.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
    }

    /// True when there is only one transport, so nothing is worth remembering.
    fn plan_is_fixed(&self) -> bool {
        #[cfg(feature = "utp")]
        if self.utp.is_some() {
            return false;
        }
        true
    }

    /// One connection attempt over `transport`.
    pub(crate) fn connect(&self, addr: SocketAddr, transport: Transport) -> Pending {
        match transport {
            Transport::Tcp => {
                let source = self.source;
                Box::pin(async move { tcp_connect(source, addr).await.map(PeerStream::tcp) })
            }
            #[cfg(feature = "utp")]
            Transport::Utp => {
                let socket = self.utp.clone();
                Box::pin(async move {
                    let socket = socket.ok_or_else(|| io::Error::other("uTP is off"))?;
                    socket.connect(addr).await.map(PeerStream::Utp).map_err(io::Error::other)
                })
            }
        }
    }

    /// Connects to `addr` over every transport in the plan at once; returns when the first one
    /// connects (or all failed), handing on the attempt still running.
    pub(crate) async fn dial(&self, addr: SocketAddr) -> io::Result<Dialled> {
        let mut attempts: Vec<Pending> = self.plan(addr).into_iter().map(|t| self.connect(addr, t)).collect();
        let mut last_err = None;
        while !attempts.is_empty() {
            let (result, index) = FirstOf(&mut attempts).await;
            drop(attempts.swap_remove(index));
            match result {
                Ok(first) => return Ok(Dialled { first, other: attempts.pop() }),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "connect failed");
                    last_err = Some(e);
                }
            }
        }
        self.forget(addr);
        Err(last_err.unwrap_or_else(|| io::Error::other("no transport to dial")))
    }
}

/// A TCP connection to `addr`, from `source` if given (port chosen by the system).
async fn tcp_connect(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match (ip, addr) {
        (IpAddr::V4(_), SocketAddr::V4(_)) => TcpSocket::new_v4()?,
        (IpAddr::V6(_), SocketAddr::V6(_)) => TcpSocket::new_v6()?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("bound to {ip}, which cannot reach {addr}"),
            ));
        }
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Resolves with the output and index of whichever future is ready first.
struct FirstOf<'a, T>(&'a mut [Pin<Box<dyn Future<Output = T> + Send>>]);

impl<T> Future for FirstOf<'_, T> {
    type Output = (T, usize);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        for (i, f) in self.get_mut().0.iter_mut().enumerate() {
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                return Poll::Ready((v, i));
            }
        }
        Poll::Pending
    }
}

#[cfg(all(test, feature = "utp"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dials_race_both_transports_until_one_is_learned() {
        let socket = librqbit_utp::UtpSocketUdp::new_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dialer = Dialer::with_utp(socket, None);
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.9:6881".parse().unwrap(), "127.0.0.9:6882".parse().unwrap());
        assert_eq!(dialer.plan(a), [Transport::Utp, Transport::Tcp]);
        dialer.learn(a, Transport::Tcp);
        dialer.learn(b, Transport::Utp);
        assert_eq!(dialer.plan(a), [Transport::Tcp]);
        assert_eq!(dialer.plan(b), [Transport::Utp]);
        dialer.forget(a);
        assert_eq!(dialer.plan(a), [Transport::Utp, Transport::Tcp]);
        assert_eq!(Dialer::tcp(None).plan(b), [Transport::Tcp]);
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;
    use tokio::net::TcpListener;

    /// The address a listener on 127.0.0.74 sees a dial from.
    async fn seen_from(dialer: &Dialer) -> IpAddr {
        let listener = TcpListener::bind("127.0.0.74:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, dialled) = tokio::join!(listener.accept(), dialer.dial(addr));
        dialled.unwrap();
        accepted.unwrap().1.ip()
    }

    #[tokio::test]
    async fn tcp_dials_go_out_from_the_source_address() {
        assert_eq!(seen_from(&Dialer::tcp(Some("127.0.0.73".parse().unwrap()))).await.to_string(), "127.0.0.73");
        // An unspecified address binds nothing: the system picks the source.
        assert_eq!(seen_from(&Dialer::tcp(Some("0.0.0.0".parse().unwrap()))).await.to_string(), "127.0.0.1");
        assert_eq!(seen_from(&Dialer::tcp(None)).await.to_string(), "127.0.0.1");
    }

    #[tokio::test]
    async fn a_bound_dialer_does_not_reach_the_other_family() {
        let dialer = Dialer::tcp(Some("127.0.0.73".parse().unwrap()));
        let err = dialer.dial("[::1]:6881".parse().unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
        let dialer = Dialer::tcp(Some("::1".parse().unwrap()));
        let err = dialer.dial("127.0.0.74:6881".parse().unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
    }
}
