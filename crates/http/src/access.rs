//! Who may use the server: IP allow and deny lists, then HTTP basic auth, checked on every
//! request before routing ([`protect`]).
//!
//! With accounts configured, every route needs credentials except those a player opens by
//! itself, because TorrServer's clients hand players bare URLs (Lampa, jacktorr, M3U files,
//! DLNA renderers never send credentials):
//!
//! - `/echo` (a liveness and version probe);
//! - byte streams and playlists of a torrent the server **already knows**: `/stream` with
//!   `play` or `m3u` (and none of `stat`, `preload`, `save`; the link a bare hash or a magnet
//!   without peers or trackers, so an anonymous request can neither add a torrent nor feed
//!   it addresses), `/play/{hash}/{id}`, `/play?hash=`, `/playlist?hash=`, and
//!   `/api/v1/torrents/{hash}/files/{index}/stream[/{name}]`, `/api/v1/torrents/{hash}/playlist.m3u`.
//!   An unknown hash is a 401,
//!   like TorrServer's, so anonymous clients cannot add torrents or probe which are known;
//! - `OPTIONS` (browsers send CORS preflights without credentials; no handler acts on one).
//!
//! Everything else (settings, add, remove, drop, wipe, shutdown, lists, cache, metrics,
//! unknown paths) is refused without valid credentials: the rule is a closed list of open
//! routes, so a route added later is protected until someone opens it here.
//!
//! Accounts are `user:password` lines ([`Accounts::parse`]). The plaintext stays in the file
//! (as TorrServer's `accs.db`): basic auth sends the password with every request, Lampa
//! polls `/cache` every 100 ms, and a deliberately slow hash at that rate would cost a TV box
//! more than it protects; the file is refused when other users can read it instead. In
//! memory each account is only a SHA-1 digest of `user:password`; a presented header is
//! digested the same way and compared with every account in constant time, so neither the
//! timing nor an early exit tells how much of a guess was right (SHA-1 serves to make every
//! value the same length here; nothing relies on its collision resistance).
//!
//! Wrong passwords are rationed per client ([`Guesses`]): [`GUESS_BURST`] at once, then one
//! per [`GUESS_INTERVAL`] (an IPv6 client counts by its /64). A client out of guesses gets
//! 429 with `Retry-After` for anything that needs credentials, right ones included, without
//! its header being checked; requests without credentials and the open routes go on as
//! before, so its players keep playing. Right credentials spend nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha1::{Digest, Sha1};
use sluice_core::InfoHash;
use sluice_core::magnet::Magnet;

use crate::error;
use crate::torrserver::{Link, Query};

/// Longest `Authorization` value looked at; longer ones are refused unread.
pub const MAX_AUTHORIZATION: usize = 4096;

/// What the `WWW-Authenticate` header of a 401 says.
pub const CHALLENGE: &str = "Basic realm=\"Sluice\", charset=\"UTF-8\"";

/// Padded or not: clients differ.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BasicAuthError {
    #[error("the Authorization header is longer than {MAX_AUTHORIZATION} bytes")]
    TooLong,
    #[error("the Authorization scheme is not Basic")]
    NotBasic,
    #[error("the Basic credentials are not base64")]
    BadBase64,
    #[error("the Basic credentials have no ':' between user and password")]
    NoColon,
}

