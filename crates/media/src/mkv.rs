//! Matroska and WebM: the EBML header, the Segment's head up to the first Cluster, the
//! SeekHead(s) and Info are read; the Cues and Tags are located by their headers, never read.
//! Players read every SeekHead too, so one found elsewhere (a second one at the end) is
//! critical as well.

use std::ops::Range;
use std::time::Duration;

use crate::{Format, MAX_ELEMENTS, MAX_METADATA, Parsed, ProbeError, Src, Stop};

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const CUES: u32 = 0x1C53_BB6B;
const TAGS: u32 = 0x1254_C367;
const CLUSTER: u32 = 0x1F43_B675;
const VOID: u32 = 0xEC;

/// Most SeekHeads followed (the first one may point at a second, usually at the end).
const MAX_SEEK_HEADS: usize = 4;
/// Most Seek entries kept over all SeekHeads (ffmpeg writes five or six).
const MAX_SEEKS: usize = 64;
/// Longest element header: a 4-byte ID and an 8-byte size.
const MAX_HEADER: u64 = 12;

pub(crate) fn sniff(head: &[u8]) -> bool {
    head.starts_with(&EBML.to_be_bytes())
}

struct Element {
    id: u32,
    start: u64,
    data: u64,
    /// `None` for the "unknown size" encoding.
    end: Option<u64>,
}

impl Element {
    fn sized_end(&self) -> Result<u64, ProbeError> {
        self.end.ok_or(ProbeError::UnknownSize { at: self.start })
    }
}

/// An EBML variable-length integer at the start of `b`: (value with the length marker kept,
/// value with it removed, length).
fn vint(b: &[u8], max_len: usize, at: u64) -> Result<(u64, u64, usize), ProbeError> {
    let first = *b.first().ok_or(ProbeError::Overrun { at })?;
    let n = first.leading_zeros() as usize + 1;
    if n > max_len {
        return Err(ProbeError::BadVint { at });
    }
    let bytes = b.get(..n).ok_or(ProbeError::Overrun { at })?;
    let raw = bytes.iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x));
    let marker = 1u64 << (7 * n);
    Ok((raw, raw & (marker - 1), n))
}

/// Decodes the element header at `start` from `b` (its first bytes), inside a parent ending at
/// `parent_end`.
fn element(b: &[u8], start: u64, parent_end: u64) -> Result<Element, ProbeError> {
    let (id, _, id_len) = vint(b, 4, start)?;
    let (_, size, size_len) = vint(&b[id_len..], 8, start)?;
    let data = start + (id_len + size_len) as u64;
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    let end = if unknown {
        None
    } else {
        Some(data.checked_add(size).filter(|e| *e <= parent_end).ok_or(ProbeError::Overrun { at: start })?)
    };
    if data > parent_end {
        return Err(ProbeError::Overrun { at: start });
    }
    Ok(Element { id: id as u32, start, data, end })
}

fn element_at(src: &Src<'_>, at: u64, parent_end: u64) -> Result<Element, Stop> {
    let b = src.read(at..parent_end.min(at.saturating_add(MAX_HEADER)))?;
    Ok(element(b, at, parent_end)?)
}

/// An element's payload, read whole; it must have a size no larger than [`MAX_METADATA`].
fn payload<'a>(src: &Src<'a>, e: &Element) -> Result<&'a [u8], Stop> {
    let end = e.sized_end()?;
    if end - e.start > MAX_METADATA {
        return Err(ProbeError::MetadataTooLarge { at: e.start, size: end - e.start }.into());
    }
    src.read(e.data..end)
}

/// The children of a payload held in memory. Malformed children end the iteration: inside
/// metadata we keep what parsed.
fn children(b: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let len = b.len() as u64;
    let mut pos = 0;
    let mut visited = 0;
    std::iter::from_fn(move || {
        visited += 1;
        if pos >= len || visited > MAX_ELEMENTS {
            return None;
        }
        let e = element(&b[pos as usize..], pos, len).ok()?;
        let end = e.end?;
        pos = end;
        Some((e.id, &b[e.data as usize..end as usize]))
    })
}

fn uint(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x)))
}

/// (ID, position relative to the Segment's data) for every Seek entry.
fn seek_entries(b: &[u8]) -> impl Iterator<Item = (u32, u64)> {
    children(b).filter(|(id, _)| *id == SEEK).filter_map(|(_, seek)| {
        let mut id = None;
        let mut pos = None;
        for (child, v) in children(seek).take(8) {
            match child {
                SEEK_ID if v.len() <= 4 => id = uint(v).map(|x| x as u32),
                SEEK_POSITION => pos = uint(v),
                _ => {}
            }
        }
        Some((id?, pos?))
    })
}

