//! The TorrServer routes. Status codes follow TorrServer's handlers: errors are a bare status
//! with an empty body (gin's `AbortWithError`), success with nothing to say is an empty 200.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use sluice_core::InfoHash;

use crate::body::ReaderBody;
use crate::m3u::base_url;
use crate::range::{self, RangeDecision, Validators};
use crate::server::serve_file;
use crate::{FileIndex, HttpConfig};

use super::backend::{AddRequest, AddSource, Link, TorrServerBackend, TorrentMeta, TsError};
use super::files::TorrentFiles;
use super::types::{self, BTSets, CacheRequest, SettingsRequest, TorrentsRequest, ViewedRequest};
use super::{VERSION, m3u, multipart};

/// Largest JSON body of the action routes.
const MAX_JSON_BODY: usize = 1 << 20;
/// Largest `/torrent/upload` body.
const MAX_UPLOAD_BODY: usize = 64 << 20;
/// Largest `/download/{size}` speed test, in MiB.
const MAX_DOWNLOAD_MIB: u64 = 1 << 20;

/// Kodi plays only from servers that name themselves like this.
const SERVER: &str = "TorrServer (Portable SDK for UPnP devices)";
const STREAM_TIMEOUT: HeaderName = HeaderName::from_static("x-stream-timeout");

struct App {
    backend: Arc<dyn TorrServerBackend>,
    config: HttpConfig,
}

type AppState = State<Arc<App>>;

/// The TorrServer-compatible routes, to be merged with the rest of the server's router.
pub fn torrserver_router(backend: Arc<dyn TorrServerBackend>, config: HttpConfig) -> Router {
    let app = Arc::new(App { backend, config });
    let json = Router::new()
        .route("/settings", post(settings))
        .route("/torrents", post(torrents))
        .route("/cache", post(cache))
        .route("/viewed", post(viewed))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    let upload = Router::new().route("/torrent/upload", post(upload)).layer(DefaultBodyLimit::max(MAX_UPLOAD_BODY));
    Router::new()
        .route("/echo", get(echo))
        .route("/stream", get(stream))
        .route("/stream/{*fname}", get(stream))
        .route("/play", get(play_query))
        .route("/play/{hash}/{id}", get(play_path))
        .route("/playlist", get(playlist))
        .route("/playlist/{*fname}", get(playlist))
        .route("/playlistall/all.m3u", get(playlist_all))
        .route("/download/{size}", get(download))
        .route("/shutdown", get(shutdown))
        .route("/shutdown/{*reason}", get(shutdown))
        .route("/ffp/{hash}/{id}", get(ffprobe))
        .merge(json)
        .merge(upload)
        .with_state(app)
        .layer(middleware::from_fn(cors))
}

/// TorrServer's CORS: any origin, private-network access, and the headers browser clients
/// (the Lampa web build) send. Preflights are answered here.
async fn cors(request: Request, next: Next) -> Response {
    let private = request.headers().contains_key("access-control-request-private-network");
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, Content-Length, Content-Type, X-Requested-With, Accept, Authorization"),
    );
    if private {
        h.insert("access-control-allow-private-network", HeaderValue::from_static("true"));
    }
    response
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

fn ok() -> Response {
    status(StatusCode::OK)
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_body(body),
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn json_body(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

/// The size of the last `/torrents list` answer: the next one starts in a buffer that big (plus
/// a margin) rather than growing to it by doubling and copying.
static LIST_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The status of a backend failure where the route has no more specific answer.
fn failed(e: &TsError) -> Response {
    tracing::debug!("torrserver api: {e}");
    status(match e {
        TsError::UnknownTorrent => StatusCode::NOT_FOUND,
        TsError::BadLink(_) => StatusCode::BAD_REQUEST,
        TsError::Refused(_) => StatusCode::FORBIDDEN,
        TsError::MetadataTimeout | TsError::Unavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
    })
}

/// A JSON action body, decoded as Go would (see [`types::decode`]); `None` is the 400.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], keys: &[&str]) -> Option<T> {
    types::decode(serde_json::from_slice(bytes).ok()?, keys).ok()
}

/// Query parameters in order, decoded; flags are presence-only, as gin's `GetQuery`. The
/// access gate reads requests with it too, so both see the same `link`.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn new(uri: &Uri) -> Self {
        let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        let pairs = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        Self(pairs)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// TorrServer unescapes these once more (clients double-encode them).
    fn text(&self, key: &str) -> String {
        let v = self.get(key).unwrap_or("");
        percent_decode_str(v).decode_utf8_lossy().into_owned()
    }
}

