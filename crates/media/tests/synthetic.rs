//! Hand-built files for the layouts and failures ffmpeg does not produce.

mod common;

use std::time::Duration;

use common::{drive, drive_with};
use sluice_media::{Format, HEAD_TAIL, MAX_MOOV, Need, ProbeError, Prober, probe_slice};

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn ftyp() -> Vec<u8> {
    mp4_box(b"ftyp", b"isom\0\0\x02\0isomiso2")
}

fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
    let mut body = vec![0; 100];
    body[12..16].copy_from_slice(&timescale.to_be_bytes());
    body[16..20].copy_from_slice(&duration.to_be_bytes());
    mp4_box(b"mvhd", &body)
}

fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
    let mut body = vec![0; 112];
    body[0] = 1;
    body[20..24].copy_from_slice(&timescale.to_be_bytes());
    body[24..32].copy_from_slice(&duration.to_be_bytes());
    mp4_box(b"mvhd", &body)
}

#[test]
fn mp4_duration_from_mvhd_v0_and_v1_and_mehd() {
    let moov = mp4_box(b"moov", &mvhd_v0(600, 600 * 90));
    let file = [ftyp(), mp4_box(b"mdat", &[7; 5000]), moov].concat();
    let p = probe_slice(&file);
    assert_eq!(p.duration, Some(Duration::from_secs(90)));
    assert_eq!(p.bitrate, Some(file.len() as u64 / 90));

    let moov = mp4_box(b"moov", &mvhd_v1(1000, 12_345));
    let p = probe_slice(&[ftyp(), moov, mp4_box(b"mdat", &[1; 100])].concat());
    assert_eq!(p.duration, Some(Duration::from_millis(12_345)));

    let mut mehd = vec![1, 0, 0, 0];
    mehd.extend_from_slice(&7_000u64.to_be_bytes());
    let mvex = mp4_box(b"mvex", &mp4_box(b"mehd", &mehd));
    let moov = mp4_box(b"moov", &[mvhd_v0(1000, 0), mvex].concat());
    let p = probe_slice(&[ftyp(), moov, mp4_box(b"moof", &[0; 20]), mp4_box(b"mdat", &[1; 100])].concat());
    assert_eq!((p.format, p.duration), (Format::Mp4, Some(Duration::from_secs(7))));
}

#[test]
fn mp4_without_a_usable_duration_still_has_its_layout() {
    let moov = mp4_box(b"moov", &[mvhd_v0(0, 100), mp4_box(b"trak", &[0; 30])].concat());
    let file = [ftyp(), mp4_box(b"mdat", &[0; 64]), moov].concat();
    let p = probe_slice(&file);
    assert_eq!((p.format, p.duration, p.bitrate), (Format::Mp4, None, None));
    assert_eq!(p.critical, vec![0..ftyp().len() as u64, ftyp().len() as u64 + 72..file.len() as u64]);
}

#[test]
fn huge_moov_falls_back_after_a_few_header_reads() {
    const { assert!(4u64 << 30 > MAX_MOOV) };
    let len = 5u64 << 30;
    let mut head = ftyp();
    head.extend_from_slice(&1u32.to_be_bytes());
    head.extend_from_slice(b"moov");
    head.extend_from_slice(&(4u64 << 30).to_be_bytes());
    let run = drive_with(len, Some("mp4"), None, |r| {
        (r.start..r.end).map(|i| head.get(i as usize).copied().unwrap_or(0)).collect()
    });
    assert_eq!(run.probe.format, Format::Unknown);
    assert_eq!(run.probe.fallback, Some(ProbeError::MoovTooLarge { size: 4 << 30 }));
    assert_eq!(run.probe.critical, vec![0..HEAD_TAIL, len - HEAD_TAIL..len]);
    assert!(run.bytes_asked() < 64, "{:?}", run.needs);
}

