//! A deterministic swarm simulator for the sans-IO engine.
//!
//! # Why
//!
//! The engine ([`sluice_engine::Torrent`]) owns no sockets, clock or randomness, so a whole
//! swarm of engines can run in one thread against simulated time. Every behaviour that is
//! hard to provoke on a real network — a link dropping mid-piece, a peer lying about its
//! data, a disk too slow to keep up, the last blocks stuck behind a 10 KB/s peer — becomes
//! a few lines of scenario, runs in milliseconds, and fails the same way every time.
//!
//! # Design
//!
//! A [`Sim`] owns one clock ([`sluice_core::Timestamp`]), one seeded PRNG, the nodes and the
//! connections between them, and a priority queue of timestamped events ordered by time,
//! then by scheduling order. [`Sim::step`] pops the earliest event, advances the clock to
//! it and applies it: bytes arriving on a connection, bytes leaving a sender's uplink
//! (`Input::Sent`), a connection opening, failing or closing, a piece check or block read
//! finishing, an engine timer firing. Every input to an engine is followed, per the
//! engine's driving contract, by `check_invariants`, a stats sample, and draining
//! `poll_output` completely; outputs become new events. An engine's `poll_timeout` is
//! re-armed after each mutation (stale timers are skipped by generation).
//!
//! * **Nodes** are engines ([`Sim::add_engine`]: a `Torrent` plus an in-memory store that
//!   hashes `VerifyPiece` against the expected SHA-1s, optionally slowly, and answers
//!   `ReadBlock` from verified pieces only) or scripted peers ([`Sim::add_script`],
//!   e.g. [`WirePeer`] with a hostile [`Behaviour`]). Node `i` listens on a `127.0.x.y`
//!   address; an engine learns addresses through [`Sim::introduce`].
//! * **Links** ([`NetProfile`]): each node has one FIFO uplink serialised at its rate, so
//!   bytes queue behind each other; propagation takes the sender's plus the receiver's
//!   latency, plus jitter, with per-connection order kept. Bytes are delivered in chunks of
//!   at most 16 KiB, sometimes cut at random, so frames arrive split anywhere.
//! * **Faults**: [`Sim::schedule_drop`] resets connections (both sides see `Closed`),
//!   [`Sim::schedule_offline`] takes a node off the network for a while.
//! * **Checks**: besides the engine's own invariants, the simulator fails a run if an engine
//!   breaks its contract (transmits on a connection it never opened or before `Connected`,
//!   asks to verify a buffer of the wrong length, reports a piece verified that the driver
//!   never stored, or sends bytes that do not decode as the wire protocol).
//! * **Metrics** ([`NodeMetrics`], [`MessageCounts`]): buffered bytes, bytes awaiting
//!   verification, endgame, verification order and times, and every wire message each engine
//!   sent to each peer, decoded by a sniffer on its connections.
//! * **Determinism**: nothing depends on anything but the seed (no wall clock, no hash-map
//!   iteration order, no threads). [`Sim::trace_hash`] folds every event and output, with
//!   its time, into one number; the same seed yields the same hash.
//!
//! # Reproducing a failure
//!
//! Runs that do not reach their goal return a [`SimError`] ending in
//! `reproduce with seed=N`; contract violations panic with the same line. The scenario tests
//! in `crates/sim/tests/` print each seed before running it and take `SIM_SEED=N` to run
//! only that seed:
//!
//! ```text
//! SIM_SEED=52 cargo test -p sluice-sim --test bad_data_peer_is_banned -- --nocapture
//! ```
//!
//! Add `SIM_LOG=1` to print the run's timeline (connections, faults, engine events) to
//! stderr ([`SimConfig::log`]).
//!
//! Limits ([`SimConfig`]): a step budget, a simulated-time budget and a cap on events at one
//! instant turn livelocks into errors instead of hangs.

mod content;
mod metrics;
mod script;
mod sim;

pub use content::Content;
pub use metrics::{MessageCounts, NodeMetrics};
pub use script::{Behaviour, ConnId, Corruption, Script, ScriptIo, WirePeer, bitfield_without};
pub use sim::{EngineSpec, NetProfile, NodeId, Sim, SimConfig, SimError};