fn hash(s: &str) -> Option<InfoHash> {
    InfoHash::from_hex(s.trim())
}

async fn echo() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], VERSION).into_response()
}

async fn settings(State(app): AppState, bytes: Bytes) -> Response {
    let Some(req): Option<SettingsRequest> = body(&bytes, SettingsRequest::KEYS) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let sets = match req.action.as_str() {
        "get" => return json(&app.backend.settings().await),
        "set" => match req.sets.map(BTSets::from_request) {
            Some(Ok(mut sets)) => {
                sets.sanitize();
                sets
            }
            _ => return status(StatusCode::BAD_REQUEST),
        },
        "def" => BTSets::default(),
        _ => return status(StatusCode::BAD_REQUEST),
    };
    match app.backend.set_settings(sets).await {
        Ok(()) => ok(),
        Err(e) => failed(&e),
    }
}

async fn torrents(State(app): AppState, bytes: Bytes) -> Response {
    let Some(req): Option<TorrentsRequest> = body(&bytes, TorrentsRequest::KEYS) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let b = &app.backend;
    if matches!(req.action.as_str(), "get" | "set" | "rem" | "drop") && req.hash.is_empty() {
        return status(StatusCode::BAD_REQUEST);
    }
    // TorrServer answers 200 to set/rem/drop of a hash it does not know.
    let quiet = |r: Result<(), TsError>| match r {
        Ok(()) | Err(TsError::UnknownTorrent) => ok(),
        Err(e) => failed(&e),
    };
    match req.action.as_str() {
        "add" => {
            let link = match Link::parse(&req.link) {
                Ok(link) => link,
                Err(_) => return status(StatusCode::BAD_REQUEST),
            };
            let meta = TorrentMeta { title: req.title, poster: req.poster, category: req.category, data: req.data };
            match b.add(AddRequest { source: AddSource::Link(link), meta, save: req.save_to_db }).await {
                Ok(s) => json(&s),
                Err(e @ TsError::BadLink(_)) => failed(&e),
                Err(e) => {
                    tracing::debug!("torrserver add: {e}");
                    status(StatusCode::INTERNAL_SERVER_ERROR)
                }
            }
        }
        "get" => match hash(&req.hash) {
            Some(h) => b.get(h).await.map_or_else(|e| failed(&e), |s| json(&s)),
            None => status(StatusCode::NOT_FOUND),
        },
        "set" | "rem" | "drop" => {
            let Some(h) = hash(&req.hash) else { return ok() };
            match req.action.as_str() {
                "set" => {
                    let meta =
                        TorrentMeta { title: req.title, poster: req.poster, category: req.category, data: req.data };
                    quiet(b.set(h, meta).await)
                }
                "rem" => quiet(b.remove(h).await),
                _ => quiet(b.drop_torrent(h).await),
            }
        }
        "list" => {
            let mut list = b.list().await;
            list.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then_with(|| b.title.cmp(&a.title)));
            let size = LIST_SIZE.load(Relaxed);
            let mut body = Vec::with_capacity(size + size / 8);
            if serde_json::to_writer(&mut body, &list).is_err() {
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            }
            LIST_SIZE.store(body.len(), Relaxed);
            json_body(body)
        }
        "wipe" => quiet(b.wipe().await),
        _ => status(StatusCode::BAD_REQUEST),
    }
}

async fn upload(State(app): AppState, headers: HeaderMap, bytes: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let parts = match multipart::boundary(content_type).and_then(|b| multipart::parse(&bytes, b)) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::debug!("torrserver upload: {e}");
            return status(StatusCode::BAD_REQUEST);
        }
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.filename.is_none() && p.name == name)
            .map(|p| String::from_utf8_lossy(p.data).into_owned())
    };
    let meta = TorrentMeta {
        title: field("title").unwrap_or_default(),
        poster: field("poster").unwrap_or_default(),
        category: field("category").unwrap_or_default(),
        data: field("data").unwrap_or_default(),
    };
    let save = field("save").is_some();
    let mut added = Vec::new();
    for part in parts.iter().filter(|p| p.filename.is_some()) {
        let request = AddRequest { source: AddSource::Torrent(bytes.slice_ref(part.data)), meta: meta.clone(), save };
        match app.backend.add(request).await {
            Ok(s) => added.push(s),
            Err(e) => tracing::info!("torrserver upload: {:?} skipped: {e}", part.filename),
        }
    }
    match added.len() {
        1 => json(&added[0]),
        _ => json(&added),
    }
}

