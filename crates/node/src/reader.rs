//! Streaming reads of a file while its torrent downloads.
//!
//! A [`FileReader`] is an `AsyncRead` over one byte range of one file. A small producer task
//! walks the range: it waits until the piece under its position is verified (woken by piece
//! completion, never by polling), reads the bytes on the blocking pool into one of a few
//! recycled buffers, and hands them over a channel. So a read never allocates in steady
//! state, never holds a lock while waiting, and only ever returns verified bytes. Dropping
//! the reader stops the task.
//!
//! Metrics: how long the reader waited for each piece it had to wait for
//! (`sluice_piece_wait_seconds`), and how much verified data lies ahead of it, in bytes and, once
//! the file's bitrate is known, in seconds of media (`sluice_stream_buffered_ahead_*`, per file).
//!
//! The task also owns the reader's engine reader: it opens it first, and when the range is
//! delivered or the reader dropped, the engine reader closes at once. The engine's playhead is
//! where the *consumer* is, not the producer: the byte after the last one handed out, moved
//! to the engine whenever it enters another piece (the consumer takes a chunk there, or waits
//! for one there). The producer reads up to [`BUFFERS`] chunks ahead of the consumer; counted
//! as the player's position, that lead would make the next piece urgent while a player reads
//! a header and hangs up, as players do before a seek. A consumer that runs dry waits at the
//! producer's position, so a piece a player really waits for is announced all the same.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sluice_core::{BlockRef, ByteOffset, Lengths, PieceIndex};
use sluice_engine::ReaderId;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::streams::Streams;
use crate::verified::{Verified, read_verified};

/// Bytes read from storage at once (less at piece and range ends).
const CHUNK: usize = 256 * 1024;
/// Pieces looked at, at most, when measuring the verified data ahead of a reader.
const AHEAD_SCAN: u32 = 256;
/// Chunks read ahead of the consumer; also the number of buffers a reader owns.
const BUFFERS: usize = 3;

struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// An `AsyncRead` of verified bytes of one file range; see the module docs.
#[derive(Debug)]
pub struct FileReader {
    chunks: mpsc::Receiver<io::Result<Chunk>>,
    recycle: mpsc::Sender<Vec<u8>>,
    current: Option<(Vec<u8>, usize, usize)>,
    producer: JoinHandle<()>,
    playhead: Playhead,
}

/// The consumer's side of the engine playhead (see the module docs).
#[derive(Debug)]
struct Playhead {
    lengths: Lengths,
    /// The file's first byte in the content stream.
    file_start: u64,
    /// The next byte the consumer gets, in the content stream.
    pos: u64,
    end: u64,
    /// The piece the engine was last told of.
    announced: Option<PieceIndex>,
    /// File offsets for the task that moves the engine reader (coalesced: only the latest counts).
    tx: watch::Sender<u64>,
}

impl Playhead {
    /// Tells the engine when the consumer's next byte lies in another piece than last said.
    /// O(1), no allocation, never blocks.
    fn announce(&mut self) {
        if self.pos >= self.end {
            return;
        }
        let piece = self.lengths.piece_at(ByteOffset(self.pos));
        if piece.is_some() && piece != self.announced {
            self.announced = piece;
            self.tx.send_replace(self.pos - self.file_start);
        }
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk({})", self.len)
    }
}