/// The user and password of a `Basic` `Authorization` header, as bytes (RFC 7617 leaves the
/// charset to the client).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &String::from_utf8_lossy(&self.user)).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses an `Authorization` header value: `Basic <base64 of user:password>`.
    pub fn parse(value: &[u8]) -> Result<Self, BasicAuthError> {
        if value.len() > MAX_AUTHORIZATION {
            return Err(BasicAuthError::TooLong);
        }
        let value = value.trim_ascii();
        let split = value.iter().position(|&b| b == b' ' || b == b'\t').ok_or(BasicAuthError::NotBasic)?;
        let (scheme, token) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Err(BasicAuthError::NotBasic);
        }
        let decoded = BASE64.decode(token.trim_ascii()).map_err(|_| BasicAuthError::BadBase64)?;
        let colon = decoded.iter().position(|&b| b == b':').ok_or(BasicAuthError::NoColon)?;
        Ok(Self { user: decoded[..colon].to_vec(), password: decoded[colon + 1..].to_vec() })
    }

    fn digest(user: &[u8], password: &[u8]) -> [u8; 20] {
        let mut h = Sha1::new();
        h.update(user);
        h.update(b":");
        h.update(password);
        h.finalize().into()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    #[error("line {line}: expected user:password")]
    NoColon { line: usize },
    #[error("line {line}: the user name is empty")]
    EmptyUser { line: usize },
    #[error("line {line}: the password is empty")]
    EmptyPassword { line: usize },
    #[error("line {line}: user {user:?} is listed twice")]
    Duplicate { line: usize, user: String },
    #[error("no accounts (every line is blank or a # comment)")]
    Empty,
}

/// The accounts basic auth accepts.
#[derive(Clone)]
pub struct Accounts {
    digests: Vec<[u8; 20]>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Accounts({})", self.digests.len())
    }
}

impl Accounts {
    /// One `user:password` per line; the password runs to the end of the line (it may hold
    /// `:` and spaces), the user name is trimmed. Blank lines and lines starting with `#`
    /// are skipped.
    pub fn parse(text: &str) -> Result<Self, AccountsError> {
        let mut users: Vec<&str> = Vec::new();
        let mut digests = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
                continue;
            }
            let (user, password) = raw.split_once(':').ok_or(AccountsError::NoColon { line })?;
            let user = user.trim();
            if user.is_empty() {
                return Err(AccountsError::EmptyUser { line });
            }
            if password.is_empty() {
                return Err(AccountsError::EmptyPassword { line });
            }
            if users.contains(&user) {
                return Err(AccountsError::Duplicate { line, user: user.to_owned() });
            }
            users.push(user);
            digests.push(Credentials::digest(user.as_bytes(), password.as_bytes()));
        }
        if digests.is_empty() {
            return Err(AccountsError::Empty);
        }
        Ok(Self { digests })
    }

    /// Whether the credentials name an account: every account is compared, each in
    /// constant time.
    pub fn verify(&self, c: &Credentials) -> bool {
        let given = Credentials::digest(&c.user, &c.password);
        let mut found = 0u8;
        for d in &self.digests {
            found |= constant_time_eq(d, &given);
        }
        found == 1
    }

    /// [`verify`](Self::verify) of an `Authorization` header; a bad header is no account.
    pub fn verify_header(&self, value: Option<&HeaderValue>) -> bool {
        value.and_then(|v| Credentials::parse(v.as_bytes()).ok()).is_some_and(|c| self.verify(&c))
    }
}

/// 1 when equal, else 0, looking at every byte.
fn constant_time_eq(a: &[u8; 20], b: &[u8; 20]) -> u8 {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    u8::from(std::hint::black_box(diff) == 0)
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    #[error("{0:?} is not a prefix length (0-32 for IPv4, 0-128 for IPv6)")]
    BadPrefix(String),
}

/// An address block in CIDR notation (`192.168.1.0/24`, `fd00::/8`); a bare address is a
/// block of one. Host bits after the prefix are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| IpNetError::BadAddress(addr.to_owned()))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max && !p.starts_with('+'))
                .ok_or_else(|| IpNetError::BadPrefix(p.to_owned()))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which clients may connect at all: none on the deny list, and when the allow list is not
/// empty only those on it (deny wins over allow). IPv4-mapped IPv6 clients are matched as
/// IPv4.
#[derive(Clone, Debug, Default)]
pub struct IpFilter {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpFilter {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|n| n.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip)))
    }
}

/// Wrong passwords a client may send at once.
pub const GUESS_BURST: u32 = 10;
/// Then one more each this often.
pub const GUESS_INTERVAL: Duration = Duration::from_secs(6);
/// Clients remembered at most; those whose guesses are all back go first.
const GUESS_CLIENTS: usize = 4096;

