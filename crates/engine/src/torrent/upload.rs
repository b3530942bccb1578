//! Serving peers' requests. A request waits in the peer's queue until the bytes being read
//! for it and the bytes not yet taken by its socket leave room, so a slow downloader costs
//! a bounded amount of memory however many requests it sends.

use sluice_core::{BlockRef, Timestamp};
use sluice_wire::{Message, encode_piece_header};

use super::protocol::REQQ;
use super::{Output, PeerKey, Torrent};

/// Largest upload request accepted (clients use 16 KiB; some ask for more).
const MAX_REQUEST_LEN: u32 = 128 * 1024;
/// Bytes being read for a peer plus bytes waiting for its socket, at most.
const UPLOAD_WINDOW: u64 = 1024 * 1024;
/// Storage reads outstanding per peer, at most.
const MAX_READS: usize = 64;

impl Torrent {
    pub(super) fn on_request(&mut self, key: PeerKey, index: u32, begin: u32, length: u32, now: Timestamp) {
        let Some(block) = self.lengths.request_from_wire(index, begin, length, MAX_REQUEST_LEN) else {
            return self.protocol_error(key, format!("bad request {index}+{begin} ({length})"), now);
        };
        let have = self.picker.have().get(block.piece);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let queued = peer.upload_queue.len() + peer.reading.len();
        if !have || peer.am_choking || queued >= REQQ as usize {
            if peer.fast {
                peer.send(&reject(block), now, &mut self.flush);
            }
            return;
        }
        peer.upload_queue.push_back(block);
        self.pump_uploads(key, now);
    }

    pub(super) fn on_cancel(&mut self, key: PeerKey, index: u32, begin: u32, length: u32, now: Timestamp) {
        let Some(block) = self.lengths.request_from_wire(index, begin, length, MAX_REQUEST_LEN) else {
            return self.protocol_error(key, format!("bad cancel {index}+{begin} ({length})"), now);
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let removed = if let Some(i) = peer.upload_queue.iter().position(|b| *b == block) {
            peer.upload_queue.remove(i);
            true
        } else if let Some(i) = peer.reading.iter().position(|b| *b == block) {
            // The read completes anyway; its data is dropped.
            peer.reading.remove(i);
            peer.reading_bytes -= u64::from(block.len);
            true
        } else {
            false
        };
        // BEP 6: with the fast extension every request is answered, a cancelled one by Reject.
        if removed && peer.fast {
            peer.send(&reject(block), now, &mut self.flush);
        }
        self.pump_uploads(key, now);
    }

    pub(super) fn on_sent(&mut self, key: PeerKey, bytes: usize, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.unsent = peer.unsent.saturating_sub(bytes as u64);
        self.pump_uploads(key, now);
    }

    pub(super) fn on_block_read(&mut self, key: PeerKey, block: BlockRef, data: Option<&[u8]>, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(i) = peer.reading.iter().position(|b| *b == block) else {
            return;
        };
        peer.reading.remove(i);
        peer.reading_bytes -= u64::from(block.len);
        match data {
            Some(data) if data.len() == block.len as usize => {
                peer.write(now, &mut self.flush, |out| {
                    encode_piece_header(block.piece.get(), block.offset, block.len, out);
                    out.extend_from_slice(data);
                });
                peer.up.add(u64::from(block.len), now);
                self.up.add(u64::from(block.len), now);
            }
            _ => {
                if peer.fast {
                    peer.send(&reject(block), now, &mut self.flush);
                }
            }
        }
        self.pump_uploads(key, now);
    }

    /// Starts storage reads for queued requests while the peer's window and the upload rate
    /// limit allow.
    pub(super) fn pump_uploads(&mut self, key: PeerKey, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        while let Some(&block) = peer.upload_queue.front() {
            if peer.reading.len() >= MAX_READS || peer.reading_bytes + peer.unsent >= UPLOAD_WINDOW {
                break;
            }
            let len = u64::from(block.len);
            if self.up_bucket.as_mut().is_some_and(|b| b.available(now) == 0) {
                self.up_blocked = true;
                break;
            }
            if let Some(limit) = &self.config.shared_upload_limit
                && !limit.try_take(len, now, self.up_turn)
            {
                let limit = limit.clone();
                self.up_turn = false;
                self.up_blocked = true;
                self.up_waiting = Some(limit.wait());
                self.up_retry = self.retry_time(&limit, now);
                break;
            }
            if let Some(bucket) = &mut self.up_bucket {
                bucket.take(len);
            }
            peer.upload_queue.pop_front();
            peer.reading.push_back(block);
            peer.reading_bytes += u64::from(block.len);
            self.outputs.push_back(Output::ReadBlock { peer: key, block });
        }
    }

    /// We choked the peer: its queued requests are dropped (rejected with the fast extension).
    pub(super) fn clear_uploads(&mut self, key: PeerKey, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let dropped: Vec<BlockRef> = peer.upload_queue.drain(..).chain(peer.reading.drain(..)).collect();
        peer.reading_bytes = 0;
        if peer.fast {
            for block in dropped {
                peer.send(&reject(block), now, &mut self.flush);
            }
        }
    }
}

fn reject(block: BlockRef) -> Message<'static> {
    Message::Reject { index: block.piece.get(), begin: block.offset, length: block.len }
}