impl FileReader {
    /// Reads bytes `range` (relative to the file) of file `index`, whose bytes are `file` in
    /// the content stream.
    pub(crate) fn spawn(streams: Arc<Streams>, index: usize, file: Range<u64>, range: Range<u64>) -> Self {
        let (tx, chunks) = mpsc::channel(BUFFERS);
        let (recycle, mut pool) = mpsc::channel::<Vec<u8>>(BUFFERS);
        let lengths = streams.meta.lengths;
        let start = file.start + range.start;
        let (head_tx, mut head_rx) = watch::channel(range.start);
        let playhead = Playhead {
            lengths,
            file_start: file.start,
            pos: start,
            end: file.start + range.end,
            announced: lengths.piece_at(ByteOffset(start)),
            tx: head_tx,
        };
        let producer = tokio::spawn(async move {
            let Some(id) = streams.open_engine_reader(index, range.start).await else {
                let _ = tx.send(Err(io::Error::other("the torrent stopped"))).await;
                return;
            };
            let _open = EngineReader { streams: streams.clone(), index, id };
            // Moves the engine reader after the consumer; it ends with the producer (or when
            // the FileReader, and with it the sender, is dropped).
            let commands = streams.commands.clone();
            let _forward = AbortOnDrop(tokio::spawn(async move {
                while head_rx.changed().await.is_ok() {
                    let offset = *head_rx.borrow_and_update();
                    let at = crate::torrent_task::Command::ReaderAt { id, offset };
                    if commands.send(at).await.is_err() {
                        return;
                    }
                }
            }));
            let (store, verified, lengths) = (streams.store.clone(), streams.verified.clone(), streams.meta.lengths);
            let range = file.start + range.start..file.start + range.end;
            let mut pos = range.start;
            let mut fresh = BUFFERS;
            let labels = [("torrent", streams.meta.info_hash.to_hex()), ("file", index.to_string())];
            let piece_wait = metrics::histogram!("sluice_piece_wait_seconds");
            let ahead_bytes = metrics::gauge!("sluice_stream_buffered_ahead_bytes", &labels);
            let ahead_seconds = metrics::gauge!("sluice_stream_buffered_ahead_seconds", &labels);
            let mut bitrate = None;
            while pos < range.end {
                let Some(piece) = lengths.piece_at(ByteOffset(pos)) else {
                    let _ = tx.send(Err(io::Error::other("read past the torrent's end"))).await;
                    return;
                };
                let piece_start = lengths.piece_start(piece).0;
                let piece_end = piece_start + u64::from(lengths.piece_len(piece));
                let len = (range.end.min(piece_end) - pos).min(CHUNK as u64) as usize;
                let buf = if fresh > 0 {
                    fresh -= 1;
                    vec![0u8; CHUNK]
                } else {
                    match pool.recv().await {
                        Some(b) => b,
                        None => return,
                    }
                };
                let block = BlockRef { piece, offset: (pos - piece_start) as u32, len: len as u32 };
                let wait_started = (!verified.has(piece)).then(std::time::Instant::now);
                let read = read_verified(&verified, &store, block, buf).await;
                if let Some(t) = wait_started {
                    piece_wait.record(t.elapsed());
                }
                let chunk = match read {
                    (buf, Ok(())) => Ok(Chunk { buf, len }),
                    (_, Err(e)) => Err(e),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
                pos += len as u64;
                let ahead = verified_ahead(&verified, lengths, pos, range.end);
                ahead_bytes.set(ahead as f64);
                bitrate = bitrate.or_else(|| streams.bitrate(index));
                if let Some(b) = bitrate.filter(|&b| b > 0) {
                    ahead_seconds.set(ahead as f64 / b as f64);
                }
            }
            ahead_bytes.set(0.0);
            ahead_seconds.set(0.0);
        });
        Self { chunks, recycle, current: None, producer, playhead }
    }
}

impl AsyncRead for FileReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some((buf, at, len)) = &mut self.current {
                if *at < *len {
                    let n = (*len - *at).min(out.remaining());
                    out.put_slice(&buf[*at..*at + n]);
                    *at += n;
                    return Poll::Ready(Ok(()));
                }
                if let Some((buf, _, _)) = self.current.take() {
                    // The producer may have stopped; then the buffer is simply dropped.
                    let _ = self.recycle.try_send(buf);
                }
            }
            match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(Ok(c))) => {
                    // Chunks never straddle pieces: this one starts in the piece it lies in.
                    self.playhead.announce();
                    self.playhead.pos += c.len as u64;
                    self.current = Some((c.buf, 0, c.len));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // The whole range was delivered: end of file.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    // Run dry: the consumer waits where the producer is.
                    self.playhead.announce();
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Verified bytes from `pos` on, contiguous, up to `end` (looking at [`AHEAD_SCAN`] pieces at
/// most).
fn verified_ahead(verified: &Verified, lengths: sluice_core::Lengths, pos: u64, end: u64) -> u64 {
    let mut at = pos;
    for _ in 0..AHEAD_SCAN {
        match lengths.piece_at(ByteOffset(at)) {
            Some(piece) if at < end && verified.has(piece) => {
                at = lengths.piece_start(piece).0 + u64::from(lengths.piece_len(piece));
            }
            _ => break,
        }
    }
    at.min(end) - pos
}

/// Closes the engine reader when the producer ends, however it ends (range delivered, error,
/// or aborted because the `FileReader` was dropped).
struct EngineReader {
    streams: Arc<Streams>,
    index: usize,
    id: ReaderId,
}

impl Drop for EngineReader {
    fn drop(&mut self) {
        self.streams.close_engine_reader(self.index, self.id);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_core::{ByteOffset, Lengths};
    use tokio::io::AsyncReadExt;
    use tokio::sync::{mpsc, watch};

    use super::{Chunk, FileReader, Playhead};

    const PIECE: u64 = 1 << 20;

    /// Through `poll_read`: the engine hears of the consumer when it takes a chunk in another
    /// piece or runs dry at the start of one, once per piece, as a file offset; never of the
    /// producer's lead.
    #[tokio::test]
    async fn the_engine_hears_of_the_consumer_only_when_it_enters_another_piece() {
        // A file starting half a piece into the content and ending with piece 2.
        let lengths = Lengths::new(4 * PIECE, PIECE, 4).unwrap();
        let file_start = PIECE / 2;
        let (tx, mut heads) = watch::channel(0);
        let playhead = Playhead {
            lengths,
            file_start,
            pos: file_start,
            end: 3 * PIECE,
            announced: lengths.piece_at(ByteOffset(file_start)),
            tx,
        };
        let (chunks_tx, chunks) = mpsc::channel(8);
        let (recycle, _pool) = mpsc::channel(8);
        let producer = tokio::spawn(async {});
        let mut reader = FileReader { chunks, recycle, current: None, producer, playhead };
        let chunk = |len: u64| Ok(Chunk { buf: vec![7; len as usize], len: len as usize });
        let mut buf = vec![0; PIECE as usize];
        let dry = Duration::from_millis(20);

        // The rest of piece 0 in two chunks, and all of piece 1 already produced: reading piece
        // 0 says nothing.
        for len in [PIECE / 4, PIECE / 4, PIECE] {
            chunks_tx.send(chunk(len)).await.unwrap();
        }
        reader.read_exact(&mut buf[..(PIECE / 2) as usize]).await.unwrap();
        assert!(!heads.has_changed().unwrap(), "the producer's lead is not the playhead");
        // Taking the chunk that starts piece 1 moves the playhead there.
        reader.read_exact(&mut buf).await.unwrap();
        assert!(heads.has_changed().unwrap());
        assert_eq!(*heads.borrow_and_update(), PIECE / 2, "a file offset: piece 1's first byte");
        // Run dry at the start of piece 2: the consumer waits there, and says so once.
        for _ in 0..2 {
            assert!(tokio::time::timeout(dry, reader.read(&mut buf)).await.is_err());
        }
        assert!(heads.has_changed().unwrap());
        assert_eq!(*heads.borrow_and_update(), PIECE / 2 + PIECE);
        chunks_tx.send(chunk(PIECE)).await.unwrap();
        reader.read_exact(&mut buf).await.unwrap();
        assert!(!heads.has_changed().unwrap(), "piece 2 was said already");
        // Everything read; waiting at the end says nothing.
        assert!(tokio::time::timeout(dry, reader.read(&mut buf)).await.is_err());
        assert!(!heads.has_changed().unwrap());
    }
}
