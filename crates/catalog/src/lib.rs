//! The torrent library `sluice serve` runs: every torrent the user added, known across
//! restarts, active only while something uses it.
//!
//! A server on a TV box or NAS collects hundreds of torrents and streams from one at a time.
//! Running all of them would hold peers, sockets, piece buffers and tasks for nothing, so a
//! torrent is *known* (its row in the database, a small summary in memory: name, files,
//! sizes) and only *active* (a node torrent or magnet fetch) while it is used:
//!
//! - an open [`Reader`] or an API touch ([`Catalog::get`], [`Catalog::add`],
//!   [`Catalog::add_peers`]) keeps it active; after `disconnect_timeout` without either, a
//!   ticker shuts it down (peers and memory released, the resume journal flushed) and it
//!   shows as closed;
//! - [`Catalog::open_reader`] revives a closed torrent transparently: the reader is returned
//!   at once and its first read waits for the restart (the metainfo is reloaded from the
//!   database, the resume journal says which pieces are already there), so a player
//!   resuming after a long pause just works;
//! - focus mode: while any reader is open, every other running torrent's download is capped
//!   (by default to a trickle) through the node; the caps are lifted as soon as the last
//!   reader closes or its torrent is removed. One task applies every cap change in order, so
//!   a torrent is never left capped by a reordering;
//! - on [`Catalog::open`], known torrents come back closed; nothing starts until used.
//!
//! An http(s) link to a `.torrent` is fetched before `add` returns, through the session's
//! tracker client (one HTTP client, one loopback policy: under loopback-only no other host
//! is contacted and no public name is looked up); the metainfo is what gets stored.
//!
//! Persistence is [`sluice_db`]: a torrent is written before `add` returns (the magnet link,
//! replaced by the metainfo once fetched), with the client's title, poster, category and
//! data; viewed marks and settings documents go straight to it. [`Catalog::remove`] deletes
//! the row (cascading to marks and resume data), the node's resume journal and, when asked,
//! the downloaded files, and keeps nothing in memory.
//!
//! Concurrency: one mutex guards the entry map and is never held across an await. Starting
//! and stopping node torrents happens in spawned tasks; each entry has an epoch bumped on
//! every start and close, so a start that finishes after its entry was closed or removed
//! knows it is stale and shuts its torrent down. Every such task is tracked per entry, and a
//! new start (or a removal's file deletion) waits for the ones before it. Database writes
//! take the database lock first and check the map under it, so a write can never bring back
//! a row a concurrent removal deleted.

mod model;
mod reader;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use sluice_core::magnet::Magnet;
use sluice_core::metainfo::Metainfo;
use sluice_core::{Bitfield, InfoHash, PieceIndex};
use sluice_db::{Db, TorrentRecord, TorrentSource};
use sluice_node::{AddMagnet, AddTorrent, MagnetHandle, MagnetState, NodeError, Session, StartMode, TorrentHandle};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub use model::{Added, CatalogError, CatalogStats, FileInfo, Info, Meta, MetaUpdate, Snapshot, Source, Stat};
pub use reader::Reader;
pub use sluice_db::{FileId, UnixTime, ViewedMark};

/// How long a magnet may look for its metadata (besides the disconnect timeout) before it
/// is closed as idle, as TorrServer allows.
pub const DEFAULT_METADATA_WAIT: Duration = Duration::from_secs(60);
pub const DEFAULT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// An API `get` keeps a torrent alive this long at most (TorrServer: min(timeout, 60 s)).
const GET_TOUCH_MAX: Duration = Duration::from_secs(60);
/// A node torrent that was just shut down leaves the session's table a moment later; a
/// restart in that moment is retried this often, this many times.
const DUPLICATE_RETRY: Duration = Duration::from_millis(20);
const DUPLICATE_TRIES: u32 = 250;
/// A `.torrent` link's body larger than this is refused (real ones are well under 1 MiB;
/// the largest hold a few hundred thousand piece hashes).
pub const MAX_TORRENT_FILE: usize = 16 << 20;
/// How long fetching a `.torrent` link may take, redirects included (as TorrServer).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What other torrents do while one streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// Nothing changes.
    Off,
    /// Other running torrents download at most this many bytes per second (0: pause).
    Cap(u64),
}

#[derive(Clone, Debug)]
pub struct CatalogOptions {
    /// Where torrents' files are downloaded.
    pub data_dir: PathBuf,
    /// Where the node keeps resume journals.
    pub state_dir: PathBuf,
    /// See the crate docs; changeable later with [`Catalog::set_disconnect_timeout`].
    pub disconnect_timeout: Duration,
    pub metadata_wait: Duration,
    pub focus: Focus,
}

impl CatalogOptions {
    /// Files under `data_dir`, journals in `data_dir/.sluice`, TorrServer's 30 s disconnect
    /// timeout, other torrents trickling at 32 KiB/s while one streams.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            state_dir: data_dir.join(".sluice"),
            data_dir,
            disconnect_timeout: DEFAULT_DISCONNECT_TIMEOUT,
            metadata_wait: DEFAULT_METADATA_WAIT,
            focus: Focus::Cap(32 * 1024),
        }
    }
}

/// The torrent library; cheap to clone (all clones are the same catalog). Background tasks
/// (idle ticker, focus) stop when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Catalog {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

#[derive(Debug)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    session: Session,
    db: Arc<Mutex<Db>>,
    data_dir: PathBuf,
    state_dir: PathBuf,
    metadata_wait: Duration,
    focus: Mutex<Focus>,
    timeout_ms: AtomicU64,
    entries: Mutex<HashMap<InfoHash, Entry>>,
    refocus: Arc<Notify>,
}