/// The file a request names by its TorrServer id; a single-file torrent ignores the id.
fn pick(files: &TorrentFiles, id: Option<&str>) -> Result<super::TsFile, StatusCode> {
    if files.len() == 1 {
        return files.by_id(1).cloned().ok_or(StatusCode::NOT_FOUND);
    }
    let id: u32 = id.and_then(|i| i.trim().parse().ok()).ok_or(StatusCode::BAD_REQUEST)?;
    files.by_id(id).cloned().ok_or(StatusCode::NOT_FOUND)
}

/// Bytes of one file with the headers TorrServer's players expect; marks the file viewed.
async fn play_file(app: &App, h: InfoHash, file: &super::TsFile, method: &Method, headers: &HeaderMap) -> Response {
    if method == Method::GET
        && let Err(e) = app.backend.viewed_set(h, file.id, None).await
    {
        tracing::debug!("torrserver: viewed mark for {h}/{}: {e}", file.id);
    }
    let timeout = app.backend.settings().await.torrent_disconnect_timeout;
    let mut response = serve_file(&*app.backend, &app.config, h, file.index, method, headers);
    let out = response.headers_mut();
    out.insert(header::SERVER, HeaderValue::from_static(SERVER));
    out.insert(STREAM_TIMEOUT, HeaderValue::from(timeout));
    response
}

