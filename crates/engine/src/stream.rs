//! Streaming readers: each open reader's playhead becomes piece priorities and deadlines.
//!
//! # Why
//!
//! A player reading a file while it downloads needs the bytes under its playhead now, the
//! next ones soon, and enough beyond to ride out a slow patch; the rest can wait. So every
//! reader *demands* tiers for a window of pieces starting at its playhead:
//!
//! | pieces                                        | tier        |
//! |-----------------------------------------------|-------------|
//! | the one under the playhead                    | `Now`       |
//! | the next one (more during a seek boost)       | `Next`      |
//! | up to `stream_window` of media ahead          | `Readahead` |
//! | the same length again                         | `High`      |
//! | protected ranges (container index, ...)       | `High`      |
//!
//! A piece's effective tier is the highest of its *base* priority (what the user set with
//! `Torrent::set_priority`, `Normal` by default) and every reader's demand; its deadline is
//! the earliest. Pieces no reader demands keep their base priority: in a plain download the
//! rest of the file is `Normal` and follows the windows, and a file set to `Skip` is only
//! fetched as far as readers' windows reach. Streaming tiers always win over the base.
//!
//! # Window size
//!
//! `stream_window` of media (30 s) at the reader's rate, clamped to
//! [`stream_window_min` (at least two pieces), `stream_window_max`]. The rate is the larger
//! of the bitrate the caller gives (from the container: size over duration; else
//! `stream_default_bitrate`) and the rate the playhead was measured to advance at over the
//! last [`MEASURE_SPAN`] or more. For [`BOOST_TIME`] after an open, a seek or a wake-up the
//! `Next` tier stretches over [`BOOST_MEDIA`] of media: the player refills its buffer there
//! before it plays again.
//!
//! A reader that opens or jumps onto a piece already verified is *held* to that piece for
//! [`HOLD_TIME`], or until it reads into another piece: players probe a file's head and index
//! on short connections before they seek, and a probe's window would fill the peers' queues
//! just before the player asks for the pieces it is really waiting on. A reader on a missing
//! piece gets its whole window at once.
//!
//! # Deadlines
//!
//! Each reader keeps a *timeline* `(t0, pos0, rate)`: the piece starting at byte `b` is due at
//! `t0 + (b - pos0) / rate` (the piece under `pos0` at `t0`). The picker serves a tier by
//! earliest deadline, so the window fills in order, and readers in the same tier interleave
//! by urgency (earliest deadline first) rather than one starving the other. The timeline is
//! only re-based (every window piece touched) on a jump out of the window, on a rate change
//! over a quarter, or when the playhead strays half a window from it.
//!
//! # Cost
//!
//! A window is five boundaries; a move that keeps the timeline touches only the pieces
//! between each old boundary and its new position, so moving within a piece touches none and
//! moving by k pieces touches at most 5k. A jump out of the window touches the old and the
//! new window. Nothing is ever done per piece of the file.
//!
//! # Many readers
//!
//! Windows combine by maximum, so two readers at nearly the same offset share one window
//! (the union differs from one window by their distance) and no block is fetched twice. A
//! reader with no read for `reader_idle_timeout` while another reader of the torrent read
//! meanwhile goes dormant (its window is released; its protected ranges stay) and wakes on
//! its next read. A closed reader releases everything at once.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use sluice_core::{Bitfield, ByteOffset, Lengths, PieceIndex, Timestamp};

use crate::{Config, Priority};

/// A streaming reader of one torrent, from `Torrent::open_reader`. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReaderId(pub u64);

/// A reader's current demand, as piece index ranges (for diagnostics and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderWindow {
    pub now: Range<u32>,
    pub next: Range<u32>,
    pub readahead: Range<u32>,
    pub high: Range<u32>,
    /// Readahead length in bytes (before the file's end cuts it).
    pub window_bytes: u64,
    pub dormant: bool,
}

/// The consumption rate is measured over at least this much time.
pub const MEASURE_SPAN: Duration = Duration::from_secs(10);
/// How long after an open, seek or wake-up the `Next` tier is stretched.
pub const BOOST_TIME: Duration = Duration::from_secs(5);
/// Media the stretched `Next` tier covers.
pub const BOOST_MEDIA: Duration = Duration::from_secs(4);
/// A reader that opens or jumps onto a verified piece demands nothing beyond it for this long
/// (unless it reads on into another piece): players probe a file's head and index on short
/// connections before they seek, and the window such a probe would fetch delays the pieces
/// the player asks for next.
pub const HOLD_TIME: Duration = Duration::from_millis(250);
/// The timeline is re-based when the rate moves by more than 1/RATE_SLACK.
const RATE_SLACK: u64 = 4;

