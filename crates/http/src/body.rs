//! The response body: pulls a [`FileReader`] one chunk per frame.
//!
//! Hyper asks for the next frame only once it has taken the previous one, so at most one
//! chunk is buffered here and back-pressure from a slow client reaches the reader. The chunk
//! buffer is a `BytesMut` whose allocation is reclaimed once hyper drops the frame it lent,
//! so steady-state streaming does not allocate.
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

pub(crate) struct ReaderBody {
    reader: Box<dyn FileReader>,
    torrent: InfoHash,
    index: FileIndex,
    position: u64,
    remaining: u64,
    chunk: usize,
    buf: BytesMut,
    read_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Whether the deadline is armed for a read in progress: it is re-armed when a read starts,
    /// so time the client spent not reading is never charged to the source.
    reading: bool,
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
            buf: BytesMut::new(),
            read_timeout,
            deadline: Box::pin(tokio::time::sleep(read_timeout)),
            reading: false,
        }
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
        if !this.reading {
            this.reading = true;
            this.deadline.as_mut().reset(Instant::now() + this.read_timeout);
        }
        let want = usize::try_from(this.remaining).map_or(this.chunk, |r| r.min(this.chunk));
        if this.buf.len() < want {
            this.buf.resize(want, 0);
        }
        let mut read_buf = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.reader).poll_read(cx, &mut read_buf) {
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                let timeout = this.read_timeout;
                this.fail(BodyError::Timeout(timeout))
            }
            Poll::Ready(Err(e)) => this.fail(e.into()),
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 {
                    let missing = this.remaining;
                    return this.fail(BodyError::Eof(missing));
                }
                this.reading = false;
                this.position += n as u64;
                this.remaining -= n as u64;
                let data = this.buf.split_to(n).freeze();
                this.buf.clear();
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