#[derive(Debug)]
struct Entry {
    meta: Meta,
    added_at: UnixTime,
    /// The link while no metainfo is known.
    magnet: Option<Magnet>,
    info: Option<Arc<Info>>,
    state: State,
    epoch: u64,
    /// Started at least once by this process (closed rather than "in db").
    loaded: bool,
    readers: usize,
    /// When the torrent may be closed as idle (if no reader is open).
    deadline: Instant,
    peers: Vec<SocketAddr>,
    /// The http(s) link it was added from in this process, so adding the same link again
    /// (TorrServer's `/stream` does on every request) does not fetch it again.
    url: Option<String>,
    /// Focus mode capped it (as last told to the node).
    capped: bool,
    /// Tasks still starting or stopping this torrent in the node; each sender drops when
    /// its task ends.
    busy: Vec<watch::Receiver<()>>,
    /// Wakes those waiting for `state` to change.
    changed: watch::Sender<()>,
    error: Option<String>,
    /// What its files hold while it is not running (disk storage only): as it stood when it
    /// last closed, or as its resume journal said when the catalog opened.
    held: Option<Held>,
}

/// The verified part of a torrent that is not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    pieces: u32,
    bytes: u64,
    complete: bool,
}

impl Held {
    /// What the pieces in `have` amount to in `info`'s geometry.
    fn of(have: &Bitfield, info: &Info) -> Self {
        let pieces = have.count_ones();
        let last = info.pieces.checked_sub(1).map(PieceIndex::new_unchecked);
        let short = info.size.saturating_sub(u64::from(info.piece_length) * u64::from(info.pieces.saturating_sub(1)));
        let bytes = match last {
            Some(last) if have.get(last) => u64::from(pieces - 1) * u64::from(info.piece_length) + short,
            _ => u64::from(pieces) * u64::from(info.piece_length),
        };
        Self { pieces, bytes, complete: info.pieces > 0 && pieces == info.pieces }
    }
}

#[derive(Debug)]
enum State {
    Idle,
    Starting,
    Fetching(MagnetHandle),
    Running(TorrentHandle),
}

impl Entry {
    fn new(meta: Meta, added_at: UnixTime, magnet: Option<Magnet>, info: Option<Arc<Info>>, now: Instant) -> Self {
        Self {
            meta,
            added_at,
            magnet,
            info,
            state: State::Idle,
            epoch: 0,
            loaded: false,
            readers: 0,
            deadline: now,
            peers: Vec::new(),
            url: None,
            capped: false,
            busy: Vec::new(),
            changed: watch::channel(()).0,
            error: None,
            held: None,
        }
    }

    fn touch(&mut self, until: Instant) {
        self.deadline = self.deadline.max(until);
    }

