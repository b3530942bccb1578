//! A streaming swarm and a simulated media player driving an engine's reader.

use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use sluice_core::{ByteOffset, PieceIndex, Timestamp};
use sluice_engine::{Priority, ReaderId};
use sluice_sim::{Content, EngineSpec, NetProfile, NodeId, Sim};

use super::{content, ok, sim};

/// Seeders of a streaming swarm: upload cap and latency.
pub const SEEDER_RATE: u64 = 1_500_000;
pub const SEEDER_LATENCIES: [u64; 6] = [20, 32, 44, 56, 68, 80];
pub const LEECHER_LATENCY: u64 = 10;
pub const JITTER: u64 = 3;
/// Bytes a seeding engine keeps in its socket at most (its upload window): blocks it sent
/// before a CANCEL arrives still come.
pub const UPLOAD_BACKLOG: u64 = 1024 * 1024;

/// The slowest round trip between the leecher and a seeder, in seconds.
pub fn rtt_max() -> f64 {
    2.0 * (LEECHER_LATENCY + SEEDER_LATENCIES[5] + 2 * JITTER) as f64 / 1000.0
}

/// How often the player looks at what is verified.
pub const PLAYER_TICK: Duration = Duration::from_millis(20);

pub struct Swarm {
    pub sim: Sim,
    pub content: Rc<Content>,
    pub leecher: NodeId,
    pub seeders: Vec<NodeId>,
}

impl Swarm {
    /// Six seeders of 1.5 MB/s at 20-80 ms; the leecher's base priority for every piece is
    /// `base`. Runs two seconds so that the connections are up before anyone plays.
    pub fn new(seed: u64, total: u64, piece_length: u64, base: Priority) -> Self {
        Self::with_leecher(seed, total, piece_length, base, EngineSpec::leecher(NetProfile::new(LEECHER_LATENCY, None)))
    }

    /// The same swarm around a leecher built from `spec`.
    pub fn with_leecher(seed: u64, total: u64, piece_length: u64, base: Priority, spec: EngineSpec) -> Self {
        let content = content(total, piece_length, seed);
        let mut sim = sim(seed);
        let leecher = sim.add_engine(&content, spec);
        let pieces = content.lengths.num_pieces();
        sim.command(leecher, |t, now| t.set_priority(0..pieces, base, now));
        let mut seeders = Vec::new();
        for lat in SEEDER_LATENCIES {
            let s = sim
                .add_engine(&content, EngineSpec::seeder(NetProfile::new(lat, Some(SEEDER_RATE)).with_jitter(JITTER)));
            sim.introduce(leecher, s);
            seeders.push(s);
        }
        ok(sim.run_for(Duration::from_secs(2)));
        Self { sim, content, leecher, seeders }
    }

    pub fn aggregate_rate(&self) -> u64 {
        SEEDER_RATE * self.seeders.len() as u64
    }

    pub fn piece_length(&self) -> u64 {
        u64::from(self.content.lengths.piece_length())
    }

    /// Runs `d` of simulated time, stepping `players` every [`PLAYER_TICK`].
    pub fn play(&mut self, players: &mut [&mut Player], d: Duration) {
        let end = self.sim.now() + d;
        while self.sim.now() < end {
            ok(self.sim.run_for(PLAYER_TICK));
            for p in players.iter_mut() {
                p.step(&mut self.sim, self.leecher);
            }
        }
    }

    /// When `piece` was reported verified, if it was.
    pub fn verified_at(&self, piece: PieceIndex) -> Option<Timestamp> {
        self.sim.metrics(self.leecher).verified.iter().find(|(p, _)| *p == piece).map(|&(_, t)| t)
    }
}

/// A player: reads verified bytes up to `buffer` of media ahead of what it has played,
/// starts playing once `startup` of media is read, then consumes `bitrate` bytes per second.
/// Its reads are the reader's playhead.
#[derive(Debug)]
pub struct Player {
    pub id: ReaderId,
    /// The file's bytes in the content stream.
    pub file: Range<u64>,
    pub bitrate: u64,
    /// Read position and play position, relative to the file.
    pub read: u64,
    pub played: f64,
    pub startup: Duration,
    pub buffer: Duration,
    /// When the current start (open or seek) happened and the first byte arrived after it.
    pub started_at: Timestamp,
    pub first_byte_at: Option<Timestamp>,
    pub playing_since: Option<Timestamp>,
    /// Each stall: when the buffer ran dry while playing, and for how long.
    pub stalls: Vec<(Timestamp, Duration)>,
    stalled_since: Option<Timestamp>,
    last_step: Timestamp,
    /// Stop reading (a paused player): its reader gets no calls.
    pub paused: bool,
    pub closed: bool,
}

