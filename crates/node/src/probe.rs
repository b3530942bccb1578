//! Container-aware prefetch: runs the media prober over a file's verified bytes.
//!
//! The prober asks for a few small ranges (box and element headers) and then the index (an MP4
//! `moov`, Matroska SeekHead/Info); each range is first announced with `demand` so the engine
//! fetches it ahead of everything else, then awaited (woken by piece completion) and read on
//! the blocking pool. The result names what a player reads first and the media bitrate.

use std::ops::Range;
use std::sync::Arc;

use sluice_core::{BlockRef, ByteOffset, Lengths};
use sluice_media::{Need, Probe, Prober};
use sluice_storage::PieceStore;

use crate::verified::{Verified, read_verified};

/// Probes the file at content offset `file_offset` of `file_len` bytes. `demand` receives
/// file-relative ranges before they are awaited.
pub(crate) async fn probe_file(
    store: Arc<dyn PieceStore>,
    verified: Arc<Verified>,
    lengths: Lengths,
    file_offset: u64,
    file_len: u64,
    ext: Option<&str>,
    mut demand: impl FnMut(Range<u64>),
) -> Probe {
    let mut prober = Prober::new(file_len, ext);
    loop {
        let want = match prober.next_need() {
            Need::Done(probe) => return probe,
            Need::Read(r) => r,
        };
        demand(want.clone());
        let content = file_offset + want.start..file_offset + want.end;
        let mut pos = content.start;
        while pos < content.end {
            let Some(piece) = lengths.piece_at(ByteOffset(pos)) else { break };
            let piece_start = lengths.piece_start(piece).0;
            let end = content.end.min(piece_start + u64::from(lengths.piece_len(piece)));
            let block = BlockRef { piece, offset: (pos - piece_start) as u32, len: (end - pos) as u32 };
            match read_verified(&verified, &store, block, vec![0u8; block.len as usize]).await {
                (bytes, Ok(())) => prober.feed(pos - file_offset, &bytes),
                // Storage failing under a verified piece: give up on probing; readers will
                // report the failure themselves.
                (_, Err(_)) => return sluice_media::probe_slice(&[]),
            }
            pos = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Bitfield;
    use sluice_storage::MemStore;

    #[tokio::test]
    async fn unknown_files_demand_head_and_tail() {
        let piece = 64 * 1024u32;
        let total = 40u64 << 20;
        let lengths = Lengths::new(total, u64::from(piece), total.div_ceil(u64::from(piece))).unwrap();
        let store = MemStore::new(lengths);
        let chunk = vec![0x5au8; piece as usize];
        for p in lengths.pieces() {
            store.write_piece(p, &chunk[..lengths.piece_len(p) as usize]).unwrap();
        }
        let verified = Arc::new(Verified::new(&Bitfield::full(lengths.num_pieces())));
        let mut demanded = Vec::new();
        let probe = probe_file(Arc::new(store), verified, lengths, 0, total, Some("bin"), |r| demanded.push(r)).await;
        assert_eq!(probe.format, sluice_media::Format::Unknown);
        assert_eq!(probe.critical, vec![0..8 << 20, total - (8 << 20)..total]);
        assert!(!demanded.is_empty() && demanded.iter().all(|r| r.end <= total));
    }
}
