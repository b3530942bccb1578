//! Streaming reads of a file while its torrent downloads.
//!
//! A [`FileReader`] is an `AsyncRead` over one byte range of one file. A small producer task
//! walks the range: it waits until the piece under its position is verified (woken by piece
//! completion, never by polling), reads the bytes on the blocking pool into one of a few
//! recycled buffers, and hands them over a channel. So a read never allocates in steady
//! state, never holds a lock while waiting, and only ever returns verified bytes. Dropping
//! the reader stops the task.
//!
//! The task also owns the reader's engine reader: it opens it first and moves its playhead to
//! each position it waits at, so the engine fetches the pieces under it before anything else;
//! when the range is delivered or the reader dropped, the engine reader closes at once.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sluice_core::{BlockRef, ByteOffset};
use sluice_engine::ReaderId;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::streams::Streams;
use crate::verified::read_verified;

/// Bytes read from storage at once (less at piece and range ends).
const CHUNK: usize = 256 * 1024;
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
        let producer = tokio::spawn(async move {
            let Some(id) = streams.open_engine_reader(index, range.start).await else {
                let _ = tx.send(Err(io::Error::other("the torrent stopped"))).await;
                return;
            };
            let _open = EngineReader { streams: streams.clone(), index, id };
            let (store, verified, lengths) = (streams.store.clone(), streams.verified.clone(), streams.meta.lengths);
            let range = file.start + range.start..file.start + range.end;
            let mut pos = range.start;
            let mut fresh = BUFFERS;
            let mut last_piece = None;
            while pos < range.end {
                let Some(piece) = lengths.piece_at(ByteOffset(pos)) else {
                    let _ = tx.send(Err(io::Error::other("read past the torrent's end"))).await;
                    return;
                };
                if last_piece != Some(piece) {
                    last_piece = Some(piece);
                    let at = crate::torrent_task::Command::ReaderAt { id, offset: pos - file.start };
                    let _ = streams.commands.send(at).await;
                }
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
                let chunk = match read_verified(&verified, &store, block, buf).await {
                    (buf, Ok(())) => Ok(Chunk { buf, len }),
                    (_, Err(e)) => Err(e),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
                pos += len as u64;
            }
        });
        Self { chunks, recycle, current: None, producer }
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
                Poll::Ready(Some(Ok(c))) => self.current = Some((c.buf, 0, c.len)),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // The whole range was delivered: end of file.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
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

impl Drop for FileReader {
    fn drop(&mut self) {
        self.producer.abort();
    }
}
