//! Finding peers through the BitTorrent DHT (BEP 5).
//!
//! # Why a trait over a crate
//!
//! The DHT's protocol (KRPC, routing table, token handling) is generic and well served by the
//! `mainline` crate; what Sluice needs from it is two questions: "who has this torrent?" and
//! "tell the others I have it". [`Dht`] asks exactly those, so the node never sees the crate,
//! tests can run a hermetic loopback DHT, and the crate can be replaced (e.g. for IPv6, which
//! `mainline` does not do) without touching the node.
//!
//! # The network switch
//!
//! With `loopback_only` the public bootstrap routers are never used, and every address the
//! DHT is told to start from (configured or remembered) must be a loopback IP literal: no
//! name is resolved. With no such address the DHT does not start at all
//! ([`DhtError::Disabled`]). Without the switch, the default routers are the usual public
//! ones.
//!
//! # Restarts
//!
//! [`MainlineDht::save`] writes the routing table's nodes to a small text file (one
//! `ip:port` per line); the next start bootstraps from them as well as from the configured
//! routers, so a restart does not begin from nothing. [`parse_state`] reads that file and is
//! strict about what it accepts: at most [`MAX_STATE_NODES`] well-formed IPv4 addresses, the
//! rest is skipped.

use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use futures_lite::StreamExt;
use mainline::Id;
use mainline::async_dht::AsyncDht;
use sluice_core::InfoHash;

/// A future the [`Dht`] trait returns (the trait is used as `dyn Dht`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The routers a client with an empty routing table starts from (BEP 5 practice).
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// Nodes remembered across restarts, at most.
pub const MAX_STATE_NODES: usize = 512;

/// A lookup gives up after this long (it usually ends well before).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    #[error("the DHT is off: {0}")]
    Disabled(&'static str),
    #[error("bootstrap node {0:?} is not a loopback IPv4 address, and loopback-only is on")]
    NotLoopback(String),
    #[error("the DHT cannot bind {0}: not a loopback address, and loopback-only is on")]
    BindNotLoopback(SocketAddr),
    #[error("the DHT binds IPv4 only, not {0}")]
    NotIpv4(SocketAddr),
    #[error("starting the DHT: {0}")]
    Start(#[from] std::io::Error),
    #[error("announce failed: {0}")]
    Announce(String),
}

#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// UDP address to bind (IPv4; port 0 picks one).
    pub bind: SocketAddr,
    /// Routers and nodes to start from (`host:port`); `None`: [`DEFAULT_BOOTSTRAP`].
    pub bootstrap: Option<Vec<String>>,
    /// Where the routing table is kept across restarts.
    pub state_file: Option<PathBuf>,
    pub loopback_only: bool,
}

/// What the node asks of a DHT.
pub trait Dht: Send + Sync + fmt::Debug {
    /// Peers of `info_hash` found by one lookup (deduplicated, at most a few hundred).
    fn get_peers(&self, info_hash: InfoHash) -> BoxFuture<'_, Vec<SocketAddr>>;
    /// Tells the nodes closest to `info_hash` that we accept its peers on TCP `port`.
    fn announce(&self, info_hash: InfoHash, port: u16) -> BoxFuture<'_, Result<(), DhtError>>;
    /// Writes the routing table for the next start (no-op without a state file).
    fn save(&self) -> BoxFuture<'_, ()>;
}

/// [`Dht`] on the `mainline` crate (its node runs on a thread of its own).
pub struct MainlineDht {
    dht: AsyncDht,
    state_file: Option<PathBuf>,
    loopback_only: bool,
}

impl fmt::Debug for MainlineDht {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MainlineDht").field("state_file", &self.state_file).finish_non_exhaustive()
    }
}

/// Reads a saved routing table: `ip:port` lines (IPv4), blank lines and `#` comments skipped,
/// anything else ignored; at most [`MAX_STATE_NODES`] addresses, duplicates dropped.
pub fn parse_state(text: &str) -> Vec<SocketAddrV4> {
    let mut out: Vec<SocketAddrV4> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if out.len() >= MAX_STATE_NODES {
            break;
        }
        if let Ok(addr) = line.parse::<SocketAddrV4>()
            && addr.port() != 0
            && !out.contains(&addr)
        {
            out.push(addr);
        }
    }
    out
}

/// The bootstrap list to use: `configured` (or the defaults) plus `remembered` nodes. Under
/// loopback-only the defaults are dropped and everything must be a loopback IPv4 literal.
pub fn bootstrap_list(
    configured: Option<&[String]>,
    remembered: &[SocketAddrV4],
    loopback_only: bool,
) -> Result<Vec<String>, DhtError> {
    let mut list: Vec<String> = match configured {
        Some(c) => c.to_vec(),
        None if loopback_only => Vec::new(),
        None => DEFAULT_BOOTSTRAP.iter().map(|s| (*s).to_owned()).collect(),
    };
    if loopback_only {
        for entry in &list {
            let ok = entry.parse::<SocketAddrV4>().is_ok_and(|a| a.ip().is_loopback());
            if !ok {
                return Err(DhtError::NotLoopback(entry.clone()));
            }
        }
    }
    list.extend(remembered.iter().filter(|a| !loopback_only || a.ip().is_loopback()).map(ToString::to_string));
    if list.is_empty() {
        return Err(DhtError::Disabled("no loopback bootstrap node given, and loopback-only is on"));
    }
    Ok(list)
}

