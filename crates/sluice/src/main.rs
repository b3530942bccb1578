//! The `sluice` binary: parses the command line, sets up logging and wires the node together.
//! No BitTorrent logic lives here.

mod client;
mod config;
mod exporter;
mod progress;
mod remote;
mod serve;
mod settings;
mod tls;
mod torrserver;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sluice_core::blocklist::Blocklist;
use sluice_core::magnet::Magnet;
use sluice_core::metainfo::Metainfo;
use sluice_node::{
    AddMagnet, AddTorrent, ConnectionLimits, Dht, DhtConfig, DhtError, Encryption, MainlineDht, NetPolicy, Session,
    SessionConfig, StartMode, TorrentHandle, TrackerMode, TrackerSettings,
};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "BitTorrent streaming media server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Settings file (TOML; every option is a key, e.g. `[network] loopback_only = true`);
    /// the command line and the environment override it.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the settings the command would run with (and where each came from), then exit.
    #[arg(long, global = true)]
    print_config: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download a torrent; exits 0 once every file is complete and verified.
    Download {
        /// A .torrent file, a magnet link (quote it) or a bare 40-digit hex info-hash. A
        /// magnet's metadata is fetched from its `x.pe` peers and the `--peer`s first.
        #[arg(value_name = "TORRENT|MAGNET|HASH")]
        torrent: String,
        /// Folder to download into.
        #[arg(long)]
        out: PathBuf,
        /// A peer to connect to (repeatable).
        #[arg(long = "peer", value_name = "IP:PORT")]
        peers: Vec<SocketAddr>,
        /// Where resume data is kept [default: OUT/.sluice].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Address to accept peer connections on [default: an ephemeral port, on 127.0.0.1
        /// when loopback-only].
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Verify a folder of data against a torrent and seed it until stopped.
    Seed {
        /// The .torrent file.
        torrent: PathBuf,
        /// Folder holding the torrent's files.
        #[arg(long)]
        data: PathBuf,
        /// A peer to connect to (repeatable).
        #[arg(long = "peer", value_name = "IP:PORT")]
        peers: Vec<SocketAddr>,
        /// Where resume data is kept [default: DATA/.sluice].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Address to accept peer connections on [default: port 6881, on 127.0.0.1 when
        /// loopback-only].
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Serve torrents over HTTP while they download (POST a .torrent, or JSON {"magnet": ...},
    /// to /api/v1/torrents; stream files from /api/v1/torrents/{info_hash}/files/{index}/stream).
    Serve(serve::ServeArgs),
    /// Add a torrent to a running `sluice serve` (see --server).
    Add(remote::AddArgs),
    /// List the torrents of a running `sluice serve`.
    Ls(remote::LsArgs),
    /// Remove a torrent from a running `sluice serve`.
    Rm(remote::RmArgs),
    /// Stream a file of a torrent from a running `sluice serve`: adds the torrent if needed,
    /// waits for its metadata, then prints the stream URL or runs a player on it.
    Stream(remote::StreamArgs),
}

#[derive(Args, Debug)]
struct NetArgs {
    /// Confine all traffic to loopback (127.0.0.0/8, ::1).
    #[arg(long, env = "SLUICE_LOOPBACK_ONLY", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true", default_value = "false")]
    loopback_only: bool,
    /// Download limit in bytes per second, for all torrents together.
    #[arg(long, value_name = "BYTES")]
    download_limit: Option<u64>,
    /// Upload limit in bytes per second, for all torrents together.
    #[arg(long, value_name = "BYTES")]
    upload_limit: Option<u64>,
    /// DHT nodes to start from, as HOST:PORT (repeat or separate with commas) [default: the
    /// public routers; with --loopback-only none, and then the DHT is off unless given
    /// loopback addresses].
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    dht_bootstrap: Vec<String>,
    /// Do not use the DHT.
    #[arg(long)]
    no_dht: bool,
    /// Announce torrents on the local network (BEP 14 multicast) even with --loopback-only
    /// (then through the loopback listen address; for tests in a network namespace of their
    /// own) [default: on, off with --loopback-only].
    #[arg(long, conflicts_with = "no_lsd")]
    lsd: bool,
    /// Do not use local service discovery.
    #[arg(long)]
    no_lsd: bool,
    /// A tracker to announce every torrent to (repeatable; see --tracker-mode). With
    /// loopback-only, trackers not on loopback are skipped.
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// How the --tracker list combines with each torrent's own trackers: keep (the torrent's
    /// only), add (the torrent's, then the list as a last tier), remove (no trackers at all),
    /// replace (the list only).
    #[arg(long, value_enum, default_value_t = TrackerModeArg::Add)]
    tracker_mode: TrackerModeArg,
    /// Peer connection encryption (MSE/PE): `allow` dials plaintext and encrypts only for peers
    /// that insist (fastest start); `prefer` dials encrypted and falls back to plaintext; both
    /// accept either inbound; `require` allows only RC4-encrypted peers; `off` only plaintext ones.
    #[arg(long, value_enum, default_value_t = EncryptionArg::Allow)]
    encryption: EncryptionArg,
    /// Peer connections open at once across all torrents (inbound ones over it are closed
    /// at once; dials wait).
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().connections)]
    max_connections: usize,
    /// Outbound connection attempts in flight at once across all torrents.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().half_open)]
    max_half_open: usize,
    /// Peer connections per torrent at most.
    #[arg(long, value_name = "N", default_value_t = sluice_node::EngineConfig::default().max_peers)]
    peers_per_torrent: usize,
    /// An IP blocklist in P2P format (`description:first-last` per line): its addresses are
    /// never dialled, their connections closed on accept.
    #[arg(long, value_name = "FILE")]
    blocklist: Option<PathBuf>,
    /// PEM certificates to trust for https trackers besides the system's root certificates
    /// (a private tracker's own CA).
    #[arg(long, value_name = "FILE")]
    tracker_ca: Option<PathBuf>,
    /// Present Sluice to peers and trackers as another client: `torrserver` as TorrServer
    /// does (qBittorrent 4.3.9: peer id `-qB4390-`…, `qBittorrent/4.3.9`), `qbittorrent` as
    /// qBittorrent 4.6.5 [default: none, Sluice says what it is].
    #[arg(long, value_enum, value_name = "CLIENT")]
    masquerade: Option<Masquerade>,
    /// Client name sent to peers in the extended handshake (wins over --masquerade's)
    /// [default: "Sluice <version>"].
    #[arg(long, value_name = "NAME")]
    client_name: Option<String>,
    /// Start of the peer id, random after it: up to 20 printable ASCII characters (wins over
    /// --masquerade's) [default: -SL0100-].
    #[arg(long, value_name = "PREFIX", value_parser = parse_peer_id_prefix)]
    peer_id_prefix: Option<String>,
    /// Do not map the listen port on the network's gateway (UPnP IGD, NAT-PMP) [default:
    /// mapped, except with --loopback-only]. `--no-upnp` is an older name of it.
    #[arg(long, alias = "no-upnp")]
    no_port_mapping: bool,
    /// Speak uTP (BEP 29) beside TCP: accept it on UDP at the peer listen port, and dial both,
    /// keeping whichever the peer answers [default: on]. The DHT then takes another UDP port.
    #[arg(long, overrides_with = "no_utp")]
    utp: bool,
    /// TCP only: no uTP.
    #[arg(long, overrides_with = "utp")]
    no_utp: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Masquerade {
    Torrserver,
    Qbittorrent,
}

impl Masquerade {
    /// Peer id prefix, extended handshake name, tracker User-Agent.
    fn identity(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Masquerade::Torrserver => ("-qB4390-", "qBittorrent/4.3.9", "qBittorrent/4.3.9"),
            Masquerade::Qbittorrent => ("-qB4650-", "qBittorrent/4.6.5", "qBittorrent/4.6.5"),
        }
    }
}

