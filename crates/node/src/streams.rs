//! The streaming state a torrent's readers share, per file: which engine readers are open,
//! and the container probe.
//!
//! When the first reader of a file opens, a probe task opens one more engine reader and moves
//! its playhead to each range the media prober asks for, so the engine fetches exactly those
//! bytes first; once the probe is done that reader holds the container's critical ranges as
//! protected (never deprioritised while the file is being read) with its own window parked at
//! the end of the file, and every reader of the file learns the media bitrate. The probe
//! result is kept, so later readers do not probe again. When the last reader closes, the
//! probe reader closes too.
//!
//! While the probe runs, one more engine reader sits on the file's tail: an MP4's `moov` and
//! a Matroska file's Cues are usually there, and a player reads them right after the head, so
//! the tail is fetched together with the head instead of one round of pieces later.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use sluice_core::metainfo::Metainfo;
use sluice_engine::ReaderId;
use sluice_media::Probe;
use sluice_storage::PieceStore;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::FileReader;
use crate::torrent_task::Command;
use crate::verified::Verified;

/// Bytes at the end of a file fetched alongside its head while it is probed.
const TAIL_GUESS: u64 = 512 * 1024;

/// Bytes at the start of a file a player's first reads usually fall in (container header,
/// first key frame).
const HEAD_GUESS: u64 = 4 * 1024 * 1024;

/// The pieces a player will most likely ask for first: the head and the tail of the torrent's
/// largest file (its video). A torrent added to be watched gets them before anything else, so
/// the connections' first bursts (which come before the player has even opened its stream)
/// carry them, not pieces from the middle.
pub(crate) fn likely_first_reads(meta: &Metainfo) -> Vec<Range<u32>> {
    let Some(file) = meta.files.iter().filter(|f| !f.pad && f.length > 0).max_by_key(|f| f.length) else {
        return Vec::new();
    };
    let pieces = |bytes: Range<u64>| {
        let first = meta.lengths.piece_at(sluice_core::ByteOffset(bytes.start))?.get();
        let last = meta.lengths.piece_at(sluice_core::ByteOffset(bytes.end - 1))?.get();
        Some(first..last + 1)
    };
    let head = pieces(file.offset..file.offset + file.length.min(HEAD_GUESS));
    let tail = pieces(file.end().saturating_sub(TAIL_GUESS).max(file.offset)..file.end());
    match (head, tail) {
        (Some(h), Some(t)) if t.start <= h.end => std::iter::once(h.start..t.end).collect(),
        (h, t) => h.into_iter().chain(t).collect(),
    }
}

#[derive(Debug, Default)]
struct FileState {
    /// Engine readers of open `FileReader`s.
    readers: Vec<ReaderId>,
    probe_task: Option<JoinHandle<()>>,
    probe_reader: Option<ReaderId>,
    /// The tail reader while the probe runs.
    tail_reader: Option<ReaderId>,
    probed: Option<Probe>,
}

#[derive(Debug)]
pub(crate) struct Streams {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) store: Arc<dyn PieceStore>,
    pub(crate) verified: Arc<Verified>,
    pub(crate) meta: Arc<Metainfo>,
    files: Mutex<HashMap<usize, FileState>>,
}

