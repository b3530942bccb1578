//! HTTP tracker protocol (BEP 3, BEP 23 compact peers, BEP 7 `peers6`, BEP 48 scrape): URL
//! building and bencoded reply parsing. No I/O.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sluice_bencode::{Limits, Value};
use sluice_core::InfoHash;

use crate::url::TrackerUrl;
use crate::{AnnounceReply, AnnounceRequest, Event, MAX_PEERS, ScrapeStats};

/// Replies longer than this are refused unread (a full compact reply of [`MAX_PEERS`] peers is
/// about 20 KiB; a dictionary-model one well under 200 KiB).
pub const MAX_REPLY: usize = 512 * 1024;
/// Torrents kept from one scrape reply at most.
pub const MAX_SCRAPE_FILES: usize = 256;
/// Used when a tracker sends no `interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

const REPLY_LIMITS: Limits = Limits { max_depth: 8, max_items: 64 * 1024 };

/// Why an HTTP tracker reply was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply of {0} bytes is over the {MAX_REPLY} byte limit")]
    TooLarge(usize),
    #[error("reply is not bencode: {0}")]
    Bencode(#[from] sluice_bencode::Error),
    #[error("reply is not a dictionary")]
    NotDict,
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("{field}: {problem}")]
    Malformed { field: &'static str, problem: &'static str },
}

fn malformed(field: &'static str, problem: &'static str) -> ReplyError {
    ReplyError::Malformed { field, problem }
}

/// The announce URL for `req` on `tracker`; `tracker_id` is what the tracker sent last time.
pub fn announce_url(tracker: &TrackerUrl, req: &AnnounceRequest, tracker_id: Option<&[u8]>) -> String {
    let mut url = tracker.to_string();
    url.push(if tracker.path.contains('?') { '&' } else { '?' });
    url.push_str("info_hash=");
    percent_encode(&req.info_hash.0, &mut url);
    url.push_str("&peer_id=");
    percent_encode(&req.peer_id.0, &mut url);
    let _ = write!(
        url,
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        req.port, req.uploaded, req.downloaded, req.left, req.key
    );
    if let Some(n) = req.numwant {
        let _ = write!(url, "&numwant={n}");
    }
    if let Some(event) = req.event.name() {
        let _ = write!(url, "&event={event}");
    }
    if let Some(id) = tracker_id {
        url.push_str("&trackerid=");
        percent_encode(id, &mut url);
    }
    url
}

/// The BEP 48 scrape URL for `hashes`, or `None` when the tracker's URL has no scrape form.
pub fn scrape_url(tracker: &TrackerUrl, hashes: &[InfoHash]) -> Option<String> {
    let path = tracker.scrape_path()?;
    let mut url = TrackerUrl { path, ..tracker.clone() }.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for h in hashes {
        url.push(sep);
        url.push_str("info_hash=");
        percent_encode(&h.0, &mut url);
        sep = '&';
    }
    Some(url)
}

/// RFC 3986 escaping: unreserved bytes stay, everything else becomes `%XX`.
fn percent_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn decode_dict(body: &[u8]) -> Result<Value<'_>, ReplyError> {
    if body.len() > MAX_REPLY {
        return Err(ReplyError::TooLarge(body.len()));
    }
    let root = sluice_bencode::decode_with_limits(body, REPLY_LIMITS)?;
    if root.as_dict().is_none() {
        return Err(ReplyError::NotDict);
    }
    if let Some(reason) = root.get(b"failure reason") {
        let text = reason.as_bytes().map(lossy).unwrap_or_else(|| "(no reason given)".into());
        return Err(ReplyError::Failure(text));
    }
    Ok(root)
}

/// Text from the tracker, bounded so a log line stays a line.
fn lossy(b: &[u8]) -> String {
    let mut s: String = String::from_utf8_lossy(&b[..b.len().min(512)]).chars().filter(|c| !c.is_control()).collect();
    if b.len() > 512 {
        s.push('…');
    }
    s
}

fn seconds(v: Option<&Value<'_>>, field: &'static str) -> Result<Option<Duration>, ReplyError> {
    match v {
        None => Ok(None),
        Some(v) => {
            let n = v.as_int().ok_or_else(|| malformed(field, "not an integer"))?;
            let n = u64::try_from(n).map_err(|_| malformed(field, "negative"))?;
            Ok(Some(Duration::from_secs(n.min(u64::from(u32::MAX)))))
        }
    }
}