fn parse_peer_id_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("1 to 20 printable ASCII characters".into());
    }
    Ok(s.to_owned())
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TrackerModeArg {
    Keep,
    Add,
    Remove,
    Replace,
}

impl From<TrackerModeArg> for TrackerMode {
    fn from(m: TrackerModeArg) -> Self {
        match m {
            TrackerModeArg::Keep => TrackerMode::Keep,
            TrackerModeArg::Add => TrackerMode::Add,
            TrackerModeArg::Remove => TrackerMode::Remove,
            TrackerModeArg::Replace => TrackerMode::Replace,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum EncryptionArg {
    Allow,
    Prefer,
    Require,
    Off,
}

impl From<EncryptionArg> for Encryption {
    fn from(e: EncryptionArg) -> Self {
        match e {
            EncryptionArg::Allow => Encryption::Allow,
            EncryptionArg::Prefer => Encryption::Prefer,
            EncryptionArg::Require => Encryption::Require,
            EncryptionArg::Off => Encryption::Off,
        }
    }
}

impl NetArgs {
    /// `listen`, or `default_port` on every interface (on 127.0.0.1 when loopback-only).
    fn listen_or(&self, listen: Option<SocketAddr>, default_port: u16) -> SocketAddr {
        let default_ip = if self.loopback_only { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
        listen.unwrap_or_else(|| SocketAddr::from((default_ip, default_port)))
    }

    /// The session's settings; starts the DHT unless it is switched off, keeping its routing
    /// table in `state_dir`: on UDP at the peer listen address, or on the listen IP and a port
    /// the system picks when uTP holds that address.
    fn session_config(
        &self,
        listen: Option<SocketAddr>,
        default_port: u16,
        state_dir: &Path,
    ) -> anyhow::Result<SessionConfig> {
        let mut engine = sluice_node::EngineConfig {
            rng_seed: sluice_node::random_seed(),
            download_rate_limit: self.download_limit,
            upload_rate_limit: self.upload_limit,
            max_peers: self.peers_per_torrent.max(1),
            ..Default::default()
        };
        let (prefix, name, agent) = self.identity();
        if let Some(name) = name {
            engine.client_name = name;
        }
        let peer_id = match prefix {
            Some(p) => sluice_node::random_peer_id_with_prefix(p.as_bytes()),
            None => sluice_node::random_peer_id(),
        };
        let listen = self.listen_or(listen, default_port);
        if let Some(ca) = &self.tracker_ca {
            anyhow::ensure!(ca.is_file(), "--tracker-ca {}: no such file", ca.display());
        }
        Ok(SessionConfig {
            listen: Some(listen),
            policy: NetPolicy { loopback_only: self.loopback_only },
            peer_id,
            engine,
            ram: None,
            encryption: self.encryption.into(),
            utp: self.utp(),
            dht: self.start_dht(listen, state_dir)?,
            lsd: self.lsd_interface(listen),
            trackers: TrackerSettings { extra: self.trackers.clone(), mode: self.tracker_mode.into() },
            limits: ConnectionLimits { connections: self.max_connections.max(1), half_open: self.max_half_open.max(1) },
            blocklist: self.blocklist.as_deref().map(load_blocklist).transpose()?.map(Arc::new),
            tracker_user_agent: agent,
            tracker_ca: self.tracker_ca.clone(),
            port_mapping: !self.no_port_mapping && !self.loopback_only,
        })
    }

    /// Peer id prefix, client name and tracker User-Agent, where they differ from Sluice's own.
    fn identity(&self) -> (Option<String>, Option<String>, Option<String>) {
        let masked = self.masquerade.map(Masquerade::identity);
        let prefix = self.peer_id_prefix.clone().or(masked.map(|m| m.0.to_owned()));
        let name = self.client_name.clone().or(masked.map(|m| m.1.to_owned()));
        (prefix, name, masked.map(|m| m.2.to_owned()))
    }

    /// Whether uTP is on (the last of --utp and --no-utp wins).
    fn utp(&self) -> bool {
        self.utp || !self.no_utp
    }

    /// The interface address local service discovery announces through, if it is on.
    fn lsd_interface(&self, listen: SocketAddr) -> Option<Ipv4Addr> {
        let on = self.lsd || (!self.no_lsd && !self.loopback_only);
        match ipv4_side(listen) {
            _ if !on => None,
            Some(v4) if !v4.is_unspecified() => Some(v4),
            Some(any) => Some(any).filter(|_| !self.loopback_only),
            None => {
                tracing::info!(%listen, "local service discovery off: it is IPv4 only and the listen address is IPv6");
                None
            }
        }
    }

    fn start_dht(&self, listen: SocketAddr, state_dir: &Path) -> anyhow::Result<Option<Arc<dyn Dht>>> {
        if self.no_dht {
            return Ok(None);
        }
        let port = if self.utp() { 0 } else { listen.port() };
        let Some(ip) = ipv4_side(listen) else {
            tracing::info!(%listen, "DHT off: it is IPv4 only and the listen address is IPv6");
            return Ok(None);
        };
        let bind = SocketAddr::from((ip, port));
        std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
        let config = DhtConfig {
            bind,
            bootstrap: (!self.dht_bootstrap.is_empty()).then(|| self.dht_bootstrap.clone()),
            state_file: Some(state_dir.join("dht.nodes")),
            loopback_only: self.loopback_only,
        };
        match MainlineDht::start(&config) {
            Ok(dht) => Ok(Some(Arc::new(dht))),
            Err(DhtError::Disabled(why)) => {
                tracing::info!("DHT off: {why}");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The IPv4 address the IPv4-only services (DHT, local service discovery) bind to for a peer
/// listen address: its own if IPv4, any for `[::]` (a dual-stack listener), none for a specific
/// IPv6 address, which binds the session to that address alone.
fn ipv4_side(listen: SocketAddr) -> Option<Ipv4Addr> {
    match listen.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) if v6.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => None,
    }
}

fn main() -> ExitCode {
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(config::Parsed { print: Some(text), .. }) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(parsed) => parsed.cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            // librqbit-utp warns at every start that the kernel caps the UDP receive buffer it
            // asks for (rmem_max, e.g. 8 of 160 MiB): noise for the default view.
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "sluice=info,warn,librqbit_utp::socket=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Blocklist files larger than this are refused (real lists are a few tens of MiB).
const MAX_BLOCKLIST_FILE: u64 = 512 * 1024 * 1024;

fn load_blocklist(path: &Path) -> anyhow::Result<Blocklist> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BLOCKLIST_FILE + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_BLOCKLIST_FILE {
        bail!("{} is larger than {} MiB: not a blocklist", path.display(), MAX_BLOCKLIST_FILE >> 20);
    }
    let (list, stats) = Blocklist::parse(&String::from_utf8_lossy(&bytes));
    if list.is_empty() {
        bail!("{} holds no address range ({} lines skipped)", path.display(), stats.skipped_lines);
    }
    tracing::info!(ranges = stats.ranges, skipped_lines = stats.skipped_lines, "blocklist {}", path.display());
    Ok(list)
}

/// .torrent files larger than this are refused unread (real ones are well under 10 MiB).
const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

pub(crate) fn load_torrent(path: &Path) -> anyhow::Result<Metainfo> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_FILE + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_TORRENT_FILE {
        bail!("{} is larger than {} MiB: not a torrent file", path.display(), MAX_TORRENT_FILE >> 20);
    }
    Metainfo::from_bytes(&bytes).with_context(|| format!("{} is not a valid torrent", path.display()))
}

/// What `download` was given: a magnet link (or bare info-hash), else a `.torrent` path. A
/// bare hash is only taken as one when no file of that name exists.
fn magnet_arg(arg: &str) -> anyhow::Result<Option<Magnet>> {
    let is_magnet = arg.trim_start().get(..7).is_some_and(|p| p.eq_ignore_ascii_case("magnet:"));
    if is_magnet {
        return Ok(Some(Magnet::parse(arg)?));
    }
    if Path::new(arg).exists() {
        return Ok(None);
    }
    Ok(Magnet::parse(arg).ok())
}

/// Starts a session and adds the magnet (with `peers` to ask for its metadata), then waits for
/// the metadata (or Ctrl-C).
async fn open_magnet(
    magnet: Magnet,
    dir: PathBuf,
    state_dir: Option<PathBuf>,
    net: &NetArgs,
    listen: Option<SocketAddr>,
    peers: Vec<SocketAddr>,
) -> anyhow::Result<Opened> {
    let state_dir = state_dir.unwrap_or_else(|| dir.join(".sluice"));
    let session = Session::start(net.session_config(listen, 0, &state_dir)?).await?;
    if let Some(addr) = session.listen_addr() {
        eprintln!("listening on {addr}");
    }
    let hash = magnet.info_hash;
    eprintln!("fetching metadata for {hash} from {} peers", magnet.peers.len() + peers.len());
    let pending = session.add_magnet(AddMagnet { magnet, data_dir: dir, state_dir, mode: StartMode::Resume })?;
    pending.add_peers(peers).await?;
    let handle = tokio::select! {
        h = pending.wait() => h?,
        () = progress::shutdown_signal() => {
            pending.cancel().await;
            bail!("interrupted while fetching the metadata of {hash}");
        }
    };
    let (name, pieces) = (handle.metainfo().name.clone(), handle.metainfo().lengths.num_pieces());
    eprintln!("metadata: {name}, {} bytes of info, {pieces} pieces", handle.metainfo().info_bytes.len());
    Ok(Opened { session, handle, name, pieces })
}

/// A torrent added to a fresh session.
struct Opened {
    session: Session,
    handle: TorrentHandle,
    name: String,
    pieces: u32,
}

/// Loads the torrent, starts a session and adds the torrent to it. Resume data lives in
/// `state_dir`, by default `dir/.sluice`.
async fn open(
    torrent: &Path,
    dir: PathBuf,
    state_dir: Option<PathBuf>,
    net: &NetArgs,
    listen: Option<SocketAddr>,
    default_port: u16,
    mode: StartMode,
) -> anyhow::Result<Opened> {
    let meta = load_torrent(torrent)?;
    let (name, pieces) = (meta.name.clone(), meta.lengths.num_pieces());
    let state_dir = state_dir.unwrap_or_else(|| dir.join(".sluice"));
    let session = Session::start(net.session_config(listen, default_port, &state_dir)?).await?;
    let handle = session.add_torrent(AddTorrent { meta, data_dir: dir, state_dir, mode }).await?;
    Ok(Opened { session, handle, name, pieces })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Download { torrent, out, peers, state_dir, listen, net } => {
            let o = match magnet_arg(&torrent)? {
                Some(magnet) => open_magnet(magnet, out, state_dir, &net, listen, peers.clone()).await?,
                None => {
                    let o = open(Path::new(&torrent), out, state_dir, &net, listen, 0, StartMode::Resume).await?;
                    if let Some(addr) = o.session.listen_addr() {
                        eprintln!("listening on {addr}");
                    }
                    o
                }
            };
            eprintln!("resume: {} verified pieces", o.handle.progress().stats.pieces_have);
            o.handle.add_peers(peers).await?;
            let result = progress::watch_download(&o.handle, &o.name, o.pieces).await;
            o.handle.shutdown().await;
            o.session.save_dht().await;
            eprintln!("downloaded: {} bytes", o.handle.progress().stats.downloaded);
            result
        }
        Command::Seed { torrent, data, peers, state_dir, listen, net } => {
            let o = open(&torrent, data, state_dir, &net, listen, 6881, StartMode::Recheck).await?;
            let have = o.handle.progress().stats.pieces_have;
            eprintln!("seeding: {have}/{} pieces", o.pieces);
            if let Some(addr) = o.session.listen_addr() {
                eprintln!("listening on {addr}");
            }
            if have == 0 {
                bail!("none of the torrent's data was found under the data folder");
            }
            o.handle.add_peers(peers).await?;
            progress::watch_seed(&o.handle).await;
            o.handle.shutdown().await;
            o.session.save_dht().await;
            Ok(())
        }
        Command::Serve(args) => serve::run(args).await,
        Command::Add(args) => remote::add(args).await,
        Command::Ls(args) => remote::ls(args).await,
        Command::Rm(args) => remote::rm(args).await,
        Command::Stream(args) => remote::stream(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::ipv4_side;

    #[test]
    fn ipv4_services_follow_the_listen_address() {
        let side = |a: &str| ipv4_side(a.parse().unwrap()).map(|ip| ip.to_string());
        assert_eq!(side("10.8.0.2:6881").as_deref(), Some("10.8.0.2"));
        assert_eq!(side("0.0.0.0:6881").as_deref(), Some("0.0.0.0"));
        assert_eq!(side("[::]:6881").as_deref(), Some("0.0.0.0"));
        assert_eq!(side("[2001:db8::5]:6881"), None);
        assert_eq!(side("[::1]:6881"), None);
    }
}
