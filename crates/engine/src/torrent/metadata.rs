//! Serving our info dictionary to peers that fetch it with BEP 9 `ut_metadata` (peers that
//! joined from a magnet link). We only answer; fetching is `crate::fetch`'s job.
//!
//! A peer learns our id for the extension, and the size, from our extended handshake; we
//! answer each in-range request with its 16 KiB piece, and reject requests past the end or
//! past a per-connection allowance (every piece twice, plus a few), so a peer cannot make us
//! send the dictionary over and over.

use sluice_core::Timestamp;
use sluice_wire::{Message, MetadataMsg, metadata_piece_range, metadata_pieces};

use super::{PeerKey, Torrent};

/// The extended message id we receive `ut_metadata` messages as.
pub(crate) const OUR_UT_METADATA: u8 = 3;
/// Metadata pieces served to one connection beyond twice the dictionary.
const EXTRA_PIECES: u32 = 8;

impl Torrent {
    /// Pieces of metadata one connection may be sent.
    pub(super) fn metadata_allowance(&self) -> u32 {
        self.metadata.as_ref().map_or(0, |m| metadata_pieces(m.len() as u32).saturating_mul(2) + EXTRA_PIECES)
    }

    pub(super) fn on_metadata_message(&mut self, key: PeerKey, payload: &[u8], now: Timestamp) {
        if self.metadata.is_none() {
            return;
        }
        let piece = match MetadataMsg::decode(payload) {
            Ok(MetadataMsg::Request { piece }) => piece,
            // We never ask, so data and rejects are unsolicited; harmless, ignored.
            Ok(_) => return,
            Err(e) => return self.protocol_error(key, e.to_string(), now),
        };
        let allowance = self.metadata_allowance();
        let (Some(peer), Some(info)) = (self.peers.get_mut(&key), self.metadata.as_ref()) else {
            return;
        };
        // A peer that did not say which id it takes the extension as cannot be answered.
        let Some(their_id) = peer.ut_metadata else {
            return;
        };
        let size = info.len() as u32;
        let mut payload = Vec::new();
        match metadata_piece_range(size, piece) {
            Some(range) if peer.metadata_served < allowance => {
                peer.metadata_served += 1;
                let data = &info[range];
                MetadataMsg::Data { piece, total_size: u64::from(size), data }.encode(&mut payload);
            }
            _ => MetadataMsg::Reject { piece }.encode(&mut payload),
        }
        peer.send(&Message::Extended { id: their_id, payload: &payload }, now, &mut self.flush);
    }
}
