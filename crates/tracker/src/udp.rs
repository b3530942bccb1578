//! The UDP tracker protocol (BEP 15): packet encoding and decoding, connection-id lifetime and
//! retransmit timing. No I/O.
//!
//! An exchange is: connect (get a connection id, valid for a minute), then announce or scrape
//! with it. Every request carries a random transaction id that the reply must echo; requests
//! are retransmitted after 15·2ⁿ seconds.
//!
//! Announces carry the tracker URL's path and query as BEP 41 `URLData` options, so trackers
//! that key torrents or users on the path (passkeys, `/announce` vs others) see it as HTTP
//! trackers do.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::{InfoHash, Timestamp};

use crate::http::compact_peers;
use crate::{AnnounceReply, AnnounceRequest, Event, ScrapeStats};

/// The magic constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// How long a connection id may be used after it was received.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);
/// Info-hashes one scrape may ask about (what fits a 1500-byte packet's reply, per BEP 15).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// The largest datagram worth reading; a reply carrying more is cut (peers past it are lost).
pub const MAX_PACKET: usize = 16 * 1024;

const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;

/// BEP 41 option types.
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_URL_DATA: u8 = 2;
/// URL data kept from a request at most (the longest tracker URL we accept).
pub const MAX_URL_DATA: usize = crate::url::MAX_URL_LEN;

/// When to give up waiting for the reply to attempt `n` (0-based): 15·2ⁿ seconds, n ≤ 8.
pub fn retransmit_timeout(attempt: u32) -> Duration {
    Duration::from_secs(15 << attempt.min(8))
}

/// A connection id and when it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionId {
    pub id: u64,
    pub received: Timestamp,
}

impl ConnectionId {
    /// The id, while it may still be used at `now`.
    pub fn valid_at(&self, now: Timestamp) -> Option<u64> {
        (now.saturating_since(self.received) < CONNECTION_ID_LIFETIME).then_some(self.id)
    }
}

/// A request a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect {
        transaction: u32,
    },
    Announce {
        connection: u64,
        transaction: u32,
        announce: AnnounceRequest,
        /// The tracker URL's path and query (BEP 41), sent in `URLData` options of at most
        /// 255 bytes each; empty: none sent.
        url_data: Vec<u8>,
    },
    Scrape {
        connection: u64,
        transaction: u32,
        hashes: Vec<InfoHash>,
    },
}

/// A tracker's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Connect {
        transaction: u32,
        connection: u64,
    },
    /// `reply.peers` are IPv4 or IPv6 as the tracker's own address family dictates.
    Announce {
        transaction: u32,
        reply: AnnounceReply,
    },
    Scrape {
        transaction: u32,
        stats: Vec<ScrapeStats>,
    },
    Error {
        transaction: u32,
        message: String,
    },
}