/// Five boundaries `b`: `Now` is `b[0]..b[1]`, `Next` `b[1]..b[2]`, `Readahead` `b[2]..b[3]`,
/// `High` `b[3]..b[4]`. Empty when `b[0] == b[4]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    b: [u32; 5],
}

const WINDOW_TIERS: [Priority; 4] = [Priority::Now, Priority::Next, Priority::Readahead, Priority::High];

impl Window {
    fn is_empty(&self) -> bool {
        self.b[0] == self.b[4]
    }

    fn span(&self) -> Range<u32> {
        self.b[0]..self.b[4]
    }

    pub(crate) fn tier(&self, piece: u32) -> Option<Priority> {
        (0..4).find(|&i| self.b[i] <= piece && piece < self.b[i + 1]).map(|i| WINDOW_TIERS[i])
    }

    /// The `Now` and `Next` pieces.
    pub(crate) fn urgent(&self) -> Range<u32> {
        self.b[0]..self.b[2]
    }

    /// The same window cut to its `Now` piece.
    fn now_only(self) -> Self {
        let [now, next, ..] = self.b;
        Window { b: [now, next, next, next, next] }
    }
}

/// Piece ranges whose tier may differ between windows `old` and `new`: O(pieces moved).
pub(crate) fn diff(old: &Window, new: &Window) -> Vec<Range<u32>> {
    if old.is_empty() || new.is_empty() || new.b[0] >= old.b[4] || old.b[0] >= new.b[4] {
        return [old.span(), new.span()].into_iter().filter(|r| !r.is_empty()).collect();
    }
    // A piece in the same zone of both windows keeps its tier; any other piece lies between
    // some boundary's old and new position.
    (0..5).map(|i| old.b[i].min(new.b[i])..old.b[i].max(new.b[i])).filter(|r| !r.is_empty()).collect()
}

/// Where a reader's deadlines come from: the byte at `pos` is due at `at`, later bytes at
/// `rate` bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timeline {
    at: Timestamp,
    pos: u64,
    rate: u64,
}

impl Timeline {
    fn deadline(&self, byte: u64) -> Timestamp {
        let ahead = byte.saturating_sub(self.pos);
        self.at + Duration::from_micros(((u128::from(ahead) * 1_000_000) / u128::from(self.rate.max(1))) as u64)
    }

