//! The I/O edge: one announce or scrape over HTTP or UDP, with tokio.
//!
//! HTTP goes through hyper's HTTP/1.1 client connection (hyper is already built for the HTTP
//! server, so this costs no new heavy dependency); `https://` adds rustls (ring provider) and
//! trusts the system's root certificates (plus [`ClientConfig::ca_file`]). The loopback-only
//! policy is checked on the URL's host before anything is resolved: a name other than
//! `localhost` is never looked up, and resolved addresses are checked again. HTTP redirects (up
//! to [`MAX_REDIRECTS`]) are followed under the same checks.
//!
//! Besides announces and scrapes, [`Client::get`] fetches any http(s) URL under the same
//! policy (a `.torrent` link), with a size and time limit, so the server has one HTTP client
//! with one policy rather than a second one beside the trackers'.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sluice_core::{InfoHash, Timestamp};
use tokio::net::{TcpSocket, UdpSocket};

use crate::http::{self, ReplyError};
use crate::udp::{self, ConnectionId, PacketError};
use crate::url::{Host, Scheme, TrackerUrl};
use crate::{AnnounceReply, AnnounceRequest, ScrapeStats};

/// Redirects an HTTP tracker exchange follows at most.
pub const MAX_REDIRECTS: usize = 3;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Contact only loopback trackers (no DNS for any other name).
    pub loopback_only: bool,
    /// Send from this address (the one peers are accepted on), so a tracker that records the
    /// sender's address records one peers can reach.
    pub bind_ip: Option<IpAddr>,
    /// An HTTP exchange (connect, request, reply) taking longer fails.
    pub http_timeout: Duration,
    /// How long each UDP attempt waits for its reply; one attempt per entry.
    pub udp_timeouts: Vec<Duration>,
    /// The HTTP `User-Agent` of announces and scrapes.
    pub user_agent: String,
    /// PEM certificates trusted for https besides the system's roots (a private tracker's
    /// own CA; tests).
    pub ca_file: Option<PathBuf>,
    /// An https server that accepts the connection but completes no TLS handshake within this
    /// is given up on (a plain server that waits for a request would otherwise hold the
    /// exchange for its whole timeout).
    pub tls_handshake_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            loopback_only: false,
            bind_ip: None,
            http_timeout: Duration::from_secs(20),
            // BEP 15 allows nine attempts (over an hour); a streaming client would rather move
            // on to the next tracker after 15 + 30 + 60 s.
            udp_timeouts: (0..3).map(udp::retransmit_timeout).collect(),
            user_agent: concat!("Sluice/", env!("CARGO_PKG_VERSION")).to_owned(),
            ca_file: None,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not a loopback address, and loopback-only is on")]
    NotLoopback(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("{0} URLs cannot be fetched over HTTP")]
    NotHttp(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("bad UDP packet: {0}")]
    Packet(#[from] PacketError),
    #[error("tracker refused: {0}")]
    Refused(String),
    #[error("the tracker answered a request with a {0} packet")]
    Unexpected(&'static str),
    #[error("the tracker has no scrape URL")]
    NoScrape,
    #[error("the tracker's scrape reply does not list the torrent")]
    NotListed,
}

/// Where a [`Client::get`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A success status and its body.
    Body(bytes::Bytes),
    /// A redirect to a URL that is not http(s) (e.g. a `magnet:` link), given as is.
    Elsewhere(String),
}

/// Bounds of one [`Client::get`].
#[derive(Debug, Clone, Copy)]
pub struct GetLimits {
    pub max_body: usize,
    /// For the whole exchange, redirects included.
    pub timeout: Duration,
}

