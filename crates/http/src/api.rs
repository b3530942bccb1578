//! Sluice's own API under `/api/v1`, beside the stream routes of [`crate::router`]: torrents
//! (add, list, get, remove, files, peers), settings, server-sent events and M3U playlists,
//! described by the hand-written OpenAPI document served at `/api/v1/openapi.json`
//! (`api/openapi.json`; a test checks it names exactly the routes below).
//!
//! Every error under `/api/v1` is `{"error":{"code","message"}}` JSON, including unknown
//! paths (`404 not_found`), wrong methods (`405 method_not_allowed`, with `Allow`) and bodies
//! over the limits (`413 body_too_large`): a layer turns axum's plain-text rejections into it.
//!
//! - `POST /api/v1/torrents` with the raw `.torrent` as the body → `201` (or `200` when it was
//!   already added) and the torrent with its `files`;
//! - the same with `Content-Type: application/json` and `{"link": "magnet:?..."}` (a bare
//!   40-digit hex info-hash too; `magnet` is an alias of `link`) and optional `title`,
//!   `category`, `poster`, `data`: the metadata is fetched from the link's peers. The request
//!   waits for it up to the library's metadata timeout: `201`/`200` once known, else `202`
//!   with `"pending": true` and `"files": []` while the fetch goes on. An http(s) link to a
//!   `.torrent` is fetched by the library: `201`/`200`, or `400 bad_torrent` saying why not;
//! - `POST /api/v1/torrents/{info_hash}/peers` with a JSON array of `"ip:port"` → `204`;
//! - `GET /api/v1/events`: server-sent events, see `events`;
//! - playlists: absolute URLs built from the request's `Host`, entries as [`crate::m3u`]
//!   makes them (media files in natural order, VLC `input-slave` for external tracks).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Serialize, Serializer};
use sluice_core::InfoHash;

use crate::m3u::{self, escape_segment};
use crate::torrserver::{Link, TorrentFiles, TorrentMeta};
use crate::{FileIndex, HttpConfig, StreamSource, error};

/// Largest `.torrent` body accepted.
const MAX_TORRENT_BODY: usize = 64 * 1024 * 1024;
/// Largest JSON body of the other routes.
const MAX_JSON_BODY: usize = 64 * 1024;

mod events;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a torrent is in its life, as `/api/v1` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TorrentState {
    /// A magnet whose metadata is being fetched.
    Pending,
    /// Starting or running (peers, pieces, readers).
    Running,
    /// Known but not running (idle, dropped, failed, or not started since the server began).
    Closed,
    /// Running with every piece verified.
    Complete,
}

/// One torrent, as the list, the single resource and the event stream show it. Fields are
/// in alphabetical order, the order every response has always shown them in: the list
/// serializes them directly (no `serde_json::Value` map in between, which cost more than
/// the rest of a 200-torrent list).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Torrent {
    /// Unix seconds.
    pub added_at: i64,
    pub category: String,
    pub data: String,
    /// Payload bytes per second.
    pub download_rate: u64,
    pub error: Option<String>,
    #[serde(serialize_with = "hex")]
    pub info_hash: InfoHash,
    /// Total bytes; 0 while pending.
    pub length: u64,
    /// The torrent's name, or the magnet's `dn`/title while the metadata is unknown.
    pub name: String,
    /// Connected peers.
    pub peers: u64,
    /// The metadata is not known yet.
    pub pending: bool,
    pub poster: String,
    /// `verified_bytes / length`, 0 while pending.
    pub progress: f64,
    /// Open streams.
    pub readers: u64,
    pub state: TorrentState,
    pub title: String,
    pub upload_rate: u64,
    /// Bytes of verified pieces held; for a closed torrent, what its files held when it
    /// closed or, after a restart, what its resume journal lists (0 with RAM storage, which
    /// drops a stopped torrent's pieces).
    pub verified_bytes: u64,
}

fn hex<S: Serializer>(h: &InfoHash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_hex())
}

/// One file of a torrent (pad files are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentFile {
    /// The position in the metainfo's file list: the `index` of stream URLs.
    pub index: FileIndex,
    /// `/`-separated, starting with the torrent's folder for a multi-file torrent.
    pub path: String,
    pub length: u64,
}

