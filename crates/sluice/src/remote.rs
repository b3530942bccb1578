//! `sluice add`, `ls`, `rm` and `stream`: commands that drive a running `sluice serve` through
//! its `/api/v1` ([`crate::client`]), so a server on a NAS or TV box is managed from a shell.
//!
//! Results go to stdout (a table, a URL, or the server's JSON with `--json`) and everything
//! else, progress included, to stderr, so `url=$(sluice stream ...)` and `sluice ls --json | jq`
//! work while a person still sees what is going on.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::client::{Client, File, Meta, Source, Torrent};
use crate::progress::{StatusLine, bar, eta, human_bytes, human_rate, shutdown_signal};

/// How often a wait asks the server again.
const POLL: Duration = Duration::from_millis(500);

/// File name extensions of the video files `stream` picks from.
const VIDEO: &[&str] =
    &["mkv", "mp4", "m4v", "avi", "mov", "webm", "ts", "m2ts", "mts", "wmv", "flv", "mpg", "mpeg", "vob", "ogv", "3gp"];

#[derive(Args, Debug)]
pub(crate) struct ServerArg {
    /// The `sluice serve` to talk to.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8090", value_name = "URL")]
    server: String,
}

#[derive(Args, Debug)]
pub(crate) struct AddArgs {
    /// A magnet link (quote it), a .torrent file, an http(s) URL of one, or a 40-digit hex
    /// info-hash.
    #[arg(value_name = "MAGNET|FILE|URL|HASH")]
    source: String,
    /// Title to show instead of the torrent's name (links only).
    #[arg(long)]
    title: Option<String>,
    /// Category (links only).
    #[arg(long)]
    category: Option<String>,
    /// Poster image URL (links only).
    #[arg(long)]
    poster: Option<String>,
    /// A peer for the server to ask (repeatable).
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    /// Wait, showing progress, until every byte is downloaded and verified.
    #[arg(long)]
    wait: bool,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args, Debug)]
pub(crate) struct LsArgs {
    /// Print the server's list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// The torrent's info-hash, or the start of it (as `ls` shows it).
    #[arg(value_name = "HASH|PREFIX")]
    torrent: String,
    /// Delete the downloaded files too.
    #[arg(long)]
    delete_files: bool,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args, Debug)]
pub(crate) struct StreamArgs {
    /// A magnet link (quote it), a .torrent file, an http(s) URL of one, or the info-hash of a
    /// torrent (added if the server does not have it).
    #[arg(value_name = "MAGNET|FILE|URL|HASH")]
    source: String,
    /// The file to stream, by its index in the torrent (0-based, as in stream URLs)
    /// [default: the largest video file].
    #[arg(long, value_name = "N")]
    file: Option<usize>,
    /// Run this player with the URL as its last argument and wait for it (words split on
    /// spaces, e.g. "mpv --fs"); without it the URL is printed.
    #[arg(long, value_name = "CMD")]
    player: Option<String>,
    /// A peer for the server to ask (repeatable).
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    #[command(flatten)]
    server: ServerArg,
}

pub(crate) async fn add(args: AddArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server.server)?;
    let meta = Meta { title: args.title, category: args.category, poster: args.poster };
    let mut torrent = add_source(&client, &args.source, meta, &args.peers).await?;
    if args.wait {
        torrent = wait_complete(&client, torrent).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&torrent.raw)?);
    } else {
        let what = if torrent.pending { "metadata pending" } else { "files known" };
        println!("{}  {}  ({what})", torrent.info_hash, torrent.label());
    }
    Ok(())
}

pub(crate) async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server.server)?;
    let list = client.list().await?;
    if args.json {
        let raw: Vec<_> = list.into_iter().map(|t| t.raw).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "torrents": raw }))?);
    } else if list.is_empty() {
        eprintln!("no torrents on {}", client.base());
    } else {
        print!("{}", table(&list));
    }
    Ok(())
}

pub(crate) async fn rm(args: RmArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server.server)?;
    let (hash, label) = if is_info_hash(&args.torrent) {
        (args.torrent.to_ascii_lowercase(), String::new())
    } else {
        let list = client.list().await?;
        let t = by_prefix(&list, &args.torrent)?;
        (t.info_hash.clone(), t.label().to_owned())
    };
    client.remove(&hash, args.delete_files).await?;
    let files = if args.delete_files { " (files deleted)" } else { "" };
    let label = if label.is_empty() { String::new() } else { format!("  {label}") };
    println!("removed {hash}{label}{files}");
    Ok(())
}