/// Who a guess is counted against: an IPv6 client by its /64, which one host usually has whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Guesser {
    V4([u8; 4]),
    V6([u8; 8]),
    Unknown,
}

impl Guesser {
    fn of(client: Option<IpAddr>) -> Self {
        match client.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Guesser::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => Guesser::V6(v6.octets()[..8].try_into().expect("8 bytes")),
            None => Guesser::Unknown,
        }
    }
}

/// Wrong passwords per client, as a leaky bucket: each wrong one pushes the client's mark
/// [`GUESS_INTERVAL`] past `max(mark, now)`; the client is out of guesses while its mark is
/// more than `GUESS_BURST - 1` intervals ahead of now.
#[derive(Debug, Default)]
pub struct Guesses {
    marks: Mutex<HashMap<Guesser, Instant>>,
}

impl Guesses {
    /// How long until `client` may guess again; `None` if it may now.
    fn locked(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let mark = *marks.get(&Guesser::of(client))?;
        let opens = mark.checked_sub(GUESS_INTERVAL * (GUESS_BURST - 1))?;
        (opens > now).then(|| opens - now)
    }

    /// Counts a wrong password from `client`.
    fn wrong(&self, client: Option<IpAddr>, now: Instant) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let who = Guesser::of(client);
        if marks.len() >= GUESS_CLIENTS && !marks.contains_key(&who) {
            marks.retain(|_, mark| *mark > now);
            if marks.len() >= GUESS_CLIENTS
                && let Some(first) = marks.iter().min_by_key(|(_, mark)| **mark).map(|(k, _)| *k)
            {
                marks.remove(&first);
            }
        }
        let mark = marks.entry(who).or_insert(now);
        *mark = (*mark).max(now) + GUESS_INTERVAL;
    }
}

/// Who may do what; see the module docs.
#[derive(Clone)]
pub struct AccessPolicy {
    pub ips: IpFilter,
    /// `None`: no authentication.
    pub accounts: Option<Accounts>,
    /// Whether the server knows a torrent (player links of known torrents open without
    /// credentials).
    pub known: Arc<dyn Fn(InfoHash) -> bool + Send + Sync>,
    /// Wrong passwords so far, per client.
    pub guesses: Arc<Guesses>,
}

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy").field("ips", &self.ips).field("accounts", &self.accounts).finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403: the client's address is not allowed.
    Forbidden,
    /// 401: credentials needed.
    Unauthorized,
    /// 429: the client is out of password guesses for this long.
    TooManyGuesses(Duration),
}

/// What a request needs besides an allowed address, credentials aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Open,
    /// Open when the server knows this torrent.
    Known(InfoHash),
    Closed,
}

impl AccessPolicy {
    /// The decision for a request from `client` (`None` when the connection's address is
    /// unknown: refused when an IP list is set) at `now`; a wrong password counts against
    /// the client.
    pub fn decide(
        &self,
        client: Option<IpAddr>,
        method: &Method,
        uri: &Uri,
        authorization: Option<&HeaderValue>,
        now: Instant,
    ) -> Decision {
        if !self.ips.is_empty() && !client.is_some_and(|ip| self.ips.permits(ip)) {
            return Decision::Forbidden;
        }
        let Some(accounts) = &self.accounts else { return Decision::Allow };
        let open = match gate(method, uri) {
            Gate::Open => true,
            Gate::Known(h) => (self.known)(h),
            Gate::Closed => false,
        };
        if open {
            return Decision::Allow;
        }
        if authorization.is_none() {
            return Decision::Unauthorized;
        }
        if let Some(wait) = self.guesses.locked(client, now) {
            return Decision::TooManyGuesses(wait);
        }
        if accounts.verify_header(authorization) {
            Decision::Allow
        } else {
            self.guesses.wrong(client, now);
            Decision::Unauthorized
        }
    }
}