/// A tracker client shared by a session's torrents (it caches UDP connection ids).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    origin: Instant,
    connections: Mutex<HashMap<SocketAddr, ConnectionId>>,
    /// Built on the first https exchange (reading the system's roots costs a few ms).
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Client {
    #[expect(clippy::disallowed_methods, reason = "the client is the I/O edge: it owns its clock")]
    pub fn new(config: ClientConfig) -> Self {
        Self { config, origin: Instant::now(), connections: Mutex::default(), tls: OnceLock::new() }
    }

    /// GETs an http(s) URL under the client's policy (host checked before any lookup,
    /// redirects followed up to [`MAX_REDIRECTS`] under the same checks, TLS as for trackers).
    /// A redirect to a URL of another scheme (e.g. `magnet:`) ends the exchange with
    /// [`Fetched::Elsewhere`].
    pub async fn get(&self, url: &str, limits: GetLimits) -> Result<Fetched, ClientError> {
        let start = TrackerUrl::parse(url).map_err(|e| ClientError::Http(format!("bad URL {url:?}: {e}")))?;
        if start.scheme == Scheme::Udp {
            return Err(ClientError::NotHttp("udp".into()));
        }
        let work = async {
            let mut target = start.path.clone();
            let mut at = start;
            for _ in 0..=MAX_REDIRECTS {
                let addr = self.resolve(&at).await?;
                let (status, location, body) = self.http_once(&at, addr, &target, limits.max_body).await?;
                if status.is_redirection() {
                    let location = location.ok_or(ClientError::Status(status.as_u16()))?;
                    if scheme_of(&location)
                        .is_some_and(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
                    {
                        return Ok(Fetched::Elsewhere(location));
                    }
                    (at, target) = redirect(&at, &location)?;
                    continue;
                }
                if !status.is_success() {
                    return Err(ClientError::Status(status.as_u16()));
                }
                return Ok(Fetched::Body(body));
            }
            Err(ClientError::Http(format!("more than {MAX_REDIRECTS} redirects")))
        };
        tokio::time::timeout(limits.timeout, work).await.map_err(|_| ClientError::Timeout(limits.timeout))?
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub async fn announce(
        &self,
        tracker: &TrackerUrl,
        req: &AnnounceRequest,
        tracker_id: Option<&[u8]>,
    ) -> Result<AnnounceReply, ClientError> {
        let addr = self.resolve(tracker).await?;
        match tracker.scheme {
            Scheme::Udp => {
                // BEP 41: a bare `/` (also what a URL without a path parses to) is not sent.
                let url_data = if tracker.path == "/" { Vec::new() } else { tracker.path.clone().into_bytes() };
                let r = self
                    .udp(addr, |connection, transaction| udp::Request::Announce {
                        connection,
                        transaction,
                        announce: req.clone(),
                        url_data: url_data.clone(),
                    })
                    .await?;
                match r {
                    udp::Response::Announce { reply, .. } => Ok(reply),
                    other => Err(unexpected(&other)),
                }
            }
            Scheme::Http | Scheme::Https => {
                let url = http::announce_url(tracker, req, tracker_id);
                let body = self.http_get(tracker, addr, &url).await?;
                Ok(http::parse_announce_reply(&body)?)
            }
        }
    }

    pub async fn scrape(&self, tracker: &TrackerUrl, hash: InfoHash) -> Result<ScrapeStats, ClientError> {
        if matches!(tracker.scheme, Scheme::Http | Scheme::Https) && tracker.scrape_path().is_none() {
            return Err(ClientError::NoScrape);
        }
        let addr = self.resolve(tracker).await?;
        match tracker.scheme {
            Scheme::Udp => {
                let r = self
                    .udp(addr, |connection, transaction| udp::Request::Scrape {
                        connection,
                        transaction,
                        hashes: vec![hash],
                    })
                    .await?;
                match r {
                    udp::Response::Scrape { stats, .. } => stats.first().copied().ok_or(ClientError::NotListed),
                    other => Err(unexpected(&other)),
                }
            }
            Scheme::Http | Scheme::Https => {
                let url = http::scrape_url(tracker, &[hash]).ok_or(ClientError::NoScrape)?;
                let body = self.http_get(tracker, addr, &url).await?;
                let files = http::parse_scrape_reply(&body)?;
                files.into_iter().find(|(h, _)| *h == hash).map(|(_, s)| s).ok_or(ClientError::NotListed)
            }
        }
    }

    /// The tracker's address, checked against the policy before and after any lookup.
    async fn resolve(&self, tracker: &TrackerUrl) -> Result<SocketAddr, ClientError> {
        let loopback_only = self.config.loopback_only;
        if loopback_only && !tracker.host.is_loopback() {
            return Err(ClientError::NotLoopback(tracker.host.to_string()));
        }
        let addrs: Vec<SocketAddr> = match &tracker.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, tracker.port)],
            // Never asks DNS: localhost is loopback by definition (RFC 6761).
            Host::Name(n) if n == "localhost" => vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), tracker.port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), tracker.port),
            ],
            Host::Name(n) => tokio::net::lookup_host((n.as_str(), tracker.port))
                .await
                .map_err(|_| ClientError::Resolve(n.clone()))?
                .collect(),
        };
        let bind_v6 = self.config.bind_ip.map(|ip| ip.is_ipv6());
        addrs
            .into_iter()
            .filter(|a| !loopback_only || Host::Ip(a.ip()).is_loopback())
            .find(|a| bind_v6.is_none_or(|v6| v6 == a.is_ipv6()))
            .ok_or_else(|| ClientError::Resolve(tracker.host.to_string()))
    }

    fn local(&self, remote: SocketAddr) -> SocketAddr {
        let ip = self.config.bind_ip.unwrap_or(match remote {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        SocketAddr::new(ip, 0)
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Connect (unless a connection id is still fresh), then one request built by `make`,
    /// retransmitting per `udp_timeouts`.
    async fn udp(
        &self,
        addr: SocketAddr,
        make: impl Fn(u64, u32) -> udp::Request,
    ) -> Result<udp::Response, ClientError> {
        let socket = UdpSocket::bind(self.local(addr)).await?;
        socket.connect(addr).await?;
        let cached = self.connections.lock().unwrap_or_else(|p| p.into_inner()).get(&addr).copied();
        let connection = match cached.and_then(|c| c.valid_at(self.now())) {
            Some(id) => id,
            None => {
                let r = self.udp_exchange(&socket, addr, |t| udp::Request::Connect { transaction: t }).await?;
                let udp::Response::Connect { connection, .. } = r else {
                    return Err(unexpected(&r));
                };
                let id = ConnectionId { id: connection, received: self.now() };
                self.connections.lock().unwrap_or_else(|p| p.into_inner()).insert(addr, id);
                connection
            }
        };
        let r = self.udp_exchange(&socket, addr, |t| make(connection, t)).await;
        if r.is_err() {
            // The id may be what the tracker rejected: connect afresh next time.
            self.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
        }
        r
    }

    async fn udp_exchange(
        &self,
        socket: &UdpSocket,
        addr: SocketAddr,
        make: impl Fn(u32) -> udp::Request,
    ) -> Result<udp::Response, ClientError> {
        let transaction: u32 = rand::random();
        let packet = make(transaction).encode();
        let mut buf = vec![0u8; udp::MAX_PACKET];
        for &wait in &self.config.udp_timeouts {
            socket.send(&packet).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(r) => r?,
                };
                match udp::Response::decode(&buf[..n], addr.is_ipv6()) {
                    Ok(r) if r.transaction() != transaction => continue,
                    Ok(udp::Response::Error { message, .. }) => return Err(ClientError::Refused(message)),
                    Ok(r) => return Ok(r),
                    // A stray or garbled datagram: keep waiting for ours.
                    Err(e) => tracing::debug!(%addr, error = %e, "ignoring a bad UDP tracker packet"),
                }
            }
        }
        Err(ClientError::Timeout(self.config.udp_timeouts.iter().sum()))
    }

    async fn http_get(&self, tracker: &TrackerUrl, addr: SocketAddr, url: &str) -> Result<Vec<u8>, ClientError> {
        let timeout = self.config.http_timeout;
        tokio::time::timeout(timeout, self.http_get_inner(tracker, addr, url))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn http_get_inner(&self, tracker: &TrackerUrl, addr: SocketAddr, url: &str) -> Result<Vec<u8>, ClientError> {
        // The request target: everything after the authority.
        let target = url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..])).unwrap_or("/");
        let (status, body) = self.http_follow(tracker, addr, target, http::MAX_REPLY).await?;
        if !status.is_success() {
            // Some trackers explain a refusal in a bencoded body under an error status.
            if let Err(ReplyError::Failure(reason)) = http::parse_announce_reply(&body) {
                return Err(ClientError::Refused(reason));
            }
            return Err(ClientError::Status(status.as_u16()));
        }
        Ok(body.to_vec())
    }

    /// GETs `target`, following redirects: the final status and body.
    async fn http_follow(
        &self,
        tracker: &TrackerUrl,
        addr: SocketAddr,
        target: &str,
        max_body: usize,
    ) -> Result<(hyper::StatusCode, bytes::Bytes), ClientError> {
        let (mut tracker, mut addr, mut target) = (tracker.clone(), addr, target.to_owned());
        for _ in 0..=MAX_REDIRECTS {
            let (status, location, body) = self.http_once(&tracker, addr, &target, max_body).await?;
            if status.is_redirection() {
                let location = location.ok_or(ClientError::Status(status.as_u16()))?;
                (tracker, target) = redirect(&tracker, &location)?;
                addr = self.resolve(&tracker).await?;
                continue;
            }
            return Ok((status, body));
        }
        Err(ClientError::Http(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// The TLS connector: the system's roots plus [`ClientConfig::ca_file`].
    fn tls(&self) -> Result<tokio_rustls::TlsConnector, String> {
        let config = self.tls.get_or_init(|| tls_config(self.config.ca_file.as_deref()));
        config.clone().map(tokio_rustls::TlsConnector::from)
    }

    /// One GET of `target` from `tracker` at `addr`: status, `Location`, body.
    async fn http_once(
        &self,
        tracker: &TrackerUrl,
        addr: SocketAddr,
        target: &str,
        max_body: usize,
    ) -> Result<(hyper::StatusCode, Option<String>, bytes::Bytes), ClientError> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if self.config.bind_ip.is_some() {
            socket.bind(self.local(addr))?;
        }
        let stream = socket.connect(addr).await?;
        let default_port = if tracker.scheme == Scheme::Https { 443 } else { 80 };
        let host = if tracker.port == default_port {
            tracker.host.to_string()
        } else {
            format!("{}:{}", tracker.host, tracker.port)
        };
        let req = hyper::Request::get(target)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, self.config.user_agent.as_str())
            .header(hyper::header::CONNECTION, "close")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if tracker.scheme == Scheme::Http {
            return exchange(stream, req, max_body).await;
        }
        let tls_err = |reason: String| ClientError::Tls { host: tracker.host.to_string(), reason };
        let connector = self.tls().map_err(tls_err)?;
        let name = match &tracker.host {
            Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
            Host::Name(n) => rustls::pki_types::ServerName::try_from(n.clone()).map_err(|e| tls_err(e.to_string()))?,
        };
        // The handshake's io::Error wraps rustls' reason (e.g. an unknown issuer).
        let wait = self.config.tls_handshake_timeout;
        let stream = tokio::time::timeout(wait, connector.connect(name, stream))
            .await
            .map_err(|_| tls_err(format!("no TLS handshake within {} ms", wait.as_millis())))?
            .map_err(|e| tls_err(e.to_string()))?;
        exchange(stream, req, max_body).await
    }
}

