//! The axum routes and the handler that turns a request into a streaming response.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sluice_core::InfoHash;

use crate::body::ReaderBody;
use crate::meta::{self, DLNA_CONTENT_FEATURES, DLNA_TRANSFER_MODE};
use crate::range::{self, RangeDecision, Validators};
use crate::source::{FileIndex, SourceError, StreamSource};

/// Server settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// A read from the source that yields nothing for this long aborts the response.
    pub read_timeout: Duration,
    /// Files larger than this are refused with 403.
    pub max_file_size: Option<u64>,
    /// Bytes read from the source per body frame.
    pub chunk_size: usize,
    /// The server is reached over HTTPS: links it writes into playlists say `https://`.
    pub https: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { read_timeout: Duration::from_secs(120), max_file_size: None, chunk_size: 128 * 1024, https: false }
    }
}

struct App {
    source: Arc<dyn StreamSource>,
    config: HttpConfig,
}

/// The stream routes, ready to be served or merged into a larger API router:
///
/// - `GET|HEAD /api/v1/torrents/{info_hash}/files/{index}/stream`
/// - `GET|HEAD /api/v1/torrents/{info_hash}/files/{index}/stream/{filename}`: `filename` is
///   ignored; it is there for players that choose a demuxer from the URL's extension.
pub fn router(source: Arc<dyn StreamSource>, config: HttpConfig) -> Router {
    let app = Arc::new(App { source, config });
    Router::new()
        .route("/api/v1/torrents/{info_hash}/files/{index}/stream", get(stream))
        .route("/api/v1/torrents/{info_hash}/files/{index}/stream/{filename}", get(stream))
        .with_state(app)
}

const TRANSFER_MODE: HeaderName = HeaderName::from_static("transfermode.dlna.org");
const CONTENT_FEATURES: HeaderName = HeaderName::from_static("contentfeatures.dlna.org");
const GET_CONTENT_FEATURES: HeaderName = HeaderName::from_static("getcontentfeatures.dlna.org");

async fn stream(State(app): State<Arc<App>>, method: Method, params: RawPathParams, headers: HeaderMap) -> Response {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let Some(torrent) = param("info_hash").and_then(InfoHash::from_hex) else {
        return error(StatusCode::BAD_REQUEST, "bad_info_hash", "the info-hash must be 40 hex digits");
    };
    let Some(index) = param("index").and_then(|i| i.parse().ok()).map(FileIndex) else {
        return error(StatusCode::BAD_REQUEST, "bad_file_index", "the file index must be a number");
    };
    serve_file(&*app.source, &app.config, torrent, index, &method, &headers)
}

/// The byte-serving response for one file: `Range`/`If-Range`, `HEAD`, DLNA headers. Shared
/// with the TorrServer routes, which add their own headers to it.
pub(crate) fn serve_file(
    source: &dyn StreamSource,
    config: &HttpConfig,
    torrent: InfoHash,
    index: FileIndex,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let file = match source.file(torrent, index) {
        Ok(file) => file,
        Err(e) => return source_error(e),
    };
    if config.max_file_size.is_some_and(|max| file.length > max) {
        return error(StatusCode::FORBIDDEN, "file_too_large", "the file is larger than this server streams");
    }

    let etag = meta::etag(torrent, index, file.length);
    let last_modified = file.modified.and_then(range::http_date_precision);
    let validators = Validators { etag: &etag, last_modified };
    // RFC 9110 §14.2: range handling is defined for GET only; HEAD describes the full GET.
    let decision = match (method == Method::GET, headers.get_all(header::RANGE).iter().count()) {
        (true, 1) => range::decide(
            headers.get(header::RANGE).map(HeaderValue::as_bytes),
            headers.get(header::IF_RANGE).map(HeaderValue::as_bytes),
            &validators,
            file.length,
        ),
        _ => RangeDecision::Full,
    };

    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(TRANSFER_MODE, HeaderValue::from_static(DLNA_TRANSFER_MODE));
    if headers.get(GET_CONTENT_FEATURES).is_some_and(|v| v.as_bytes().trim_ascii() == b"1") {
        out.insert(CONTENT_FEATURES, HeaderValue::from_static(DLNA_CONTENT_FEATURES));
    }
    let (status, served) = match decision {
        RangeDecision::Full => (StatusCode::OK, range::ByteRange { start: 0, end: file.length }),
        RangeDecision::Partial(r) => {
            out.insert(header::CONTENT_RANGE, value(r.content_range(file.length)));
            (StatusCode::PARTIAL_CONTENT, r)
        }
        RangeDecision::Unsatisfiable => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                &format!("no requested range overlaps the file's {} bytes", file.length),
            );
            out.insert(header::CONTENT_RANGE, value(format!("bytes */{}", file.length)));
            response.headers_mut().extend(out);
            return response;
        }
    };
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(meta::content_type(&file.path)));
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(served.len()));
    out.insert(header::ETAG, value(etag));
    if let Some(t) = last_modified {
        out.insert(header::LAST_MODIFIED, value(httpdate::fmt_http_date(t)));
    }

    let body = if method == Method::HEAD || served.is_empty() {
        Body::empty()
    } else {
        let reader = match source.open(torrent, index, served.start..served.end) {
            Ok(reader) => reader,
            Err(e) => return source_error(e),
        };
        Body::new(ReaderBody::new(
            reader,
            torrent,
            index,
            served.start,
            served.len(),
            config.chunk_size,
            config.read_timeout,
        ))
    };
    (status, out, body).into_response()
}

/// Values built here from digits, hex and HTTP-dates are always valid header values.
fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn source_error(e: SourceError) -> Response {
    let (status, code) = match e {
        SourceError::UnknownTorrent => (StatusCode::NOT_FOUND, "unknown_torrent"),
        SourceError::UnknownFile => (StatusCode::NOT_FOUND, "unknown_file"),
        SourceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    error(status, code, &e.to_string())
}

/// A JSON error response: `{"error":{"code":...,"message":...}}`. Public so that the API
/// router this one is merged into can answer its own errors (and its fallback) the same way.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
