//! Who we upload to. Every `RECHOKE_INTERVAL` the `upload_slots` interested peers with the
//! best rate are unchoked: the rate they give us while we download (tit-for-tat), the rate we
//! give them once we are complete. One more slot rotates every `OPTIMISTIC_INTERVAL` among
//! the others, chosen by the seeded PRNG, so newcomers get a chance to prove themselves.
//! Between rechokes free slots are filled at once: a leecher never waits ten seconds for an
//! idle seed.

use rand::Rng;
use sluice_core::Timestamp;
use sluice_wire::Message;

use super::{OPTIMISTIC_INTERVAL, PeerKey, RECHOKE_INTERVAL, Torrent};

impl Torrent {
    /// Interested peers ranked best first.
    fn unchoke_candidates(&self, now: Timestamp) -> Vec<PeerKey> {
        let seeding = self.picker.is_complete();
        let mut ranked: Vec<(u64, PeerKey)> = self
            .peers
            .values()
            .filter(|p| p.is_active() && p.peer_interested && (seeding || !p.snubbed))
            .map(|p| (if seeding { p.up.rate(now) } else { p.down.rate(now) }, p.key))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.into_iter().map(|(_, k)| k).collect()
    }

    pub(super) fn rechoke(&mut self, now: Timestamp) {
        self.next_rechoke = now + RECHOKE_INTERVAL;
        let ranked = self.unchoke_candidates(now);
        let slots = self.config.upload_slots.min(ranked.len());
        let (regular, rest) = ranked.split_at(slots);
        let keep = self.optimistic.filter(|k| rest.contains(k));
        self.optimistic = if (keep.is_none() || now >= self.next_optimistic) && !rest.is_empty() {
            self.next_optimistic = now + OPTIMISTIC_INTERVAL;
            Some(rest[self.rng.random_range(0..rest.len())])
        } else {
            keep
        };
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let unchoke = regular.contains(&key) || self.optimistic == Some(key);
            self.set_choking(key, !unchoke, now);
        }
    }

    /// Unchokes the best choked interested peers while slots are free, choking nobody.
    pub(super) fn unchoke_free_slots(&mut self, now: Timestamp) {
        let slots = self.config.upload_slots + 1;
        let busy = self.peers.values().filter(|p| p.is_active() && !p.am_choking && p.peer_interested).count();
        if busy >= slots {
            return;
        }
        let ranked = self.unchoke_candidates(now);
        let free: Vec<PeerKey> =
            ranked.into_iter().filter(|k| self.peers.get(k).is_some_and(|p| p.am_choking)).take(slots - busy).collect();
        for key in free {
            self.set_choking(key, false, now);
        }
    }

    fn set_choking(&mut self, key: PeerKey, choke: bool, now: Timestamp) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.is_active() || peer.am_choking == choke {
            return;
        }
        peer.am_choking = choke;
        if choke {
            peer.send(&Message::Choke, now, &mut self.flush);
            self.clear_uploads(key, now);
        } else {
            peer.send(&Message::Unchoke, now, &mut self.flush);
        }
    }
}
