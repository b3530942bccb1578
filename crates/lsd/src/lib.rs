//! Local Service Discovery (BEP 14): peers on the same network find each other by announcing
//! the torrents they have to a multicast group, without trackers or the DHT.
//!
//! # Messages
//!
//! An announce is an HTTP-like datagram to 239.192.152.143:6771:
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n
//! Port: <TCP port the sender accepts peers on>\r\n
//! Infohash: <40 hex digits>\r\n          (one line per torrent)
//! cookie: <opaque, to recognise our own announces>\r\n
//! \r\n\r\n
//! ```
//!
//! [`parse`] is strict about what it takes from the network: one datagram of at most
//! [`MAX_DATAGRAM`] bytes, the `BT-SEARCH` request line, a port that is not 0, at most
//! [`MAX_HASHES`] valid info-hashes; anything else is an error, never a panic.
//!
//! # The network switch
//!
//! Multicast leaves the loopback range, so the service only runs when the caller says so; the
//! node keeps it off under loopback-only unless told otherwise, and then sends only through a
//! loopback interface address (the tests run it inside a network namespace of their own).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_core::InfoHash;
use tokio::net::UdpSocket;

pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
pub const PORT: u16 = 6771;
/// Datagrams longer than this are dropped unread.
pub const MAX_DATAGRAM: usize = 1400;
/// Info-hashes taken from one announce at most.
pub const MAX_HASHES: usize = 16;
/// Each torrent is announced this often (BEP 14 asks for no more than once a minute).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LsdError {
    #[error("datagram of {0} bytes is too long")]
    TooLong(usize),
    #[error("not a BT-SEARCH request")]
    NotSearch,
    #[error("missing or bad Port header")]
    BadPort,
    #[error("bad Infohash header {0:?}")]
    BadHash(String),
    #[error("no Infohash header")]
    NoHash,
}

/// One announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub port: u16,
    pub hashes: Vec<InfoHash>,
    pub cookie: Option<String>,
}

/// Encodes an announce of `hashes` (callers keep a datagram to a handful of them).
pub fn encode(port: u16, hashes: &[InfoHash], cookie: &str) -> Vec<u8> {
    let mut s = format!("BT-SEARCH * HTTP/1.1\r\nHost: {GROUP}:{PORT}\r\nPort: {port}\r\n");
    for h in hashes {
        s.push_str(&format!("Infohash: {}\r\n", h.to_hex()));
    }
    s.push_str(&format!("cookie: {cookie}\r\n\r\n\r\n"));
    s.into_bytes()
}

/// Decodes an announce datagram; see the module docs for what is accepted.
pub fn parse(datagram: &[u8]) -> Result<Announce, LsdError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(LsdError::TooLong(datagram.len()));
    }
    let text = String::from_utf8_lossy(datagram);
    let mut lines = text.split("\r\n");
    if lines.next().map(str::trim) != Some("BT-SEARCH * HTTP/1.1") {
        return Err(LsdError::NotSearch);
    }
    let (mut port, mut hashes, mut cookie) = (None, Vec::new(), None);
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "port" => port = Some(value.parse::<u16>().ok().filter(|&p| p != 0).ok_or(LsdError::BadPort)?),
            "infohash" => {
                let hash =
                    InfoHash::from_hex(value).ok_or_else(|| LsdError::BadHash(value.chars().take(64).collect()))?;
                if hashes.len() < MAX_HASHES && !hashes.contains(&hash) {
                    hashes.push(hash);
                }
            }
            "cookie" => cookie = Some(value.chars().take(64).collect()),
            _ => {}
        }
    }
    let port = port.ok_or(LsdError::BadPort)?;
    if hashes.is_empty() {
        return Err(LsdError::NoHash);
    }
    Ok(Announce { port, hashes, cookie })
}

/// Called with each peer an announce names for a torrent (the node routes it).
pub type OnPeer = Box<dyn Fn(InfoHash, SocketAddr) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub struct LsdConfig {
    /// The address of the interface to announce through (and whose source address peers
    /// will connect back to); `0.0.0.0`: the system's choice.
    pub interface: Ipv4Addr,
    /// The TCP port we accept peers on.
    pub port: u16,
    /// Only take peers from loopback senders.
    pub loopback_only: bool,
}

/// The running service: one socket for every torrent of the process.
pub struct Lsd {
    socket: UdpSocket,
    config: LsdConfig,
    cookie: String,
    torrents: Mutex<Vec<InfoHash>>,
    on_peer: OnPeer,
}