/// A torrent with its files (empty while pending), in metainfo order.
#[derive(Clone, Debug, PartialEq)]
pub struct TorrentDetail {
    pub torrent: Torrent,
    pub files: Vec<TorrentFile>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Added {
    pub detail: TorrentDetail,
    /// False when the torrent was already known.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The body is not a usable torrent; the message says what is wrong.
    #[error("{0}")]
    BadTorrent(String),
    #[error("unknown torrent")]
    UnknownTorrent,
    #[error("{0}")]
    Unavailable(String),
}

/// What the API needs from the rest of Sluice besides streaming.
pub trait Library: StreamSource {
    fn add_torrent(&self, torrent: Bytes, meta: TorrentMeta) -> BoxFuture<'_, Result<Added, LibraryError>>;
    /// A magnet link or bare info-hash; may return before the metadata is known (`pending`).
    fn add_magnet(&self, magnet: String, meta: TorrentMeta) -> BoxFuture<'_, Result<Added, LibraryError>>;
    fn add_peers(&self, torrent: InfoHash, peers: Vec<SocketAddr>) -> BoxFuture<'_, Result<(), LibraryError>>;
    /// Every known torrent, in any order (the API sorts it). Touches nothing.
    fn list(&self) -> BoxFuture<'_, Vec<Torrent>>;
    /// One torrent with its files; counts as a use of it (a closed torrent starts again, as a
    /// client polling a pending magnet expects).
    fn torrent(&self, torrent: InfoHash) -> BoxFuture<'_, Result<TorrentDetail, LibraryError>>;
    /// Forgets the torrent (and deletes its downloaded files if asked);
    /// [`LibraryError::UnknownTorrent`] if it was not known.
    fn remove(&self, torrent: InfoHash, delete_files: bool) -> BoxFuture<'_, Result<(), LibraryError>>;
    /// The torrent's files (empty while pending) without touching or starting it.
    fn files(&self, torrent: InfoHash) -> BoxFuture<'_, Result<Vec<TorrentFile>, LibraryError>>;
    fn settings(&self) -> BoxFuture<'_, Result<Settings, LibraryError>>;
    /// Applies the given fields (already range-checked) at once, without interrupting streams,
    /// stores them, and returns the whole settings.
    fn update_settings(&self, patch: SettingsPatch) -> BoxFuture<'_, Result<Settings, LibraryError>>;
}

/// Sluice's own settings (TorrServer's `BTSets` live at `/settings`, for its clients).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Settings {
    /// Seconds a torrent nothing reads from and no API call touches keeps its peers.
    pub disconnect_timeout: u64,
    /// Seconds an add with a magnet waits for the metadata before answering `202`.
    pub metadata_timeout: u64,
    /// Focus mode: while a stream reads, other downloads are held at `focus_cap`.
    pub focus: bool,
    /// Bytes per second other torrents may download while one streams (0: paused).
    pub focus_cap: u64,
}

/// A partial [`Settings`] (`PATCH`): absent fields keep their value; unknown ones are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub disconnect_timeout: Option<u64>,
    pub metadata_timeout: Option<u64>,
    pub focus: Option<bool>,
    pub focus_cap: Option<u64>,
}

/// A week: longer idle timeouts are surely a mistake.
pub const MAX_DISCONNECT_TIMEOUT: u64 = 7 * 24 * 3600;
pub const MAX_METADATA_TIMEOUT: u64 = 3600;

impl SettingsPatch {
    pub fn apply(&self, s: &mut Settings) {
        let Self { disconnect_timeout, metadata_timeout, focus, focus_cap } = *self;
        s.disconnect_timeout = disconnect_timeout.unwrap_or(s.disconnect_timeout);
        s.metadata_timeout = metadata_timeout.unwrap_or(s.metadata_timeout);
        s.focus = focus.unwrap_or(s.focus);
        s.focus_cap = focus_cap.unwrap_or(s.focus_cap);
    }

    /// What is out of range, if anything.
    pub fn check(&self) -> Result<(), String> {
        if let Some(t) = self.disconnect_timeout
            && !(1..=MAX_DISCONNECT_TIMEOUT).contains(&t)
        {
            return Err(format!("disconnect_timeout must be 1..={MAX_DISCONNECT_TIMEOUT} seconds"));
        }
        if let Some(t) = self.metadata_timeout
            && !(1..=MAX_METADATA_TIMEOUT).contains(&t)
        {
            return Err(format!("metadata_timeout must be 1..={MAX_METADATA_TIMEOUT} seconds"));
        }
        Ok(())
    }
}