fn gate(method: &Method, uri: &Uri) -> Gate {
    if method == Method::OPTIONS {
        return Gate::Open;
    }
    if method != Method::GET && method != Method::HEAD {
        return Gate::Closed;
    }
    let hash = |s: &str| InfoHash::from_hex(s.trim()).map_or(Gate::Closed, Gate::Known);
    let segments: Vec<&str> = uri.path().split('/').skip(1).collect();
    match segments.as_slice() {
        ["echo"] => Gate::Open,
        ["stream", ..] => stream_gate(&Query::new(uri)),
        ["play", h, _] => hash(h),
        ["play"] | ["playlist", ..] => Query::new(uri).get("hash").map_or(Gate::Closed, hash),
        ["api", "v1", "torrents", h, "files", _, "stream"] | ["api", "v1", "torrents", h, "files", _, "stream", _] => {
            hash(h)
        }
        ["api", "v1", "torrents", h, "playlist.m3u"] => hash(h),
        _ => Gate::Closed,
    }
}

/// `/stream` as a player uses it: play or m3u of a known torrent, nothing that adds, saves,
/// preloads or reports.
fn stream_gate(q: &Query) -> Gate {
    if !(q.has("play") || q.has("m3u")) || q.has("stat") || q.has("preload") || q.has("save") {
        return Gate::Closed;
    }
    match Link::parse(q.get("link").unwrap_or("")) {
        Ok(Link::Hash(h)) => Gate::Known(h),
        Ok(Link::Magnet(m)) => match Magnet::parse(&m) {
            Ok(m) if m.peers.is_empty() && m.trackers.is_empty() => Gate::Known(m.info_hash),
            _ => Gate::Closed,
        },
        _ => Gate::Closed,
    }
}

/// `router` behind `policy`: every request, the fallback's included, is checked before it
/// is routed. The client address comes from `ConnectInfo<SocketAddr>`: serve the router
/// with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn protect(router: Router, policy: Arc<AccessPolicy>) -> Router {
    router.layer(middleware::from_fn_with_state(policy, guard))
}

