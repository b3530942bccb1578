//! A client of a running `sluice serve`'s own API (`/api/v1`, see the http crate), for the
//! commands that drive a server: `add`, `ls`, `rm`, `stream`.
//!
//! One HTTP/1.1 connection per request over hyper's client connection: a command makes a
//! handful of requests, so a pool would buy nothing. The two ways a request fails are kept
//! apart because the user acts on them differently: nothing answering at the address
//! ([`ClientError::Unreachable`]: start the server, or fix `--server`) versus the server
//! refusing the request ([`ClientError::Api`], its JSON `{"error":{"code","message"}}`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;
use serde_json::Value;

/// Largest response body read (a list of thousands of torrents is a few MiB).
const MAX_BODY: usize = 64 << 20;
/// Time to open a connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's answer, except adds: a magnet's add may wait for its metadata (the server's
/// `--metadata-timeout`) and an http(s) link's for the download of its `.torrent`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const ADD_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes of a path segment that are percent-encoded in a stream URL's file name.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad server URL {url:?}: {why}")]
    BadServer { url: String, why: String },
    #[error(
        "cannot reach the Sluice server at {server} ({why}); is `sluice serve` running there? (--server, SLUICE_SERVER)"
    )]
    Unreachable { server: String, why: String },
    #[error("the server at {server} did not answer within {} s", timeout.as_secs())]
    Timeout { server: String, timeout: Duration },
    /// The server refused the request.
    #[error("server: {message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("unexpected answer from {server}: {why}")]
    BadResponse { server: String, why: String },
}

/// A torrent as the API shows it; fields a server leaves out take their default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Torrent {
    pub info_hash: String,
    pub name: String,
    pub title: String,
    pub state: String,
    /// The metadata is not known yet (a magnet being fetched).
    pub pending: bool,
    pub length: u64,
    pub verified_bytes: u64,
    pub download_rate: u64,
    pub peers: u64,
    pub error: Option<String>,
    pub files: Vec<File>,
    /// The object as the server sent it, for `--json`.
    #[serde(skip)]
    pub raw: Value,
}

impl Torrent {
    /// The title the user gave, else the torrent's name.
    pub fn label(&self) -> &str {
        if self.title.is_empty() { &self.name } else { &self.title }
    }

    /// Every verified byte is in.
    pub fn complete(&self) -> bool {
        self.state == "complete" || (!self.pending && self.length > 0 && self.verified_bytes >= self.length)
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct File {
    /// Position in the metainfo's file list, as in stream URLs.
    pub index: usize,
    pub path: String,
    pub length: u64,
    /// Relative to the server's root; older servers leave it out.
    pub stream_url: Option<String>,
}

/// What `POST /api/v1/torrents` is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `.torrent` file's bytes.
    Torrent(Vec<u8>),
    /// A magnet link, a 40-digit hex info-hash, or an http(s) URL of a `.torrent`.
    Link(String),
}

/// Details stored with an added torrent.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub title: Option<String>,
    pub category: Option<String>,
    pub poster: Option<String>,
}

impl Meta {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.category.is_none() && self.poster.is_none()
    }
}

/// The answer to an add.
#[derive(Debug)]
pub struct Added {
    /// False when the server already had it.
    pub created: bool,
    pub torrent: Torrent,
}

/// A server's address: `http://HOST[:PORT][/PREFIX]`.
#[derive(Clone, Debug)]
pub struct Client {
    /// As given, for messages and absolute URLs (no trailing `/`).
    base: String,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// Path prefix in front of `/api/v1` (a reverse proxy's), no trailing `/`.
    prefix: String,
}