pub(crate) async fn stream(args: StreamArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server.server)?;
    let torrent = add_source(&client, &args.source, Meta::default(), &args.peers).await?;
    let torrent = wait_metadata(&client, torrent).await?;
    let file =
        match args.file {
            Some(n) => torrent.files.iter().find(|f| f.index == n && !f.path.is_empty()).with_context(|| {
                format!("{} has no file {n} (files: {})", torrent.label(), file_list(&torrent.files))
            })?,
            None => pick_file(&torrent.files).with_context(|| format!("{} lists no files", torrent.label()))?,
        };
    let url = client.stream_url(&torrent, file);
    eprintln!("streaming file {}: {} ({})", file.index, file.path, human_bytes(file.length));
    let Some(player) = args.player else {
        println!("{url}");
        return Ok(());
    };
    let mut words = player.split_whitespace();
    let program = words.next().context("--player is empty")?.to_owned();
    let mut cmd = std::process::Command::new(&program);
    cmd.args(words).arg(&url);
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await?
        .with_context(|| format!("cannot run the player {program:?}"))?;
    if !status.success() {
        bail!("the player {program:?} exited with {status}");
    }
    Ok(())
}

/// Adds `source` (with `peers`), showing a spinner while the server works on it (a magnet's
/// add waits on the server for its metadata for a while).
async fn add_source(client: &Client, source: &str, meta: Meta, peers: &[SocketAddr]) -> anyhow::Result<Torrent> {
    let source = parse_source(source)?;
    if matches!(source, Source::Torrent(_)) && !meta.is_empty() {
        eprintln!("note: --title, --category and --poster are kept for links only, not for .torrent files");
    }
    let added = with_spinner(&format!("adding to {}", client.base()), client.add(&source, &meta)).await?;
    let t = added.torrent;
    if !peers.is_empty() {
        client.add_peers(&t.info_hash, peers).await?;
    }
    let how = if added.created { "added" } else { "already on the server" };
    eprintln!("{how}: {} {}", t.info_hash, t.label());
    Ok(t)
}

/// What a command-line source is: links as they are; else an existing file is read as a
/// `.torrent`; else a bare info-hash.
fn parse_source(arg: &str) -> anyhow::Result<Source> {
    let arg = arg.trim();
    if arg.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("magnet:")) || crate::client::is_web_url(arg) {
        return Ok(Source::Link(arg.to_owned()));
    }
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(Source::Torrent(read_torrent(path)?));
    }
    if is_info_hash(arg) {
        return Ok(Source::Link(arg.to_ascii_lowercase()));
    }
    bail!("{arg:?} is not a magnet link, an http(s) URL, an existing file or a 40-digit hex info-hash")
}

/// A `.torrent` file's bytes, checked here so a wrong file gets a clear error before any upload.
fn read_torrent(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(crate::MAX_TORRENT_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > crate::MAX_TORRENT_FILE {
        bail!("{} is larger than {} MiB: not a torrent file", path.display(), crate::MAX_TORRENT_FILE >> 20);
    }
    sluice_core::metainfo::Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", path.display()))?;
    Ok(bytes)
}

fn is_info_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The one torrent whose info-hash starts with `prefix`.
fn by_prefix<'a>(list: &'a [Torrent], prefix: &str) -> anyhow::Result<&'a Torrent> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{prefix:?} is not an info-hash or the start of one (hex digits)");
    }
    let prefix = prefix.to_ascii_lowercase();
    let found: Vec<&Torrent> = list.iter().filter(|t| t.info_hash.to_ascii_lowercase().starts_with(&prefix)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!("no torrent's info-hash starts with {prefix}"),
        many => {
            let names: Vec<String> = many.iter().map(|t| format!("{} {}", t.info_hash, t.label())).collect();
            bail!("{prefix} matches {} torrents; give more digits:\n  {}", many.len(), names.join("\n  "))
        }
    }
}

/// The largest video file, else the largest file (pad files, which have no path, never).
fn pick_file(files: &[File]) -> Option<&File> {
    let real = || files.iter().filter(|f| !f.path.is_empty());
    let is_video =
        |f: &&File| f.path.rsplit_once('.').is_some_and(|(_, ext)| VIDEO.iter().any(|v| v.eq_ignore_ascii_case(ext)));
    real().filter(is_video).max_by_key(|f| f.length).or_else(|| real().max_by_key(|f| f.length))
}

