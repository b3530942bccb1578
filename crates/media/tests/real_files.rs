//! Real files made by ffmpeg, probed through `next_need`/`feed`, checked against independent
//! whole-file scans and ffprobe.

mod common;

use std::ops::Range;
use std::path::Path;

use common::{drive, ffmpeg, ffprobe_duration, make_clip, mkv_level1, mp4_boxes};
use sluice_media::{Format, HEAD_TAIL, probe_slice};

const CUES: u32 = 0x1C53_BB6B;
const TAGS: u32 = 0x1254_C367;
const CLUSTER: u32 = 0x1F43_B675;

fn assert_duration_close(probe_secs: f64, path: &Path) {
    let want = ffprobe_duration(path);
    assert!((probe_secs - want).abs() <= want * 0.05, "duration {probe_secs} s, ffprobe says {want} s");
}

/// The checks every MP4 gets; returns the moov range.
fn check_mp4(path: &Path, file: &[u8], ext: &str) -> Range<u64> {
    let boxes = mp4_boxes(file);
    let moov = boxes.iter().find(|(k, _)| k == b"moov").expect("moov").1.clone();
    let mdat = boxes.iter().find(|(k, _)| k == b"mdat").expect("mdat").1.clone();

    let run = drive(file, Some(ext), None);
    let probe = &run.probe;
    assert_eq!((probe.format, &probe.fallback), (Format::Mp4, &None));
    let mut want = vec![0..mdat.start, moov.clone()];
    if moov.start < mdat.start {
        want.pop();
    }
    assert_eq!(probe.critical, want);

    // Box headers, the moov, nothing of the mdat's payload.
    assert!(run.bytes_asked() <= mdat.start + (moov.end - moov.start) + 16 * boxes.len() as u64, "{:?}", run.needs);
    for r in &run.needs {
        assert!(r.end <= mdat.start + 16 || r.start >= mdat.end, "read {r:?} inside mdat {mdat:?}");
    }

    let secs = probe.duration.expect("duration").as_secs_f64();
    assert_duration_close(secs, path);
    let bitrate = probe.bitrate.expect("bitrate") as f64;
    assert!((bitrate - file.len() as f64 / secs).abs() <= 1.0);

    // Whole-piece answers and the in-memory convenience agree with exact answers.
    assert_eq!(&drive(file, None, Some(16 << 10)).probe, probe);
    assert_eq!(&drive(file, None, Some(1 << 20)).probe, probe);
    assert_eq!(&probe_slice(file), probe);
    moov
}

#[test]
fn mp4_with_moov_at_the_end() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, file) = make_clip(&ffmpeg, dir.path(), "end.mp4", 3, &[]);
    let moov = check_mp4(&path, &file, "mp4");
    assert_eq!(moov.end, file.len() as u64, "ffmpeg's default puts moov last");
    let run = drive(&file, None, None);
    assert!(run.reads <= 6, "{:?}", run.needs);
}

#[test]
fn mp4_with_faststart() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, file) = make_clip(&ffmpeg, dir.path(), "fast.mp4", 3, &["-movflags", "+faststart"]);
    let moov = check_mp4(&path, &file, "mp4");
    assert!(moov.start < 64, "faststart puts moov after ftyp");
    assert_eq!(drive(&file, None, None).probe.critical.len(), 1);
}

/// Rewrites ffmpeg's moov-last file with 64-bit sizes: the 8-byte `free` box ffmpeg leaves
/// before `mdat` and the `mdat` header become one 16-byte largesize `mdat` header (so no chunk
/// offset moves), and the trailing `moov` gets a 16-byte header (its contents do not depend on
/// where it sits).
fn to_largesize(file: &[u8]) -> Vec<u8> {
    let boxes = mp4_boxes(file);
    let kinds: Vec<_> = boxes.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [*b"ftyp", *b"free", *b"mdat", *b"moov"], "unexpected ffmpeg layout");
    let (free, mdat, moov) = (boxes[1].1.clone(), boxes[2].1.clone(), boxes[3].1.clone());
    assert_eq!(free.end - free.start, 8);
    let mut out = file[..free.start as usize].to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(&(mdat.end - free.start).to_be_bytes());
    out.extend_from_slice(&file[mdat.start as usize + 8..mdat.end as usize]);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(b"moov");
    out.extend_from_slice(&(moov.end - moov.start + 8).to_be_bytes());
    out.extend_from_slice(&file[moov.start as usize + 8..]);
    out
}

