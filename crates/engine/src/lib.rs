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
//! While a reader streams, the queue targets a quarter second (16 requests until measured),
//! because an urgent request waits behind everything already queued at the peer.
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
//! # Streaming
//!
//! A driver serving a file while it downloads opens a reader per consumer (an HTTP
//! response): [`Torrent::open_reader`] with the file's byte range in the content stream and
//! the starting offset, then [`Torrent::reader_seek`] on every read position change (within
//! a piece it is O(readers); a move by k pieces touches O(k) pieces), and
//! [`Torrent::close_reader`] when the consumer goes away (a short read that ended must close
//! too: nothing else releases its window). [`Torrent::set_bitrate`] gives the file's bitrate
//! (size over duration, from the container) and [`Torrent::protect`] marks byte ranges the
//! player needs early (container index, head, tags): they stay at least `High` while the
//! reader is open. The driver wakes a waiting reader on [`Event::PieceVerified`]; the engine
//! never asks to be polled for it.
//!
//! Each reader demands `Now` for the piece under its playhead, `Next` for the following one
//! (the next few seconds of media just after an open or a seek), `Readahead` up to
//! [`Config::stream_window`] of media ahead and `High` as far again, with deadlines from its
//! playhead's pace; a piece gets the highest of the readers' demands and its base priority
//! ([`Torrent::set_priority`]: `Normal` unless set), so a plain download goes on behind the
//! windows and a torrent set to `Skip` fetches only what readers need. While a reader has a
//! window: the pieces under playheads are spread over several peers, fastest first; their
//! blocks late at a peer are asked of another one too (two extra at most; endgame is off
//! meanwhile); a jump (open, seek out of the window, wake-up) cancels requests for pieces
//! no reader needs unless they are three quarters done. A reader that did not read for
//! [`Config::reader_idle_timeout`] while another did goes dormant until its next read. A
//! reader at or past its file's end demands nothing. With a `Skip` base, [`Event::Complete`]
//! may be reported whenever the windows are caught up. Details: `src/stream.rs`.
//!
//! # Events
//!
//! [`Event::PeerConnected`] follows an accepted handshake; [`Event::PeerDisconnected`]
//! reports every peer slot that goes away, including failed connection attempts and slots
//! the driver closed. Banned addresses (proven to have sent a bad block of a failed piece, or
//! the sole source of [`Config::max_hash_failures`] failed pieces) are never dialed or
//! accepted again; merely contributing to a failed piece bans nobody (see `STATE.md`).
//!
//! # Magnet links
//!
//! Before a torrent has its info dictionary, [`MetadataFetcher`] (same driving contract)
//! fetches it from peers with BEP 9 and hands it to the driver to hash; the driver then
//! builds the metainfo and starts a [`Torrent`], which serves the dictionary to others once
//! given it with [`Torrent::set_metadata`].
//!
//! # Peer exchange
//!
//! Unless [`Config::private`], the engine speaks BEP 11 `ut_pex` by itself: peers that take it
//! are told, once a minute, which listen addresses of our peers came and went, and peers they
//! tell us about join the address book (rate-limited per peer and capped in number) and are
//! dialled like a tracker's, so the driver sees only [`Output::Connect`]s. Details:
//! `src/torrent/pex.rs`.
//!
//! # Errors and panics
//!
//! Anything a peer sends is untrusted: malformed or out-of-range input disconnects (and
//! may ban) that peer and never panics. A broken internal invariant is a bug and panics;
//! [`Torrent::check_invariants`] verifies them all and the simulator calls it after every
//! input. The rules are listed in `STATE.md` next to this crate's manifest.

mod config;
pub mod fetch;
pub mod picker;
mod stream;
mod torrent;

pub use config::Config;
pub use fetch::{FetchConfig, FetchInput, FetchOutput, MetadataFetcher};
pub use picker::Priority;
pub use stream::{ReaderId, ReaderWindow};
pub use torrent::{DisconnectReason, Event, Input, Output, PeerKey, SharedLimit, Stats, Torrent};

/// What Sluice calls itself in extended handshakes unless told otherwise (`Config::client_name`).
pub const CLIENT_NAME: &str = concat!("Sluice ", env!("CARGO_PKG_VERSION"));
