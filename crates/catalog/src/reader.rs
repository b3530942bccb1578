//! A stream of one file range that outlives the torrent's sleep: opening it revives the
//! torrent if it was closed, and while it exists the torrent counts as in use.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use sluice_core::InfoHash;
use sluice_node::FileReader;
use tokio::io::{AsyncRead, ReadBuf};

use crate::Inner;

type Opening = Pin<Box<dyn Future<Output = io::Result<FileReader>> + Send>>;

enum State {
    /// The torrent is starting (or fetching its metadata); the node reader opens after.
    Opening(Opening),
    Open(FileReader),
    Failed,
}

/// An `AsyncRead` of verified bytes of one file range (see [`crate::Catalog::open_reader`]).
pub struct Reader {
    state: State,
    _guard: Guard,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Opening(_) => "opening",
            State::Open(_) => "open",
            State::Failed => "failed",
        };
        f.debug_struct("Reader").field("state", &state).field("torrent", &self._guard.hash).finish()
    }
}

impl Reader {
    pub(crate) fn open(reader: FileReader, guard: Guard) -> Self {
        Self { state: State::Open(reader), _guard: guard }
    }

    pub(crate) fn opening(future: Opening, guard: Guard) -> Self {
        Self { state: State::Opening(future), _guard: guard }
    }
}

impl AsyncRead for Reader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Open(r) => return Pin::new(r).poll_read(cx, buf),
                State::Opening(f) => match f.as_mut().poll(cx) {
                    Poll::Ready(Ok(r)) => self.state = State::Open(r),
                    Poll::Ready(Err(e)) => {
                        self.state = State::Failed;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                State::Failed => return Poll::Ready(Err(io::Error::other("the torrent could not be started"))),
            }
        }
    }
}

/// Counts a reader on its entry; dropping it starts the idle countdown from now.
pub(crate) struct Guard {
    pub(crate) catalog: Weak<Inner>,
    pub(crate) hash: InfoHash,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(inner) = self.catalog.upgrade() {
            inner.reader_closed(self.hash);
        }
    }
}