    fn active(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Registers a task touching the node for this torrent; returns its completion sender
    /// and the tasks it must wait for.
    fn begin_task(&mut self) -> (watch::Sender<()>, Vec<watch::Receiver<()>>) {
        self.busy.retain(|rx| rx.has_changed().is_ok());
        let prior = self.busy.clone();
        let (tx, rx) = watch::channel(());
        self.busy.push(rx);
        (tx, prior)
    }

    fn stat(&self) -> Stat {
        match self.state {
            State::Idle if self.loaded => Stat::Closed,
            State::Idle => Stat::InDb,
            State::Starting if self.info.is_none() => Stat::GettingInfo,
            State::Starting => Stat::Added,
            State::Fetching(_) => Stat::GettingInfo,
            State::Running(_) => Stat::Working,
        }
    }

    fn snapshot(&self, info_hash: InfoHash) -> Snapshot {
        let title = match (&self.meta.title, &self.info) {
            (t, Some(info)) if t.is_empty() => info.name.clone(),
            (t, _) => t.clone(),
        };
        let mut s = Snapshot {
            info_hash,
            title,
            poster: self.meta.poster.clone(),
            category: self.meta.category.clone(),
            data: self.meta.data.clone(),
            added_at: self.added_at,
            info: self.info.clone(),
            stat: self.stat(),
            error: self.error.clone(),
            readers: self.readers,
            capped: self.capped,
            peers_connected: 0,
            peers_known: 0,
            download_rate: 0,
            upload_rate: 0,
            bytes_have: 0,
            downloaded: 0,
            uploaded: 0,
            pieces_have: 0,
            complete: false,
        };
        match &self.state {
            State::Running(h) => {
                let p = h.progress();
                s.peers_connected = p.stats.peers_connected;
                s.peers_known = p.stats.peers_known;
                s.download_rate = p.stats.download_rate;
                s.upload_rate = p.stats.upload_rate;
                s.bytes_have = p.stats.bytes_have;
                s.downloaded = p.stats.downloaded;
                s.uploaded = p.stats.uploaded;
                s.pieces_have = p.stats.pieces_have;
                s.complete = p.complete;
                if p.error.is_some() {
                    s.error = p.error;
                }
            }
            State::Fetching(m) => {
                if let MagnetState::Fetching { connections, .. } = m.state() {
                    s.peers_connected = connections;
                }
            }
            State::Idle | State::Starting => {
                if let Some(held) = self.held {
                    s.pieces_have = held.pieces;
                    s.bytes_have = held.bytes;
                    s.complete = held.complete;
                }
            }
        }
        s
    }
}

async fn wait_all(tasks: Vec<watch::Receiver<()>>) {
    for mut rx in tasks {
        // Nothing is ever sent: this returns when the task's sender drops.
        let _ = rx.changed().await;
    }
}

/// Retries an add the session refuses as a duplicate while a previous run of the same
/// torrent is still leaving its table.
async fn retry_duplicate<T, F: Future<Output = Result<T, NodeError>>>(
    mut add: impl FnMut() -> F,
) -> Result<T, NodeError> {
    let mut tries = 0;
    loop {
        match add().await {
            Err(NodeError::Duplicate(_)) if tries < DUPLICATE_TRIES => {
                tries += 1;
                tokio::time::sleep(DUPLICATE_RETRY).await;
            }
            other => return other,
        }
    }
}

/// A `.torrent` for fetched metadata: the info dictionary as received, the magnet's trackers
/// as one tier each.
fn torrent_bytes(info: &[u8], trackers: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(info.len() + 64);
    out.push(b'd');
    if !trackers.is_empty() {
        out.extend_from_slice(b"13:announce-listl");
        for t in trackers {
            out.extend_from_slice(format!("l{}:", t.len()).as_bytes());
            out.extend_from_slice(t.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    out.extend_from_slice(b"4:info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}

impl Catalog {
    /// Loads every known torrent (closed; none is started) and starts the idle ticker and
    /// the focus task. Must run inside a tokio runtime.
    pub async fn open(session: Session, db: Db, options: CatalogOptions) -> Result<Catalog, CatalogError> {
        let db = Arc::new(Mutex::new(db));
        let d = db.clone();
        let records = tokio::task::spawn_blocking(move || d.lock().unwrap_or_else(|p| p.into_inner()).torrents())
            .await
            .map_err(|e| CatalogError::Unavailable(e.to_string()))??;
        let now = Instant::now();
        let mut entries = HashMap::with_capacity(records.len());
        for r in records {
            let meta = Meta { title: r.title, poster: r.poster, category: r.category, data: r.data };
            let (magnet, info, error) = match &r.source {
                TorrentSource::Metainfo(bytes) => match Metainfo::from_bytes(bytes) {
                    Ok(m) => (None, Some(Arc::new(Info::of(&m))), None),
                    Err(e) => (None, None, Some(format!("stored metainfo is unusable: {e}"))),
                },
                TorrentSource::Magnet(link) => match Magnet::parse(link) {
                    Ok(m) => (Some(m), None, None),
                    Err(e) => (None, None, Some(format!("stored magnet is unusable: {e}"))),
                },
            };
            let mut entry = Entry::new(meta, r.added_at, magnet, info, now);
            entry.error = error;
            entries.insert(r.info_hash, entry);
        }
        if session.stores_on_disk() {
            let wanted: Vec<(InfoHash, Arc<Info>)> =
                entries.iter().filter_map(|(h, e)| Some((*h, e.info.clone()?))).collect();
            let state_dir = options.state_dir.clone();
            let held = tokio::task::spawn_blocking(move || read_journals(&state_dir, wanted))
                .await
                .map_err(|e| CatalogError::Unavailable(e.to_string()))?;
            for (hash, held) in held {
                if let Some(e) = entries.get_mut(&hash) {
                    e.held = Some(held);
                }
            }
        }
        let inner = Arc::new(Inner {
            session,
            db,
            data_dir: options.data_dir,
            state_dir: options.state_dir,
            metadata_wait: options.metadata_wait,
            focus: Mutex::new(options.focus),
            timeout_ms: AtomicU64::new(options.disconnect_timeout.as_millis() as u64),
            entries: Mutex::new(entries),
            refocus: Arc::new(Notify::new()),
        });
        let tasks = vec![
            tokio::spawn(tick_loop(Arc::downgrade(&inner))),
            tokio::spawn(focus_loop(Arc::downgrade(&inner), inner.refocus.clone())),
        ];
        Ok(Catalog { inner, _tasks: Arc::new(Tasks(tasks)) })
    }

    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    pub fn disconnect_timeout(&self) -> Duration {
        self.inner.timeout()
    }

    /// Applies to deadlines set from now on.
    pub fn set_disconnect_timeout(&self, timeout: Duration) {
        self.inner.timeout_ms.store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn focus(&self) -> Focus {
        *self.inner.focus.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies at once: capped torrents get the new rate, or are uncapped with
    /// [`Focus::Off`]; streams are not interrupted.
    pub fn set_focus(&self, focus: Focus) {
        *self.inner.focus.lock().unwrap_or_else(|p| p.into_inner()) = focus;
        self.inner.refocus.notify_one();
    }

    /// Adds a torrent (saved before this returns) and starts it; a known one is started
    /// again if closed, keeps its fields (empty ones are filled from `meta`), and learns the
    /// metainfo if it only had a magnet. Returns at once: a magnet's entry has no `info` yet.
    pub async fn add(&self, source: Source, meta: Meta) -> Result<Added, CatalogError> {
        let (source, url) = match source {
            Source::Link(link) if is_url(&link) => match self.inner.known_url(&link) {
                Some(hash) => (Source::Link(hash.to_hex()), None),
                None => (self.inner.fetch(&link).await?, Some(link)),
            },
            source => (source, None),
        };
        let (hash, parsed, magnet, stored) = match source {
            Source::Torrent(bytes) => {
                let m = Metainfo::from_bytes(&bytes).map_err(|e| match &url {
                    Some(url) => CatalogError::BadTorrent(format!("{url} is not a .torrent file: {e}")),
                    None => CatalogError::BadTorrent(e.to_string()),
                })?;
                (m.info_hash, Some(m), None, TorrentSource::Metainfo(bytes))
            }
            Source::Link(link) => {
                let m = Magnet::parse(&link).map_err(|e| CatalogError::BadTorrent(e.to_string()))?;
                let uri = m.to_uri();
                (m.info_hash, None, Some(m), TorrentSource::Magnet(uri))
            }
        };
        let mut meta = meta;
        if meta.title.is_empty()
            && let Some(dn) = magnet.as_ref().and_then(|m| m.name.as_deref())
        {
            meta.title = model::title_from_dn(dn);
        }
        let info = parsed.as_ref().map(|m| Arc::new(Info::of(m)));
        let peers = magnet.as_ref().map(|m| m.peers.clone()).unwrap_or_default();
        let now = Instant::now();
        let inner = self.inner.clone();
        let created = self
            .inner
            .with_db(move |db| {
                let stamp = UnixTime::now();
                let existing = {
                    let mut map = inner.lock();
                    match map.get_mut(&hash) {
                        Some(e) => {
                            let m = &mut e.meta;
                            for (old, new) in [
                                (&mut m.title, &meta.title),
                                (&mut m.poster, &meta.poster),
                                (&mut m.category, &meta.category),
                                (&mut m.data, &meta.data),
                            ] {
                                if old.is_empty() {
                                    old.clone_from(new);
                                }
                            }
                            let upgrade = e.info.is_none() && info.is_some();
                            if upgrade {
                                e.info = info.clone();
                                e.magnet = None;
                                e.error = None;
                            }
                            Some((e.meta.clone(), upgrade))
                        }
                        None => {
                            map.insert(hash, Entry::new(meta.clone(), stamp, magnet.clone(), info.clone(), now));
                            None
                        }
                    }
                };
                match existing {
                    Some((meta, upgrade)) => {
                        let Some(mut record) = db.torrent(hash)? else {
                            return Ok(false);
                        };
                        if upgrade {
                            record.source = stored;
                        }
                        set_meta(&mut record, &meta);
                        record.updated_at = stamp;
                        db.upsert_torrent(&record)?;
                        Ok(false)
                    }
                    None => {
                        let record = TorrentRecord {
                            info_hash: hash,
                            source: stored,
                            title: meta.title.clone(),
                            poster: meta.poster.clone(),
                            category: meta.category.clone(),
                            data: meta.data.clone(),
                            added_at: stamp,
                            updated_at: stamp,
                        };
                        if let Err(e) = db.upsert_torrent(&record) {
                            inner.lock().remove(&hash);
                            return Err(e);
                        }
                        Ok(true)
                    }
                }
            })
            .await?;
        let snapshot = {
            let mut map = self.inner.lock();
            let entry = map.get_mut(&hash).ok_or(CatalogError::UnknownTorrent)?;
            model::remember(&mut entry.peers, &peers);
            if url.is_some() {
                entry.url = url;
            }
            entry.touch(now + self.inner.timeout());
            self.inner.start(hash, entry, parsed);
            entry.snapshot(hash)
        };
        if !created && !peers.is_empty() {
            self.inner.pass_peers(hash, peers).await;
        }
        Ok(Added { snapshot, created })
    }

    /// The torrent's snapshot; counts as an API touch (keeps it active a while longer) and
    /// starts a closed torrent in the background, as TorrServer's `get` does.
    pub fn get(&self, hash: InfoHash) -> Option<Snapshot> {
        let mut map = self.inner.lock();
        let entry = map.get_mut(&hash)?;
        entry.touch(Instant::now() + self.inner.timeout().min(GET_TOUCH_MAX));
        self.inner.start(hash, entry, None);
        Some(entry.snapshot(hash))
    }

    /// The torrent's snapshot, without touching or starting it.
    pub fn status(&self, hash: InfoHash) -> Option<Snapshot> {
        self.inner.lock().get(&hash).map(|e| e.snapshot(hash))
    }

    /// Every known torrent, newest first (ties: title descending, as TorrServer sorts).
    /// Touches nothing.
    pub fn list(&self) -> Vec<Snapshot> {
        let mut all: Vec<Snapshot> = self.inner.lock().iter().map(|(h, e)| e.snapshot(*h)).collect();
        all.sort_by(|a, b| b.added_at.cmp(&a.added_at).then_with(|| b.title.cmp(&a.title)));
        all
    }

    /// The pieces a running torrent can serve now; `None` if it is not running.
    pub fn verified(&self, hash: InfoHash) -> Option<Bitfield> {
        match &self.inner.lock().get(&hash)?.state {
            State::Running(h) => Some(h.verified()),
            _ => None,
        }
    }

    /// Updates the client's fields (in memory and in the database).
    pub async fn set(&self, hash: InfoHash, update: MetaUpdate) -> Result<(), CatalogError> {
        let inner = self.inner.clone();
        self.inner
            .with_db(move |db| {
                let meta = {
                    let mut map = inner.lock();
                    let Some(e) = map.get_mut(&hash) else {
                        return Ok(false);
                    };
                    let m = &mut e.meta;
                    for (old, new) in [
                        (&mut m.title, update.title),
                        (&mut m.poster, update.poster),
                        (&mut m.category, update.category),
                        (&mut m.data, update.data),
                    ] {
                        if let Some(new) = new {
                            *old = new;
                        }
                    }
                    e.meta.clone()
                };
                let Some(mut record) = db.torrent(hash)? else {
                    return Ok(false);
                };
                set_meta(&mut record, &meta);
                record.updated_at = UnixTime::now();
                db.upsert_torrent(&record)?;
                Ok(true)
            })
            .await?
            .then_some(())
            .ok_or(CatalogError::UnknownTorrent)
    }

    /// More peers for the torrent (remembered for its next start too); counts as a touch.
    pub async fn add_peers(&self, hash: InfoHash, peers: Vec<SocketAddr>) -> Result<(), CatalogError> {
        {
            let mut map = self.inner.lock();
            let entry = map.get_mut(&hash).ok_or(CatalogError::UnknownTorrent)?;
            model::remember(&mut entry.peers, &peers);
            entry.touch(Instant::now() + self.inner.timeout());
        }
        self.inner.pass_peers(hash, peers).await;
        Ok(())
    }

    /// Streams bytes `range` of file `index` (metainfo order, see [`FileInfo::index`]). A
    /// closed torrent is started (a magnet's metadata fetched) and the first read waits for
    /// it; until the reader is dropped the torrent stays active, and focus mode holds the
    /// other torrents back. Errors at once for an unknown torrent, or a file or range the
    /// known metadata does not have.
    pub fn open_reader(&self, hash: InfoHash, index: usize, range: Range<u64>) -> Result<Reader, CatalogError> {
        let running = {
            let mut map = self.inner.lock();
            let entry = map.get_mut(&hash).ok_or(CatalogError::UnknownTorrent)?;
            if let Some(info) = &entry.info {
                let file = info.file(index).ok_or(CatalogError::UnknownFile)?;
                if range.start > range.end || range.end > file.length {
                    return Err(CatalogError::UnknownFile);
                }
            }
            entry.readers += 1;
            entry.touch(Instant::now() + self.inner.timeout());
            match &entry.state {
                State::Running(h) => Some(h.clone()),
                _ => None,
            }
        };
        self.inner.refocus.notify_one();
        let guard = reader::Guard { catalog: Arc::downgrade(&self.inner), hash };
        if let Some(reader) = running.and_then(|h| h.open_reader(index, range.clone())) {
            return Ok(Reader::open(reader, guard));
        }
        let inner = self.inner.clone();
        let opening = async move {
            let handle = inner.running(hash).await.map_err(std::io::Error::other)?;
            handle.open_reader(index, range).ok_or_else(|| std::io::Error::other(CatalogError::UnknownFile))
        };
        Ok(Reader::opening(Box::pin(opening), guard))
    }

    /// Waits until the torrent runs (starting it if closed, fetching a magnet's metadata).
    pub async fn activate(&self, hash: InfoHash) -> Result<Snapshot, CatalogError> {
        self.inner.running(hash).await?;
        self.status(hash).ok_or(CatalogError::UnknownTorrent)
    }

    /// Shuts the torrent down now (peers and memory released); it stays known and starts
    /// again on its next use. Refused while a reader is open (TorrServer does the same).
    pub async fn drop(&self, hash: InfoHash) -> Result<(), CatalogError> {
        let busy = {
            let mut map = self.inner.lock();
            let entry = map.get_mut(&hash).ok_or(CatalogError::UnknownTorrent)?;
            if entry.readers > 0 {
                return Err(CatalogError::Busy);
            }
            self.inner.close(entry);
            entry.busy.clone()
        };
        self.inner.refocus.notify_one();
        wait_all(busy).await;
        Ok(())
    }

    /// Forgets the torrent: stops it, deletes its database row (with its viewed marks and
    /// resume data) and its resume journal, and its downloaded files if `delete_files`.
    /// Open readers of it fail. Returns whether it was known.
    pub async fn remove(&self, hash: InfoHash, delete_files: bool) -> Result<bool, CatalogError> {
        let removed = {
            let mut map = self.inner.lock();
            let removed = map.remove(&hash);
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
            removed
        };
        let Some(mut entry) = removed else {
            return Ok(false);
        };
        self.inner.close(&mut entry);
        self.inner.refocus.notify_one();
        let busy = std::mem::take(&mut entry.busy);
        let info = entry.info.take();
        drop(entry);
        wait_all(busy).await;
        self.inner.with_db(move |db| db.remove_torrent(hash)).await?;
        let (state_dir, data_dir) = (self.inner.state_dir.clone(), self.inner.data_dir.clone());
        tokio::task::spawn_blocking(move || {
            delete_state(&state_dir, hash);
            if delete_files && let Some(info) = info {
                delete_data(&data_dir, &info);
            }
        })
        .await
        .map_err(|e| CatalogError::Unavailable(e.to_string()))?;
        Ok(true)
    }

    /// Removes every torrent (see [`Catalog::remove`]).
    pub async fn wipe(&self, delete_files: bool) -> Result<(), CatalogError> {
        let hashes: Vec<InfoHash> = self.inner.lock().keys().copied().collect();
        for h in hashes {
            self.remove(h, delete_files).await?;
        }
        Ok(())
    }

    /// Closes every active torrent and waits until the node has stopped them (resume
    /// journals flushed). The catalog stays usable; torrents start again when used.
    pub async fn close(&self) {
        let busy: Vec<_> = {
            let mut map = self.inner.lock();
            map.values_mut()
                .flat_map(|e| {
                    self.inner.close(e);
                    e.busy.clone()
                })
                .collect()
        };
        wait_all(busy).await;
    }

    pub fn stats(&self) -> CatalogStats {
        let map = self.inner.lock();
        let mut s = CatalogStats { known: map.len(), ..CatalogStats::default() };
        for e in map.values() {
            s.active += usize::from(e.active());
            s.readers += e.readers;
            s.capped += usize::from(e.capped);
            s.pending_tasks += e.busy.iter().filter(|rx| rx.has_changed().is_ok()).count();
        }
        s
    }

    /// Stores the time code reached in a file (`file` is the API's file id, stored as is).
    pub async fn set_viewed(&self, hash: InfoHash, file: FileId, timecode: Duration) -> Result<(), CatalogError> {
        let mark = ViewedMark { info_hash: hash, file, timecode, updated_at: UnixTime::now() };
        self.inner.with_db(move |db| db.set_viewed(&mark)).await.map_err(unknown)
    }

    /// Marks a file viewed, keeping a time code it already has.
    pub async fn mark_viewed(&self, hash: InfoHash, file: FileId) -> Result<(), CatalogError> {
        self.inner.with_db(move |db| db.touch_viewed(hash, file, UnixTime::now())).await.map_err(unknown)
    }

    /// Removes one file's mark, or all of the torrent's with `None`; returns how many went.
    pub async fn remove_viewed(&self, hash: InfoHash, file: Option<FileId>) -> Result<usize, CatalogError> {
        self.inner.with_db(move |db| db.remove_viewed(hash, file)).await
    }

    /// The torrent's marks, or every mark with `None`.
    pub async fn viewed(&self, hash: Option<InfoHash>) -> Result<Vec<ViewedMark>, CatalogError> {
        self.inner
            .with_db(move |db| match hash {
                Some(h) => db.viewed(h),
                None => db.all_viewed(),
            })
            .await
    }

    /// The settings document stored under `key` (e.g. TorrServer's "BitTorr").
    pub async fn settings(&self, key: &str) -> Result<Option<serde_json::Value>, CatalogError> {
        let key = key.to_owned();
        self.inner.with_db(move |db| db.settings(&key)).await
    }

    pub async fn set_settings(&self, key: &str, value: serde_json::Value) -> Result<(), CatalogError> {
        let key = key.to_owned();
        self.inner.with_db(move |db| db.set_settings(&key, &value)).await
    }
}

fn unknown(e: CatalogError) -> CatalogError {
    match e {
        CatalogError::Db(sluice_db::DbError::UnknownTorrent(_)) => CatalogError::UnknownTorrent,
        e => e,
    }
}

fn set_meta(record: &mut TorrentRecord, meta: &Meta) {
    record.title.clone_from(&meta.title);
    record.poster.clone_from(&meta.poster);
    record.category.clone_from(&meta.category);
    record.data.clone_from(&meta.data);
}

/// What each torrent's resume journal vouches for, without changing the journals; a missing
/// or unreadable one leaves its torrent out.
fn read_journals(state_dir: &Path, torrents: Vec<(InfoHash, Arc<Info>)>) -> Vec<(InfoHash, Held)> {
    torrents
        .into_iter()
        .filter_map(|(hash, info)| {
            let path = sluice_storage::Resume::path_for(state_dir, &hash);
            match sluice_storage::Resume::peek(&path, hash, info.pieces) {
                Ok(have) => have.map(|have| (hash, Held::of(&have, &info))),
                Err(e) => {
                    tracing::debug!(info_hash = %hash, error = %e, "resume journal not read");
                    None
                }
            }
        })
        .collect()
}

/// The node's resume journal (and a compaction's leftover).
fn delete_state(state_dir: &Path, hash: InfoHash) {
    let journal = sluice_storage::Resume::path_for(state_dir, &hash);
    let mut tmp = journal.clone().into_os_string();
    tmp.push(".tmp");
    for path in [journal, PathBuf::from(tmp)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete resume journal"),
        }
    }
}

/// The torrent's files, then the folders they leave empty (never `data_dir` itself).
fn delete_data(data_dir: &Path, info: &Info) {
    let mut folders = Vec::new();
    for f in &info.files {
        let path = f.path.split('/').fold(data_dir.to_path_buf(), |p, c| p.join(c));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete downloaded file"),
        }
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir.filter(|d| d.starts_with(data_dir) && d != data_dir) {
            folders.push(d.clone());
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    folders.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    folders.dedup();
    for d in folders {
        // Fails while the folder holds anything else: exactly what should stay.
        let _ = std::fs::remove_dir(&d);
    }
}

/// An http(s) link (to a `.torrent` file), by its scheme.
fn is_url(link: &str) -> bool {
    let scheme = link.trim().split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https"))
}

impl Inner {
    /// The torrent a link was added from earlier in this process.
    fn known_url(&self, url: &str) -> Option<InfoHash> {
        self.lock().iter().find(|(_, e)| e.url.as_deref() == Some(url)).map(|(h, _)| *h)
    }

    /// Fetches a `.torrent` link through the session's HTTP client (and so under its
    /// loopback-only policy): its bytes, or the magnet link it redirects to.
    async fn fetch(&self, url: &str) -> Result<Source, CatalogError> {
        use sluice_tracker::client::{Fetched, GetLimits};
        let limits = GetLimits { max_body: MAX_TORRENT_FILE, timeout: FETCH_TIMEOUT };
        match self.session.http_client().get(url.trim(), limits).await {
            Ok(Fetched::Body(bytes)) => Ok(Source::Torrent(bytes.to_vec())),
            Ok(Fetched::Elsewhere(link)) if link.to_ascii_lowercase().starts_with("magnet:") => Ok(Source::Link(link)),
            Ok(Fetched::Elsewhere(link)) => {
                Err(CatalogError::BadTorrent(format!("{url} redirects to {link:?}, neither a .torrent nor a magnet")))
            }
            Err(e) => Err(CatalogError::BadTorrent(format!("cannot fetch {url}: {e}"))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<InfoHash, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Runs `f` on the database, on the blocking pool.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, sluice_db::DbError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&mut db.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| CatalogError::Unavailable(e.to_string()))?
            .map_err(CatalogError::from)
    }

    /// Starts a closed entry's torrent in the background (`parsed`: its metainfo, when the
    /// caller has it at hand). Called with the map locked.
    fn start(self: &Arc<Self>, hash: InfoHash, entry: &mut Entry, parsed: Option<Metainfo>) {
        if entry.active() || (entry.info.is_none() && entry.magnet.is_none()) {
            return;
        }
        entry.epoch += 1;
        entry.loaded = true;
        entry.error = None;
        entry.capped = false;
        entry.state = State::Starting;
        let (done, prior) = entry.begin_task();
        let wait = if entry.info.is_none() { self.metadata_wait } else { Duration::ZERO };
        entry.touch(Instant::now() + self.timeout() + wait);
        entry.changed.send_replace(());
        let (me, epoch) = (self.clone(), entry.epoch);
        match (entry.info.is_some(), entry.magnet.clone()) {
            (false, Some(magnet)) => {
                tokio::spawn(async move {
                    wait_all(prior).await;
                    me.run_magnet(hash, epoch, magnet).await;
                    drop(done);
                });
            }
            _ => {
                tokio::spawn(async move {
                    wait_all(prior).await;
                    me.run_torrent(hash, epoch, parsed).await;
                    drop(done);
                });
            }
        }
    }

    async fn run_torrent(self: &Arc<Self>, hash: InfoHash, epoch: u64, parsed: Option<Metainfo>) {
        let meta = match parsed {
            Some(m) => m,
            None => match self.load_metainfo(hash).await {
                Ok(m) => m,
                Err(e) => return self.failed(hash, epoch, e),
            },
        };
        let add = AddTorrent {
            meta,
            data_dir: self.data_dir.clone(),
            state_dir: self.state_dir.clone(),
            mode: StartMode::Resume,
        };
        match retry_duplicate(|| self.session.add_torrent(add.clone())).await {
            Ok(h) => self.started(hash, epoch, h).await,
            Err(e) => self.failed(hash, epoch, e.to_string()),
        }
    }

    async fn load_metainfo(&self, hash: InfoHash) -> Result<Metainfo, String> {
        let record = self.with_db(move |db| db.torrent(hash)).await.map_err(|e| e.to_string())?;
        match record.map(|r| r.source) {
            Some(TorrentSource::Metainfo(bytes)) => Metainfo::from_bytes(&bytes).map_err(|e| e.to_string()),
            _ => Err("the database has no metainfo for this torrent".into()),
        }
    }

    async fn run_magnet(self: &Arc<Self>, hash: InfoHash, epoch: u64, magnet: Magnet) {
        let add = AddMagnet {
            magnet: magnet.clone(),
            data_dir: self.data_dir.clone(),
            state_dir: self.state_dir.clone(),
            mode: StartMode::Resume,
        };
        let fetch = match retry_duplicate(|| std::future::ready(self.session.add_magnet(add.clone()))).await {
            Ok(f) => f,
            Err(e) => return self.failed(hash, epoch, e.to_string()),
        };
        // Peers given while the start was under way are in the entry by now.
        let current = {
            let mut map = self.lock();
            match map.get_mut(&hash).filter(|e| e.epoch == epoch) {
                Some(e) => {
                    e.state = State::Fetching(fetch.clone());
                    e.changed.send_replace(());
                    Some(e.peers.clone())
                }
                None => None,
            }
        };
        if let Some(peers) = current {
            if !peers.is_empty() {
                let _ = fetch.add_peers(peers).await;
            }
        } else {
            fetch.cancel().await;
            if let Some(t) = fetch.torrent() {
                t.shutdown().await;
            }
            return;
        }
        match fetch.wait().await {
            Ok(h) => {
                let info = Arc::new(Info::of(h.metainfo()));
                let bytes = torrent_bytes(&h.metainfo().info_bytes, &magnet.trackers);
                self.store_metainfo(hash, bytes, info).await;
                self.started(hash, epoch, h).await;
            }
            Err(e) => self.failed(hash, epoch, e.to_string()),
        }
    }

    /// A magnet's metadata arrived: the database keeps the metainfo from now on.
    async fn store_metainfo(self: &Arc<Self>, hash: InfoHash, bytes: Vec<u8>, info: Arc<Info>) {
        let me = self.clone();
        let stored = self
            .with_db(move |db| {
                {
                    let mut map = me.lock();
                    let Some(e) = map.get_mut(&hash) else {
                        return Ok(());
                    };
                    e.info = Some(info);
                    e.magnet = None;
                }
                if let Some(mut record) = db.torrent(hash)? {
                    record.source = TorrentSource::Metainfo(bytes);
                    record.updated_at = UnixTime::now();
                    db.upsert_torrent(&record)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(info_hash = %hash, error = %e, "cannot store fetched metadata");
        }
    }

    /// A start finished: the entry runs, unless it was closed or removed meanwhile.
    async fn started(&self, hash: InfoHash, epoch: u64, handle: TorrentHandle) {
        let current = {
            let mut map = self.lock();
            match map.get_mut(&hash).filter(|e| e.epoch == epoch) {
                Some(e) => {
                    e.state = State::Running(handle.clone());
                    e.touch(Instant::now() + self.timeout());
                    e.changed.send_replace(());
                    Some(e.peers.clone())
                }
                None => None,
            }
        };
        match current {
            // Every peer the entry knows, including those given while it started.
            Some(peers) => {
                self.refocus.notify_one();
                if !peers.is_empty() {
                    let _ = handle.add_peers(peers).await;
                }
            }
            None => handle.shutdown().await,
        }
    }

    fn failed(&self, hash: InfoHash, epoch: u64, error: String) {
        tracing::warn!(info_hash = %hash, %error, "torrent could not start");
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&hash).filter(|e| e.epoch == epoch) {
            e.state = State::Idle;
            e.error = Some(error);
            e.changed.send_replace(());
        }
    }

    /// Stops the entry's torrent in the background; it stays known. Called with the map
    /// locked.
    fn close(&self, entry: &mut Entry) {
        let state = std::mem::replace(&mut entry.state, State::Idle);
        entry.epoch += 1;
        entry.capped = false;
        entry.changed.send_replace(());
        match state {
            State::Running(h) => {
                if self.session.stores_on_disk() {
                    let p = h.progress();
                    let stats = &p.stats;
                    entry.held =
                        Some(Held { pieces: stats.pieces_have, bytes: stats.bytes_have, complete: p.complete });
                }
                let (done, _) = entry.begin_task();
                tokio::spawn(async move {
                    h.shutdown().await;
                    drop(done);
                });
            }
            State::Fetching(m) => {
                let (done, _) = entry.begin_task();
                tokio::spawn(async move {
                    m.cancel().await;
                    if let Some(t) = m.torrent() {
                        t.shutdown().await;
                    }
                    drop(done);
                });
            }
            // A start in flight sees the new epoch and stops what it started itself.
            State::Starting | State::Idle => {}
        }
    }

    /// Waits until the torrent runs, starting it if it is closed.
    async fn running(self: &Arc<Self>, hash: InfoHash) -> Result<TorrentHandle, CatalogError> {
        let mut first = true;
        loop {
            let mut changed = {
                let mut map = self.lock();
                let entry = map.get_mut(&hash).ok_or(CatalogError::UnknownTorrent)?;
                match &entry.state {
                    State::Running(h) => return Ok(h.clone()),
                    State::Idle if first => self.start(hash, entry, None),
                    State::Idle => {
                        let why = entry.error.clone().unwrap_or_else(|| "the torrent was closed".into());
                        return Err(CatalogError::Unavailable(why));
                    }
                    State::Starting | State::Fetching(_) => {}
                }
                if !entry.active() {
                    let why = entry.error.clone().unwrap_or_else(|| "the torrent cannot start".into());
                    return Err(CatalogError::Unavailable(why));
                }
                entry.changed.subscribe()
            };
            first = false;
            if changed.changed().await.is_err() {
                return Err(CatalogError::UnknownTorrent);
            }
        }
    }

    async fn pass_peers(&self, hash: InfoHash, peers: Vec<SocketAddr>) {
        enum Target {
            Torrent(TorrentHandle),
            Magnet(MagnetHandle),
        }
        let target = match self.lock().get(&hash).map(|e| &e.state) {
            Some(State::Running(h)) => Target::Torrent(h.clone()),
            Some(State::Fetching(m)) => Target::Magnet(m.clone()),
            _ => return,
        };
        let _ = match target {
            Target::Torrent(h) => h.add_peers(peers).await,
            Target::Magnet(m) => m.add_peers(peers).await,
        };
    }

    pub(crate) fn reader_closed(&self, hash: InfoHash) {
        if let Some(e) = self.lock().get_mut(&hash) {
            e.readers = e.readers.saturating_sub(1);
            e.touch(Instant::now() + self.timeout());
        }
        self.refocus.notify_one();
    }

    /// Closes torrents idle past their deadline, and running torrents whose node task
    /// stopped on a storage failure.
    fn tick(&self) {
        let now = Instant::now();
        let mut closed = false;
        let mut map = self.lock();
        for (hash, e) in map.iter_mut() {
            let failure = match &e.state {
                State::Running(h) => h.progress().error,
                _ => None,
            };
            let idle = matches!(e.state, State::Running(_) | State::Fetching(_)) && e.readers == 0 && now >= e.deadline;
            if idle || failure.is_some() {
                tracing::debug!(info_hash = %hash, ?failure, "closing torrent");
                self.close(e);
                e.error = failure;
                closed = true;
            }
        }
        drop(map);
        if closed {
            self.refocus.notify_one();
        }
    }
}

async fn tick_loop(inner: Weak<Inner>) {
    loop {
        let period = {
            let Some(inner) = inner.upgrade() else { return };
            inner.tick();
            (inner.timeout() / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
        };
        tokio::time::sleep(period).await;
    }
}

/// Applies focus mode: caps every running torrent without a reader while any torrent has
/// one, lifts the caps otherwise. The only sender of caps, so they reach the node in order.
async fn focus_loop(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut last_rate = None;
    loop {
        wake.notified().await;
        let Some(me) = inner.upgrade() else { return };
        let rate = match *me.focus.lock().unwrap_or_else(|p| p.into_inner()) {
            Focus::Cap(rate) => Some(rate),
            Focus::Off => None,
        };
        let rate_changed = std::mem::replace(&mut last_rate, rate) != rate;
        let changes: Vec<(TorrentHandle, bool)> = {
            let mut map = me.lock();
            let streaming = map.values().any(|e| e.readers > 0);
            map.values_mut()
                .filter_map(|e| {
                    let State::Running(h) = &e.state else { return None };
                    let want = rate.is_some() && streaming && e.readers == 0 && !h.progress().complete;
                    (want != e.capped || (want && rate_changed)).then(|| {
                        e.capped = want;
                        (h.clone(), want)
                    })
                })
                .collect()
        };
        drop(me);
        for (h, cap) in changes {
            tracing::debug!(info_hash = %h.info_hash(), cap, "focus mode");
            let _ = h.cap_download(if cap { rate } else { None }).await;
        }
    }
}