fn count(v: Option<&Value<'_>>) -> Option<u32> {
    v.and_then(Value::as_int).and_then(|n| u32::try_from(n).ok())
}

/// Parses an announce reply body.
pub fn parse_announce_reply(body: &[u8]) -> Result<AnnounceReply, ReplyError> {
    let root = decode_dict(body)?;
    let interval = seconds(root.get(b"interval"), "interval")?.unwrap_or(DEFAULT_INTERVAL);
    let min_interval = seconds(root.get(b"min interval"), "min interval")?;
    let mut peers = Vec::new();
    match root.get(b"peers") {
        None => {}
        Some(Value::Bytes(b)) => {
            compact_peers(b, 6, &mut peers).ok_or_else(|| malformed("peers", "length is not a multiple of 6"))?
        }
        Some(Value::List(list)) => dict_peers(list, &mut peers),
        Some(_) => return Err(malformed("peers", "neither a string nor a list")),
    }
    match root.get(b"peers6") {
        None => {}
        Some(Value::Bytes(b)) => {
            compact_peers(b, 18, &mut peers).ok_or_else(|| malformed("peers6", "length is not a multiple of 18"))?
        }
        Some(_) => return Err(malformed("peers6", "not a string")),
    }
    Ok(AnnounceReply {
        interval,
        min_interval,
        tracker_id: root.get(b"tracker id").and_then(Value::as_bytes).filter(|b| b.len() <= 256).map(<[u8]>::to_vec),
        seeders: count(root.get(b"complete")),
        leechers: count(root.get(b"incomplete")),
        warning: root.get(b"warning message").and_then(Value::as_bytes).map(lossy),
        peers,
    })
}

/// Appends compact peers of `width` bytes (6: IPv4, 18: IPv6) up to [`MAX_PEERS`]; `None` if
/// the string is not made of whole entries.
pub(crate) fn compact_peers(b: &[u8], width: usize, out: &mut Vec<SocketAddr>) -> Option<()> {
    if !b.len().is_multiple_of(width) {
        return None;
    }
    for entry in b.chunks_exact(width) {
        if out.len() >= MAX_PEERS {
            break;
        }
        let (ip, port) = entry.split_at(width - 2);
        let ip = match <[u8; 4]>::try_from(ip) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        if port != 0 {
            out.push(SocketAddr::new(ip, port));
        }
    }
    Some(())
}

/// The original dictionary model: entries without a literal IP (host names) are skipped, as
/// resolving them would be DNS on a tracker's say-so.
fn dict_peers(list: &[Value<'_>], out: &mut Vec<SocketAddr>) {
    for entry in list {
        if out.len() >= MAX_PEERS {
            break;
        }
        let ip = entry.get(b"ip").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
        let port = entry.get(b"port").and_then(Value::as_int).and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0);
        if let (Some(ip), Some(port)) = (ip, port) {
            out.push(SocketAddr::new(ip, port));
        }
    }
}

/// Parses a scrape reply: the counts of each torrent it lists (at most [`MAX_SCRAPE_FILES`]).
pub fn parse_scrape_reply(body: &[u8]) -> Result<Vec<(InfoHash, ScrapeStats)>, ReplyError> {
    let root = decode_dict(body)?;
    let files =
        root.get(b"files").and_then(Value::as_dict).ok_or_else(|| malformed("files", "missing or not a dictionary"))?;
    let mut out = Vec::new();
    for (key, stats) in files.iter().take(MAX_SCRAPE_FILES) {
        let hash = <[u8; 20]>::try_from(*key).map_err(|_| malformed("files", "key is not a 20-byte info-hash"))?;
        let stats = ScrapeStats {
            seeders: count(stats.get(b"complete")).unwrap_or(0),
            completed: count(stats.get(b"downloaded")).unwrap_or(0),
            leechers: count(stats.get(b"incomplete")).unwrap_or(0),
        };
        out.push((InfoHash(hash), stats));
    }
    Ok(out)
}

impl Event {
    /// The `event` query value; `None` for a regular announce.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }
}

#[cfg(test)]
mod tests;