fn file_list(files: &[File]) -> String {
    let list: Vec<String> =
        files.iter().filter(|f| !f.path.is_empty()).map(|f| format!("{} {}", f.index, f.path)).collect();
    if list.is_empty() { "none".into() } else { list.join(", ") }
}

/// `ls`'s table: short hash (enough for `rm`), state, progress, size, rate, peers, title.
fn table(list: &[Torrent]) -> String {
    let mut out =
        format!("{:<8}  {:<8}  {:>6}  {:>9}  {:>10}  {:>5}  NAME\n", "HASH", "STATE", "DONE", "SIZE", "DOWN", "PEERS");
    for t in list {
        let done = if t.pending {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * t.verified_bytes as f64 / t.length.max(1) as f64)
        };
        let size = if t.pending { "?".to_owned() } else { human_bytes(t.length) };
        let state = if t.error.is_some() { "error" } else { t.state.as_str() };
        let _ = writeln!(
            out,
            "{:<8}  {:<8}  {done:>6}  {size:>9}  {:>10}  {:>5}  {}",
            t.info_hash.get(..8).unwrap_or(&t.info_hash),
            state,
            human_rate(t.download_rate),
            t.peers,
            t.label()
        );
    }
    out
}

/// Runs `work` with a spinner saying `what` (one line when stderr is not a terminal).
async fn with_spinner<T>(what: &str, work: impl Future<Output = T>) -> T {
    let mut line = StatusLine::new();
    let started = Instant::now();
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            out = &mut work => {
                line.clear();
                return out;
            }
            _ = tick.tick() => line.update(&format!("{what} ({} s)", started.elapsed().as_secs())),
        }
    }
}

/// Sleeps one poll interval; an error if the user interrupts.
async fn pause(line: &mut StatusLine, hash: &str) -> anyhow::Result<()> {
    tokio::select! {
        () = tokio::time::sleep(POLL) => Ok(()),
        () = shutdown_signal() => {
            line.clear();
            bail!("interrupted; the torrent stays on the server (`sluice rm {hash}` removes it)")
        }
    }
}

/// `torrent` once its files are known, polling the server with a spinner until then.
async fn wait_metadata(client: &Client, mut torrent: Torrent) -> anyhow::Result<Torrent> {
    let mut line = StatusLine::new();
    let started = Instant::now();
    let hash = torrent.info_hash.clone();
    while torrent.pending || torrent.files.is_empty() {
        if let Some(e) = &torrent.error {
            line.clear();
            bail!("{}: {e}", torrent.label());
        }
        let (secs, peers) = (started.elapsed().as_secs(), torrent.peers);
        line.update(&format!("fetching metadata of {}: {peers} peers, {secs} s", torrent.label()));
        pause(&mut line, &hash).await?;
        torrent = client.get(&hash).await?;
    }
    line.clear();
    Ok(torrent)
}

/// Polls `torrent` with a progress bar until it is complete.
async fn wait_complete(client: &Client, torrent: Torrent) -> anyhow::Result<Torrent> {
    let mut torrent = wait_metadata(client, torrent).await?;
    let mut line = StatusLine::new();
    let hash = torrent.info_hash.clone();
    while !torrent.complete() {
        if let Some(e) = &torrent.error {
            line.clear();
            bail!("{}: {e}", torrent.label());
        }
        line.update(&progress_text(&torrent));
        pause(&mut line, &hash).await?;
        torrent = client.get(&hash).await?;
    }
    line.finish(&format!("complete: {} ({})", torrent.label(), human_bytes(torrent.length)));
    Ok(torrent)
}

fn progress_text(t: &Torrent) -> String {
    let fraction = t.verified_bytes as f64 / t.length.max(1) as f64;
    format!(
        "{} {} {:5.1}% {}/{} {} {} peers ETA {}",
        t.label(),
        bar(fraction, 24),
        100.0 * fraction,
        human_bytes(t.verified_bytes),
        human_bytes(t.length),
        human_rate(t.download_rate),
        t.peers,
        eta(t.length.saturating_sub(t.verified_bytes), t.download_rate)
    )
}

#[cfg(test)]
mod tests {
    //! The commands against an in-process fake of `/api/v1` that follows the API's shapes.

    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Path as UrlPath, RawQuery, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    use super::*;
    use crate::client::ClientError;