async fn stream(State(app): AppState, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let q = Query::new(&uri);
    let link = match Link::parse(q.get("link").unwrap_or("")) {
        Ok(link) => link,
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let (play, stat, m3u, preload, save) =
        (q.has("play"), q.has("stat"), q.has("m3u"), q.has("preload"), q.has("save"));
    let meta =
        TorrentMeta { title: q.text("title"), poster: q.text("poster"), category: q.text("category"), data: "".into() };
    let b = &app.backend;
    let added = match b.add(AddRequest { source: AddSource::Link(link), meta, save: false }).await {
        Ok(s) => s,
        Err(e @ TsError::BadLink(_)) => return failed(&e),
        Err(e) => {
            tracing::debug!("torrserver stream add: {e}");
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let Some(h) = hash(&added.hash) else { return status(StatusCode::INTERNAL_SERVER_ERROR) };
    let files = match b.files(h).await {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    if save {
        if let Err(e) = b.save(h).await {
            return failed(&e);
        }
        if !(play || stat || m3u || preload) {
            return ok();
        }
    }
    let chosen = pick(&files, q.get("index"));
    if play && let Err(code) = &chosen {
        return status(*code);
    }
    if preload {
        let target = match (&chosen, q.get("index")) {
            (Ok(f), _) => f.index,
            (Err(code), Some(_)) => return status(*code),
            (Err(_), None) => match files.iter().max_by_key(|f| f.length) {
                Some(f) => f.index,
                None => return status(StatusCode::NOT_FOUND),
            },
        };
        if let Err(e) = b.preload(h, target).await {
            return failed(&e);
        }
    }
    if stat {
        return b.get(h).await.map_or_else(|e| failed(&e), |s| json(&s));
    }
    if m3u {
        let from = match q.get("index").and_then(|i| i.trim().parse::<u32>().ok()) {
            Some(i) => i,
            None if q.has("fromlast") => last_viewed(&**b, h).await,
            None => 1,
        };
        let name = uri.path().strip_prefix("/stream/").map(|n| percent_decode_str(n).decode_utf8_lossy().into_owned());
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => format!("{}.m3u", playlist_name(&**b, h).await),
        };
        return send_m3u(
            &name,
            Some(h),
            m3u::torrent(&base_url(app.config.https, &headers), &h.to_hex(), &files, from),
        );
    }
    if play {
        return match chosen {
            Ok(f) => play_file(&app, h, &f, &method, &headers).await,
            Err(code) => status(code),
        };
    }
    ok()
}

async fn last_viewed(b: &dyn TorrServerBackend, h: InfoHash) -> u32 {
    let marks = b.viewed_list(Some(h)).await;
    marks.iter().filter_map(|v| u32::try_from(v.file_index).ok()).max().unwrap_or(1)
}

async fn playlist_name(b: &dyn TorrServerBackend, h: InfoHash) -> String {
    match b.get(h).await {
        Ok(s) if !s.name.is_empty() => s.name,
        Ok(s) if !s.title.is_empty() => s.title,
        _ => h.to_hex(),
    }
}

async fn play(app: &App, hash_text: &str, id: Option<&str>, method: &Method, headers: &HeaderMap) -> Response {
    let Some(h) = hash(hash_text) else { return status(StatusCode::INTERNAL_SERVER_ERROR) };
    let files = match app.backend.files(h).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("torrserver play {h}: {e}");
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    match pick(&files, id) {
        Ok(f) => play_file(app, h, &f, method, headers).await,
        Err(code) => status(code),
    }
}

async fn play_path(
    State(app): AppState,
    Path((h, id)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    play(&app, &h, Some(&id), &method, &headers).await
}

/// jacktorr's `/play?hash=..&id=..`.
async fn play_query(State(app): AppState, uri: Uri, method: Method, headers: HeaderMap) -> Response {
    let q = Query::new(&uri);
    match q.get("hash") {
        Some(h) if !h.is_empty() => play(&app, h, q.get("id"), &method, &headers).await,
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn send_m3u(name: &str, h: Option<InfoHash>, list: String) -> Response {
    let name: String = name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\' && *c != '/').collect();
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/x-mpegurl"));
    if let Ok(v) = HeaderValue::try_from(format!("attachment; filename=\"{name}\"")) {
        out.insert(header::CONTENT_DISPOSITION, v);
    }
    let tag = match h {
        Some(h) => format!("{h}/{name}"),
        None => name.clone(),
    };
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    if let Ok(v) = HeaderValue::try_from(format!("\"{hex}\"")) {
        out.insert(header::ETAG, v);
    }
    (out, list).into_response()
}

async fn playlist(State(app): AppState, uri: Uri, headers: HeaderMap) -> Response {
    let q = Query::new(&uri);
    let text = q.get("hash").unwrap_or("");
    if text.is_empty() {
        return status(StatusCode::BAD_REQUEST);
    }
    let Some(h) = hash(text) else { return status(StatusCode::NOT_FOUND) };
    let files = match app.backend.files(h).await {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    let from = if q.has("fromlast") { last_viewed(&*app.backend, h).await } else { 1 };
    let name = uri.path().strip_prefix("/playlist/").map(|n| percent_decode_str(n).decode_utf8_lossy().into_owned());
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) if n.to_ascii_lowercase().ends_with(".m3u") || n.to_ascii_lowercase().ends_with(".m3u8") => n,
        Some(n) => format!("{n}.m3u"),
        None => format!("{}.m3u", playlist_name(&*app.backend, h).await),
    };
    send_m3u(&name, Some(h), m3u::torrent(&base_url(app.config.https, &headers), &h.to_hex(), &files, from))
}

/// `?category=` (`uncategorized` for none) and `?search=` (title substring, any case).
async fn playlist_all(State(app): AppState, uri: Uri, headers: HeaderMap) -> Response {
    let q = Query::new(&uri);
    let category = q.get("category").filter(|c| !c.is_empty());
    let search = q.get("search").filter(|s| !s.is_empty()).map(str::to_lowercase);
    let mut list = app.backend.list().await;
    list.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then_with(|| b.title.cmp(&a.title)));
    list.retain(|t| match category {
        Some("uncategorized") => t.category.is_empty(),
        Some(c) => t.category == c,
        None => true,
    });
    if let Some(s) = &search {
        list.retain(|t| t.title.to_lowercase().contains(s.as_str()));
    }
    send_m3u("all.m3u", None, m3u::all(&base_url(app.config.https, &headers), &list))
}

async fn cache(State(app): AppState, bytes: Bytes) -> Response {
    let Some(req): Option<CacheRequest> = body(&bytes, CacheRequest::KEYS) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if req.action != "get" {
        return status(StatusCode::BAD_REQUEST);
    }
    let Some(h) = hash(&req.hash) else { return status(StatusCode::NOT_FOUND) };
    match app.backend.cache(h).await {
        Ok(Some(state)) => json(&state),
        Ok(None) => json(&serde_json::json!({})),
        Err(e) => failed(&e),
    }
}

async fn viewed(State(app): AppState, bytes: Bytes) -> Response {
    let Some(req): Option<ViewedRequest> = body(&bytes, ViewedRequest::KEYS) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let b = &app.backend;
    let result = match req.action.as_str() {
        "set" | "rem" if req.hash.is_empty() => return status(StatusCode::BAD_REQUEST),
        "set" => {
            let (Some(h), Ok(id)) = (hash(&req.hash), u32::try_from(req.file_index)) else {
                return status(StatusCode::BAD_REQUEST);
            };
            if id == 0 || !req.timecode.is_finite() || req.timecode < 0.0 {
                return status(StatusCode::BAD_REQUEST);
            }
            b.viewed_set(h, id, Some(req.timecode)).await
        }
        "rem" => {
            let Some(h) = hash(&req.hash) else { return status(StatusCode::BAD_REQUEST) };
            match req.file_index {
                -1 => b.viewed_remove(h, None).await,
                i => match u32::try_from(i) {
                    Ok(id) if id > 0 => b.viewed_remove(h, Some(id)).await,
                    _ => Ok(()),
                },
            }
        }
        "list" => {
            return match (req.hash.is_empty(), hash(&req.hash)) {
                (true, _) => json(&b.viewed_list(None).await),
                (false, Some(h)) => json(&b.viewed_list(Some(h)).await),
                (false, None) => json(&Vec::<types::Viewed>::new()),
            };
        }
        // TorrServer answers an unknown action with an empty 200.
        _ => Ok(()),
    };
    match result {
        Ok(()) | Err(TsError::UnknownTorrent) => ok(),
        Err(e) => failed(&e),
    }
}

/// A speed test: `size` MiB of zero bytes, with `Range` support.
async fn download(Path(size): Path<String>, method: Method, headers: HeaderMap) -> Response {
    let Some(len) = size.parse::<u64>().ok().filter(|&s| s <= MAX_DOWNLOAD_MIB).map(|s| s << 20) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let etag = format!("\"download-{len:x}\"");
    let validators = Validators { etag: &etag, last_modified: None };
    let decision = match (method == Method::GET, headers.get_all(header::RANGE).iter().count()) {
        (true, 1) => range::decide(
            headers.get(header::RANGE).map(HeaderValue::as_bytes),
            headers.get(header::IF_RANGE).map(HeaderValue::as_bytes),
            &validators,
            len,
        ),
        _ => RangeDecision::Full,
    };
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    let (code, served) = match decision {
        RangeDecision::Full => (StatusCode::OK, range::ByteRange { start: 0, end: len }),
        RangeDecision::Partial(r) => {
            if let Ok(v) = HeaderValue::try_from(r.content_range(len)) {
                out.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, r)
        }
        RangeDecision::Unsatisfiable => {
            if let Ok(v) = HeaderValue::try_from(format!("bytes */{len}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(served.len()));
    if let Ok(v) = HeaderValue::try_from(etag) {
        out.insert(header::ETAG, v);
    }
    let body = if method == Method::HEAD || served.is_empty() {
        Body::empty()
    } else {
        let zeros = Box::new(tokio::io::repeat(0));
        let timeout = std::time::Duration::from_secs(60);
        Body::new(ReaderBody::new(
            zeros,
            InfoHash([0; 20]),
            FileIndex(0),
            served.start,
            served.len(),
            128 << 10,
            timeout,
        ))
    };
    (code, out, body).into_response()
}

async fn shutdown(State(app): AppState, reason: Option<Path<String>>) -> Response {
    match app.backend.shutdown(reason.map(|Path(r)| r)) {
        Ok(()) => ok(),
        Err(e) => failed(&e),
    }
}

/// ffprobe JSON of file `id`; any failure is TorrServer's 400.
async fn ffprobe(State(app): AppState, Path((h, id)): Path<(String, String)>) -> Response {
    let Some(h) = hash(&h) else { return status(StatusCode::BAD_REQUEST) };
    let files = match app.backend.files(h).await {
        Ok(f) => f,
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let Some(file) = id.parse().ok().and_then(|id| files.by_id(id)) else {
        return status(StatusCode::BAD_REQUEST);
    };
    match app.backend.probe(h, file.index).await {
        Ok(v) => json(&v),
        Err(e) => {
            tracing::debug!("torrserver ffprobe {h}/{id}: {e}");
            status(StatusCode::BAD_REQUEST)
        }
    }
}