impl MainlineDht {
    /// Starts a DHT node; see the module docs for what loopback-only allows.
    pub fn start(config: &DhtConfig) -> Result<Self, DhtError> {
        let SocketAddr::V4(bind) = config.bind else {
            return Err(DhtError::NotIpv4(config.bind));
        };
        if config.loopback_only && !bind.ip().is_loopback() {
            return Err(DhtError::BindNotLoopback(SocketAddr::V4(bind)));
        }
        let remembered = config
            .state_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| parse_state(&t))
            .unwrap_or_default();
        let list = bootstrap_list(config.bootstrap.as_deref(), &remembered, config.loopback_only)?;
        // Under loopback-only every entry is an IP literal, so nothing is resolved.
        let resolvable: Vec<String> = if config.loopback_only {
            list
        } else {
            list.into_iter().filter(|s| s.to_socket_addrs().is_ok()).collect()
        };
        let mut builder = mainline::Dht::builder();
        builder.bind_address(*bind.ip()).port(bind.port()).bootstrap(&resolvable);
        if config.loopback_only {
            // No public address to discover: answer queries from the start.
            builder.server_mode();
        }
        let dht = builder.build()?.as_async();
        Ok(Self { dht, state_file: config.state_file.clone(), loopback_only: config.loopback_only })
    }

    /// The UDP address the node listens on.
    pub async fn local_addr(&self) -> SocketAddrV4 {
        self.dht.info().await.local_addr()
    }
}

fn id(info_hash: InfoHash) -> Id {
    Id::from(info_hash.0)
}

impl Dht for MainlineDht {
    fn get_peers(&self, info_hash: InfoHash) -> BoxFuture<'_, Vec<SocketAddr>> {
        Box::pin(async move {
            let mut found: Vec<SocketAddr> = Vec::new();
            let mut stream = self.dht.get_peers(id(info_hash));
            let lookup = async {
                while let Some(batch) = stream.next().await {
                    for a in batch {
                        let a = SocketAddr::V4(a);
                        let allowed = !self.loopback_only || a.ip().is_loopback();
                        if allowed && a.port() != 0 && !found.contains(&a) && found.len() < 500 {
                            found.push(a);
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await;
            found
        })
    }

    fn announce(&self, info_hash: InfoHash, port: u16) -> BoxFuture<'_, Result<(), DhtError>> {
        Box::pin(async move {
            self.dht
                .announce_peer(id(info_hash), Some(port))
                .await
                .map(|_| ())
                .map_err(|e| DhtError::Announce(e.to_string()))
        })
    }

    fn save(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(path) = &self.state_file else { return };
            let nodes = self.dht.to_bootstrap().await;
            let mut text = String::from("# DHT nodes known at the last save (sluice)\n");
            for n in nodes.iter().take(MAX_STATE_NODES) {
                text.push_str(n);
                text.push('\n');
            }
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "saving the DHT routing table");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn loopback_only_drops_the_public_routers_and_refuses_names() {
        let err = bootstrap_list(None, &[], true).unwrap_err();
        assert!(matches!(err, DhtError::Disabled(_)), "{err}");
        let named = vec!["router.bittorrent.com:6881".to_owned()];
        assert!(matches!(bootstrap_list(Some(&named), &[], true), Err(DhtError::NotLoopback(_))));
        let public = vec!["8.8.8.8:6881".to_owned()];
        assert!(matches!(bootstrap_list(Some(&public), &[], true), Err(DhtError::NotLoopback(_))));
        let remembered = ["127.0.0.9:7000".parse().unwrap(), "10.1.2.3:7000".parse().unwrap()];
        let local = vec!["127.0.0.2:6881".to_owned()];
        assert_eq!(bootstrap_list(Some(&local), &remembered, true).unwrap(), ["127.0.0.2:6881", "127.0.0.9:7000"]);
        let all = bootstrap_list(None, &remembered, false).unwrap();
        assert_eq!(all.len(), DEFAULT_BOOTSTRAP.len() + 2);
    }

    #[test]
    fn saved_state_is_read_strictly() {
        let text = "# header\n127.0.0.1:6881\n\n127.0.0.1:6881\nnot an address\n[::1]:6881\n10.0.0.1:0\n1.2.3.4:5\n";
        let got = parse_state(text);
        assert_eq!(got, ["127.0.0.1:6881".parse::<SocketAddrV4>().unwrap(), "1.2.3.4:5".parse().unwrap()]);
        let many: String = (0..2000u32).map(|i| format!("10.0.{}.{}:6881\n", i / 256, i % 256)).collect();
        assert_eq!(parse_state(&many).len(), MAX_STATE_NODES);
    }

    proptest! {
        #[test]
        fn any_state_text_parses_to_a_bounded_list(text in ".{0,4000}") {
            let got = parse_state(&text);
            prop_assert!(got.len() <= MAX_STATE_NODES);
            prop_assert!(got.iter().all(|a| a.port() != 0));
        }
    }
}