    const KNOWN: &str = "1111111111111111111111111111111111111111";
    const SLOW: &str = "2222222222222222222222222222222222222222";
    const OTHER: &str = "1122222222222222222222222222222222222222";

    #[derive(Default)]
    struct Fake {
        torrents: Vec<Value>,
        /// Every request: method, path?query, content type, body.
        log: Vec<(String, String, String, String)>,
        /// GETs of SLOW left before its metadata arrives.
        slow_gets: u32,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn torrent(hash: &str, name: &str, pending: bool) -> Value {
        let files = if pending {
            json!([])
        } else {
            json!([
                {"index": 0, "path": format!("{name}/sample.mkv"), "length": 10, "stream_url": format!("/api/v1/torrents/{hash}/files/0/stream/sample.mkv")},
                {"index": 1, "path": "", "length": 6},
                {"index": 2, "path": format!("{name}/movie.mp4"), "length": 900, "stream_url": format!("/api/v1/torrents/{hash}/files/2/stream/movie.mp4")},
                {"index": 3, "path": format!("{name}/extras.iso"), "length": 5000, "stream_url": format!("/api/v1/torrents/{hash}/files/3/stream/extras.iso")},
            ])
        };
        json!({"info_hash": hash, "name": name, "title": "", "state": if pending { "pending" } else { "running" },
               "pending": pending, "length": if pending { 0 } else { 5916 }, "verified_bytes": 0, "progress": 0.0,
               "download_rate": 2_000_000, "upload_rate": 0, "peers": 3, "readers": 0, "error": null, "files": files})
    }

    fn reply(status: StatusCode, value: &Value) -> Response {
        (status, [("content-type", "application/json")], value.to_string()).into_response()
    }

    fn error(status: StatusCode, code: &str, message: &str) -> Response {
        reply(status, &json!({"error": {"code": code, "message": message}}))
    }

    fn log(fake: &Shared, method: &str, path: String, headers: &HeaderMap, body: &[u8]) {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        fake.lock().unwrap().log.push((method.into(), path, ct, String::from_utf8_lossy(body).into_owned()));
    }

    async fn add(State(fake): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        log(&fake, "POST", "/api/v1/torrents".into(), &headers, &body);
        let mut f = fake.lock().unwrap();
        let (hash, title) = if headers.get("content-type").is_some_and(|v| v == "application/json") {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let link = v.get("link").or(v.get("magnet")).and_then(Value::as_str).unwrap_or_default().to_owned();
            let hash = if link.contains(SLOW) {
                SLOW
            } else if link.contains(KNOWN) {
                KNOWN
            } else {
                ""
            };
            if hash.is_empty() {
                return error(StatusCode::BAD_REQUEST, "bad_link", "not a magnet link, hash or .torrent URL");
            }
            (hash, v.get("title").and_then(Value::as_str).unwrap_or_default().to_owned())
        } else {
            (KNOWN, String::new())
        };
        if let Some(t) = f.torrents.iter().find(|t| t["info_hash"] == hash) {
            return reply(StatusCode::OK, t);
        }
        let mut t = torrent(hash, "Show", hash == SLOW);
        t["title"] = title.into();
        f.torrents.push(t.clone());
        let status = if hash == SLOW { StatusCode::ACCEPTED } else { StatusCode::CREATED };
        reply(status, &t)
    }

    async fn list(State(fake): State<Shared>) -> Response {
        reply(StatusCode::OK, &json!({"torrents": fake.lock().unwrap().torrents}))
    }

    async fn one(State(fake): State<Shared>, UrlPath(hash): UrlPath<String>) -> Response {
        let mut f = fake.lock().unwrap();
        if hash == SLOW && f.slow_gets > 0 {
            f.slow_gets -= 1;
            if f.slow_gets == 0 {
                let pos = f.torrents.iter().position(|t| t["info_hash"] == SLOW).unwrap();
                f.torrents[pos] = torrent(SLOW, "Slow", false);
            }
        }
        match f.torrents.iter().find(|t| t["info_hash"] == hash.as_str()) {
            Some(t) => reply(StatusCode::OK, t),
            None => error(StatusCode::NOT_FOUND, "unknown_torrent", "no torrent with that info-hash"),
        }
    }

