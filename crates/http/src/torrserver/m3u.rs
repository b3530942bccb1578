//! M3U playlists in TorrServer's form, with VLC `input-slave` lines for external tracks.
//!
//! Names and titles come from torrents and clients, so every value written into a line is
//! stripped of line breaks (a file name must not add playlist entries) and URL parts are
//! percent-encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::meta::content_type;

use super::files::{TorrentFiles, TsFile};
use super::types::TorrentStatus;

/// Go's `url.PathEscape`: a path segment keeps unreserved characters and these sub-delims.
const SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'$').remove(b'&').remove(b'+');
const SEGMENT_MORE: &AsciiSet = &SEGMENT.remove(b',').remove(b':').remove(b';').remove(b'=').remove(b'@');

pub(crate) fn escape_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT_MORE).to_string()
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
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

fn stream_url(base: &str, hash: &str, f: &TsFile) -> String {
    format!("{base}/stream/{}?link={hash}&index={}&play", escape_segment(f.base_name()), f.id)
}

/// One torrent's playlist: its video and audio files from id `from` on. An audio file that is
/// a video's external track is listed on the video's `#EXTVLCOPT:input-slave=` line (links
/// joined by `#`) rather than as an entry of its own.
pub(crate) fn torrent(base: &str, hash: &str, files: &TorrentFiles, from: u32) -> String {
    let slaves: Vec<u32> = files.iter().filter(|f| video(f)).flat_map(|v| namesakes(files, v).map(|s| s.id)).collect();
    let mut out = String::from("#EXTM3U\n");
    for f in files.iter().filter(|f| f.id >= from && is_media(&f.path) && !slaves.contains(&f.id)) {
        out.push_str(&format!("#EXTINF:0,{}\n", one_line(f.base_name())));
        if video(f) {
            let links: Vec<String> = namesakes(files, f).map(|s| stream_url(base, hash, s)).collect();
            if !links.is_empty() {
                out.push_str(&format!("#EXTVLCOPT:input-slave={}\n", links.join("#")));
            }
        }
        out.push_str(&stream_url(base, hash, f));
        out.push('\n');
    }
    out
}

/// Every torrent as a nested playlist entry (`fn=file.m3u` is Forkplayer's convention).
pub(crate) fn all(base: &str, torrents: &[TorrentStatus]) -> String {
    let mut out = String::from("#EXTM3U\n");
    for t in torrents {
        out.push_str("#EXTINF:0");
        if !t.poster.is_empty() {
            out.push_str(&format!(" tvg-logo=\"{}\"", one_line(&t.poster).replace('"', "%22")));
        }
        out.push_str(&format!(" type=\"playlist\",{}\n", one_line(&t.title)));
        out.push_str(&format!("{base}/stream/{}.m3u?link={}&m3u&fn=file.m3u\n", escape_segment(&t.title), t.hash));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaves_and_entries() {
        let files = TorrentFiles::new(
            [
                ("S/Movie.mkv", 10),
                ("S/Movie.en.srt", 1),
                ("S/Movie.mka", 5),
                ("S/Movie2.srt", 1),
                ("S/Song.mp3", 3),
                ("S/notes.txt", 1),
            ]
            .map(|(p, l)| (p.to_owned(), l)),
        );
        let m = torrent("http://h:1", "ab", &files, 1);
        assert_eq!(
            m,
            "#EXTM3U\n#EXTINF:0,Movie.mkv\n\
             #EXTVLCOPT:input-slave=http://h:1/stream/Movie.en.srt?link=ab&index=1&play#http://h:1/stream/Movie.mka?link=ab&index=2&play\n\
             http://h:1/stream/Movie.mkv?link=ab&index=3&play\n\
             #EXTINF:0,Song.mp3\nhttp://h:1/stream/Song.mp3?link=ab&index=5&play\n"
        );
        assert_eq!(
            torrent("http://h", "ab", &files, 4),
            "#EXTM3U\n#EXTINF:0,Song.mp3\nhttp://h/stream/Song.mp3?link=ab&index=5&play\n"
        );
    }

    #[test]
    fn names_cannot_add_lines() {
        let files = TorrentFiles::new([("d/a\n#EXTM3U x.mkv".to_owned(), 1)]);
        let m = torrent("http://h", "ab", &files, 1);
        assert_eq!(m.lines().count(), 3, "{m}");
        assert!(m.contains("/stream/a%0A%23EXTM3U%20x.mkv?"), "{m}");
    }
}
