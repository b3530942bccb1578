//! Arbitrary bytes and damaged real files: the prober never panics, asks only for ranges inside
//! the file, finishes within its read bound, and answers the same however the bytes arrive.

mod common;

use std::sync::OnceLock;

use common::{drive, ffmpeg, make_clip};
use proptest::prelude::*;
use sluice_media::{Format, ProbeError};

/// ffmpeg clips made once for the whole run: moov last, moov first, Matroska.
fn clips() -> &'static [Vec<u8>] {
    static CLIPS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let Some(ffmpeg) = ffmpeg() else { return Vec::new() };
        let dir = tempfile::tempdir().unwrap();
        vec![
            make_clip(&ffmpeg, dir.path(), "a.mp4", 2, &[]).1,
            make_clip(&ffmpeg, dir.path(), "b.mp4", 2, &["-movflags", "+faststart"]).1,
            make_clip(&ffmpeg, dir.path(), "c.mkv", 2, &[]).1,
        ]
    })
}

/// Probes `file` exactly and piece by piece; the answers agree unless a bound was hit, which
/// depends on how many bytes each read brought.
fn probe_every_way(file: &[u8], piece: u64) {
    let exact = drive(file, Some("mp4"), None).probe;
    let pieces = drive(file, Some("mp4"), Some(piece)).probe;
    let bound =
        |p: &sluice_media::Probe| matches!(p.fallback, Some(ProbeError::TooManyReads | ProbeError::TooManyElements));
    if !bound(&exact) && !bound(&pieces) {
        assert_eq!(exact, pieces);
    }
    if exact.format == Format::Unknown {
        assert!(exact.duration.is_none());
    }
}

fn prefixed_bytes() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(Vec::new()),
        Just(vec![0x1A, 0x45, 0xDF, 0xA3]),
        Just(b"\0\0\0\x18ftypisom\0\0\0\0isom".to_vec()),
        Just(b"\0\0\0\x01moov".to_vec()),
        Just(vec![0x1A, 0x45, 0xDF, 0xA3, 0x84, 0x42, 0x82, 0x81, b'x', 0x18, 0x53, 0x80, 0x67, 0xFF]),
    ];
    (prefix, proptest::collection::vec(any::<u8>(), 0..2048)).prop_map(|(p, rest)| [p, rest].concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_terminate_within_bounds(file in prefixed_bytes(), piece in 1u64..5000) {
        probe_every_way(&file, piece);
    }

    #[test]
    fn damaged_real_files_terminate_within_bounds(
        which in 0usize..3,
        cut in 0.0f64..=1.0,
        damage in proptest::collection::vec((any::<bool>(), 0usize..4096, any::<u8>()), 0..6),
        piece in prop_oneof![Just(1u64), Just(13), Just(16 << 10), Just(256 << 10)],
    ) {
        let clips = clips();
        if clips.is_empty() {
            return Ok(());
        }
        let mut file = clips[which].clone();
        file.truncate((file.len() as f64 * cut) as usize);
        let len = file.len();
        for (from_end, off, byte) in damage {
            if off < len {
                let at = if from_end { len - 1 - off } else { off };
                file[at] = byte;
            }
        }
        probe_every_way(&file, piece);
    }
}

#[test]
fn undamaged_clips_parse() {
    for (clip, format) in clips().iter().zip([Format::Mp4, Format::Mp4, Format::Matroska]) {
        let probe = drive(clip, None, None).probe;
        assert_eq!((probe.format, probe.fallback), (format, None));
    }
}