async fn guard(State(policy): State<Arc<AccessPolicy>>, request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let authorization = request.headers().get(header::AUTHORIZATION);
    let decision = policy.decide(client, request.method(), request.uri(), authorization, Instant::now());
    let api = request.uri().path().starts_with("/api/");
    // `/api/` routes answer with a JSON error, the others with the bare status.
    let refuse = |status: StatusCode, code: &str, message: &str| {
        if api { error(status, code, message) } else { status.into_response() }
    };
    match decision {
        Decision::Allow => next.run(request).await,
        Decision::Forbidden => {
            tracing::debug!("http: {client:?} is not allowed ({} {})", request.method(), request.uri().path());
            refuse(StatusCode::FORBIDDEN, "forbidden", "this address may not use the server")
        }
        Decision::Unauthorized => {
            let (method, path) = (request.method(), request.uri().path());
            if request.headers().contains_key(header::AUTHORIZATION) {
                // Visible by default: repeated wrong passwords are worth noticing.
                tracing::info!("http: wrong credentials from {client:?} ({method} {path})");
                metrics::counter!("sluice_http_wrong_passwords_total").increment(1);
            } else {
                tracing::debug!("http: {client:?} without credentials ({method} {path})");
            }
            let mut response =
                refuse(StatusCode::UNAUTHORIZED, "unauthorized", "credentials are needed (HTTP basic auth)");
            let h = response.headers_mut();
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
            // A browser client (the Lampa web build) sees the 401, not a CORS failure.
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            response
        }
        Decision::TooManyGuesses(wait) => {
            let (method, path) = (request.method(), request.uri().path());
            tracing::warn!("http: {client:?} is out of password guesses for {wait:?} ({method} {path})");
            metrics::counter!("sluice_http_guess_refusals_total").increment(1);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response =
                refuse(StatusCode::TOO_MANY_REQUESTS, "too_many_guesses", "too many wrong passwords; try again later");
            let h = response.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::try_from(format!("Basic {token}")).unwrap()
    }

    #[test]
    fn basic_credentials_parse() {
        let c = Credentials::parse(header("alice", "pa:ss word").as_bytes()).unwrap();
        assert_eq!((c.user.as_slice(), c.password.as_slice()), (&b"alice"[..], &b"pa:ss word"[..]));
        // Scheme in any case, unpadded base64, extra blanks.
        let c = Credentials::parse(b"  bAsIc \t YTpi ").unwrap();
        assert_eq!((c.user.as_slice(), c.password.as_slice()), (&b"a"[..], &b"b"[..]));
        assert_eq!(Credentials::parse(b"Basic Og==").unwrap().user, b"");
        assert_eq!(Credentials::parse(b"Bearer abc"), Err(BasicAuthError::NotBasic));
        assert_eq!(Credentials::parse(b"Basic"), Err(BasicAuthError::NotBasic));
        assert_eq!(Credentials::parse(b""), Err(BasicAuthError::NotBasic));
        assert_eq!(Credentials::parse(b"Basic !!!!"), Err(BasicAuthError::BadBase64));
        assert_eq!(Credentials::parse(b"Basic YWJj"), Err(BasicAuthError::NoColon));
        let long = [b'A'; MAX_AUTHORIZATION + 1];
        assert_eq!(Credentials::parse(&long), Err(BasicAuthError::TooLong));
    }

    #[test]
    fn accounts_parse_and_verify() {
        let a = Accounts::parse("# users\n\nalice:secret\r\n bob :p:w d \n").unwrap();
        assert!(a.verify_header(Some(&header("alice", "secret"))));
        assert!(a.verify_header(Some(&header("bob", "p:w d "))));
        assert!(!a.verify_header(Some(&header("alice", "secret "))));
        assert!(!a.verify_header(Some(&header("alice", "Secret"))));
        assert!(!a.verify_header(Some(&header("bob", "secret"))));
        assert!(!a.verify_header(Some(&header("alic", "esecret"))));
        assert!(!a.verify_header(None));
        assert!(!a.verify_header(Some(&HeaderValue::from_static("Basic ???"))));
        assert_eq!(Accounts::parse("alice\n").unwrap_err(), AccountsError::NoColon { line: 1 });
        assert_eq!(Accounts::parse("\n:x").unwrap_err(), AccountsError::EmptyUser { line: 2 });
        assert_eq!(Accounts::parse("a:").unwrap_err(), AccountsError::EmptyPassword { line: 1 });
        assert_eq!(Accounts::parse("a:1\na:2").unwrap_err(), AccountsError::Duplicate { line: 2, user: "a".into() });
        assert_eq!(Accounts::parse("# none\n").unwrap_err(), AccountsError::Empty);
        assert_eq!(format!("{a:?}"), "Accounts(2)");
    }

    #[test]
    fn cidr_blocks() {
        let net: IpNet = "127.0.87.0/30".parse().unwrap();
        assert!(net.contains("127.0.87.3".parse().unwrap()));
        assert!(!net.contains("127.0.87.4".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.87.2".parse().unwrap()), "IPv4-mapped is IPv4");
        assert!(!net.contains("::1".parse().unwrap()));
        let host: IpNet = "10.1.2.3".parse().unwrap();
        assert_eq!(host.to_string(), "10.1.2.3/32");
        assert!(host.contains("10.1.2.3".parse().unwrap()) && !host.contains("10.1.2.4".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "fd00::1/8".parse().unwrap();
        assert!(v6.contains("fdff::2".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap()));
        assert!("::/0".parse::<IpNet>().unwrap().contains("::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/+8", "host/8", "1.2.3.4/-1"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let nets = |list: &[&str]| list.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        let f = IpFilter { allow: nets(&["127.0.87.0/24"]), deny: nets(&["127.0.87.3"]) };
        assert!(f.permits("127.0.87.2".parse().unwrap()));
        assert!(!f.permits("127.0.87.3".parse().unwrap()));
        assert!(!f.permits("127.0.88.2".parse().unwrap()));
        let deny_only = IpFilter { allow: vec![], deny: nets(&["127.0.87.3"]) };
        assert!(deny_only.permits("10.0.0.1".parse().unwrap()) && !deny_only.permits("127.0.87.3".parse().unwrap()));
        assert!(IpFilter::default().permits("1.2.3.4".parse().unwrap()));
    }

    const KNOWN: InfoHash = InfoHash([0xab; 20]);

    fn policy(accounts: bool) -> AccessPolicy {
        AccessPolicy {
            ips: IpFilter::default(),
            accounts: accounts.then(|| Accounts::parse("alice:secret").unwrap()),
            known: Arc::new(|h| h == KNOWN),
            guesses: Arc::default(),
        }
    }

    /// The gate of every route, anonymous: (method, path and query, allowed).
    #[test]
    fn anonymous_requests_reach_only_player_links_of_known_torrents() {
        let k = KNOWN.to_hex();
        let u = InfoHash([0xcd; 20]).to_hex();
        let rows: Vec<(Method, String, bool)> = vec![
            (Method::GET, "/echo".into(), true),
            (Method::OPTIONS, "/torrents".into(), true),
            (Method::GET, format!("/stream/a.mkv?link={k}&index=1&play"), true),
            (Method::HEAD, format!("/stream?link={k}&index=1&play"), true),
            (Method::GET, format!("/stream?link={k}&m3u&fromlast"), true),
            (Method::GET, format!("/stream?link=magnet:?xt=urn:btih:{k}%26dn=x&play"), true),
            (Method::GET, format!("/stream?link=magnet:?xt=urn:btih:{k}%26x.pe=10.0.0.1:1&play"), false),
            (Method::GET, format!("/stream?link=magnet:?xt=urn:btih:{k}%26tr=http://t/a&play"), false),
            (Method::GET, format!("/stream?link={u}&index=1&play"), false),
            (Method::GET, format!("/stream?link={k}&stat"), false),
            (Method::GET, format!("/stream?link={k}&preload&play"), false),
            (Method::GET, format!("/stream?link={k}&save&play"), false),
            (Method::GET, format!("/stream?link={k}&stat&play"), false),
            (Method::GET, format!("/stream?link={k}"), false),
            (Method::GET, "/stream?link=http://x/a.torrent&play".into(), false),
            // The handler reads the first `link`: so does the gate.
            (Method::GET, format!("/stream?link={u}&link={k}&play"), false),
            (Method::GET, format!("/stream?lin%6B={k}&play"), true),
            (Method::GET, format!("/play/{k}/1"), true),
            (Method::HEAD, format!("/play/{k}/1"), true),
            (Method::GET, format!("/play/{u}/1"), false),
            (Method::GET, format!("/play/{k}/1/x"), false),
            (Method::GET, format!("/play?hash={k}&id=1"), true),
            (Method::GET, format!("/play?hash={u}&id=1"), false),
            (Method::GET, format!("/playlist?hash={k}"), true),
            (Method::GET, format!("/playlist/x.m3u?hash={k}&fromlast"), true),
            (Method::GET, "/playlist".into(), false),
            (Method::GET, "/playlistall/all.m3u".into(), false),
            (Method::GET, format!("/api/v1/torrents/{k}/files/0/stream"), true),
            (Method::GET, format!("/api/v1/torrents/{k}/files/0/stream/a.mkv"), true),
            (Method::GET, format!("/api/v1/torrents/{u}/files/0/stream"), false),
            (Method::DELETE, format!("/api/v1/torrents/{k}/files/0/stream"), false),
            (Method::POST, format!("/api/v1/torrents/{k}/peers"), false),
            (Method::GET, format!("/api/v1/torrents/{k}/playlist.m3u"), true),
            (Method::GET, format!("/api/v1/torrents/{u}/playlist.m3u"), false),
            (Method::GET, "/api/v1/playlist.m3u".into(), false),
            (Method::GET, format!("/api/v1/torrents/{k}"), false),
            (Method::DELETE, format!("/api/v1/torrents/{k}"), false),
            (Method::PATCH, "/api/v1/settings".into(), false),
            (Method::GET, "/api/v1/events".into(), false),
            (Method::POST, "/api/v1/torrents".into(), false),
            (Method::POST, "/settings".into(), false),
            (Method::POST, "/torrents".into(), false),
            (Method::POST, format!("/stream?link={k}&play"), false),
            (Method::GET, "/shutdown".into(), false),
            (Method::GET, format!("/ffp/{k}/1"), false),
            (Method::GET, "/download/1".into(), false),
            (Method::GET, "/metrics".into(), false),
            (Method::GET, "/".into(), false),
            (Method::GET, "/nowhere".into(), false),
        ];
        let off = policy(false);
        let good = header("alice", "secret");
        let bad = header("alice", "wrong");
        let now = Instant::now();
        for (method, uri, open) in rows {
            // A policy per row: every wrong password here counts.
            let on = policy(true);
            let uri: Uri = uri.parse().unwrap();
            let anonymous = on.decide(None, &method, &uri, None, now);
            let want = if open { Decision::Allow } else { Decision::Unauthorized };
            assert_eq!(anonymous, want, "{method} {uri}");
            assert_eq!(on.decide(None, &method, &uri, Some(&bad), now), want, "{method} {uri} wrong password");
            assert_eq!(on.decide(None, &method, &uri, Some(&good), now), Decision::Allow, "{method} {uri} with auth");
            assert_eq!(off.decide(None, &method, &uri, None, now), Decision::Allow, "{method} {uri} auth off");
        }
    }

    #[test]
    fn ip_lists_come_before_credentials() {
        let mut p = policy(true);
        p.ips.deny.push("127.0.87.3".parse().unwrap());
        let uri: Uri = "/echo".parse().unwrap();
        let good = header("alice", "secret");
        let from = |ip: &str| Some(ip.parse().unwrap());
        let now = Instant::now();
        assert_eq!(p.decide(from("127.0.87.3"), &Method::GET, &uri, Some(&good), now), Decision::Forbidden);
        assert_eq!(p.decide(from("127.0.87.2"), &Method::GET, &uri, None, now), Decision::Allow);
        assert_eq!(p.decide(None, &Method::GET, &uri, Some(&good), now), Decision::Forbidden, "unknown address");
    }

    /// Ten wrong passwords at once, then one per 6 s; a locked client is refused before its
    /// password is looked at, other clients (another /64 for IPv6) are not, and its players
    /// keep their open routes.
    #[test]
    fn wrong_passwords_are_rationed_per_client() {
        let p = policy(true);
        let settings: Uri = "/api/v1/settings".parse().unwrap();
        let play: Uri = format!("/play/{}/1", KNOWN.to_hex()).parse().unwrap();
        let (good, bad) = (header("alice", "secret"), header("alice", "wrong"));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ask = |ip: &str, auth: Option<&HeaderValue>, uri: &Uri, ms: u64| {
            p.decide(Some(ip.parse().unwrap()), &Method::GET, uri, auth, at(ms))
        };
        for i in 0..GUESS_BURST {
            assert_eq!(ask("10.0.0.1", Some(&bad), &settings, u64::from(i)), Decision::Unauthorized, "guess {i}");
        }
        let Decision::TooManyGuesses(wait) = ask("10.0.0.1", Some(&good), &settings, 10) else {
            panic!("the right password during the lock must not be checked")
        };
        assert!(wait > Duration::from_millis(5_980) && wait <= GUESS_INTERVAL, "{wait:?}");
        assert_eq!(ask("10.0.0.1", None, &settings, 10), Decision::Unauthorized, "no credentials: 401 as always");
        assert_eq!(ask("10.0.0.1", Some(&bad), &play, 10), Decision::Allow, "player links stay open");
        assert_eq!(ask("::ffff:10.0.0.1", Some(&bad), &settings, 10), Decision::TooManyGuesses(wait));
        assert_eq!(ask("10.0.0.2", Some(&good), &settings, 10), Decision::Allow, "another client");
        // One more guess after an interval, then locked again.
        assert_eq!(ask("10.0.0.1", Some(&bad), &settings, 6_000), Decision::Unauthorized);
        assert!(matches!(ask("10.0.0.1", Some(&good), &settings, 6_001), Decision::TooManyGuesses(_)));
        assert_eq!(ask("10.0.0.1", Some(&good), &settings, 12_000), Decision::Allow);
        // Right passwords spend nothing; the bucket refills whole after ten intervals.
        for i in 0..100 {
            assert_eq!(ask("10.0.0.1", Some(&good), &settings, 12_000 + i), Decision::Allow);
        }
        for i in 0..GUESS_BURST {
            assert_eq!(ask("10.0.0.1", Some(&bad), &settings, 72_000 + u64::from(i)), Decision::Unauthorized);
        }
        // IPv6: the same /64 is one client, another /64 another.
        for i in 0..GUESS_BURST {
            let ip = format!("2001:db8:0:1::{:x}", i + 1);
            assert_eq!(ask(&ip, Some(&bad), &settings, u64::from(i)), Decision::Unauthorized);
        }
        assert!(matches!(ask("2001:db8:0:1::ffff", Some(&good), &settings, 20), Decision::TooManyGuesses(_)));
        assert_eq!(ask("2001:db8:0:2::1", Some(&good), &settings, 20), Decision::Allow);
    }

    /// Memory stays bounded however many addresses guess.
    #[test]
    fn the_guess_table_is_bounded() {
        let g = Guesses::default();
        let now = Instant::now();
        for i in 0..(GUESS_CLIENTS as u32 + 500) {
            g.wrong(Some(IpAddr::from(i.to_be_bytes())), now + Duration::from_millis(u64::from(i)));
        }
        assert!(g.marks.lock().unwrap().len() <= GUESS_CLIENTS);
        // The newest guesser is still counted.
        let last = IpAddr::from((GUESS_CLIENTS as u32 + 499).to_be_bytes());
        assert!(g.marks.lock().unwrap().contains_key(&Guesser::of(Some(last))));
    }

    #[tokio::test]
    async fn the_layer_answers_401_and_403() {
        use axum::body::Body;
        use axum::routing::{get, post};
        use tower::ServiceExt;

        let mut p = policy(true);
        p.ips.deny.push("10.9.9.9".parse().unwrap());
        let router = Router::new().route("/settings", post(|| async { "set" })).route("/echo", get(|| async { "e" }));
        let app = protect(router, Arc::new(p));
        let call = |path: &str, from: &str, auth: Option<HeaderValue>| {
            let mut r = Request::builder().method(if path == "/settings" { "POST" } else { "GET" }).uri(path);
            if let Some(a) = auth {
                r = r.header(header::AUTHORIZATION, a);
            }
            let mut r = r.body(Body::empty()).unwrap();
            r.extensions_mut().insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
            app.clone().oneshot(r)
        };
        let r = call("/settings", "10.0.0.1:5", None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], CHALLENGE);
        let r = call("/settings", "10.0.0.1:5", Some(header("alice", "secret"))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = call("/nowhere", "10.0.0.1:5", None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "unknown paths are not revealed");
        let r = call("/api/v1/torrents", "10.0.0.1:5", None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = call("/echo", "10.9.9.9:5", Some(header("alice", "secret"))).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = call("/echo", "10.0.0.1:5", None).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        for _ in 0..GUESS_BURST {
            let r = call("/api/v1/torrents", "10.0.0.3:5", Some(header("alice", "guess"))).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let r = call("/api/v1/torrents", "10.0.0.3:5", Some(header("alice", "secret"))).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "6");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = call("/settings", "10.0.0.3:5", Some(header("alice", "secret"))).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = call("/settings", "10.0.0.1:5", Some(header("alice", "secret"))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "other clients are not held back");
    }
}