#[test]
fn mp4_with_64_bit_box_sizes() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (orig_path, orig) = make_clip(&ffmpeg, dir.path(), "orig.mp4", 3, &[]);
    let large = to_largesize(&orig);
    let path = dir.path().join("large.mp4");
    std::fs::write(&path, &large).unwrap();
    let want = ffprobe_duration(&orig_path);
    assert!((ffprobe_duration(&path) - want).abs() < 1e-3, "ffprobe reads the rewritten file the same");
    let decoded = std::process::Command::new(&ffmpeg)
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decoded.status.success() && decoded.stderr.is_empty(), "{}", String::from_utf8_lossy(&decoded.stderr));

    let moov = check_mp4(&path, &large, "mp4");
    assert_eq!(&large[moov.start as usize..moov.start as usize + 8], &[0, 0, 0, 1, b'm', b'o', b'o', b'v']);
    assert_eq!(drive(&large, None, None).probe.critical[0], 0..mp4_boxes(&large)[1].1.start);
}

#[test]
fn matroska_cues_at_the_end() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (path, file) = make_clip(&ffmpeg, dir.path(), "clip.mkv", 4, &[]);
    let len = file.len() as u64;
    let (_, level1) = mkv_level1(&file);
    let find = |id| level1.iter().filter(move |(i, _)| *i == id).map(|(_, r)| r.clone());
    let first_cluster = find(CLUSTER).next().expect("a cluster").start;
    let last_cluster = find(CLUSTER).next_back().unwrap().start;
    let cues = find(CUES).next().expect("cues");
    let tags = find(TAGS).next().expect("tags");
    assert!(cues.start > last_cluster, "ffmpeg writes the Cues after the Clusters");

    let run = drive(&file, Some("mkv"), None);
    let probe = &run.probe;
    assert_eq!((probe.format, &probe.fallback), (Format::Matroska, &None));
    assert!(
        probe.critical.contains(&cues) || probe.critical.iter().any(|r| r.start <= cues.start && cues.end <= r.end)
    );
    assert!(probe.critical.iter().any(|r| r.start <= tags.start && tags.end <= r.end), "tags {tags:?} covered");
    assert_eq!(probe.critical[0], 0..first_cluster, "head through the first Cluster");
    let last = probe.critical.last().unwrap();
    assert!(last.start > last_cluster && last.end <= len && len - last.end < 64, "{last:?} is the tail");
    assert_eq!(probe.critical.len(), 2, "{:?}", probe.critical);

    // The head, then element headers: nothing of the Clusters beyond that, not the Cues' body.
    assert!(run.bytes_asked() <= first_cluster + 16 * 12, "{:?}", run.needs);
    for r in &run.needs {
        assert!(r.end <= first_cluster + 12 || r.start >= last_cluster, "read {r:?} inside the clusters");
        assert!(r.end <= cues.start + 12 || r.start >= cues.end, "read {r:?} inside the Cues");
    }

    let secs = probe.duration.expect("duration").as_secs_f64();
    assert_duration_close(secs, &path);
    assert!((probe.bitrate.unwrap() as f64 - len as f64 / secs).abs() <= 1.0);

    assert_eq!(&drive(&file, None, Some(16 << 10)).probe, probe);
    assert_eq!(&probe_slice(&file), probe);
}

#[test]
fn random_bytes_are_unknown_head_and_tail() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let file: Vec<u8> = (0..(20 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let len = file.len() as u64;
    let run = drive(&file, Some("mkv"), None);
    assert_eq!((run.probe.format, &run.probe.fallback), (Format::Unknown, &None));
    assert_eq!(run.probe.critical, vec![0..HEAD_TAIL, len - HEAD_TAIL..len]);
    assert_eq!(run.needs, vec![0..16]);
    assert_eq!(probe_slice(&file[..1000]).critical, vec![0..1000]);
}
