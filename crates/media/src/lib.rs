//! Container-aware prefetch: which byte ranges of a video file a player reads first, and how
//! many bytes per second of media the file holds.
//!
//! Sluice serves files out of torrents that are still downloading. A player that opens an MP4
//! whose `moov` box sits at the end, or a Matroska file whose Cues sit after the last Cluster,
//! seeks there before it shows a single frame; if those pieces are fetched in file order the
//! player stalls for the whole download. The [`Prober`] finds those ranges so the engine can
//! fetch them first, and the media duration so the read-ahead window can be sized in seconds of
//! media rather than bytes.
//!
//! # Why a sans-IO state machine
//!
//! The prober runs while the file is incomplete, and every byte it looks at is a byte the
//! engine has to download first. So it never gets the file: it says which range it needs next
//! ([`Prober::next_need`]), the caller fetches (or waits for) that range and hands it over
//! ([`Prober::feed`]). The ranges are as small as the formats allow: an MP4 is walked box
//! header by box header (8 or 16 bytes each, jumping over `mdat` without reading it) and only
//! the `moov` box is read whole; a Matroska file is read through its EBML header, Segment head,
//! SeekHead and Info, and the Cues and Tags it points at are located by their element headers
//! alone. The crate does no I/O and reads no clock, so the same code runs against a torrent,
//! an in-memory slice ([`probe_slice`]) or a fuzzer.
//!
//! Internally each step re-runs a plain top-down parser over the bytes fed so far; the parser
//! stops at the first range it does not have. That keeps the parsers readable (no hand-written
//! resume points) and costs little, since the bytes held are small and a parse is a few dozen
//! header decodes.
//!
//! # Bounds
//!
//! Every length in the file is untrusted. The prober asks for at most [`MAX_READS`] ranges; no
//! single range is larger than [`MAX_MOOV`] (the `moov` box) or [`MAX_METADATA`] (Matroska
//! header elements); it keeps at most [`LOOKAHEAD`] bytes beyond each range it asked for when
//! fed more. Walks move strictly forward and are capped at [`MAX_ELEMENTS`] elements. Whatever
//! goes wrong, the answer is a [`Probe`] with [`Format::Unknown`], the head-and-tail ranges
//! and the reason in [`Probe::fallback`]; nothing panics.

mod mkv;
mod mp4;
mod store;

use std::ops::Range;
use std::time::Duration;

use store::Store;

/// Most ranges one probe asks for; past this it falls back to [`Format::Unknown`].
pub const MAX_READS: u32 = 64;
/// Largest `moov` box the prober reads; a bigger one falls back to [`Format::Unknown`].
pub const MAX_MOOV: u64 = 64 << 20;
/// Largest Matroska EBML header, SeekHead or Info element the prober reads.
pub const MAX_METADATA: u64 = 1 << 20;
/// Bytes fed beyond the range asked for that the prober keeps for its next reads.
pub const LOOKAHEAD: u64 = 64 << 10;
/// Most boxes or elements one walk visits.
pub const MAX_ELEMENTS: usize = 1024;
/// For unrecognised files: how much of the head and of the tail is critical.
pub const HEAD_TAIL: u64 = 8 << 20;

/// The container, as far as the prober could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ISO base media file format (MP4, MOV, M4V, 3GP).
    Mp4,
    /// Matroska or WebM.
    Matroska,
    /// Not recognised, or recognised but malformed (see [`Probe::fallback`]).
    Unknown,
}

/// Why a file the prober recognised was treated as [`Format::Unknown`] after all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("box or element at {at} has an invalid size")]
    BadSize { at: u64 },
    #[error("box or element at {at} runs past its parent or the file")]
    Overrun { at: u64 },
    #[error("element at {at} has an unknown size where one is required")]
    UnknownSize { at: u64 },
    #[error("invalid EBML variable-length integer at {at}")]
    BadVint { at: u64 },
    #[error("no moov box among the top-level boxes")]
    NoMoov,
    #[error("moov box of {size} bytes exceeds the limit of {MAX_MOOV}")]
    MoovTooLarge { size: u64 },
    #[error("element at {at} of {size} bytes exceeds the limit of {MAX_METADATA}")]
    MetadataTooLarge { at: u64, size: u64 },
    #[error("EBML document type is not matroska or webm")]
    NotMatroska,
    #[error("no Segment after the EBML header")]
    NoSegment,
    #[error("more than {MAX_ELEMENTS} boxes or elements in one walk")]
    TooManyElements,
    #[error("more than {MAX_READS} reads")]
    TooManyReads,
}