impl Streams {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        store: Arc<dyn PieceStore>,
        verified: Arc<Verified>,
        meta: Arc<Metainfo>,
    ) -> Self {
        Self { commands, store, verified, meta, files: Mutex::default() }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<usize, FileState>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reader of bytes `range` of file `index`; `None` if there is no such file or range.
    pub(crate) fn open(self: &Arc<Self>, index: usize, range: Range<u64>) -> Option<FileReader> {
        let file = self.meta.files.get(index).filter(|f| !f.pad)?;
        if range.start > range.end || range.end > file.length {
            return None;
        }
        Some(FileReader::spawn(self.clone(), index, file.offset..file.offset + file.length, range))
    }

    /// The media bitrate of file `index` in bytes per second, once its probe found it.
    pub(crate) fn bitrate(&self, index: usize) -> Option<u64> {
        self.files().get(&index)?.probed.as_ref()?.bitrate
    }

    /// Opens an engine reader of file `index` at `offset`; the first one starts the probe.
    pub(crate) async fn open_engine_reader(self: &Arc<Self>, index: usize, offset: u64) -> Option<ReaderId> {
        let file = self.meta.files.get(index)?;
        let id = self.engine_reader(file.offset..file.offset + file.length, offset).await?;
        let (start_probe, bitrate) = {
            let mut files = self.files();
            let st = files.entry(index).or_default();
            st.readers.push(id);
            (st.readers.len() == 1, st.probed.as_ref().and_then(|p| p.bitrate))
        };
        if let Some(b) = bitrate {
            let _ = self.commands.send(Command::ReaderBitrate { id, bytes_per_sec: b }).await;
        }
        if start_probe {
            let me = self.clone();
            let task = tokio::spawn(async move { me.probe(index).await });
            let mut files = self.files();
            let st = files.entry(index).or_default();
            // The reader may have closed meanwhile; then the probe is not wanted.
            if st.readers.is_empty() {
                task.abort();
            } else {
                st.probe_task = Some(task);
            }
        }
        Some(id)
    }

    /// The engine reader `id` of file `index` closed (its `FileReader` ended or was dropped).
    pub(crate) fn close_engine_reader(&self, index: usize, id: ReaderId) {
        let mut closes = vec![id];
        {
            let mut files = self.files();
            if let Some(st) = files.get_mut(&index) {
                st.readers.retain(|r| *r != id);
                if st.readers.is_empty() {
                    if let Some(t) = st.probe_task.take() {
                        t.abort();
                    }
                    closes.extend(st.probe_reader.take());
                    closes.extend(st.tail_reader.take());
                }
            }
        }
        for id in closes {
            if let Err(mpsc::error::TrySendError::Full(cmd)) = self.commands.try_send(Command::CloseReader { id }) {
                let tx = self.commands.clone();
                tokio::spawn(async move { tx.send(cmd).await });
            }
        }
    }

    async fn engine_reader(&self, file: Range<u64>, offset: u64) -> Option<ReaderId> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::OpenReader { file, offset, reply }).await.ok()?;
        rx.await.ok()
    }

    async fn probe(self: Arc<Self>, index: usize) {
        let Some(file) = self.meta.files.get(index) else { return };
        let range = file.offset..file.offset + file.length;
        let cached = self.files().get(&index).and_then(|st| st.probed.clone());
        // A probe already made needs no reading: the reader only holds the protected ranges,
        // from the file's end, where it has no window (at 0 its window would fetch the head's
        // readahead whenever a player connects, a player seeking elsewhere included).
        let at = if cached.is_some() { file.length } else { 0 };
        let Some(id) = self.engine_reader(range.clone(), at).await else { return };
        self.files().entry(index).or_default().probe_reader = Some(id);
        if cached.is_none()
            && let Some(tail) = self.engine_reader(range, file.length.saturating_sub(TAIL_GUESS)).await
        {
            self.files().entry(index).or_default().tail_reader = Some(tail);
        }
        let probe = match cached {
            Some(p) => p,
            None => {
                let ext = file.path.last().and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_owned());
                let commands = self.commands.clone();
                let p = crate::probe::probe_file(
                    self.store.clone(),
                    self.verified.clone(),
                    self.meta.lengths,
                    file.offset,
                    file.length,
                    ext.as_deref(),
                    |need| {
                        let _ = commands.try_send(Command::ReaderAt { id, offset: need.start });
                    },
                )
                .await;
                tracing::info!(file = index, format = ?p.format, critical = ?p.critical, bitrate = ?p.bitrate, "probed");
                p
            }
        };
        let (readers, tail) = {
            let mut files = self.files();
            let st = files.entry(index).or_default();
            st.probed = Some(probe.clone());
            (st.readers.clone(), st.tail_reader.take())
        };
        let c = &self.commands;
        if let Some(tail) = tail {
            let _ = c.send(Command::CloseReader { id: tail }).await;
        }
        let _ = c.send(Command::ReaderProtect { id, ranges: probe.critical.clone() }).await;
        let _ = c.send(Command::ReaderAt { id, offset: file.length }).await;
        if let Some(b) = probe.bitrate {
            for r in readers {
                let _ = c.send(Command::ReaderBitrate { id: r, bytes_per_sec: b }).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::metainfo::{Metainfo, TorrentBuilder};

    use super::likely_first_reads;

    const MIB: u64 = 1024 * 1024;

    fn meta(files: &[(&str, u64)], piece: u32) -> Metainfo {
        let b =
            files.iter().fold(TorrentBuilder::new("t", piece), |b, (name, len)| b.file_with(&[name], *len, |_, _| {}));
        Metainfo::from_bytes(&b.build()).unwrap()
    }

    #[test]
    fn head_and_tail_of_the_largest_file() {
        // 1 MiB pieces: a.srt (1 MiB) is piece 0, movie.mkv (8 MiB) pieces 1..9.
        let m = meta(&[("a.srt", MIB), ("movie.mkv", 8 * MIB)], MIB as u32);
        assert_eq!(likely_first_reads(&m), vec![1..5, 8..9]);
    }

    #[test]
    fn a_small_file_is_one_range() {
        let m = meta(&[("clip.mp4", 3 * MIB + 5)], MIB as u32);
        let reads = likely_first_reads(&m);
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0], 0..4);
    }
}