/// The stream routes plus the `/api/v1` routes above.
pub fn api_router(library: Arc<dyn Library>, config: HttpConfig) -> Router {
    let json = Router::new()
        .route("/api/v1/torrents/{info_hash}/peers", post(add_peers))
        .route("/api/v1/settings", get(settings).patch(update_settings))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    let manage = Router::new()
        .route("/api/v1/torrents", get(list).post(add_torrent).layer(DefaultBodyLimit::max(MAX_TORRENT_BODY)))
        .route("/api/v1/torrents/{info_hash}", get(torrent).delete(remove))
        .route("/api/v1/torrents/{info_hash}/files", get(files))
        .route("/api/v1/torrents/{info_hash}/playlist.m3u", get(playlist))
        .route("/api/v1/playlist.m3u", get(playlist_all))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(json)
        .route("/api/v1", any(not_found))
        .route("/api/v1/{*rest}", any(not_found))
        .with_state(library.clone())
        .layer(axum::Extension(Scheme { https: config.https }));
    crate::router(library, config).merge(manage).layer(middleware::from_fn(json_errors))
}

/// Whether the server speaks TLS, for absolute playlist links.
#[derive(Clone, Copy, Debug)]
struct Scheme {
    https: bool,
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such resource in /api/v1")
}

/// Gives axum's own rejections (405, 413, 415, extractor errors: plain text or empty) the
/// API's JSON error body; headers such as `Allow` are kept.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let message = match String::from_utf8_lossy(&detail).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        m => m.to_owned(),
    };
    let fresh = error(status, code, &message);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

fn parse_hash(hash: &str) -> Option<InfoHash> {
    InfoHash::from_hex(hash).filter(|_| hash.len() == 40)
}

fn bad_hash() -> Response {
    error(StatusCode::BAD_REQUEST, "bad_info_hash", "the info-hash must be 40 hex digits")
}

/// `File` of the API: the fields plus the relative stream URL players can open.
fn file_json(hash: InfoHash, f: &TorrentFile) -> serde_json::Value {
    let name = f.path.rsplit('/').next().unwrap_or(&f.path);
    serde_json::json!({
        "index": f.index.0,
        "path": f.path,
        "length": f.length,
        "stream_url": format!("/api/v1/torrents/{}/files/{}/stream/{}", hash.to_hex(), f.index.0, escape_segment(name)),
    })
}

fn detail_json(d: &TorrentDetail) -> serde_json::Value {
    let mut v = serde_json::to_value(&d.torrent).unwrap_or_default();
    let files: Vec<_> = d.files.iter().map(|f| file_json(d.torrent.info_hash, f)).collect();
    v["files"] = files.into();
    v
}

/// The list oldest first (ties by info-hash, so the order is stable).
fn sorted(mut list: Vec<Torrent>) -> Vec<Torrent> {
    list.sort_by(|a, b| a.added_at.cmp(&b.added_at).then_with(|| a.info_hash.0.cmp(&b.info_hash.0)));
    list
}

async fn list(State(lib): State<Arc<dyn Library>>) -> Response {
    #[derive(Serialize)]
    struct List {
        torrents: Vec<Torrent>,
    }
    json_response(StatusCode::OK, &List { torrents: sorted(lib.list().await) })
}

async fn torrent(State(lib): State<Arc<dyn Library>>, Path(hash): Path<String>) -> Response {
    let Some(hash) = parse_hash(&hash) else {
        return bad_hash();
    };
    match lib.torrent(hash).await {
        Ok(d) => json_response(StatusCode::OK, &detail_json(&d)),
        Err(e) => library_error(e),
    }
}

async fn files(State(lib): State<Arc<dyn Library>>, Path(hash): Path<String>) -> Response {
    let Some(hash) = parse_hash(&hash) else {
        return bad_hash();
    };
    match lib.torrent(hash).await {
        Ok(d) => {
            let files: Vec<_> = d.files.iter().map(|f| file_json(hash, f)).collect();
            json_response(StatusCode::OK, &serde_json::json!({ "files": files }))
        }
        Err(e) => library_error(e),
    }
}

async fn remove(State(lib): State<Arc<dyn Library>>, Path(hash): Path<String>, RawQuery(query): RawQuery) -> Response {
    let Some(hash) = parse_hash(&hash) else {
        return bad_hash();
    };
    let mut delete_files = false;
    for pair in query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key != "delete_files" {
            return error(StatusCode::BAD_REQUEST, "bad_query", &format!("unknown query parameter {key:?}"));
        }
        delete_files = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return error(StatusCode::BAD_REQUEST, "bad_query", "delete_files must be true or false"),
        };
    }
    match lib.remove(hash, delete_files).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => library_error(e),
    }
}

/// The JSON form of an add: `link` (or its alias `magnet`) and the client's fields.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    link: Option<String>,
    magnet: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    poster: String,
    #[serde(default)]
    data: String,
}