impl Client {
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let bad = |why: &str| ClientError::BadServer { url: server.to_owned(), why: why.to_owned() };
        let uri: Uri = server.trim().parse().map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported by this client; use http://")),
            _ => return Err(bad("expected http://HOST:PORT")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if uri.query().is_some() {
            return Err(bad("a server URL takes no query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let authority = authority.as_str().to_owned();
        Ok(Client {
            base: format!("http://{authority}{prefix}"),
            port: uri.port_u16().unwrap_or(80),
            host,
            authority,
            prefix,
        })
    }

    /// The server URL, normalised.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn add(&self, source: &Source, meta: &Meta) -> Result<Added, ClientError> {
        let mut fields = serde_json::Map::new();
        for (key, value) in [("title", &meta.title), ("category", &meta.category), ("poster", &meta.poster)] {
            if let Some(v) = value {
                fields.insert(key.into(), v.clone().into());
            }
        }
        let (content_type, body) = match source {
            // The API takes a `.torrent` as the raw body, which has no room for the fields.
            Source::Torrent(bytes) => ("application/x-bittorrent", Bytes::from(bytes.clone())),
            Source::Link(link) => {
                // Every server version knows `magnet` (for hashes too); http(s) links need `link`.
                let key = if is_web_url(link) { "link" } else { "magnet" };
                fields.insert(key.into(), link.clone().into());
                ("application/json", Bytes::from(Value::Object(fields).to_string()))
            }
        };
        let (status, value) = self.call(Method::POST, "/torrents", Some((content_type, body)), ADD_TIMEOUT).await?;
        let added = Added { created: status == StatusCode::CREATED, torrent: self.torrent(value)? };
        Ok(added)
    }

    /// Gives the server peers to ask for the torrent.
    pub async fn add_peers(&self, info_hash: &str, peers: &[SocketAddr]) -> Result<(), ClientError> {
        let list: Vec<String> = peers.iter().map(SocketAddr::to_string).collect();
        let body = Bytes::from(serde_json::to_vec(&list).unwrap_or_default());
        let path = format!("/torrents/{info_hash}/peers");
        self.call(Method::POST, &path, Some(("application/json", body)), REQUEST_TIMEOUT).await.map(drop)
    }

    /// Every torrent, oldest first.
    pub async fn list(&self) -> Result<Vec<Torrent>, ClientError> {
        let (_, value) = self.call(Method::GET, "/torrents", None, REQUEST_TIMEOUT).await?;
        let Some(Value::Array(list)) = value.get("torrents") else {
            return Err(self.bad_response("no \"torrents\" list"));
        };
        list.iter().map(|t| self.torrent(t.clone())).collect()
    }

    /// One torrent, with its files once known.
    pub async fn get(&self, info_hash: &str) -> Result<Torrent, ClientError> {
        let (_, value) = self.call(Method::GET, &format!("/torrents/{info_hash}"), None, REQUEST_TIMEOUT).await?;
        self.torrent(value)
    }

    pub async fn remove(&self, info_hash: &str, delete_files: bool) -> Result<(), ClientError> {
        let query = if delete_files { "?delete_files=true" } else { "" };
        let path = format!("/torrents/{info_hash}{query}");
        self.call(Method::DELETE, &path, None, REQUEST_TIMEOUT).await.map(drop)
    }

    /// The absolute URL a player streams `file` of `torrent` from.
    pub fn stream_url(&self, torrent: &Torrent, file: &File) -> String {
        match &file.stream_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => url.clone(),
            // Relative to the API's root, which a reverse proxy may have moved under a prefix.
            Some(url) => format!("{}{url}", self.base),
            None => {
                let name = file.path.rsplit('/').next().unwrap_or_default();
                format!(
                    "{}/api/v1/torrents/{}/files/{}/stream/{}",
                    self.base,
                    torrent.info_hash,
                    file.index,
                    utf8_percent_encode(name, SEGMENT)
                )
            }
        }
    }

    fn torrent(&self, value: Value) -> Result<Torrent, ClientError> {
        let mut t: Torrent =
            serde_json::from_value(value.clone()).map_err(|e| self.bad_response(&format!("not a torrent: {e}")))?;
        if t.info_hash.len() != 40 || !t.info_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.bad_response("no info_hash"));
        }
        t.raw = value;
        Ok(t)
    }

    fn bad_response(&self, why: &str) -> ClientError {
        ClientError::BadResponse { server: self.base.clone(), why: why.to_owned() }
    }

    /// One request to `/api/v1{path}`: the status and JSON body of a success (`null` when the
    /// body is empty), else the server's error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Value), ClientError> {
        let (status, bytes) = tokio::time::timeout(timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout { server: self.base.clone(), timeout })??;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok((status, Value::Null));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| self.bad_response(&format!("not JSON: {e}")))?;
        Ok((status, value))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable = |why: String| ClientError::Unreachable { server: self.base.clone(), why };
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1{path}", self.prefix))
            .header(HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some((content_type, _)) = &body {
            req = req.header(CONTENT_TYPE, *content_type);
        }
        let req = req
            .body(Full::new(body.map(|b| b.1).unwrap_or_default()))
            .map_err(|e| self.bad_response(&format!("cannot build the request: {e}")))?;
        let http_err = |e: hyper::Error| self.bad_response(&e.to_string());
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(http_err)?;
        let driver = tokio::spawn(conn);
        let result = async {
            let response = sender.send_request(req).await.map_err(http_err)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| self.bad_response(&format!("reading the body: {e}")))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }
}