#[test]
fn broken_mp4s_fall_back_with_a_reason() {
    let overrun = [ftyp(), 1000u32.to_be_bytes().to_vec(), b"moov".to_vec(), vec![0; 10]].concat();
    assert_eq!(probe_slice(&overrun).fallback, Some(ProbeError::Overrun { at: 24 }));

    let no_moov = [ftyp(), 0u32.to_be_bytes().to_vec(), b"mdat".to_vec(), vec![0; 100]].concat();
    assert_eq!(probe_slice(&no_moov).fallback, Some(ProbeError::NoMoov));

    let tiny = [ftyp(), 3u32.to_be_bytes().to_vec(), b"moov".to_vec()].concat();
    assert_eq!(probe_slice(&tiny).fallback, Some(ProbeError::BadSize { at: 24 }));

    let many = [ftyp(), mp4_box(b"free", &[]).repeat(2000)].concat();
    let exact = drive(&many, None, None);
    assert_eq!(exact.probe.fallback, Some(ProbeError::TooManyReads), "exact reads: one per box");
    assert_eq!(exact.reads, sluice_media::MAX_READS);
    let fed_whole = drive(&many, None, Some(1 << 20)).probe;
    assert_eq!(fed_whole.fallback, Some(ProbeError::TooManyElements), "lookahead: the walk cap");

    let mut p = Prober::new(1 << 30, None);
    p.feed(0, &ftyp());
    for i in 0.. {
        match p.next_need() {
            Need::Read(r) => p.feed(r.start, &mp4_box(b"free", &[0; 8 << 10])[..(r.end - r.start) as usize]),
            Need::Done(probe) => {
                assert_eq!(probe.fallback, Some(ProbeError::TooManyReads));
                assert_eq!(i, sluice_media::MAX_READS - 1, "the first read was fed before asking");
                break;
            }
        }
    }
}

#[test]
fn large_moov_fed_in_small_pieces() {
    let moov = mp4_box(b"moov", &[mvhd_v0(1000, 60_000), mp4_box(b"free", &vec![0; 40 << 20])].concat());
    let file = [ftyp(), mp4_box(b"mdat", &[0; 1000]), moov].concat();
    let mut p = Prober::new(file.len() as u64, None);
    let mut feeds = 0;
    while let Need::Read(r) = p.next_need() {
        let end = r.end.min(r.start + (16 << 10));
        p.feed(r.start, &file[r.start as usize..end as usize]);
        feeds += 1;
    }
    let Need::Done(probe) = p.next_need() else { unreachable!() };
    assert_eq!((probe.format, probe.duration), (Format::Mp4, Some(Duration::from_secs(60))));
    assert!(feeds > 2560 && p.reads() < 8, "{feeds} feeds, {} reads", p.reads());
}

#[test]
fn extension_hint_admits_quicktime_first_atoms() {
    let file = [mp4_box(b"PICT", &[0; 40]), mp4_box(b"mdat", &[0; 10]), mp4_box(b"moov", &mvhd_v0(10, 50))].concat();
    let mut p = Prober::new(file.len() as u64, Some("MOV"));
    while let Need::Read(r) = p.next_need() {
        p.feed(r.start, &file[r.start as usize..r.end as usize]);
    }
    let Need::Done(with_hint) = p.next_need() else { unreachable!() };
    assert_eq!((with_hint.format, with_hint.duration), (Format::Mp4, Some(Duration::from_secs(5))));
    assert_eq!(drive(&file, Some("bin"), None).probe.format, Format::Unknown);
}

#[test]
fn feeds_of_any_shape_give_the_same_answer() {
    let file =
        [ftyp(), mp4_box(b"free", &[0; 30]), mp4_box(b"mdat", &[9; 3000]), mp4_box(b"moov", &mvhd_v0(1, 2))].concat();
    let exact = probe_slice(&file);
    let mut p = Prober::new(file.len() as u64, None);
    let mut feeds = 0;
    while let Need::Read(r) = p.next_need() {
        feeds += 1;
        p.feed(r.start + 1_000_000, &[1, 2, 3]);
        assert_eq!(p.next_need(), Need::Read(r.clone()), "bytes elsewhere change nothing");
        p.feed(r.start, &file[r.start as usize..r.start as usize + 1]);
    }
    assert_eq!(p.next_need(), Need::Done(exact.clone()));
    assert!(feeds > 100, "one byte at a time");
    assert_eq!(drive(&file, None, Some(7)).probe, exact);
    assert_eq!(drive(&file, None, Some(1 << 20)).probe, exact);
}

// Matroska, with 8-byte sizes everywhere.

fn el(id: u32, body: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = id.to_be_bytes().into_iter().skip_while(|x| *x == 0).collect();
    b.push(0x01);
    b.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    b.extend_from_slice(body);
    b
}

fn uint_el(id: u32, v: u64) -> Vec<u8> {
    el(id, &v.to_be_bytes())
}

