//! Handshakes and message dispatch. Every malformed or out-of-range input ends in
//! `protocol_error`, which disconnects the peer; nothing a peer sends can panic.

use sluice_core::{Bitfield, Timestamp};
use sluice_wire::{ExtendedHandshake, Handshake, Message, UT_METADATA, UT_PEX, reserved};

use super::metadata::OUR_UT_METADATA;
use super::peer::Phase;
use super::pex::OUR_UT_PEX;
use super::{DisconnectReason, Event, PeerKey, Torrent};

/// Client name sent in the extended handshake.
/// Requests from one peer we queue at most, advertised as `reqq`.
pub(super) const REQQ: u32 = 2048;

impl Torrent {
    pub(super) fn on_data(&mut self, key: PeerKey, bytes: &[u8], now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.phase == Phase::Connecting {
            return;
        }
        peer.last_recv = now;
        let Some(mut decoder) = peer.decoder.take() else {
            return;
        };
        decoder.push(bytes);
        if peer.phase == Phase::Handshaking {
            match decoder.next_handshake() {
                Ok(None) => {
                    peer.decoder = Some(decoder);
                    return;
                }
                Ok(Some(hs)) => {
                    self.on_handshake(key, hs, now);
                    if !self.peers.contains_key(&key) {
                        return;
                    }
                }
                Err(e) => {
                    self.protocol_error(key, e.to_string(), now);
                    return;
                }
            }
        }
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    self.on_message(key, msg, now);
                    if !self.peers.contains_key(&key) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.protocol_error(key, e.to_string(), now);
                    return;
                }
            }
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.decoder = Some(decoder);
        }
    }

    fn on_handshake(&mut self, key: PeerKey, hs: Handshake, now: Timestamp) {
        if hs.info_hash != self.info_hash {
            self.remove_peer(key, DisconnectReason::WrongInfoHash, true, now);
            return;
        }
        let Some(addr) = self.peers.get(&key).map(|p| p.addr) else {
            return;
        };
        if hs.peer_id == self.config.peer_id {
            self.mark_self(addr);
            self.remove_peer(key, DisconnectReason::SelfConnection, true, now);
            return;
        }
        if self.banned_ids.contains(&hs.peer_id) {
            self.remove_peer(key, DisconnectReason::Banned, true, now);
            return;
        }
        let twin = self.peers.values().find(|p| p.key != key && p.peer_id == Some(hs.peer_id));
        if let Some((twin, twin_outbound)) = twin.map(|p| (p.key, p.outbound)) {
            // One connection each way (both sides dialled, or the peer dialled us back after
            // learning our address): keep the one the greater peer id opened, whatever their
            // ages, as libtorrent does when it tells peers apart by id (by default it compares
            // listen ports, or picks at random when they are equal: no rule can always agree);
            // with opposite rules each side drops a different one and both close. Two
            // connections the same way: the newer goes.
            let outbound = self.peers.get(&key).is_some_and(|p| p.outbound);
            let keep_new = twin_outbound != outbound && outbound == (self.config.peer_id > hs.peer_id);
            if !keep_new {
                self.remove_peer(key, DisconnectReason::Duplicate, true, now);
                return;
            }
            self.remove_peer(twin, DisconnectReason::Duplicate, true, now);
        }
        let have = self.picker.have();
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.peer_id = Some(hs.peer_id);
        peer.fast = hs.supports(reserved::FAST);
        peer.extended = hs.supports(reserved::EXTENSION_PROTOCOL);
        if !peer.outbound {
            let handshake = Handshake::new(self.info_hash, self.config.peer_id);
            peer.write(now, &mut self.flush, |out| handshake.encode(out));
        }
        peer.phase = Phase::Active;
        peer.phase_since = now;
        peer.active_since = now;

        // The bitfield must be the first message; the extended handshake follows it.
        if have.is_full() && peer.fast {
            peer.send(&Message::HaveAll, now, &mut self.flush);
        } else if have.count_ones() > 0 {
            peer.send(&Message::Bitfield(have.as_bytes()), now, &mut self.flush);
        } else if peer.fast {
            peer.send(&Message::HaveNone, now, &mut self.flush);
        }
        if peer.extended {
            let mut ext = ExtendedHandshake {
                listen_port: self.config.listen_port,
                client: Some(self.config.client_name.clone()).filter(|c| !c.is_empty()),
                reqq: Some(REQQ),
                ..ExtendedHandshake::default()
            };
            if let Some(info) = &self.metadata {
                ext.extensions.push((UT_METADATA.to_owned(), OUR_UT_METADATA));
                ext.metadata_size = Some(info.len() as u64);
            }
            if !self.config.private {
                ext.extensions.push((UT_PEX.to_owned(), OUR_UT_PEX));
            }
            let mut payload = Vec::new();
            ext.encode(&mut payload);
            peer.send(&Message::Extended { id: 0, payload: &payload }, now, &mut self.flush);
        }
        let addr = peer.addr;
        // Interested before its pieces are known: a rate-capped seeder sends its bitfield and
        // unchoke in one burst, and an unchoke decided on our interest saves a round of them.
        self.update_interest(key, now);
        self.emit(Event::PeerConnected { peer: key, addr });
    }

    fn on_message(&mut self, key: PeerKey, msg: Message<'_>, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let fast_only = matches!(
            msg,
            Message::HaveAll
                | Message::HaveNone
                | Message::Reject { .. }
                | Message::AllowedFast(_)
                | Message::Suggest(_)
        );
        if fast_only && !peer.fast {
            return self.protocol_error(key, "fast-extension message without the fast extension", now);
        }
        match msg {
            Message::KeepAlive | Message::Port(_) | Message::Suggest(_) | Message::AllowedFast(_) => {}
            Message::Unknown { .. } => {}
            Message::Choke => {
                peer.peer_choking = true;
                self.drop_requests(key);
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.queue_fill(key);
            }
            Message::Interested => {
                peer.peer_interested = true;
                if peer.am_choking {
                    self.unchoke_free_slots(now);
                }
            }
            Message::NotInterested => {
                peer.peer_interested = false;
                if !peer.am_choking {
                    self.unchoke_free_slots(now);
                }
            }
            Message::Have(index) => {
                let Some(piece) = self.lengths.piece(index) else {
                    return self.protocol_error(key, format!("have {index} out of range"), now);
                };
                let first = !std::mem::replace(&mut peer.has_known, true);
                if peer.has.set(piece) {
                    self.picker.peer_has_piece(piece);
                    if peer.has.is_full() {
                        // Counted as a seed from now on, matching its full bitfield on leave.
                        self.picker.peer_became_seed();
                    }
                    let wanted = !self.picker.have().get(piece) && self.picker.priority(piece) != crate::Priority::Skip;
                    if wanted {
                        peer.wanted += 1;
                        if peer.wanted == 1 {
                            self.update_interest(key, now);
                        }
                    }
                    self.check_both_seeds(key, now);
                }
                if first {
                    // Its pieces are known now: interest is no longer presumed.
                    self.update_interest(key, now);
                }
            }
            Message::Bitfield(bytes) => match Bitfield::from_wire(bytes, self.lengths.num_pieces()) {
                Ok(bf) => self.set_bitfield(key, bf, now),
                Err(e) => self.protocol_error(key, e.to_string(), now),
            },
            Message::HaveAll => {
                let full = Bitfield::full(self.lengths.num_pieces());
                self.set_bitfield(key, full, now);
            }
            Message::HaveNone => {
                if std::mem::replace(&mut peer.has_known, true) {
                    self.protocol_error(key, "have-none after the peer's pieces were known", now);
                } else {
                    self.update_interest(key, now);
                }
            }
            Message::Request { index, begin, length } => self.on_request(key, index, begin, length, now),
            Message::Cancel { index, begin, length } => self.on_cancel(key, index, begin, length, now),
            Message::Piece { index, begin, data } => self.on_piece(key, index, begin, data, now),
            Message::Reject { index, begin, length } => self.on_reject(key, index, begin, length, now),
            Message::Extended { id: 0, payload } => match ExtendedHandshake::decode(payload) {
                Ok(ext) => {
                    peer.reqq = ext.reqq;
                    peer.ut_metadata = ext.extension_id(UT_METADATA);
                    self.pex_handshake(key, &ext, now);
                }
                Err(e) => self.protocol_error(key, e.to_string(), now),
            },
            Message::Extended { id: OUR_UT_METADATA, payload } => self.on_metadata_message(key, payload, now),
            Message::Extended { id: OUR_UT_PEX, payload } => self.on_pex_message(key, payload, now),
            Message::Extended { .. } => {}
        }
    }

    fn set_bitfield(&mut self, key: PeerKey, bf: Bitfield, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if std::mem::replace(&mut peer.has_known, true) {
            return self.protocol_error(key, "bitfield after the peer's pieces were known", now);
        }
        self.picker.peer_has_bitfield(&bf);
        let picker = &self.picker;
        peer.wanted = if self.wanted_pieces == 0 {
            0
        } else {
            bf.iter_ones().filter(|&p| !picker.have().get(p) && picker.priority(p) != crate::Priority::Skip).count()
                as u32
        };
        peer.has = bf;
        self.update_interest(key, now);
        self.check_both_seeds(key, now);
    }

    /// Two seeds have nothing to exchange.
    fn check_both_seeds(&mut self, key: PeerKey, now: Timestamp) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.has.is_full() && self.picker.have().is_full() {
            self.remove_peer(key, DisconnectReason::NotUseful, true, now);
        }
    }

    /// Sends Interested / NotInterested when the peer's usefulness to us changed. A peer whose
    /// pieces are not known yet is presumed useful while we want anything.
    pub(super) fn update_interest(&mut self, key: PeerKey, now: Timestamp) {
        let wanting = self.wanted_pieces > 0;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.is_active() {
            return;
        }
        let want = peer.wanted > 0 || (!peer.has_known && wanting);
        if want == peer.am_interested {
            return;
        }
        peer.am_interested = want;
        if want {
            peer.interested_since = now;
            peer.send(&Message::Interested, now, &mut self.flush);
            self.queue_fill(key);
        } else {
            peer.send(&Message::NotInterested, now, &mut self.flush);
        }
    }
}