/// An http(s) URL (of a `.torrent` for the server to fetch).
pub fn is_web_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The server's `{"error":{"code","message"}}`, or the status and text when it sent none.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let parsed: Option<(String, String)> = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let e = v.get("error")?;
        Some((e.get("code")?.as_str()?.to_owned(), e.get("message")?.as_str()?.to_owned()))
    });
    let (code, message) = parsed.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
        let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_");
        (reason, if text.is_empty() { format!("HTTP {status}") } else { text })
    });
    ClientError::Api { status: status.as_u16(), code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse() {
        let c = Client::new("http://127.0.0.1:8090").expect("plain");
        assert_eq!((c.host.as_str(), c.port, c.prefix.as_str()), ("127.0.0.1", 8090, ""));
        let c = Client::new("http://[::1]:9000/sluice/").expect("v6 with prefix");
        assert_eq!((c.host.as_str(), c.port, c.prefix.as_str()), ("::1", 9000, "/sluice"));
        assert_eq!(c.base(), "http://[::1]:9000/sluice");
        assert_eq!(Client::new("http://nas").expect("no port").port, 80);
        for bad in ["https://x:1", "ftp://x", "127.0.0.1:8090", "http://u:p@x:1", "http://x:1/?a=b", ""] {
            assert!(matches!(Client::new(bad), Err(ClientError::BadServer { .. })), "{bad}");
        }
    }

    #[test]
    fn errors_keep_the_servers_code_and_message() {
        let body = br#"{"error":{"code":"unknown_torrent","message":"no torrent with that info-hash"}}"#;
        let e = api_error(StatusCode::NOT_FOUND, body);
        assert_eq!(e.to_string(), "server: no torrent with that info-hash (unknown_torrent, HTTP 404)");
        let e = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.to_string(), "server: upstream down (bad_gateway, HTTP 502)");
        let e = api_error(StatusCode::METHOD_NOT_ALLOWED, b"");
        assert!(e.to_string().contains("method_not_allowed"), "{e}");
    }

    #[test]
    fn stream_urls_are_absolute() {
        let c = Client::new("http://127.0.0.1:8090/").expect("url");
        let t = Torrent { info_hash: "ab".repeat(20), ..Torrent::default() };
        let given =
            File { index: 2, path: "d/a b.mkv".into(), length: 1, stream_url: Some("/x/2/stream/a%20b.mkv".into()) };
        assert_eq!(c.stream_url(&t, &given), "http://127.0.0.1:8090/x/2/stream/a%20b.mkv");
        let built = File { stream_url: None, ..given };
        let want = format!("http://127.0.0.1:8090/api/v1/torrents/{}/files/2/stream/a%20b.mkv", "ab".repeat(20));
        assert_eq!(c.stream_url(&t, &built), want);
    }
}