fn info_duration(b: &[u8]) -> Option<Duration> {
    let mut scale = 1_000_000u64;
    let mut ticks = None;
    for (id, v) in children(b) {
        match id {
            TIMESTAMP_SCALE => scale = uint(v).filter(|s| *s > 0)?,
            DURATION => {
                ticks = match v.len() {
                    4 => Some(f64::from(f32::from_be_bytes(v.try_into().ok()?))),
                    8 => Some(f64::from_be_bytes(v.try_into().ok()?)),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    let secs = ticks? * scale as f64 / 1e9;
    (secs.is_finite() && secs > 0.0).then(|| Duration::try_from_secs_f64(secs).ok()).flatten()
}

/// Reads a Stop::Fail as "nothing here": for elements the SeekHead points at, a bad pointer
/// loses that element, not the probe.
fn lenient<T>(r: Result<T, Stop>) -> Result<Option<T>, Stop> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Stop::Fail(_)) => Ok(None),
        Err(need) => Err(need),
    }
}

#[derive(Default)]
struct Layout {
    seek_heads: Vec<Range<u64>>,
    seeks: Vec<(u32, u64)>,
    info: Option<Range<u64>>,
    duration: Option<Duration>,
    tracks: Option<Range<u64>>,
    cues: Vec<Range<u64>>,
    tags: Vec<Range<u64>>,
}

impl Layout {
    /// Takes note of a level-1 element, reading it if it is a SeekHead or Info.
    fn visit(&mut self, src: &Src<'_>, e: &Element) -> Result<(), Stop> {
        let range = e.start..e.sized_end()?;
        match e.id {
            SEEK_HEAD if !self.seek_heads.contains(&range) => {
                self.seek_heads.push(range);
                let b = payload(src, e)?;
                for entry in seek_entries(b) {
                    if self.seeks.len() < MAX_SEEKS && !self.seeks.contains(&entry) {
                        self.seeks.push(entry);
                    }
                }
            }
            INFO if self.info.is_none() => {
                self.duration = info_duration(payload(src, e)?);
                self.info = Some(range);
            }
            TRACKS if self.tracks.is_none() => self.tracks = Some(range),
            CUES if !self.cues.contains(&range) => self.cues.push(range),
            TAGS if !self.tags.contains(&range) => self.tags.push(range),
            _ => {}
        }
        Ok(())
    }

    fn seen(&self, id: u32, at: u64) -> bool {
        match id {
            SEEK_HEAD => self.seek_heads.iter().any(|r| r.start == at) || self.seek_heads.len() >= MAX_SEEK_HEADS,
            INFO => self.info.is_some(),
            TRACKS => self.tracks.is_some(),
            CUES => self.cues.iter().any(|r| r.start == at),
            TAGS => self.tags.iter().any(|r| r.start == at),
            _ => true,
        }
    }
}

pub(crate) fn probe(src: &Src<'_>) -> Result<Parsed, Stop> {
    let len = src.len;
    let ebml = element_at(src, 0, len)?;
    for (id, v) in children(payload(src, &ebml)?) {
        if id == DOC_TYPE && !matches!(v.split(|b| *b == 0).next(), Some(b"matroska" | b"webm")) {
            return Err(ProbeError::NotMatroska.into());
        }
    }

    let mut pos = ebml.sized_end()?;
    let mut visited = 0;
    let segment = loop {
        visited += 1;
        if pos >= len || visited > MAX_ELEMENTS {
            return Err(ProbeError::NoSegment.into());
        }
        let e = element_at(src, pos, len)?;
        match e.id {
            SEGMENT => break e,
            VOID => pos = e.sized_end()?,
            _ => return Err(ProbeError::NoSegment.into()),
        }
    };
    let seg_start = segment.data;
    let seg_end = segment.end.unwrap_or(len);

    let mut layout = Layout::default();
    let mut pos = seg_start;
    visited = 0;
    while pos < seg_end {
        visited += 1;
        if visited > MAX_ELEMENTS {
            return Err(ProbeError::TooManyElements.into());
        }
        let e = element_at(src, pos, seg_end)?;
        if e.id == CLUSTER {
            break;
        }
        layout.visit(src, &e)?;
        pos = e.sized_end()?;
    }
    let head_end = pos.min(seg_end);

    // The list grows while we walk it when a SeekHead points at another one.
    let mut i = 0;
    while let Some(&(id, rel)) = layout.seeks.get(i) {
        i += 1;
        let Some(at) = seg_start.checked_add(rel).filter(|at| *at < seg_end) else { continue };
        if layout.seen(id, at) {
            continue;
        }
        let Some(e) = lenient(element_at(src, at, seg_end))? else { continue };
        if e.id == id {
            lenient(layout.visit(src, &e))?;
        }
    }

    let critical = std::iter::once(0..head_end)
        .chain(layout.seek_heads)
        .chain(layout.info)
        .chain(layout.tracks)
        .chain(layout.cues)
        .chain(layout.tags)
        .collect();
    Ok(Parsed { format: Format::Matroska, critical, duration: layout.duration })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints_decode_and_reject() {
        assert_eq!(vint(&[0x81], 8, 0), Ok((0x81, 1, 1)));
        assert_eq!(vint(&[0x40, 0x02], 8, 0), Ok((0x4002, 2, 2)));
        assert_eq!(vint(&[0x1A, 0x45, 0xDF, 0xA3], 4, 0), Ok((EBML as u64, 0x0A45_DFA3, 4)));
        assert_eq!(vint(&[0x00, 1, 2, 3, 4, 5, 6, 7, 8], 8, 0), Err(ProbeError::BadVint { at: 0 }));
        assert_eq!(vint(&[0x08, 1, 2, 3], 4, 0), Err(ProbeError::BadVint { at: 0 }));
        assert_eq!(vint(&[0x40], 8, 7), Err(ProbeError::Overrun { at: 7 }));
    }

    #[test]
    fn unknown_size_is_recognised() {
        let e = element(&[0x1F, 0x43, 0xB6, 0x75, 0xFF], 0, 100).unwrap();
        assert_eq!((e.id, e.data, e.end), (CLUSTER, 5, None));
        let e = element(&[0xEC, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 0, 100).unwrap();
        assert_eq!(e.end, None);
    }
}