/// What the prober learnt about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub format: Format,
    /// What a player reads before playing, sorted, disjoint, non-adjacent and inside the file:
    /// MP4: the head up to the first `mdat`, and the `moov` box. Matroska: the head up to the
    /// first Cluster, the Cues and Tags, and SeekHeads, Info and Tracks if they lie elsewhere.
    /// Unknown: the first and last [`HEAD_TAIL`] bytes.
    pub critical: Vec<Range<u64>>,
    /// The container's duration, if it states a usable one.
    pub duration: Option<Duration>,
    /// File length over duration, in bytes per second.
    pub bitrate: Option<u64>,
    /// Why a recognised container was given up on; `None` when it parsed, or was never
    /// recognised.
    pub fallback: Option<ProbeError>,
}

impl Probe {
    fn unknown(file_len: u64, fallback: Option<ProbeError>) -> Probe {
        let head = 0..HEAD_TAIL.min(file_len);
        let tail = file_len.saturating_sub(HEAD_TAIL)..file_len;
        Probe { format: Format::Unknown, critical: merge(vec![head, tail]), duration: None, bitrate: None, fallback }
    }
}

/// The prober's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Feed these bytes (never empty, always inside the file).
    Read(Range<u64>),
    Done(Probe),
}

/// Incremental, sans-IO probe of one file; see the crate docs.
#[derive(Debug)]
pub struct Prober {
    file_len: u64,
    mp4_hint: bool,
    store: Store,
    asked: Option<Range<u64>>,
    reads: u32,
    need: Need,
}

impl Prober {
    /// `ext_hint` is the file's extension (without the dot, any case). Magic numbers decide the
    /// format; the hint only lets an MP4-family extension (`mp4`, `mov`, ...) accept a file
    /// whose first box is an unusual but well-formed QuickTime atom.
    pub fn new(file_len: u64, ext_hint: Option<&str>) -> Prober {
        let mp4_hint = ext_hint.is_some_and(|e| {
            ["mp4", "m4v", "m4a", "mov", "qt", "3gp", "3g2", "f4v"].iter().any(|k| e.eq_ignore_ascii_case(k))
        });
        let mut p =
            Prober { file_len, mp4_hint, store: Store::default(), asked: None, reads: 0, need: Need::Read(0..0) };
        p.advance();
        p
    }

    pub fn next_need(&self) -> Need {
        self.need.clone()
    }

    /// Hands over the file's bytes at `offset`. Bytes outside what [`Need::Read`] asked for are
    /// ignored, except up to [`LOOKAHEAD`] bytes past its start, kept to answer later reads. A
    /// feed that covers only part of the range leaves the rest to be asked for.
    pub fn feed(&mut self, offset: u64, bytes: &[u8]) {
        let Need::Read(want) = &self.need else { return };
        let keep_end = want.end.max(want.start.saturating_add(LOOKAHEAD)).min(self.file_len);
        let lo = offset.max(want.start);
        let hi = offset.saturating_add(bytes.len() as u64).min(keep_end);
        if lo >= hi || lo >= want.end {
            return;
        }
        self.store.insert(lo, &bytes[(lo - offset) as usize..(hi - offset) as usize]);
        self.advance();
    }

    /// How many distinct ranges the prober has asked for so far.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    fn advance(&mut self) {
        let src = Src { store: &self.store, len: self.file_len };
        self.need = match run(&src, self.mp4_hint) {
            Ok(probe) => Need::Done(probe),
            Err(Stop::Fail(e)) => Need::Done(Probe::unknown(self.file_len, Some(e))),
            Err(Stop::Need(r)) if self.asked.as_ref() == Some(&r) => Need::Read(self.store.held_until(r.start)..r.end),
            Err(Stop::Need(_)) if self.reads == MAX_READS => {
                Need::Done(Probe::unknown(self.file_len, Some(ProbeError::TooManyReads)))
            }
            Err(Stop::Need(r)) => {
                self.reads += 1;
                self.asked = Some(r.clone());
                Need::Read(self.store.held_until(r.start)..r.end)
            }
        };
    }
}