async fn add_torrent(State(lib): State<Arc<dyn Library>>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    let result = if json {
        let req = match serde_json::from_slice::<AddBody>(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", &format!("{e}")),
        };
        let meta = TorrentMeta { title: req.title, poster: req.poster, category: req.category, data: req.data };
        let Some(link) = req.link.or(req.magnet) else {
            return error(StatusCode::BAD_REQUEST, "bad_body", "a JSON body must have a \"link\"");
        };
        match Link::parse(&link) {
            // An http(s) link to a .torrent file is fetched by the library.
            Ok(Link::Magnet(_) | Link::Hash(_) | Link::Url(_)) => lib.add_magnet(link, meta).await,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_link", &e.to_string()),
        }
    } else {
        lib.add_torrent(body, TorrentMeta::default()).await
    };
    match result {
        Ok(added) => {
            let status = if added.detail.torrent.pending {
                StatusCode::ACCEPTED
            } else if added.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(status, &detail_json(&added.detail))
        }
        Err(e) => library_error(e),
    }
}

async fn add_peers(State(lib): State<Arc<dyn Library>>, Path(hash): Path<String>, body: Bytes) -> Response {
    let Some(torrent) = parse_hash(&hash) else {
        return bad_hash();
    };
    let Ok(list) = serde_json::from_slice::<Vec<String>>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_body", "the body must be a JSON array of \"ip:port\" strings");
    };
    let mut peers = Vec::with_capacity(list.len());
    for p in &list {
        match p.parse::<SocketAddr>() {
            Ok(a) => peers.push(a),
            Err(_) => return error(StatusCode::BAD_REQUEST, "bad_peer", &format!("{p:?} is not an ip:port address")),
        }
    }
    match lib.add_peers(torrent, peers).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => library_error(e),
    }
}

async fn settings(State(lib): State<Arc<dyn Library>>) -> Response {
    match lib.settings().await {
        Ok(s) => json_response(StatusCode::OK, &s),
        Err(e) => library_error(e),
    }
}

async fn update_settings(State(lib): State<Arc<dyn Library>>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<SettingsPatch>(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", &format!("{e}")),
    };
    if let Err(m) = patch.check() {
        return error(StatusCode::BAD_REQUEST, "bad_setting", &m);
    }
    match lib.update_settings(patch).await {
        Ok(s) => json_response(StatusCode::OK, &s),
        Err(e) => library_error(e),
    }
}

/// The hand-written OpenAPI 3.1 document of every route above.
pub const OPENAPI: &str = include_str!("api/openapi.json");

async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn m3u_response(text: String) -> Response {
    ([(CONTENT_TYPE, "audio/x-mpegurl; charset=utf-8")], text).into_response()
}

/// Entries of one torrent's files: absolute stream URLs on the host the client used.
fn m3u_entries(base: &str, hash: InfoHash, files: &[TorrentFile]) -> String {
    let table = TorrentFiles::with_indices(files.iter().map(|f| (f.index, f.path.clone(), f.length)));
    let hex = hash.to_hex();
    m3u::entries(&table, 1, |f| {
        format!("{base}/api/v1/torrents/{hex}/files/{}/stream/{}", f.index.0, escape_segment(f.base_name()))
    })
}

async fn playlist(
    State(lib): State<Arc<dyn Library>>,
    axum::Extension(scheme): axum::Extension<Scheme>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(hash) = parse_hash(&hash) else {
        return bad_hash();
    };
    match lib.torrent(hash).await {
        Ok(d) if d.torrent.pending => {
            error(StatusCode::CONFLICT, "metadata_pending", "the torrent's files are not known yet")
        }
        Ok(d) => {
            m3u_response("#EXTM3U\n".to_owned() + &m3u_entries(&m3u::base_url(scheme.https, &headers), hash, &d.files))
        }
        Err(e) => library_error(e),
    }
}

/// Every torrent's entries, oldest torrent first; pending ones have none yet.
async fn playlist_all(
    State(lib): State<Arc<dyn Library>>,
    axum::Extension(scheme): axum::Extension<Scheme>,
    headers: HeaderMap,
) -> Response {
    let base = m3u::base_url(scheme.https, &headers);
    let mut out = String::from("#EXTM3U\n");
    for t in sorted(lib.list().await).into_iter().filter(|t| !t.pending) {
        if let Ok(files) = lib.files(t.info_hash).await {
            out.push_str(&m3u_entries(&base, t.info_hash, &files));
        }
    }
    m3u_response(out)
}

fn library_error(e: LibraryError) -> Response {
    match e {
        LibraryError::BadTorrent(m) => error(StatusCode::BAD_REQUEST, "bad_torrent", &m),
        LibraryError::UnknownTorrent => {
            error(StatusCode::NOT_FOUND, "unknown_torrent", "no torrent with that info-hash")
        }
        LibraryError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &m),
    }
}