impl Response {
    pub fn transaction(&self) -> u32 {
        match self {
            Response::Connect { transaction, .. }
            | Response::Announce { transaction, .. }
            | Response::Scrape { transaction, .. }
            | Response::Error { transaction, .. } => *transaction,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet ends early ({0} bytes short of a field)")]
    Short(usize),
    #[error("unknown action {0}")]
    Action(u32),
    #[error("wrong protocol id")]
    ProtocolId,
    #[error("peer list is not made of whole entries")]
    Peers,
    #[error("scrape asks about {0} torrents (0 or more than {MAX_SCRAPE_HASHES})")]
    ScrapeCount(usize),
    #[error("unknown event {0}")]
    Event(u32),
    #[error("URL data longer than {MAX_URL_DATA} bytes")]
    UrlData,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(98);
        match self {
            Request::Connect { transaction } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
            }
            Request::Announce { connection, transaction, announce: a, url_data } => {
                out.extend_from_slice(&connection.to_be_bytes());
                out.extend_from_slice(&ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
                out.extend_from_slice(&a.info_hash.0);
                out.extend_from_slice(&a.peer_id.0);
                out.extend_from_slice(&a.downloaded.to_be_bytes());
                out.extend_from_slice(&a.left.to_be_bytes());
                out.extend_from_slice(&a.uploaded.to_be_bytes());
                out.extend_from_slice(&(a.event as u32).to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes()); // IP: the sender's
                out.extend_from_slice(&a.key.to_be_bytes());
                let numwant = a.numwant.and_then(|n| i32::try_from(n).ok()).unwrap_or(-1);
                out.extend_from_slice(&numwant.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
                for chunk in url_data[..url_data.len().min(MAX_URL_DATA)].chunks(255) {
                    out.push(OPTION_URL_DATA);
                    out.push(chunk.len() as u8);
                    out.extend_from_slice(chunk);
                }
            }
            Request::Scrape { connection, transaction, hashes } => {
                out.extend_from_slice(&connection.to_be_bytes());
                out.extend_from_slice(&SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
                for h in hashes.iter().take(MAX_SCRAPE_HASHES) {
                    out.extend_from_slice(&h.0);
                }
            }
        }
        out
    }

    /// Decodes a client's request (what a tracker reads); used by test trackers and fuzzing.
    pub fn decode(b: &[u8]) -> Result<Request, PacketError> {
        let mut r = Reader(b);
        let connection = r.u64()?;
        let action = r.u32()?;
        let transaction = r.u32()?;
        match action {
            CONNECT if connection == PROTOCOL_ID => Ok(Request::Connect { transaction }),
            CONNECT => Err(PacketError::ProtocolId),
            ANNOUNCE => {
                let info_hash = InfoHash(r.array()?);
                let peer_id = sluice_core::PeerId(r.array()?);
                let downloaded = r.u64()?;
                let left = r.u64()?;
                let uploaded = r.u64()?;
                let event = match r.u32()? {
                    0 => Event::None,
                    1 => Event::Completed,
                    2 => Event::Started,
                    3 => Event::Stopped,
                    e => return Err(PacketError::Event(e)),
                };
                let _ip = r.u32()?;
                let key = r.u32()?;
                let numwant = u32::try_from(r.u32()? as i32).ok();
                let port = u16::from_be_bytes(r.array()?);
                let announce =
                    AnnounceRequest { info_hash, peer_id, port, uploaded, downloaded, left, event, numwant, key };
                let url_data = r.url_data()?;
                Ok(Request::Announce { connection, transaction, announce, url_data })
            }
            SCRAPE => {
                let rest = r.0;
                let n = rest.len() / 20;
                if n == 0 || n > MAX_SCRAPE_HASHES || !rest.len().is_multiple_of(20) {
                    return Err(PacketError::ScrapeCount(n));
                }
                let hashes = rest.chunks_exact(20).filter_map(|c| c.try_into().ok()).map(InfoHash).collect();
                Ok(Request::Scrape { connection, transaction, hashes })
            }
            a => Err(PacketError::Action(a)),
        }
    }
}

impl Response {
    /// Decodes a tracker's reply. `ipv6`: the tracker was reached over IPv6, so its peers are
    /// 18-byte entries (6-byte ones otherwise).
    pub fn decode(b: &[u8], ipv6: bool) -> Result<Response, PacketError> {
        let b = &b[..b.len().min(MAX_PACKET)];
        let mut r = Reader(b);
        let action = r.u32()?;
        let transaction = r.u32()?;
        match action {
            CONNECT => Ok(Response::Connect { transaction, connection: r.u64()? }),
            ANNOUNCE => {
                let interval = Duration::from_secs(u64::from(r.u32()?));
                let leechers = r.u32()?;
                let seeders = r.u32()?;
                let mut peers: Vec<SocketAddr> = Vec::new();
                compact_peers(r.0, if ipv6 { 18 } else { 6 }, &mut peers).ok_or(PacketError::Peers)?;
                let reply = AnnounceReply {
                    interval,
                    seeders: Some(seeders),
                    leechers: Some(leechers),
                    peers,
                    ..AnnounceReply::default()
                };
                Ok(Response::Announce { transaction, reply })
            }
            SCRAPE => {
                let stats =
                    r.0.chunks_exact(12)
                        .take(MAX_SCRAPE_HASHES)
                        .map(|c| {
                            let n = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                            ScrapeStats { seeders: n(0), completed: n(4), leechers: n(8) }
                        })
                        .collect();
                Ok(Response::Scrape { transaction, stats })
            }
            ERROR => {
                let text = &r.0[..r.0.len().min(512)];
                let message = String::from_utf8_lossy(text).chars().filter(|c| !c.is_control()).collect();
                Ok(Response::Error { transaction, message })
            }
            a => Err(PacketError::Action(a)),
        }
    }

    /// Encodes a reply (what a tracker sends); used by test trackers.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let head = |out: &mut Vec<u8>, action: u32, t: u32| {
            out.extend_from_slice(&action.to_be_bytes());
            out.extend_from_slice(&t.to_be_bytes());
        };
        match self {
            Response::Connect { transaction, connection } => {
                head(&mut out, CONNECT, *transaction);
                out.extend_from_slice(&connection.to_be_bytes());
            }
            Response::Announce { transaction, reply } => {
                head(&mut out, ANNOUNCE, *transaction);
                let secs = u32::try_from(reply.interval.as_secs()).unwrap_or(u32::MAX);
                out.extend_from_slice(&secs.to_be_bytes());
                out.extend_from_slice(&reply.leechers.unwrap_or(0).to_be_bytes());
                out.extend_from_slice(&reply.seeders.unwrap_or(0).to_be_bytes());
                for p in &reply.peers {
                    match p {
                        SocketAddr::V4(v4) => out.extend_from_slice(&v4.ip().octets()),
                        SocketAddr::V6(v6) => out.extend_from_slice(&v6.ip().octets()),
                    }
                    out.extend_from_slice(&p.port().to_be_bytes());
                }
            }
            Response::Scrape { transaction, stats } => {
                head(&mut out, SCRAPE, *transaction);
                for s in stats {
                    for n in [s.seeders, s.completed, s.leechers] {
                        out.extend_from_slice(&n.to_be_bytes());
                    }
                }
            }
            Response::Error { transaction, message } => {
                head(&mut out, ERROR, *transaction);
                out.extend_from_slice(message.as_bytes());
            }
        }
        out
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], PacketError> {
        let (head, rest) =
            self.0.split_first_chunk::<N>().ok_or_else(|| PacketError::Short(N.saturating_sub(self.0.len())))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, PacketError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, PacketError> {
        self.array().map(u64::from_be_bytes)
    }

    /// The BEP 41 options after an announce: the `URLData` ones concatenated; others skipped.
    fn url_data(&mut self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::new();
        while let Some((&kind, rest)) = self.0.split_first() {
            self.0 = rest;
            match kind {
                OPTION_END => break,
                OPTION_NOP => continue,
                _ => {}
            }
            let [len] = self.array()?;
            let len = usize::from(len);
            let data = self.0.get(..len).ok_or_else(|| PacketError::Short(len.saturating_sub(self.0.len())))?;
            self.0 = &self.0[len..];
            if kind == OPTION_URL_DATA {
                if out.len() + len > MAX_URL_DATA {
                    return Err(PacketError::UrlData);
                }
                out.extend_from_slice(data);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
