//! M3U playlists shared by the TorrServer routes and `/api/v1`: which files are entries, which
//! are a video's external tracks (VLC `input-slave`), and how untrusted names are written.
//!
//! Names and titles come from torrents and clients, so every value written into a line is
//! stripped of line breaks (a file name must not add playlist entries) and URL parts are
//! percent-encoded.

use axum::http::{HeaderMap, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::meta::content_type;
use crate::torrserver::{TorrentFiles, TsFile};

/// Go's `url.PathEscape`: a path segment keeps unreserved characters and these sub-delims.
const SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'$').remove(b'&').remove(b'+');
const SEGMENT_MORE: &AsciiSet = &SEGMENT.remove(b',').remove(b':').remove(b';').remove(b'=').remove(b'@');

pub(crate) fn escape_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT_MORE).to_string()
}

pub(crate) fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// `http://host` (`https://` when the server speaks TLS) for absolute playlist links, from
/// the request's `Host`. A `Host` that is not a plain `host[:port]` is not echoed into
/// playlists.
pub(crate) fn base_url(https: bool, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|c| c.is_ascii_alphanumeric() || b".-:[]_".contains(&c)))
        .unwrap_or("localhost:8090");
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn is_media(path: &str) -> bool {
    let t = content_type(path);
    t.starts_with("video/") || t.starts_with("audio/")
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// External tracks a player opens next to a video: audio files and subtitles.
fn is_track(path: &str) -> bool {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    content_type(path).starts_with("audio/")
        || matches!(
            ext.as_str(),
            "srt" | "ass" | "ssa" | "vtt" | "sub" | "idx" | "smi" | "sup" | "ac3" | "dts" | "eac3"
        )
}

fn video(f: &TsFile) -> bool {
    content_type(&f.path).starts_with("video/")
}

/// External tracks of `video`: other track files whose base name starts with the video's
/// base name and a dot (`Movie.mkv` → `Movie.en.srt`, `Movie.mka`), in id order.
fn namesakes<'a>(files: &'a TorrentFiles, video: &'a TsFile) -> impl Iterator<Item = &'a TsFile> + 'a {
    let stem = stem(video.base_name()).to_lowercase();
    files.iter().filter(move |f| {
        f.id != video.id
            && is_track(&f.path)
            && f.base_name().to_lowercase().strip_prefix(stem.as_str()).is_some_and(|r| r.starts_with('.'))
    })
}

/// The entries of one torrent's playlist (no `#EXTM3U` header): its video and audio files
/// from id `from` on, in id (natural) order, each linked by `url`. An audio file that is a
/// video's external track is listed on the video's `#EXTVLCOPT:input-slave=` line (links
/// joined by `#`) rather than as an entry of its own.
pub(crate) fn entries(files: &TorrentFiles, from: u32, url: impl Fn(&TsFile) -> String) -> String {
    let slaves: Vec<u32> = files.iter().filter(|f| video(f)).flat_map(|v| namesakes(files, v).map(|s| s.id)).collect();
    let mut out = String::new();
    for f in files.iter().filter(|f| f.id >= from && is_media(&f.path) && !slaves.contains(&f.id)) {
        out.push_str(&format!("#EXTINF:0,{}\n", one_line(f.base_name())));
        if video(f) {
            let links: Vec<String> = namesakes(files, f).map(&url).collect();
            if !links.is_empty() {
                out.push_str(&format!("#EXTVLCOPT:input-slave={}\n", links.join("#")));
            }
        }
        out.push_str(&url(f));
        out.push('\n');
    }
    out
}
