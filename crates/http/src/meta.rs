//! Per-file response metadata: entity tag, media type, DLNA features.

use sluice_core::InfoHash;

use crate::FileIndex;

/// The strong entity tag of a file. Content under one info-hash never changes (every byte
/// served is verified against it), so the info-hash, the index and the length identify the
/// bytes exactly and the tag survives restarts and re-adds of the torrent.
pub fn etag(torrent: InfoHash, index: FileIndex, length: u64) -> String {
    format!("\"{torrent}-{}-{length:x}\"", index.0)
}

/// The `Content-Type` for a file path, by extension. Media players pick demuxers from it, and
/// some (smart TVs) refuse types they do not know, so the common media extensions are pinned
/// to the names players expect before falling back to the generic table.
pub fn content_type(path: &str) -> &'static str {
    let ext = match path.rsplit_once('.') {
        Some((_, ext)) if !ext.contains('/') => ext.to_ascii_lowercase(),
        _ => return OCTET_STREAM,
    };
    match ext.as_str() {
        "mkv" => "video/x-matroska",
        "mka" => "audio/x-matroska",
        "mk3d" => "video/x-matroska-3d",
        "mp4" | "m4v" => "video/mp4",
        "m4a" => "audio/mp4",
        "webm" => "video/webm",
        "ts" | "m2ts" | "mts" | "tsv" => "video/mp2t",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "mpg" | "mpeg" => "video/mpeg",
        "ogv" => "video/ogg",
        "flv" => "video/x-flv",
        "wmv" => "video/x-ms-wmv",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "opus" | "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        "ass" | "ssa" => "text/x-ssa",
        "sub" => "text/plain",
        "nfo" => "text/plain",
        _ => mime_guess::from_ext(&ext).first_raw().unwrap_or(OCTET_STREAM),
    }
}

const OCTET_STREAM: &str = "application/octet-stream";

/// `transferMode.dlna.org`: sent on every stream response.
pub const DLNA_TRANSFER_MODE: &str = "Streaming";

/// `contentFeatures.dlna.org`, sent when the request carries `getcontentFeatures.dlna.org: 1`
/// (DLNA guidelines 7.4.1.3). `OP=01`: byte seeking (`Range`) supported, time seeking not.
/// `CI=0`: not transcoded. `FLAGS` is 8 hex digits of primary flags and 24 reserved zeros;
/// `0170_0000` = streaming transfer mode (bit 24) | background transfer mode (bit 22) |
/// connection stalling allowed (bit 21) | DLNA 1.5 (bit 20). No `PN` (profile name): it is
/// optional and a wrong one makes renderers refuse the file.
pub const DLNA_CONTENT_FEATURES: &str = "DLNA.ORG_OP=01;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01700000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let cases = [
            ("Movie.2024.MKV", "video/x-matroska"),
            ("a/b.mp4", "video/mp4"),
            ("x.ts", "video/mp2t"),
            ("subs/en.srt", "application/x-subrip"),
            ("cover.jpg", "image/jpeg"),
            ("README", OCTET_STREAM),
            ("dir.d/README", OCTET_STREAM),
            ("weird.zzzz", OCTET_STREAM),
        ];
        for (path, ty) in cases {
            assert_eq!(content_type(path), ty, "{path}");
        }
    }

    #[test]
    fn etag_is_strong_and_identifies_the_file() {
        let h = InfoHash([0xab; 20]);
        let a = etag(h, FileIndex(3), 1000);
        assert_eq!(a, format!("\"{}-3-3e8\"", "ab".repeat(20)));
        assert_ne!(a, etag(h, FileIndex(4), 1000));
        assert_ne!(a, etag(h, FileIndex(3), 1001));
        assert_ne!(a, etag(InfoHash([0xac; 20]), FileIndex(3), 1000));
    }
}
