//! ISO base media files: walk the top-level boxes by their headers, read `moov` whole.

use std::ops::Range;

use crate::{Format, MAX_ELEMENTS, MAX_MOOV, Parsed, ProbeError, Src, Stop, ticks_to_duration};

/// First box types that mark an MP4 without an extension hint.
const KNOWN_FIRST: [&[u8; 4]; 7] = [b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"];

pub(crate) fn sniff(head: &[u8], mp4_hint: bool) -> bool {
    let Some(kind) = head.get(4..8) else { return false };
    let size_ok = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
        0 | 1 => true,
        n => n >= 8,
    };
    size_ok && (KNOWN_FIRST.iter().any(|k| k[..] == *kind) || mp4_hint && kind.iter().all(|b| b.is_ascii_graphic()))
}

struct BoxHeader {
    kind: [u8; 4],
    start: u64,
    body: u64,
    end: u64,
}

/// Decodes the header of the box at `start` from `b` (its first bytes, 8 or more), inside a
/// parent ending at `parent_end`.
fn header(b: &[u8], start: u64, parent_end: u64) -> Result<BoxHeader, ProbeError> {
    let short = || ProbeError::Overrun { at: start };
    let kind: [u8; 4] = b.get(4..8).and_then(|k| k.try_into().ok()).ok_or_else(short)?;
    let (size, body) = match be32(b, 0).ok_or_else(short)? {
        0 => (parent_end.saturating_sub(start), 8),
        1 => (be64(b, 8).ok_or_else(short)?, 16),
        n => (u64::from(n), 8),
    };
    if size < body {
        return Err(ProbeError::BadSize { at: start });
    }
    let end = start.checked_add(size).filter(|e| *e <= parent_end).ok_or(ProbeError::Overrun { at: start })?;
    Ok(BoxHeader { kind, start, body: start + body, end })
}

pub(crate) fn probe(src: &Src<'_>) -> Result<Parsed, Stop> {
    let len = src.len;
    let mut pos = 0;
    let mut moov: Option<Range<u64>> = None;
    let mut mdat: Option<u64> = None;
    let mut visited = 0;
    while pos < len && !(moov.is_some() && mdat.is_some()) {
        visited += 1;
        if visited > MAX_ELEMENTS {
            return Err(ProbeError::TooManyElements.into());
        }
        let b = src.read(pos..pos.saturating_add(16))?;
        if b.len() < 8 {
            break;
        }
        let h = match header(b, pos, len) {
            Ok(h) => h,
            Err(ProbeError::Overrun { .. }) if &b[4..8] != b"moov" => break,
            Err(e) => return Err(e.into()),
        };
        match &h.kind {
            b"moov" if moov.is_none() => moov = Some(h.start..h.end),
            b"mdat" if mdat.is_none() => mdat = Some(h.start),
            _ => {}
        }
        pos = h.end;
    }
    let moov = moov.ok_or(ProbeError::NoMoov)?;
    let size = moov.end - moov.start;
    if size > MAX_MOOV {
        return Err(ProbeError::MoovTooLarge { size }.into());
    }
    let b = src.read(moov.clone())?;
    let duration = movie_duration(b);
    let head_end = mdat.unwrap_or(pos.min(len));
    Ok(Parsed { format: Format::Mp4, critical: vec![0..head_end, moov], duration })
}

/// The duration from `mvhd`, or from `mvex/mehd` for fragmented files whose `mvhd` says 0.
/// Malformed children are ignored: the layout is still worth having without a duration.
fn movie_duration(moov: &[u8]) -> Option<std::time::Duration> {
    let mut timescale = 0;
    let mut ticks = None;
    let mut fragment_ticks = None;
    for (kind, body) in children(moov) {
        match &kind {
            b"mvhd" => {
                if let Some((ts, d)) = mvhd(body) {
                    timescale = ts;
                    ticks = d;
                }
            }
            b"mvex" => {
                fragment_ticks = children(body).find(|(k, _)| k == b"mehd").and_then(|(_, b)| mehd(b));
            }
            _ => {}
        }
    }
    ticks_to_duration(ticks.filter(|t| *t != 0).or(fragment_ticks)?, u64::from(timescale))
}

/// The boxes inside `parent` (a whole box, header included).
fn children(parent: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let parent_end = parent.len() as u64;
    let first = header(parent, 0, parent_end).map_or(parent_end, |h| h.body);
    let mut pos = first;
    let mut visited = 0;
    std::iter::from_fn(move || {
        visited += 1;
        if pos >= parent_end || visited > MAX_ELEMENTS {
            return None;
        }
        let h = header(&parent[pos as usize..], pos, parent_end).ok()?;
        pos = h.end;
        Some((h.kind, &parent[h.start as usize..h.end as usize]))
    })
}

/// (timescale, duration) from a whole `mvhd` box; the duration is `None` when unknown.
fn mvhd(b: &[u8]) -> Option<(u32, Option<u64>)> {
    let h = header(b, 0, b.len() as u64).ok()?;
    let body = &b[h.body as usize..];
    let (ts, d) = match body.first()? {
        0 => (be32(body, 12)?, be32(body, 16).map(|d| (d != u32::MAX).then_some(u64::from(d)))?),
        1 => (be32(body, 20)?, be64(body, 24).map(|d| (d != u64::MAX).then_some(d))?),
        _ => return None,
    };
    Some((ts, d))
}

fn mehd(b: &[u8]) -> Option<u64> {
    let h = header(b, 0, b.len() as u64).ok()?;
    let body = &b[h.body as usize..];
    match body.first()? {
        0 => be32(body, 4).map(u64::from),
        1 => be64(body, 4),
        _ => None,
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
