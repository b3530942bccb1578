//! The response body: pulls a [`FileReader`] one chunk per frame.
//!
//! Hyper asks for the next frame only when its write queue has room, so back-pressure from a
//! slow client reaches the reader. Frames are slices of a few chunk buffers kept here; hyper
//! holds up to a few frames in its queue, and a buffer is read into again once hyper has
//! dropped every frame cut from it, so steady-state streaming does not allocate.
//!
//! Each body reports to the `metrics` facade: time to its first byte, bytes served, and stalls
//! (a read that waited longer than [`STALL`] once bytes were flowing), with the metric handles
//! made once per response so a read records without allocating.
//!
//! A read that makes no progress for the read timeout, an I/O error, or an early end of file
//! fails the body. Hyper then closes the connection before `Content-Length` bytes were sent,
//! which every client sees as a truncated transfer rather than a complete short file.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use metrics::{Counter, Gauge, Histogram};
use sluice_core::InfoHash;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::source::{FileIndex, FileReader};

#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("no bytes from the source for {0:?}")]
    Timeout(Duration),
    #[error("the source ended {0} bytes early")]
    Eof(u64),
    #[error("source read failed: {0}")]
    Io(#[from] io::Error),
}

/// Enough for the frames hyper queues (a few hundred KiB at most) plus the one being read.
const SLOTS: usize = 4;
/// A read after the first byte that waits longer than this is a stall (what a player sees as
/// buffering, once its own buffer runs dry).
const STALL: Duration = Duration::from_secs(1);

/// One response's metric handles.
struct Meters {
    started: Instant,
    first_byte: Option<Histogram>,
    bytes: Counter,
    stalls: Counter,
    stall_seconds: Histogram,
    active: Gauge,
}

impl Meters {
    fn new(torrent: InfoHash, index: FileIndex) -> Self {
        let labels = [("torrent", torrent.to_hex()), ("file", index.0.to_string())];
        let active = metrics::gauge!("sluice_streams_active");
        active.increment(1.0);
        Self {
            started: Instant::now(),
            first_byte: Some(metrics::histogram!("sluice_stream_first_byte_seconds")),
            bytes: metrics::counter!("sluice_stream_bytes_total", &labels),
            stalls: metrics::counter!("sluice_stream_stalls_total", &labels),
            stall_seconds: metrics::histogram!("sluice_stream_stall_seconds"),
            active,
        }
    }
}

impl Drop for Meters {
    fn drop(&mut self) {
        self.active.decrement(1.0);
    }
}

pub(crate) struct ReaderBody {
    reader: Box<dyn FileReader>,
    torrent: InfoHash,
    index: FileIndex,
    position: u64,
    remaining: u64,
    chunk: usize,
    /// Chunk buffers, each emptied after a read but keeping its allocation.
    slots: Vec<BytesMut>,
    /// The slot the read in progress fills.
    slot: usize,
    read_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Whether the deadline is armed for a read in progress: it is re-armed when a read starts,
    /// so time the client spent not reading is never charged to the source.
    reading: bool,
    read_started: Instant,
    meters: Meters,
}

impl ReaderBody {
    pub(crate) fn new(
        reader: Box<dyn FileReader>,
        torrent: InfoHash,
        index: FileIndex,
        start: u64,
        len: u64,
        chunk: usize,
        read_timeout: Duration,
    ) -> Self {
        Self {
            reader,
            torrent,
            index,
            position: start,
            remaining: len,
            chunk: chunk.max(1),
            slots: Vec::with_capacity(SLOTS),
            slot: 0,
            read_timeout,
            deadline: Box::pin(tokio::time::sleep(read_timeout)),
            reading: false,
            read_started: Instant::now(),
            meters: Meters::new(torrent, index),
        }
    }

    /// A slot with room for `want` bytes: a free one, else a new one while there are fewer than
    /// [`SLOTS`], else the next in turn gets a fresh allocation and the old one is freed when
    /// hyper drops its frames.
    fn pick_slot(&mut self, want: usize) -> usize {
        if let Some(i) = self.slots.iter_mut().position(|b| b.capacity() >= want || b.try_reclaim(want)) {
            return i;
        }
        let fresh = BytesMut::with_capacity(self.chunk);
        if self.slots.len() < SLOTS {
            self.slots.push(fresh);
            return self.slots.len() - 1;
        }
        let i = (self.slot + 1) % SLOTS;
        self.slots[i] = fresh;
        i
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        tracing::warn!(
            torrent = %self.torrent, file = self.index.0, offset = self.position, missing = self.remaining,
            "stream aborted: {error}"
        );
        self.remaining = 0;
        Poll::Ready(Some(Err(error)))
    }
}

impl fmt::Debug for ReaderBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaderBody")
            .field("torrent", &self.torrent)
            .field("index", &self.index)
            .field("position", &self.position)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining).map_or(this.chunk, |r| r.min(this.chunk));
        if !this.reading {
            this.reading = true;
            this.read_started = Instant::now();
            this.deadline.as_mut().reset(this.read_started + this.read_timeout);
            this.slot = this.pick_slot(want);
            this.slots[this.slot].resize(want, 0);
        }
        let mut read_buf = ReadBuf::new(&mut this.slots[this.slot][..want]);
        let polled = Pin::new(&mut this.reader).poll_read(cx, &mut read_buf);
        let n = read_buf.filled().len();
        match polled {
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                let timeout = this.read_timeout;
                this.fail(BodyError::Timeout(timeout))
            }
            Poll::Ready(Err(e)) => this.fail(e.into()),
            Poll::Ready(Ok(())) if n == 0 => {
                let missing = this.remaining;
                this.fail(BodyError::Eof(missing))
            }
            Poll::Ready(Ok(())) => {
                this.reading = false;
                let m = &mut this.meters;
                if let Some(first) = m.first_byte.take() {
                    first.record(m.started.elapsed());
                } else {
                    let waited = this.read_started.elapsed();
                    if waited > STALL {
                        m.stalls.increment(1);
                        m.stall_seconds.record(waited);
                    }
                }
                m.bytes.increment(n as u64);
                this.position += n as u64;
                this.remaining -= n as u64;
                let buf = &mut this.slots[this.slot];
                let data = buf.split_to(n).freeze();
                buf.clear();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};
    use std::io::Cursor;

    use http_body::Body as _;

    use super::*;

    async fn next(body: &mut ReaderBody) -> Option<Bytes> {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        Some(frame.unwrap().into_data().unwrap())
    }

    /// With hyper holding the last few frames, reads cycle through the same few allocations.
    #[tokio::test]
    async fn buffers_are_reused_while_frames_are_in_flight() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let reader = Box::new(Cursor::new(data.clone()));
        let mut body =
            ReaderBody::new(reader, InfoHash([0; 20]), FileIndex(0), 0, 1_000_000, 1000, Duration::from_secs(1));
        let mut in_flight = VecDeque::new();
        let (mut out, mut buffers, mut squatters) = (Vec::new(), HashSet::new(), Vec::new());
        while let Some(frame) = next(&mut body).await {
            out.extend_from_slice(&frame);
            buffers.insert(frame.as_ptr());
            in_flight.push_back(frame);
            if in_flight.len() > 2 {
                in_flight.pop_front();
                // Takes any chunk the allocator got back, so a new buffer cannot reuse its address.
                squatters.push(Vec::<u8>::with_capacity(1000));
            }
        }
        assert_eq!(out, data);
        assert!(buffers.len() <= SLOTS, "{} buffers for 1000 frames", buffers.len());
        drop(squatters);
    }
}
