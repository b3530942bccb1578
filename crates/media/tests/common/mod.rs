//! Drivers that answer a prober's needs, and real files made by ffmpeg.
#![allow(dead_code)]

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_media::{MAX_READS, Need, Probe, Prober};

#[derive(Debug)]
pub struct Run {
    pub probe: Probe,
    pub needs: Vec<Range<u64>>,
    pub reads: u32,
}

impl Run {
    pub fn bytes_asked(&self) -> u64 {
        self.needs.iter().map(|r| r.end - r.start).sum()
    }
}

/// Drives a prober over a file of `len` bytes whose contents `at` produces. With `piece`, every
/// need is answered with the whole `piece`-aligned pieces covering it, as a torrent would.
pub fn drive_with(len: u64, hint: Option<&str>, piece: Option<u64>, at: impl Fn(Range<u64>) -> Vec<u8>) -> Run {
    let mut p = Prober::new(len, hint);
    let mut needs = Vec::new();
    loop {
        assert!(needs.len() <= 4 * MAX_READS as usize, "prober did not terminate: {needs:?}");
        match p.next_need() {
            Need::Done(probe) => {
                check_invariants(&probe, len);
                assert!(p.reads() <= MAX_READS, "{} reads", p.reads());
                assert_eq!(needs.len() as u32, p.reads(), "every need answered in full is one read: {needs:?}");
                return Run { probe, needs, reads: p.reads() };
            }
            Need::Read(r) => {
                assert!(r.start < r.end && r.end <= len, "bad need {r:?} for a file of {len}");
                needs.push(r.clone());
                let r = match piece {
                    Some(piece) => r.start / piece * piece..r.end.div_ceil(piece).saturating_mul(piece).min(len),
                    None => r,
                };
                p.feed(r.start, &at(r));
            }
        }
    }
}

pub fn drive(file: &[u8], hint: Option<&str>, piece: Option<u64>) -> Run {
    drive_with(file.len() as u64, hint, piece, |r| file[r.start as usize..r.end as usize].to_vec())
}

pub fn check_invariants(probe: &Probe, len: u64) {
    for w in probe.critical.windows(2) {
        assert!(w[0].end < w[1].start, "critical ranges not sorted and disjoint: {:?}", probe.critical);
    }
    for r in &probe.critical {
        assert!(r.start < r.end && r.end <= len, "critical range {r:?} outside a file of {len}");
    }
    assert_eq!(probe.bitrate.is_some(), probe.duration.is_some_and(|d| !d.is_zero()));
}

/// The ffmpeg binary, or `None` (with a message) when it is not installed.
pub fn ffmpeg() -> Option<PathBuf> {
    let found = ["/usr/bin/ffmpeg", "ffmpeg"]
        .iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg("-version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        eprintln!("SKIPPED: ffmpeg is not installed (apt-get install -y ffmpeg); real-file tests did not run");
    }
    found
}

/// A test-pattern H.264/AAC clip of `secs` seconds written to `dir/name`, muxed per `extra`.
pub fn make_clip(ffmpeg: &Path, dir: &Path, name: &str, secs: u32, extra: &[&str]) -> (PathBuf, Vec<u8>) {
    let out = dir.join(name);
    let status = Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=duration={secs}:size=320x240:rate=25"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={secs}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"])
        .args(extra)
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg failed for {name}");
    let bytes = std::fs::read(&out).expect("read clip");
    (out, bytes)
}

/// ffprobe's `format=duration`, in seconds.
pub fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ffprobe duration")
}

/// Top-level MP4 boxes, by a whole-file scan: (type, range).
pub fn mp4_boxes(file: &[u8]) -> Vec<([u8; 4], Range<u64>)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= file.len() {
        let size32 = u32::from_be_bytes(file[pos..pos + 4].try_into().unwrap()) as u64;
        let kind: [u8; 4] = file[pos + 4..pos + 8].try_into().unwrap();
        let size = match size32 {
            0 => (file.len() - pos) as u64,
            1 => u64::from_be_bytes(file[pos + 8..pos + 16].try_into().unwrap()),
            n => n,
        };
        out.push((kind, pos as u64..pos as u64 + size));
        pos += size as usize;
    }
    out
}

fn ebml_vint(b: &[u8]) -> (u64, usize) {
    let n = b[0].leading_zeros() as usize + 1;
    let v = b[..n].iter().fold(0u64, |a, x| a << 8 | *x as u64);
    (v & ((1u64 << (7 * n)) - 1), n)
}

/// The Segment's children in a Matroska file, by a whole-file scan: (ID, range), plus the
/// Segment's data start.
pub fn mkv_level1(file: &[u8]) -> (u64, Vec<(u32, Range<u64>)>) {
    let header = |pos: usize| {
        let id_len = file[pos].leading_zeros() as usize + 1;
        let id = file[pos..pos + id_len].iter().fold(0u32, |a, x| a << 8 | *x as u32);
        let (size, size_len) = ebml_vint(&file[pos + id_len..]);
        (id, pos + id_len + size_len, size)
    };
    let (_, data, size) = header(0);
    let (seg_id, seg_data, _) = header(data + size as usize);
    assert_eq!(seg_id, 0x1853_8067);
    let mut out = Vec::new();
    let mut pos = seg_data;
    while pos < file.len() {
        let (id, data, size) = header(pos);
        let end = data + size as usize;
        out.push((id, pos as u64..end as u64));
        pos = end;
    }
    (seg_data as u64, out)
}