    async fn delete(
        State(fake): State<Shared>,
        UrlPath(hash): UrlPath<String>,
        RawQuery(q): RawQuery,
        headers: HeaderMap,
    ) -> Response {
        let path = format!("/api/v1/torrents/{hash}?{}", q.unwrap_or_default());
        log(&fake, "DELETE", path, &headers, b"");
        let mut f = fake.lock().unwrap();
        let before = f.torrents.len();
        f.torrents.retain(|t| t["info_hash"] != hash.as_str());
        if f.torrents.len() == before {
            return error(StatusCode::NOT_FOUND, "unknown_torrent", "no torrent with that info-hash");
        }
        StatusCode::NO_CONTENT.into_response()
    }

    async fn peers(
        State(fake): State<Shared>,
        UrlPath(hash): UrlPath<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        log(&fake, "POST", format!("/api/v1/torrents/{hash}/peers"), &headers, &body);
        StatusCode::NO_CONTENT
    }

    /// The fake on 127.0.88.`host`: its URL and state.
    async fn serve(host: u8) -> (String, Shared) {
        let fake = Shared::default();
        let app = Router::new()
            .route("/api/v1/torrents", post(add).get(list))
            .route("/api/v1/torrents/{h}", get(one).delete(delete))
            .route("/api/v1/torrents/{h}/peers", post(peers))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.88.".to_owned() + &host.to_string(), 0)).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, fake)
    }

    fn server(url: &str) -> ServerArg {
        ServerArg { server: url.to_owned() }
    }

    #[tokio::test]
    async fn add_sends_links_torrents_titles_and_peers() {
        let (url, fake) = serve(10).await;
        let client = Client::new(&url).unwrap();
        let magnet = format!("magnet:?xt=urn:btih:{KNOWN}&dn=x");
        let meta = Meta { title: Some("My show".into()), ..Meta::default() };
        let t = add_source(&client, &magnet, meta, &["127.0.88.2:6881".parse().unwrap()]).await.unwrap();
        assert_eq!((t.info_hash.as_str(), t.label(), t.files.len()), (KNOWN, "My show", 4));
        let again = client.add(&Source::Link(KNOWN.into()), &Meta::default()).await.unwrap();
        assert!(!again.created);
        client.add(&Source::Link("https://example.invalid/x.torrent".into()), &Meta::default()).await.unwrap_err();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.torrent");
        let bytes = sluice_core::metainfo::TorrentBuilder::single_file("a", 16384, vec![7; 100]).build();
        std::fs::write(&file, &bytes).unwrap();
        let added = add_source(&client, file.to_str().unwrap(), Meta::default(), &[]).await.unwrap();
        assert_eq!(added.info_hash, KNOWN);

        let log = fake.lock().unwrap().log.clone();
        let bodies: Vec<(&str, &str)> = log.iter().map(|(_, p, ct, _)| (p.as_str(), ct.as_str())).collect();
        assert_eq!(
            bodies,
            [
                ("/api/v1/torrents", "application/json"),
                (format!("/api/v1/torrents/{KNOWN}/peers").as_str(), "application/json"),
                ("/api/v1/torrents", "application/json"),
                ("/api/v1/torrents", "application/json"),
                ("/api/v1/torrents", "application/x-bittorrent"),
            ]
        );
        let first: Value = serde_json::from_str(&log[0].3).unwrap();
        assert_eq!(first, json!({"magnet": magnet, "title": "My show"}));
        assert_eq!(log[1].3, r#"["127.0.88.2:6881"]"#);
        assert_eq!(serde_json::from_str::<Value>(&log[2].3).unwrap(), json!({"magnet": KNOWN}));
        assert_eq!(
            serde_json::from_str::<Value>(&log[3].3).unwrap(),
            json!({"link": "https://example.invalid/x.torrent"})
        );
        assert_eq!(log[4].3, String::from_utf8_lossy(&bytes));
    }

    #[tokio::test]
    async fn server_errors_and_silence_are_told_apart() {
        let (url, _) = serve(11).await;
        let client = Client::new(&url).unwrap();
        let unknown = Source::Link(format!("magnet:?xt=urn:btih:{}", "9".repeat(40)));
        match client.add(&unknown, &Meta::default()).await.unwrap_err() {
            ClientError::Api { status: 400, code, .. } => assert_eq!(code, "bad_link"),
            e => panic!("{e}"),
        }
        let e = client.get(OTHER).await.unwrap_err();
        assert_eq!(e.to_string(), "server: no torrent with that info-hash (unknown_torrent, HTTP 404)");
        let nobody = Client::new("http://127.0.88.12:9").unwrap();
        let e = nobody.list().await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("is `sluice serve` running"), "{e}");
        assert!(parse_source("no-such-file.torrent").is_err());
    }

