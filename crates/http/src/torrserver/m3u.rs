//! M3U playlists in TorrServer's form (its `/stream` links and nested per-torrent entries);
//! the entry and `input-slave` rules are the crate's shared [`crate::m3u`].

use crate::m3u::{entries, escape_segment, one_line};

use super::files::{TorrentFiles, TsFile};
use super::types::TorrentStatus;

fn stream_url(base: &str, hash: &str, f: &TsFile) -> String {
    format!("{base}/stream/{}?link={hash}&index={}&play", escape_segment(f.base_name()), f.id)
}

/// One torrent's playlist: its video and audio files from id `from` on, with VLC
/// `input-slave` lines for external tracks (see [`crate::m3u::entries`]).
pub(crate) fn torrent(base: &str, hash: &str, files: &TorrentFiles, from: u32) -> String {
    "#EXTM3U\n".to_owned() + &entries(files, from, |f| stream_url(base, hash, f))
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