impl Player {
    pub fn open(sim: &mut Sim, node: NodeId, file: Range<u64>, offset: u64, bitrate: u64) -> Self {
        let f = file.clone();
        let id = sim.command(node, |t, now| t.open_reader(f, offset, now));
        sim.command(node, |t, now| t.set_bitrate(id, bitrate, now));
        let now = sim.now();
        Self {
            id,
            file,
            bitrate,
            read: offset,
            played: offset as f64,
            startup: Duration::from_secs(2),
            buffer: Duration::from_secs(10),
            started_at: now,
            first_byte_at: None,
            playing_since: None,
            stalls: Vec::new(),
            stalled_since: None,
            last_step: now,
            paused: false,
            closed: false,
        }
    }

    pub fn seek(&mut self, sim: &mut Sim, node: NodeId, offset: u64) {
        let id = self.id;
        sim.command(node, |t, now| t.reader_seek(id, offset, now));
        self.read = offset;
        self.played = offset as f64;
        self.started_at = sim.now();
        self.first_byte_at = None;
        self.playing_since = None;
        self.stalled_since = None;
    }

    pub fn close(&mut self, sim: &mut Sim, node: NodeId) {
        let id = self.id;
        sim.command(node, |t, now| t.close_reader(id, now));
        self.closed = true;
    }

    fn media(&self, d: Duration) -> f64 {
        self.bitrate as f64 * d.as_secs_f64()
    }

    /// Contiguous verified bytes of the file from `from` (file-relative), as an end offset.
    fn verified_end(&self, sim: &Sim, node: NodeId, from: u64) -> u64 {
        let lengths = sim.torrent(node).lengths();
        let have = sim.torrent(node).have();
        let mut at = self.file.start + from;
        while at < self.file.end {
            let Some(piece) = lengths.piece_at(ByteOffset(at)) else { break };
            if !have.get(piece) {
                break;
            }
            at = lengths.piece_start(piece).0 + u64::from(lengths.piece_len(piece));
        }
        at.min(self.file.end) - self.file.start
    }

    pub fn at_end(&self) -> bool {
        self.played as u64 + 1 >= self.file.end - self.file.start
    }

    pub fn step(&mut self, sim: &mut Sim, node: NodeId) {
        let now = sim.now();
        let dt = now.saturating_since(self.last_step);
        self.last_step = now;
        if self.closed || self.paused {
            return;
        }
        if self.playing_since.is_some() && !self.at_end() {
            let want = self.played + self.media(dt);
            if want <= self.read as f64 {
                self.played = want;
                if let Some(since) = self.stalled_since.take() {
                    self.stalls.push((since, now.saturating_since(since)));
                }
            } else {
                self.played = self.read as f64;
                self.stalled_since.get_or_insert(now);
            }
        }
        let cap = (self.played + self.media(self.buffer)) as u64;
        let end = self.verified_end(sim, node, self.read).min(cap.max(self.read));
        if end > self.read {
            self.read = end;
            self.first_byte_at.get_or_insert(now);
            let (id, read) = (self.id, self.read);
            sim.command(node, |t, now| t.reader_seek(id, read, now));
        }
        let ready =
            self.read as f64 >= self.played + self.media(self.startup) || self.read + self.file.start >= self.file.end;
        if self.playing_since.is_none() && ready {
            self.playing_since = Some(now);
        }
    }

    /// Time from the latest open or seek to the first byte read.
    pub fn time_to_first_byte(&self) -> Option<Duration> {
        self.first_byte_at.map(|t| t.saturating_since(self.started_at))
    }

    /// Time from the latest open or seek to playback.
    pub fn time_to_play(&self) -> Option<Duration> {
        self.playing_since.map(|t| t.saturating_since(self.started_at))
    }
}