impl fmt::Debug for Lsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lsd").field("config", &self.config).field("cookie", &self.cookie).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lsd {
    /// Joins the group and starts receiving and announcing on the current tokio runtime.
    /// `cookie` tells our own announces apart (any process-unique string).
    pub fn start(config: LsdConfig, cookie: String, on_peer: OnPeer) -> std::io::Result<Arc<Self>> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        // Bound to the group, the socket hears only the group's datagrams.
        s.bind(&SocketAddrV4::new(GROUP, PORT).into())?;
        s.join_multicast_v4(&GROUP, &config.interface)?;
        s.set_multicast_if_v4(&config.interface)?;
        s.set_multicast_loop_v4(true)?;
        s.set_multicast_ttl_v4(1)?;
        let socket = UdpSocket::from_std(s.into())?;
        let lsd = Arc::new(Self { socket, config, cookie, torrents: Mutex::default(), on_peer });
        tokio::spawn(receive(Arc::downgrade(&lsd)));
        tokio::spawn(announce_loop(Arc::downgrade(&lsd)));
        Ok(lsd)
    }

    /// Starts announcing `info_hash` (at once, then every [`ANNOUNCE_EVERY`]).
    pub async fn add(&self, info_hash: InfoHash) {
        {
            let mut t = lock(&self.torrents);
            if t.contains(&info_hash) {
                return;
            }
            t.push(info_hash);
        }
        self.send(&[info_hash]).await;
    }

    /// Stops announcing `info_hash`.
    pub fn remove(&self, info_hash: InfoHash) {
        lock(&self.torrents).retain(|h| *h != info_hash);
    }

    async fn send(&self, hashes: &[InfoHash]) {
        for chunk in hashes.chunks(4) {
            let msg = encode(self.config.port, chunk, &self.cookie);
            if let Err(e) = self.socket.send_to(&msg, SocketAddrV4::new(GROUP, PORT)).await {
                tracing::debug!(error = %e, "LSD announce");
            }
        }
    }

    fn on_datagram(&self, datagram: &[u8], from: SocketAddr) {
        let announce = match parse(datagram) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%from, error = %e, "LSD datagram dropped");
                return;
            }
        };
        if announce.cookie.as_deref() == Some(self.cookie.as_str()) {
            return;
        }
        if self.config.loopback_only && !from.ip().is_loopback() {
            return;
        }
        let peer = SocketAddr::new(from.ip(), announce.port);
        let ours: Vec<InfoHash> = {
            let t = lock(&self.torrents);
            announce.hashes.into_iter().filter(|h| t.contains(h)).collect()
        };
        for h in ours {
            (self.on_peer)(h, peer);
        }
    }
}

async fn receive(lsd: std::sync::Weak<Lsd>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let Some(me) = lsd.upgrade() else { return };
        // Hold the service only while a datagram is handled, so dropping it ends the task.
        let got = tokio::time::timeout(Duration::from_secs(1), me.socket.recv_from(&mut buf)).await;
        match got {
            Ok(Ok((n, from))) => me.on_datagram(&buf[..n], from),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "LSD receive");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {}
        }
    }
}

async fn announce_loop(lsd: std::sync::Weak<Lsd>) {
    loop {
        tokio::time::sleep(ANNOUNCE_EVERY).await;
        let Some(me) = lsd.upgrade() else { return };
        let all = lock(&me.torrents).clone();
        me.send(&all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_encoded_announce_parses_back() {
        let hashes = [InfoHash([1; 20]), InfoHash([0xab; 20])];
        let a = parse(&encode(6881, &hashes, "c00kie")).unwrap();
        assert_eq!(a, Announce { port: 6881, hashes: hashes.to_vec(), cookie: Some("c00kie".into()) });
    }

    #[test]
    fn bad_announces_are_errors() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(LsdError::NotSearch));
        let no_port = b"BT-SEARCH * HTTP/1.1\r\nInfohash: 0101010101010101010101010101010101010101\r\n\r\n";
        assert_eq!(parse(no_port), Err(LsdError::BadPort));
        let zero = b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: 0101010101010101010101010101010101010101\r\n\r\n";
        assert_eq!(parse(zero), Err(LsdError::BadPort));
        assert_eq!(parse(b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n"), Err(LsdError::NoHash));
        assert!(matches!(
            parse(b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: xyz\r\n\r\n"),
            Err(LsdError::BadHash(_))
        ));
        assert_eq!(parse(&[b'a'; 2000]), Err(LsdError::TooLong(2000)));
    }

    #[test]
    fn many_hashes_are_capped() {
        let hashes: Vec<InfoHash> = (0..40u8).map(|i| InfoHash([i; 20])).collect();
        let msg = encode(1, &hashes[..30], "x");
        let a = parse(&msg[..msg.len().min(MAX_DATAGRAM)]);
        assert!(a.is_err() || a.unwrap().hashes.len() <= MAX_HASHES);
    }

    proptest! {
        #[test]
        fn any_datagram_parses_or_errs(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if let Ok(a) = parse(&data) {
                prop_assert!(a.port != 0 && !a.hashes.is_empty() && a.hashes.len() <= MAX_HASHES);
            }
        }
    }
}