/// Probes a file held whole in memory.
pub fn probe_slice(file: &[u8]) -> Probe {
    let mut p = Prober::new(file.len() as u64, None);
    loop {
        match p.next_need() {
            Need::Done(probe) => return probe,
            Need::Read(r) => p.feed(r.start, &file[r.start as usize..r.end as usize]),
        }
    }
}

/// What a parser found, before the bitrate and the merge.
pub(crate) struct Parsed {
    format: Format,
    critical: Vec<Range<u64>>,
    duration: Option<Duration>,
}

pub(crate) enum Stop {
    Need(Range<u64>),
    Fail(ProbeError),
}

impl From<ProbeError> for Stop {
    fn from(e: ProbeError) -> Stop {
        Stop::Fail(e)
    }
}

/// The bytes fed so far, as a parser sees them.
pub(crate) struct Src<'a> {
    store: &'a Store,
    len: u64,
}

impl<'a> Src<'a> {
    /// `r` clamped to the file, or the [`Stop::Need`] for it.
    pub(crate) fn read(&self, r: Range<u64>) -> Result<&'a [u8], Stop> {
        let r = r.start.min(self.len)..r.end.min(self.len);
        if r.is_empty() {
            return Ok(&[]);
        }
        self.store.get(&r).ok_or(Stop::Need(r))
    }
}

fn run(src: &Src<'_>, mp4_hint: bool) -> Result<Probe, Stop> {
    let head = src.read(0..16)?;
    let parsed = if mkv::sniff(head) {
        mkv::probe(src)?
    } else if mp4::sniff(head, mp4_hint) {
        mp4::probe(src)?
    } else {
        return Ok(Probe::unknown(src.len, None));
    };
    let bitrate = parsed.duration.and_then(|d| {
        let nanos = d.as_nanos();
        (nanos > 0).then(|| u64::try_from(u128::from(src.len) * 1_000_000_000 / nanos).unwrap_or(u64::MAX))
    });
    Ok(Probe {
        format: parsed.format,
        critical: merge(parsed.critical.into_iter().map(|r| r.start.min(src.len)..r.end.min(src.len)).collect()),
        duration: parsed.duration,
        bitrate,
        fallback: None,
    })
}

/// Sorted, disjoint, non-adjacent, non-empty.
fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `ticks` at `per_sec` ticks a second; `None` for a zero rate or zero ticks.
pub(crate) fn ticks_to_duration(ticks: u64, per_sec: u64) -> Option<Duration> {
    if ticks == 0 || per_sec == 0 {
        return None;
    }
    let secs = ticks / per_sec;
    let nanos = u128::from(ticks % per_sec) * 1_000_000_000 / u128::from(per_sec);
    Some(Duration::new(secs, nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_coalesces_overlapping_and_adjacent() {
        assert_eq!(merge(vec![10..20, 0..5, 5..7, 15..30, 40..40, 31..32]), vec![0..7, 10..30, 31..32]);
    }

    #[test]
    fn unknown_is_head_and_tail_clamped() {
        assert_eq!(Probe::unknown(100, None).critical, vec![0..100]);
        assert_eq!(Probe::unknown(0, None).critical, Vec::<Range<u64>>::new());
        let big = 100 << 20;
        assert_eq!(Probe::unknown(big, None).critical, vec![0..HEAD_TAIL, big - HEAD_TAIL..big]);
    }

    #[test]
    fn empty_file_is_done_at_once() {
        let p = Prober::new(0, Some("mkv"));
        assert_eq!(p.next_need(), Need::Done(Probe::unknown(0, None)));
    }

    #[test]
    fn ticks_convert_exactly() {
        assert_eq!(ticks_to_duration(3 * 1000 + 500, 1000), Some(Duration::from_millis(3500)));
        assert_eq!(ticks_to_duration(5, 0), None);
        assert_eq!(ticks_to_duration(u64::MAX, 1), Some(Duration::from_secs(u64::MAX)));
    }
}