    #[tokio::test]
    async fn stream_waits_for_metadata_and_picks_the_largest_video() {
        let (url, fake) = serve(13).await;
        fake.lock().unwrap().slow_gets = 3;
        let client = Client::new(&url).unwrap();
        let t = add_source(&client, SLOW, Meta::default(), &[]).await.unwrap();
        assert!(t.pending);
        let t = wait_metadata(&client, t).await.unwrap();
        assert_eq!(fake.lock().unwrap().slow_gets, 0);
        let file = pick_file(&t.files).unwrap();
        assert_eq!(file.index, 2, "movie.mp4 beats the larger .iso and the smaller .mkv");
        assert_eq!(client.stream_url(&t, file), format!("{url}/api/v1/torrents/{SLOW}/files/2/stream/movie.mp4"));
        let no_video = [
            File { index: 0, path: "a.txt".into(), length: 5, stream_url: None },
            File { index: 1, path: "b.iso".into(), length: 9, stream_url: None },
        ];
        assert_eq!(pick_file(&no_video).map(|f| f.index), Some(1));
        assert_eq!(pick_file(&[File::default()]), None, "a pad file is never picked");

        let args = |file, player: &str| StreamArgs {
            source: KNOWN.into(),
            file,
            player: Some(player.into()),
            peers: Vec::new(),
            server: server(&url),
        };
        stream(args(None, "true")).await.unwrap();
        let e = stream(args(Some(3), "false")).await.unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
        let e = stream(args(Some(1), "true")).await.unwrap_err();
        assert!(e.to_string().contains("has no file 1"), "{e}");
    }

    #[tokio::test]
    async fn ls_and_rm_by_prefix() {
        let (url, fake) = serve(14).await;
        let client = Client::new(&url).unwrap();
        client.add(&Source::Link(KNOWN.into()), &Meta::default()).await.unwrap();
        fake.lock().unwrap().torrents.push(torrent(OTHER, "Other", false));
        let list = client.list().await.unwrap();
        assert_eq!(list.len(), 2);
        let text = table(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("HASH      STATE"), "{text}");
        assert_eq!(lines[1], "11111111  running     0.0%     5.9 kB    2.0 MB/s      3  Show", "{text}");

        let e = by_prefix(&list, "11").unwrap_err().to_string();
        assert!(e.contains("matches 2 torrents"), "{e}");
        assert!(by_prefix(&list, "zz").is_err() && by_prefix(&list, "3").is_err());
        assert_eq!(by_prefix(&list, "112").unwrap().info_hash, OTHER);

        rm(RmArgs { torrent: "112".into(), delete_files: true, server: server(&url) }).await.unwrap();
        let e = rm(RmArgs { torrent: OTHER.into(), delete_files: false, server: server(&url) }).await.unwrap_err();
        assert!(e.to_string().contains("unknown_torrent"), "{e}");
        let log = fake.lock().unwrap().log.clone();
        let deletes: Vec<&str> = log.iter().filter(|l| l.0 == "DELETE").map(|l| l.1.as_str()).collect();
        assert_eq!(
            deletes,
            [format!("/api/v1/torrents/{OTHER}?delete_files=true"), format!("/api/v1/torrents/{OTHER}?")]
        );
        ls(LsArgs { json: true, server: server(&url) }).await.unwrap();
    }

    #[tokio::test]
    async fn add_wait_polls_until_complete() {
        let (url, fake) = serve(15).await;
        let client = Client::new(&url).unwrap();
        let t = add_source(&client, KNOWN, Meta::default(), &[]).await.unwrap();
        assert!(!t.complete());
        let finisher = {
            let fake = fake.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let mut f = fake.lock().unwrap();
                f.torrents[0]["verified_bytes"] = 5916.into();
                f.torrents[0]["state"] = "complete".into();
            }
        };
        let (done, ()) = tokio::join!(wait_complete(&client, t), finisher);
        assert!(done.unwrap().complete());
        let shown: Torrent = serde_json::from_value(torrent(KNOWN, "Show", false)).unwrap();
        assert!(progress_text(&shown).contains("[------------------------]   0.0%"), "{}", progress_text(&shown));
    }
}
