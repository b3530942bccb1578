//! Torrent management routes of the streaming API: add a torrent, give it peers. The rest of
//! `/api/v1` (listing, removal, settings, events) comes with the server.
//!
//! - `POST /api/v1/torrents` with the raw `.torrent` as the body → `201` (or `200` when it was
//!   already added) and `{"info_hash", "name", "files": [{"index", "path", "length"}]}`;
//! - the same with `Content-Type: application/json` and `{"magnet": "magnet:?..."}` (or a
//!   bare 40-digit hex info-hash): the metadata is fetched from the link's `x.pe` peers (and
//!   any given through `/peers`). The request waits for it up to the library's metadata
//!   timeout (TorrServer clients expect the add to return promptly): `201`/`200` as above once
//!   known, else `202` with `"files": []` and `"pending": true` while the fetch goes on; adding
//!   the same magnet again later returns the files once known;
//! - `POST /api/v1/torrents/{info_hash}/peers` with a JSON array of `"ip:port"` → `204`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sluice_core::InfoHash;

use crate::{HttpConfig, StreamSource, error};

/// Largest `.torrent` body accepted.
const MAX_TORRENT_BODY: usize = 64 * 1024 * 1024;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One file of an added torrent, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedFile {
    pub path: String,
    pub length: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    pub info_hash: InfoHash,
    pub name: String,
    /// Files in metainfo order; the position is the `index` used in stream URLs.
    pub files: Vec<AddedFile>,
    /// False when the torrent was already known.
    pub created: bool,
    /// A magnet whose metadata is not known yet (`files` is empty).
    pub pending: bool,
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
    fn add_torrent(&self, torrent: Bytes) -> BoxFuture<'_, Result<Added, LibraryError>>;
    /// A magnet link or bare info-hash; may return before the metadata is known (`pending`).
    fn add_magnet(&self, magnet: String) -> BoxFuture<'_, Result<Added, LibraryError>>;
    fn add_peers(&self, torrent: InfoHash, peers: Vec<SocketAddr>) -> BoxFuture<'_, Result<(), LibraryError>>;
}

/// The stream routes plus the management routes above.
pub fn api_router(library: Arc<dyn Library>, config: HttpConfig) -> Router {
    let manage = Router::new()
        .route("/api/v1/torrents", post(add_torrent))
        .route("/api/v1/torrents/{info_hash}/peers", post(add_peers))
        .layer(DefaultBodyLimit::max(MAX_TORRENT_BODY))
        .with_state(library.clone());
    crate::router(library, config).merge(manage)
}

async fn add_torrent(State(lib): State<Arc<dyn Library>>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    let result = if json {
        let magnet = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("magnet").and_then(serde_json::Value::as_str).map(str::to_owned));
        match magnet {
            Some(magnet) => lib.add_magnet(magnet).await,
            None => {
                return error(StatusCode::BAD_REQUEST, "bad_body", "a JSON body must be {\"magnet\": \"magnet:?...\"}");
            }
        }
    } else {
        lib.add_torrent(body).await
    };
    match result {
        Ok(added) => {
            let files: Vec<_> = added
                .files
                .iter()
                .enumerate()
                .map(|(index, f)| serde_json::json!({ "index": index, "path": f.path, "length": f.length }))
                .collect();
            let mut json =
                serde_json::json!({ "info_hash": added.info_hash.to_hex(), "name": added.name, "files": files });
            let status = if added.pending {
                json["pending"] = true.into();
                StatusCode::ACCEPTED
            } else if added.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, [(CONTENT_TYPE, "application/json")], json.to_string()).into_response()
        }
        Err(e) => library_error(e),
    }
}

async fn add_peers(State(lib): State<Arc<dyn Library>>, Path(hash): Path<String>, body: Bytes) -> Response {
    let Some(torrent) = InfoHash::from_hex(&hash) else {
        return error(StatusCode::BAD_REQUEST, "bad_info_hash", "the info-hash must be 40 hex digits");
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

fn library_error(e: LibraryError) -> Response {
    match e {
        LibraryError::BadTorrent(m) => error(StatusCode::BAD_REQUEST, "bad_torrent", &m),
        LibraryError::UnknownTorrent => {
            error(StatusCode::NOT_FOUND, "unknown_torrent", "no torrent with that info-hash")
        }
        LibraryError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &m),
    }
}
