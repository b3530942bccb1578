//! The Sluice engine: a sans-IO BitTorrent state machine, one [`Torrent`] per torrent.
//!
//! # Driving contract
//!
//! The engine owns no sockets, files, threads, clocks or global randomness. A driver (the
//! tokio `sluice-node`, or the `sluice-sim` simulator) owns all of those and talks to the
//! engine through three verbs:
//!
//! 1. **Feed** one input with the current time: [`Torrent::handle_input`] (bytes from a peer,
//!    a connection result, a piece's verification result, a block read for upload), or a
//!    command ([`Torrent::add_peer`], [`Torrent::accept`], [`Torrent::set_priority`], ...).
//! 2. **Drain** [`Torrent::poll_output`] until it returns `None`: bytes to transmit,
//!    connections to open or close, complete pieces to verify and persist, blocks to read,
//!    events.
//! 3. **Sleep** until [`Torrent::poll_timeout`] (or the next input), then call
//!    [`Torrent::handle_timeout`] and go back to 2.
//!
//! Single-mutation rule: after every call of step 1 or 3, drain step 2 before the next
//! mutation. Outputs are only ever produced in response to a mutation, so a driver that
//! follows the rule never misses one.
//!
//! # Memory
//!
//! Blocks received from peers live in piece buffers owned by the engine until the driver
//! reports the piece checked ([`Input::PieceChecked`]). Starting a piece reserves its whole
//! length against [`Config::buffer_budget`]; no piece is started past the budget, pieces in
//! progress have room to finish, and at least one piece may always be in progress. A started
//! piece can lose every source (its peers left or choke us); when such pieces fill the budget
//! and a peer could start another piece, the engine abandons them (their blocks are
//! discarded) until a new piece fits. So the bound always holds and a full buffer never
//! deadlocks the download.
//!
//! # Flow control
//!
//! Each peer gets as many requests in flight as its measured rate covers in a second (or two
//! round trips, if longer), between [`Config::min_pipeline`] and [`Config::max_pipeline`] and
//! never past its advertised `reqq`; until the rate is known, [`Config::initial_pipeline`].
//! A request timeout hands the peer's blocks to others, drops its pipeline to the floor and
//! gives it no new requests for one more timeout unless it delivers a block meanwhile. A peer
//! that keeps requests pending for [`Config::snub_timeout`] without delivering a block is
//! snubbed: outside endgame it is sent one request at a time (after each timeout's probation),
//! never dropped for good, so a peer that recovers (perhaps the only source) is noticed; its
//! next block ends the snub and its pipeline grows back. Snubbed peers get no tit-for-tat
//! upload slot. A block the
//! peer rejects (fast extension) goes to other peers and is not asked of it again for
//! [`Config::request_timeout`]. Uploads are bounded per
//! peer by the bytes being read plus the bytes the socket has not taken yet, which is why
//! the driver reports [`Input::Sent`]: a driver that never does stalls uploads. Rate limits
//! are token buckets refilled from the input timestamps; a blocked bucket shows up in
//! [`Torrent::poll_timeout`].
//!
//! # Events
//!
//! [`Event::PeerConnected`] follows an accepted handshake; [`Event::PeerDisconnected`]
//! reports every peer slot that goes away, including failed connection attempts and slots
//! the driver closed. Banned addresses (proven to have sent a bad block of a failed piece, or
//! the sole source of [`Config::max_hash_failures`] failed pieces) are never dialed or
//! accepted again; merely contributing to a failed piece bans nobody (see `STATE.md`).
//!
//! # Errors and panics
//!
//! Anything a peer sends is untrusted: malformed or out-of-range input disconnects (and
//! may ban) that peer and never panics. A broken internal invariant is a bug and panics;
//! [`Torrent::check_invariants`] verifies them all and the simulator calls it after every
//! input. The rules are listed in `STATE.md` next to this crate's manifest.

mod config;
pub mod picker;
mod stream;
mod torrent;

pub use config::Config;
pub use picker::Priority;
pub use stream::{ReaderId, ReaderWindow};
pub use torrent::{DisconnectReason, Event, Input, Output, PeerKey, Stats, Torrent};