fn seek(id: u32, pos: u64) -> Vec<u8> {
    el(0x4DBB, &[el(0x53AB, &id.to_be_bytes()), uint_el(0x53AC, pos)].concat())
}

fn ebml_header(doc_type: &str) -> Vec<u8> {
    el(0x1A45_DFA3, &[uint_el(0x4286, 1), el(0x4282, doc_type.as_bytes())].concat())
}

const SEEK_HEAD: u32 = 0x114D_9B74;
const INFO: u32 = 0x1549_A966;
const TRACKS: u32 = 0x1654_AE6B;
const CUES: u32 = 0x1C53_BB6B;
const TAGS: u32 = 0x1254_C367;
const CLUSTER: u32 = 0x1F43_B675;

/// A Segment of unknown size whose first SeekHead points at Info, Cues, a bogus Tags and a
/// second SeekHead at the end that points at the real Tags.
fn matroska(doc_type: &str) -> (Vec<u8>, [std::ops::Range<u64>; 3]) {
    let info = el(INFO, &[uint_el(0x2A_D7B1, 1_000_000), el(0x4489, &2500.0f32.to_be_bytes())].concat());
    let tracks = el(TRACKS, &[0; 40]);
    let clusters = [el(CLUSTER, &[0; 3000]), el(CLUSTER, &[0; 3000])].concat();
    let cues = el(CUES, &[0; 200]);
    let tags = el(TAGS, &[0; 50]);
    let seek_head_len = el(SEEK_HEAD, &seek(0, 0).repeat(4)).len() as u64;
    let info_at = seek_head_len;
    let cues_at = info_at + (info.len() + tracks.len() + clusters.len()) as u64;
    let second_at = cues_at + cues.len() as u64;
    let second = el(SEEK_HEAD, &seek(TAGS, 0));
    let tags_at = second_at + second.len() as u64;
    let second = el(SEEK_HEAD, &seek(TAGS, tags_at));
    let first =
        el(SEEK_HEAD, &[seek(INFO, info_at), seek(CUES, cues_at), seek(TAGS, 3), seek(SEEK_HEAD, second_at)].concat());
    assert_eq!(first.len() as u64, seek_head_len);
    let mut file = ebml_header(doc_type);
    file.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    let seg = file.len() as u64;
    let first_cluster = seg + cues_at - clusters.len() as u64;
    file.extend([first, info, tracks, clusters, cues.clone(), second, tags.clone()].concat());
    let cues_range = seg + cues_at..seg + cues_at + cues.len() as u64;
    let tags_range = seg + tags_at..seg + tags_at + tags.len() as u64;
    (file, [0..first_cluster, cues_range, tags_range])
}

#[test]
fn matroska_follows_seek_heads_to_cues_and_tags() {
    let (file, [head, cues, tags]) = matroska("webm");
    let run = drive(&file, Some("webm"), None);
    let p = &run.probe;
    assert_eq!((p.format, &p.fallback), (Format::Matroska, &None));
    assert_eq!(p.critical, vec![head.clone(), cues.start..tags.end], "the second SeekHead between them too");
    assert_eq!(p.duration, Some(Duration::from_millis(2500)));
    assert!(run.bytes_asked() < head.end + 100, "{:?}", run.needs);
    assert_eq!(drive(&file, None, Some(100)).probe, run.probe);
}

#[test]
fn broken_matroska_falls_back_with_a_reason() {
    let (file, _) = matroska("avi");
    assert_eq!(probe_slice(&file).fallback, Some(ProbeError::NotMatroska));

    let no_segment = [ebml_header("matroska"), el(TRACKS, &[])].concat();
    assert_eq!(probe_slice(&no_segment).fallback, Some(ProbeError::NoSegment));

    let huge_info = [ebml_header("matroska"), el(0x1853_8067, &el(INFO, &vec![0; 2 << 20]))].concat();
    assert!(matches!(probe_slice(&huge_info).fallback, Some(ProbeError::MetadataTooLarge { .. })));

    let bad_vint = [ebml_header("matroska"), vec![0x18, 0x53, 0x80, 0x67, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]].concat();
    assert!(matches!(probe_slice(&bad_vint).fallback, Some(ProbeError::BadVint { .. })));

    let unknown_tracks = [ebml_header("matroska"), el(0x1853_8067, &[0x16, 0x54, 0xAE, 0x6B, 0xFF, 0, 0])].concat();
    assert!(matches!(probe_slice(&unknown_tracks).fallback, Some(ProbeError::UnknownSize { .. })));
}