/// A rustls client on the ring provider trusting the system's roots (rustls-native-certs reads
/// the OS store, honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`) and the PEM certificates in `extra`.
fn tls_config(extra: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "reading the system's root certificates");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("reading CA certificates from {}: {e}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("no usable CA certificate in {}", path.display()));
        }
    }
    if roots.is_empty() {
        return Err("no trusted root certificates (install ca-certificates, or give a CA file)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The scheme of an absolute URL (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Where a redirect's `Location` points: the same tracker's path when it starts with `/`, else
/// an absolute http(s) URL (its host goes through the same policy checks when resolved).
fn redirect(from: &TrackerUrl, location: &str) -> Result<(TrackerUrl, String), ClientError> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok((from.clone(), location.to_owned()));
    }
    let to = TrackerUrl::parse(location).map_err(|e| ClientError::Http(format!("bad redirect {location:?}: {e}")))?;
    if to.scheme == Scheme::Udp {
        return Err(ClientError::Http(format!("redirect to a non-HTTP URL {location:?}")));
    }
    let target = to.path.clone();
    Ok((to, target))
}

/// Sends `req` on `stream` and reads the reply (at most `max_body` bytes of body).
async fn exchange<S>(
    stream: S,
    req: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
    max_body: usize,
) -> Result<(hyper::StatusCode, Option<String>, bytes::Bytes), ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;

    let http_err = |e: hyper::Error| ClientError::Http(e.to_string());
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(http_err)?;
    // The connection's driver goes with this exchange, also when a timeout drops it.
    let driver = AbortOnDrop(tokio::spawn(conn));
    let response = sender.send_request(req).await.map_err(http_err)?;
    let status = response.status();
    let location = response.headers().get(hyper::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = http_body_util::Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
            Some(_) => ClientError::TooLarge(max_body),
            None => ClientError::Http(e.to_string()),
        })?
        .to_bytes();
    drop(driver);
    Ok((status, location, body))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn unexpected(r: &udp::Response) -> ClientError {
    ClientError::Unexpected(match r {
        udp::Response::Connect { .. } => "connect",
        udp::Response::Announce { .. } => "announce",
        udp::Response::Scrape { .. } => "scrape",
        udp::Response::Error { .. } => "error",
    })
}