    /// Where the timeline expects the playhead at `now`.
    fn expected_pos(&self, now: Timestamp) -> u64 {
        let dt = now.saturating_since(self.at).as_micros();
        self.pos.saturating_add((dt * u128::from(self.rate) / 1_000_000) as u64)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamConfig {
    window: Duration,
    min: u64,
    max: u64,
    default_bitrate: u64,
    idle: Duration,
}

impl StreamConfig {
    pub(crate) fn new(c: &Config) -> Self {
        Self {
            window: c.stream_window,
            min: c.stream_window_min,
            max: c.stream_window_max,
            default_bitrate: c.stream_default_bitrate.max(1),
            idle: c.reader_idle_timeout,
        }
    }
}

fn bytes_in(rate: u64, d: Duration) -> u64 {
    u64::try_from(u128::from(rate) * d.as_micros() / 1_000_000).unwrap_or(u64::MAX)
}

/// Readahead bytes for `rate`, clamped (the floor raised to two pieces).
pub(crate) fn window_bytes(cfg: &StreamConfig, rate: u64, piece_length: u32) -> u64 {
    let lo = cfg.min.max(2 * u64::from(piece_length));
    let hi = cfg.max.max(lo);
    bytes_in(rate, cfg.window).clamp(lo, hi)
}

/// The window of a playhead at absolute byte `pos` of `file`: `Next` reaches `next_bytes`
/// ahead (at least one piece), `Readahead` `window` bytes and `High` as much again, all cut at
/// the file's end. Empty at or past the end of the file.
pub(crate) fn layout(lengths: &Lengths, file: &Range<u64>, pos: u64, window: u64, next_bytes: u64) -> Window {
    if pos >= file.end || pos < file.start {
        return Window::default();
    }
    let piece_of = |b: u64| lengths.piece_at(ByteOffset(b)).map_or(lengths.num_pieces(), PieceIndex::get);
    let last = piece_of(file.end - 1) + 1;
    // One past the piece holding the last byte of `pos..pos + len`.
    let reach = |len: u64| piece_of(pos.saturating_add(len).min(file.end).max(pos + 1) - 1) + 1;
    let now = piece_of(pos);
    let b1 = now + 1;
    let b2 = reach(next_bytes).max(b1 + 1).min(last);
    let b3 = reach(window).max(b2);
    let b4 = reach(window.saturating_mul(2)).max(b3);
    Window { b: [now, b1, b2, b3, b4] }
}

#[derive(Clone, Debug)]
struct Reader {
    /// The file's byte range in the content stream.
    file: Range<u64>,
    /// Absolute playhead.
    pos: u64,
    bitrate: Option<u64>,
    measured: Option<u64>,
    /// Start of the current consumption measurement.
    anchor: (Timestamp, u64),
    last_read: Timestamp,
    boost_until: Timestamp,
    /// Until then the window is the `Now` piece only (see [`HOLD_TIME`]).
    hold_until: Option<Timestamp>,
    dormant: bool,
    timeline: Timeline,
    /// The window applied to the pieces' priorities.
    window: Window,
    window_bytes: u64,
    /// Protected pieces, sorted and disjoint.
    protected: Vec<Range<u32>>,
}

impl Reader {
    fn rate(&self, cfg: &StreamConfig) -> u64 {
        self.bitrate.unwrap_or(cfg.default_bitrate).max(self.measured.unwrap_or(0)).max(1)
    }

    fn demand(&self, piece: u32, lengths: &Lengths) -> Option<(Priority, Option<Timestamp>)> {
        if let Some(tier) = self.window.tier(piece) {
            let start = lengths.piece_start(PieceIndex::new_unchecked(piece)).0;
            return Some((tier, Some(self.timeline.deadline(start))));
        }
        self.protects(piece).then_some((Priority::High, None))
    }

    /// Awake, with the piece under its playhead not verified: its player waits on us.
    fn is_waiting(&self, have: &Bitfield) -> bool {
        !self.window.is_empty() && !have.get(PieceIndex::new_unchecked(self.window.b[0]))
    }

    /// Awake with a window whose first piece is there: sleeping would release something and
    /// keep nobody waiting.
    fn can_sleep(&self, have: &Bitfield) -> bool {
        !self.window.is_empty() && have.get(PieceIndex::new_unchecked(self.window.b[0]))
    }

    fn protects(&self, piece: u32) -> bool {
        let i = self.protected.partition_point(|r| r.end <= piece);
        self.protected.get(i).is_some_and(|r| r.start <= piece)
    }
}

/// What a change to the readers asks of the engine.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// Pieces whose effective tier or deadline may have changed (ranges may overlap).
    pub touched: Vec<Range<u32>>,
    /// A reader jumped (open, seek out of its window, wake-up) or closed: requests for pieces
    /// no reader needs any more should be cancelled.
    pub jumped: bool,
}

/// Every reader of one torrent, and the user's base priorities and deadlines.
#[derive(Debug)]
pub(crate) struct Streams {
    lengths: Lengths,
    cfg: StreamConfig,
    base: Vec<Priority>,
    base_deadlines: BTreeMap<PieceIndex, Timestamp>,
    readers: BTreeMap<ReaderId, Reader>,
    next_id: u64,
    /// When the next reader may go dormant (cached for `poll_timeout`).
    idle_at: Option<Timestamp>,
}

fn min_deadline(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Streams {
    pub(crate) fn new(lengths: Lengths, config: &Config) -> Self {
        Self {
            lengths,
            cfg: StreamConfig::new(config),
            base: vec![Priority::Normal; lengths.num_pieces() as usize],
            base_deadlines: BTreeMap::new(),
            readers: BTreeMap::new(),
            next_id: 0,
            idle_at: None,
        }
    }

    /// The tier and deadline `piece` should have: O(readers).
    pub(crate) fn effective(&self, piece: PieceIndex) -> (Priority, Option<Timestamp>) {
        let i = piece.get();
        let mut tier = self.base.get(piece.as_usize()).copied().unwrap_or(Priority::Skip);
        let mut deadline = self.base_deadlines.get(&piece).copied();
        for r in self.readers.values() {
            if let Some((t, d)) = r.demand(i, &self.lengths) {
                tier = tier.max(t);
                deadline = min_deadline(deadline, d);
            }
        }
        (tier, deadline)
    }

    /// Some reader's window or protected ranges hold `piece`.
    pub(crate) fn demanded(&self, piece: PieceIndex) -> bool {
        self.readers.values().any(|r| r.demand(piece.get(), &self.lengths).is_some())
    }

    /// Some reader has a window (is not dormant and not at its file's end).
    pub(crate) fn any_awake(&self) -> bool {
        self.readers.values().any(|r| !r.window.is_empty())
    }

    /// The `Now` and `Next` pieces of every window.
    pub(crate) fn urgent(&self) -> impl Iterator<Item = Range<u32>> + '_ {
        self.readers.values().map(|r| r.window.urgent()).filter(|r| !r.is_empty())
    }

    /// Every range some reader demands, with its tier (windows by tier, protected ranges as
    /// `High`); ranges may overlap. O(readers).
    pub(crate) fn retention(&self) -> Vec<(Range<u32>, Priority)> {
        let mut out = Vec::new();
        for r in self.readers.values() {
            let b = r.window.b;
            out.extend((0..4).filter(|&i| b[i] < b[i + 1]).map(|i| (b[i]..b[i + 1], WINDOW_TIERS[i])));
            out.extend(r.protected.iter().map(|p| (p.clone(), Priority::High)));
        }
        out
    }

    pub(crate) fn idle_at(&self) -> Option<Timestamp> {
        self.idle_at
    }

    pub(crate) fn window(&self, id: ReaderId) -> Option<ReaderWindow> {
        let r = self.readers.get(&id)?;
        let b = r.window.b;
        Some(ReaderWindow {
            now: b[0]..b[1],
            next: b[1]..b[2],
            readahead: b[2]..b[3],
            high: b[3]..b[4],
            window_bytes: r.window_bytes,
            dormant: r.dormant,
        })
    }

    pub(crate) fn set_base(&mut self, pieces: Range<u32>, priority: Priority) -> Range<u32> {
        let end = pieces.end.min(self.lengths.num_pieces());
        let start = pieces.start.min(end);
        self.base[start as usize..end as usize].fill(priority);
        start..end
    }

    pub(crate) fn set_base_deadline(&mut self, piece: PieceIndex, deadline: Option<Timestamp>) {
        match deadline {
            Some(d) => self.base_deadlines.insert(piece, d),
            None => self.base_deadlines.remove(&piece),
        };
    }

    /// A new reader of the content bytes `file`, its playhead at `offset` into the file.
    pub(crate) fn open(&mut self, file: Range<u64>, offset: u64, now: Timestamp) -> (ReaderId, Change) {
        let end = file.end.min(self.lengths.total_length());
        let file = file.start.min(end)..end;
        let id = ReaderId(self.next_id);
        self.next_id += 1;
        let pos = file.start.saturating_add(offset);
        let reader = Reader {
            file,
            pos,
            bitrate: None,
            measured: None,
            anchor: (now, pos),
            last_read: now,
            boost_until: now + BOOST_TIME,
            hold_until: None,
            dormant: false,
            timeline: Timeline { at: now, pos, rate: self.cfg.default_bitrate },
            window: Window::default(),
            window_bytes: 0,
            protected: Vec::new(),
        };
        self.readers.insert(id, reader);
        let mut change = self.place(id, now, true);
        change.jumped = true;
        (id, change)
    }

    /// The reader's playhead is at `offset` into its file (every read calls this).
    pub(crate) fn seek(&mut self, id: ReaderId, offset: u64, now: Timestamp) -> Change {
        let lengths = self.lengths;
        let Some(r) = self.readers.get_mut(&id) else {
            return Change::default();
        };
        let pos = r.file.start.saturating_add(offset);
        let inside = pos >= r.pos && pos < r.pos.saturating_add(r.window_bytes.max(1))
            || pos < r.pos && r.pos - pos < r.window_bytes;
        let jump = r.dormant || !inside;
        let piece_of = |b: u64| lengths.piece_at(ByteOffset(b)).map(PieceIndex::get);
        if jump || piece_of(pos) != piece_of(r.pos) {
            r.hold_until = None;
        }
        r.last_read = now;
        if jump {
            r.dormant = false;
            r.boost_until = now + BOOST_TIME;
            r.anchor = (now, pos);
        } else if pos >= r.anchor.1 {
            let dt = now.saturating_since(r.anchor.0);
            if dt >= MEASURE_SPAN {
                let rate = u128::from(pos - r.anchor.1) * 1_000_000 / dt.as_micros().max(1);
                r.measured = Some(u64::try_from(rate).unwrap_or(u64::MAX));
                r.anchor = (now, pos);
            }
        } else {
            r.anchor = (now, pos);
        }
        r.pos = pos;
        let mut change = self.place(id, now, jump);
        change.jumped = jump;
        change
    }

    /// Right after an open or a jump: holds the reader's window to its `Now` piece for
    /// [`HOLD_TIME`] if that piece is verified; a read into another piece ends the hold.
    pub(crate) fn hold_if_verified(&mut self, id: ReaderId, have: &Bitfield, now: Timestamp) -> Change {
        let Some(r) = self.readers.get_mut(&id) else {
            return Change::default();
        };
        if r.window.is_empty() || !have.get(PieceIndex::new_unchecked(r.window.b[0])) {
            return Change::default();
        }
        r.hold_until = Some(now + HOLD_TIME);
        self.place(id, now, false)
    }

    pub(crate) fn set_bitrate(&mut self, id: ReaderId, bytes_per_sec: u64, now: Timestamp) -> Change {
        let Some(r) = self.readers.get_mut(&id) else {
            return Change::default();
        };
        r.bitrate = (bytes_per_sec > 0).then_some(bytes_per_sec);
        self.place(id, now, false)
    }

    /// Replaces the reader's protected byte ranges (relative to its file).
    pub(crate) fn protect(&mut self, id: ReaderId, ranges: &[Range<u64>]) -> Change {
        let lengths = self.lengths;
        let Some(r) = self.readers.get_mut(&id) else {
            return Change::default();
        };
        let piece_of = |b: u64| lengths.piece_at(ByteOffset(b)).map_or(lengths.num_pieces(), PieceIndex::get);
        let mut pieces: Vec<Range<u32>> = ranges
            .iter()
            .filter_map(|b| {
                let start = r.file.start.saturating_add(b.start).min(r.file.end);
                let end = r.file.start.saturating_add(b.end).min(r.file.end);
                (start < end).then(|| piece_of(start)..piece_of(end - 1) + 1)
            })
            .collect();
        pieces.sort_by_key(|p| p.start);
        let mut merged: Vec<Range<u32>> = Vec::with_capacity(pieces.len());
        for p in pieces {
            match merged.last_mut() {
                Some(last) if p.start <= last.end => last.end = last.end.max(p.end),
                _ => merged.push(p),
            }
        }
        let mut touched = std::mem::replace(&mut r.protected, merged);
        touched.extend(r.protected.iter().cloned());
        Change { touched, jumped: false }
    }

    pub(crate) fn close(&mut self, id: ReaderId) -> Change {
        let Some(r) = self.readers.remove(&id) else {
            return Change::default();
        };
        let mut touched = r.protected;
        touched.push(r.window.span());
        Change { touched, jumped: true }
    }

    /// Puts to sleep the readers that did not read for `reader_idle_timeout` (and are not
    /// waiting for the piece under their playhead) while another reader read after them or is
    /// waiting, and re-places the others (boosts end, rates drift). O(readers) plus the pieces
    /// touched.
    pub(crate) fn tick(&mut self, now: Timestamp, have: &Bitfield) -> Change {
        let idle = self.cfg.idle;
        let waiting = self.readers.values().any(|r| r.is_waiting(have));
        let latest = self.readers.values().filter(|r| !r.dormant).map(|r| r.last_read).max();
        let mut change = Change::default();
        let ids: Vec<ReaderId> = self.readers.keys().copied().collect();
        for id in ids {
            let r = self.readers.get_mut(&id).expect("listed above");
            if r.dormant {
                continue;
            }
            let others_busy = waiting || latest.is_some_and(|t| t > r.last_read);
            if others_busy && r.can_sleep(have) && now >= r.last_read + idle {
                r.dormant = true;
                change.touched.push(r.window.span());
                r.window = Window::default();
                continue;
            }
            change.touched.extend(self.place(id, now, false).touched);
        }
        change
    }

    /// Recomputes the window of reader `id`; `rebase` re-anchors its timeline at its playhead.
    fn place(&mut self, id: ReaderId, now: Timestamp, rebase: bool) -> Change {
        let lengths = self.lengths;
        let cfg = self.cfg;
        let r = self.readers.get_mut(&id).expect("placing a known reader");
        if r.dormant {
            return Change::default();
        }
        let rate = r.rate(&cfg);
        let bytes = window_bytes(&cfg, rate, lengths.piece_length());
        let next = if now < r.boost_until { bytes_in(rate, BOOST_MEDIA) } else { 0 };
        if r.hold_until.is_some_and(|t| now >= t) {
            r.hold_until = None;
        }
        let new = if r.hold_until.is_some() {
            layout(&lengths, &r.file, r.pos, 0, 0).now_only()
        } else {
            layout(&lengths, &r.file, r.pos, bytes, next)
        };
        let t = r.timeline;
        let drift = t.expected_pos(now).abs_diff(r.pos) > bytes / 2;
        let rate_moved = rate.abs_diff(t.rate) > t.rate / RATE_SLACK;
        let old = r.window;
        r.window = new;
        r.window_bytes = bytes;
        let touched = if rebase || drift || rate_moved {
            r.timeline = Timeline { at: now, pos: r.pos, rate };
            [old.span(), new.span()].into_iter().filter(|s| !s.is_empty()).collect()
        } else {
            diff(&old, &new)
        };
        Change { touched, jumped: false }
    }

    /// Recomputes when `tick` has work next: when a reader that could sleep turns idle while
    /// another is waiting for its data or read after it, or when a hold ends. O(readers).
    pub(crate) fn refresh_idle_at(&mut self, have: &Bitfield) {
        let idle = self.cfg.idle;
        let waiting = self.readers.values().filter(|r| r.is_waiting(have)).count();
        let (mut first, mut second) = (None::<(Timestamp, ReaderId)>, None::<Timestamp>);
        for (&id, r) in self.readers.iter().filter(|(_, r)| !r.dormant) {
            if first.is_none_or(|(t, _)| r.last_read > t) {
                second = first.map(|(t, _)| t);
                first = Some((r.last_read, id));
            } else if second.is_none_or(|t| r.last_read > t) {
                second = Some(r.last_read);
            }
        }
        let sleep_at = self
            .readers
            .iter()
            .filter(|(_, r)| r.can_sleep(have))
            .filter(|&(&id, r)| {
                let latest_other = if first.is_some_and(|(_, f)| f == id) { second } else { first.map(|(t, _)| t) };
                waiting > 0 || latest_other.is_some_and(|t| t > r.last_read)
            })
            .map(|(_, r)| r.last_read + idle)
            .min();
        let hold_ends = self.readers.values().filter(|r| !r.dormant).filter_map(|r| r.hold_until).min();
        self.idle_at = min_deadline(sleep_at, hold_ends);
    }

    /// Panics unless every reader's window is what its state lays out and lies in its file.
    pub(crate) fn check_invariants(&self) {
        for (id, r) in &self.readers {
            let b = r.window.b;
            assert!(b.windows(2).all(|w| w[0] <= w[1]), "{id:?}: window boundaries out of order {b:?}");
            assert!(r.file.end <= self.lengths.total_length(), "{id:?}: file past the content");
            if r.window.is_empty() {
                continue;
            }
            assert!(!r.dormant, "{id:?}: dormant with a window");
            let first = self.lengths.piece_at(ByteOffset(r.file.start)).map(PieceIndex::get);
            let last = self.lengths.piece_at(ByteOffset(r.file.end - 1)).map(PieceIndex::get);
            assert!(
                first.is_some_and(|f| b[0] >= f) && last.is_some_and(|l| b[4] <= l + 1),
                "{id:?}: window {b:?} outside its file"
            );
            assert_eq!(
                self.lengths.piece_at(ByteOffset(r.pos)).map(PieceIndex::get),
                Some(b[0]),
                "{id:?}: Now is not under the playhead"
            );
        }
        assert_eq!(self.base.len(), self.lengths.num_pieces() as usize);
    }
}

#[cfg(test)]
mod tests;
