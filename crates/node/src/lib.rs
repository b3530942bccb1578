//! The tokio driver: it owns sockets, timers, the disk and the hash workers, and pumps one
//! sans-IO [`sluice_engine::Torrent`] per torrent.
//!
//! Each torrent runs as one task that alone owns its engine (no locks around engine state).
//! Around it:
//! - one reader and one writer task per peer connection, talking to the torrent task over
//!   bounded channels (a slow torrent task slows the reader, and TCP pushes back on the peer);
//! - blocking workers (tokio's blocking pool) that hash complete pieces with SHA-1 (SHA-NI when
//!   the CPU has it), write verified pieces and append them to the resume journal, and read
//!   blocks for upload — never on the async threads;
//! - a [`Session`] listener that reads an inbound handshake's info-hash and hands the connection
//!   to the right torrent task; an inbound connection that does not start with the plaintext
//!   handshake is taken for MSE/PE and its torrent found through the encrypted handshake
//!   ([`Encryption`] decides what is offered and accepted);
//! - for a magnet link, a task that fetches the info dictionary (BEP 9) with the engine's
//!   `MetadataFetcher` before the torrent's own task starts ([`Session::add_magnet`]);
//! - a tracker task per torrent that has trackers, announcing with `sluice_tracker` and handing
//!   the peers it learns to the torrent task.
//!
//! The network policy ([`NetPolicy`]) is enforced here, at the edge: with loopback-only on,
//! no address outside 127.0.0.0/8 (or ::1) is dialled, accepted or listened on, and trackers
//! not on loopback are never contacted (nor their names resolved).

mod clock;
mod encryption;
mod limits;
mod magnet;
mod net;
mod peer_conn;
mod portmap;
mod probe;
mod reader;
mod session;
mod streams;
mod torrent_task;
mod trackers;
mod transport;
mod verified;

pub use clock::Clock;
pub use encryption::Encryption;
pub use limits::ConnectionLimits;
pub use net::NetPolicy;
pub use reader::FileReader;
pub use session::Progress;
pub use session::{
    AddMagnet, AddTorrent, MagnetHandle, MagnetState, NodeError, Session, SessionConfig, StartMode, TorrentHandle,
};
pub use sluice_dht::{Dht, DhtConfig, DhtError, MainlineDht};
pub use sluice_engine::Config as EngineConfig;
pub use sluice_engine::Stats;
pub use sluice_storage::{CacheStats, RamCache};
pub use sluice_tracker::TrackerMode;
pub use trackers::TrackerSettings;

/// A fresh peer id: Sluice's client prefix and twelve random bytes.
pub fn random_peer_id() -> sluice_core::PeerId {
    use rand::{RngCore, SeedableRng};
    let mut tail = [0u8; 12];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut tail);
    sluice_core::PeerId::sluice(tail)
}

/// A fresh peer id starting with `prefix` (e.g. another client's `-qB4390-`), random after it.
pub fn random_peer_id_with_prefix(prefix: &[u8]) -> sluice_core::PeerId {
    use rand::{RngCore, SeedableRng};
    let mut random = [0u8; 20];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut random);
    sluice_core::PeerId::prefixed(prefix, random)
}

/// A random seed for an engine's PRNG.
pub fn random_seed() -> u64 {
    use rand::{RngCore, SeedableRng};
    rand::rngs::StdRng::from_os_rng().next_u64()
}
