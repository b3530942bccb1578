//! Shared helpers for the integration tests that run the `sluice` binary, alone or against real
//! libtorrent peers driven by `tests/interop/lt_peer.py`.
//!
//! Every child process is owned by a [`Proc`] that kills it (SIGKILL, by PID) when dropped, so a
//! failing test never leaves peers behind. Waits poll a condition until a deadline instead of
//! sleeping for a fixed time. Each test uses its own 127.0.N.0/24 block and port range so tests
//! can run in parallel.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Debian's interpreter: python3-libtorrent is installed for it, not for a pyenv python on PATH.
pub const PYTHON: &str = "/usr/bin/python3";

pub const MIB: u64 = 1 << 20;

pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn lt_peer_script() -> PathBuf {
    repo_root().join("tests/interop/lt_peer.py")
}

/// Whether real libtorrent can be driven; interop tests skip (loudly) when it cannot.
pub fn libtorrent_available() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True (after saying so on stderr) when libtorrent is missing and the calling test should skip.
pub fn skip_without_libtorrent(test: &str) -> bool {
    if libtorrent_available() {
        return false;
    }
    eprintln!("SKIPPED: {test} needs python3-libtorrent for {PYTHON} (./scripts/test installs it)");
    true
}

/// Address `host` in this test's own loopback block 127.0.`block`.0/24.
pub fn addr(block: u8, host: u8, port: u16) -> String {
    format!("127.0.{block}.{host}:{port}")
}

/// Address of the test peer `host`: port `port_base + host`, so no two peers of a test share a port.
pub fn peer_addr(block: u8, host: u8, port_base: u16) -> String {
    addr(block, host, port_base + u16::from(host))
}

/// A fresh temp dir for an interop test, or `None` (after saying so) when libtorrent is missing
/// and the test should skip.
pub fn interop_tempdir(test: &str) -> Option<tempfile::TempDir> {
    if skip_without_libtorrent(test) {
        return None;
    }
    Some(tempfile::tempdir().expect("tempdir"))
}

/// Creates and returns `<dir>/out`, the save path of a download.
pub fn out_dir(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    fs::create_dir_all(&out).expect("mkdir out");
    out
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed by PID when dropped; its stderr goes to a file the test can read.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd`, sending stderr to `<log_dir>/<name>.stderr` (and stdout too unless the caller
    /// already configured it).
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path, pipe_stdout: bool) -> Proc {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let err = File::create(&stderr_path).expect("create stderr log");
        let out: Stdio = if pipe_stdout { Stdio::piped() } else { err.try_clone().expect("clone log").into() };
        let child =
            cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { name: name.to_owned(), child, stderr_path, status: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for exit; panics (showing the stderr tail) if it does not happen within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if !wait_until(timeout, || self.try_status().is_some()) {
            panic!("{} did not exit within {timeout:?}; stderr tail:\n{}", self.name, tail(&self.stderr(), 40));
        }
        self.status.expect("exited")
    }

    /// Asserts that the process is still running and has not logged a panic.
    pub fn assert_running(&mut self) {
        assert!(self.try_status().is_none(), "{} exited; stderr tail:\n{}", self.name, tail(&self.stderr(), 40));
        assert!(!self.stderr().contains("panicked"), "{} panicked:\n{}", self.name, self.stderr());
    }

    /// SIGKILL, as `kill -9` would.
    pub fn kill9(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("wait after kill"));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        // Debugging aid: SLUICE_TEST_LOGS=DIR keeps every process's output after the temp dir goes.
        if let Some(dir) = std::env::var_os("SLUICE_TEST_LOGS") {
            let dir = Path::new(&dir);
            let _ = fs::create_dir_all(dir);
            let _ = fs::copy(&self.stderr_path, dir.join(format!("{}.{}.log", self.name, self.pid())));
        }
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A test torrent made by `lt_peer.py make-torrent`: `<dir>/<name>.torrent`, files under
/// `<dir>/data/<name>/`.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub torrent: PathBuf,
    /// The save path: holds the `<name>/` directory.
    pub data: PathBuf,
    pub name: String,
    pub piece_length: u64,
    /// make-torrent's JSON summary (files, pad flags, piece count).
    pub summary: String,
}

impl Fixture {
    pub fn content_dir(&self) -> PathBuf {
        self.data.join(&self.name)
    }

    /// Payload bytes on disk (pad files are never on disk).
    pub fn total_size(&self) -> u64 {
        list_files(&self.content_dir()).iter().map(|(_, p)| fs::metadata(p).expect("stat").len()).sum()
    }

    /// Asserts that `save_path/<name>/` is a byte-identical copy of the content.
    pub fn assert_copied_to(&self, save_path: &Path) {
        assert_same_tree(&self.content_dir(), &save_path.join(&self.name));
    }
}

pub struct TorrentSpec<'a> {
    pub name: &'a str,
    pub size: u64,
    pub seed: u64,
    pub files: u32,
    pub piece_length: u64,
    pub hybrid: bool,
}

pub fn make_torrent(dir: &Path, spec: &TorrentSpec<'_>) -> Fixture {
    make_torrent_announcing(dir, spec, &[])
}

/// [`make_torrent`] whose metainfo lists `trackers`, one tier each.
pub fn make_torrent_announcing(dir: &Path, spec: &TorrentSpec<'_>, trackers: &[&str]) -> Fixture {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(lt_peer_script())
        .arg("make-torrent")
        .arg("--dir")
        .arg(dir)
        .args(["--name", spec.name])
        .args(["--size", &spec.size.to_string()])
        .args(["--seed", &spec.seed.to_string()])
        .args(["--files", &spec.files.to_string()])
        .args(["--piece-size", &spec.piece_length.to_string()]);
    if spec.hybrid {
        cmd.arg("--hybrid");
    }
    for t in trackers {
        cmd.args(["--tracker", t]);
    }
    let out = cmd.output().expect("run lt_peer.py make-torrent");
    assert!(out.status.success(), "make-torrent failed: {}", String::from_utf8_lossy(&out.stderr));
    Fixture {
        torrent: dir.join(format!("{}.torrent", spec.name)),
        data: dir.join("data"),
        name: spec.name.to_owned(),
        piece_length: spec.piece_length,
        summary: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// A libtorrent seeder (`lt_peer.py seed`) that is listening and seeding once `start` returns.
#[derive(Debug)]
pub struct LtSeeder {
    pub proc: Proc,
    pub endpoint: String,
    uploaded: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
pub struct SeedOpts<'a> {
    pub upload_rate: Option<u64>,
    pub corrupt_pieces: &'a [u32],
    /// Trackers to announce to (beside the torrent's own).
    pub trackers: &'a [&'a str],
    /// `lt_peer.py seed --encryption` (e.g. "require": MSE with RC4 only).
    pub encryption: Option<&'a str>,
    /// `lt_peer.py seed --transport` ("tcp", the default; "utp": uTP only; "both").
    pub transport: Option<&'a str>,
}

impl LtSeeder {
    pub fn start(fx: &Fixture, endpoint: &str, opts: &SeedOpts<'_>, log_dir: &Path) -> LtSeeder {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(lt_peer_script())
            .arg("seed")
            .arg("--torrent")
            .arg(&fx.torrent)
            .arg("--data")
            .arg(&fx.data)
            .args(["--listen", endpoint, "--report"])
            .arg("--work-dir")
            .arg(log_dir);
        if let Some(rate) = opts.upload_rate {
            cmd.args(["--upload-rate", &rate.to_string()]);
        }
        if !opts.corrupt_pieces.is_empty() {
            let list: Vec<String> = opts.corrupt_pieces.iter().map(u32::to_string).collect();
            cmd.args(["--corrupt-pieces", &list.join(",")]);
        }
        for t in opts.trackers {
            cmd.args(["--tracker", t]);
        }
        if let Some(mode) = opts.encryption {
            cmd.args(["--encryption", mode]);
        }
        if let Some(transport) = opts.transport {
            cmd.args(["--transport", transport]);
        }
        let name = format!("lt-seed-{}", endpoint.replace([':', '.'], "_"));
        let mut proc = Proc::spawn(&name, cmd, log_dir, true);
        let stdout = proc.child.stdout.take().expect("piped stdout");
        let ready = Arc::new(AtomicBool::new(false));
        let uploaded = Arc::new(AtomicU64::new(0));
        {
            let (ready, uploaded) = (ready.clone(), uploaded.clone());
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("ready ") {
                        ready.store(true, Ordering::SeqCst);
                    } else if let Some(n) = line.strip_prefix("uploaded ") {
                        uploaded.store(n.trim().parse().unwrap_or(0), Ordering::SeqCst);
                    }
                }
            });
        }
        let ok = wait_until(Duration::from_secs(60), || ready.load(Ordering::SeqCst) || proc.try_status().is_some());
        assert!(
            ok && ready.load(Ordering::SeqCst),
            "libtorrent seeder on {endpoint} not ready; stderr:\n{}",
            tail(&proc.stderr(), 40)
        );
        LtSeeder { proc, endpoint: endpoint.to_owned(), uploaded }
    }

    /// Payload bytes this seeder has sent so far (refreshed every 200 ms).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::SeqCst)
    }
}

/// Starts one libtorrent seeder per host of `hosts`, each on [`peer_addr`]`(block, host, port_base)`.
pub fn start_seeders(
    fx: &Fixture,
    block: u8,
    hosts: impl IntoIterator<Item = u8>,
    port_base: u16,
    opts: &SeedOpts<'_>,
    log_dir: &Path,
) -> Vec<LtSeeder> {
    hosts.into_iter().map(|h| LtSeeder::start(fx, &peer_addr(block, h, port_base), opts, log_dir)).collect()
}

/// Runs `lt_peer.py leech` to completion; panics with its output if it fails.
pub fn lt_leech(fx: &Fixture, out: &Path, peers: &[&str], listen: &str, timeout: Duration) {
    LtLeechCmd::new(fx, out, listen, timeout).peers(peers).run("lt-leech", parent(out));
}

/// [`lt_leech`] from a magnet link: libtorrent fetches the metadata from the peers first.
pub fn lt_leech_magnet(magnet: &str, out: &Path, peers: &[&str], listen: &str, timeout: Duration) {
    LtLeechCmd::magnet(magnet, out, listen, timeout).peers(peers).run("lt-leech", parent(out));
}

fn parent(out: &Path) -> &Path {
    out.parent().expect("out has a parent")
}

/// `lt_peer.py leech` into `out`, listening on `listen` and giving up after `timeout`, plus the
/// `--peer`s and other arguments added.
#[derive(Debug)]
pub struct LtLeechCmd {
    cmd: Command,
    timeout: Duration,
}

impl LtLeechCmd {
    pub fn new(fx: &Fixture, out: &Path, listen: &str, timeout: Duration) -> LtLeechCmd {
        Self::of(&[OsStr::new("--torrent"), fx.torrent.as_os_str()], out, listen, timeout)
    }

    /// From a magnet link: libtorrent fetches the metadata from the peers first.
    pub fn magnet(magnet: &str, out: &Path, listen: &str, timeout: Duration) -> LtLeechCmd {
        Self::of(&[OsStr::new("--magnet"), OsStr::new(magnet)], out, listen, timeout)
    }

    fn of(source: &[&OsStr], out: &Path, listen: &str, timeout: Duration) -> LtLeechCmd {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(lt_peer_script())
            .arg("leech")
            .args(source)
            .arg("--out")
            .arg(out)
            .args(["--listen", listen])
            .args(["--timeout", &timeout.as_secs().to_string()]);
        LtLeechCmd { cmd, timeout }
    }

    pub fn peers(mut self, peers: &[&str]) -> LtLeechCmd {
        for p in peers {
            self.cmd.args(["--peer", p]);
        }
        self
    }

    /// More arguments, e.g. `--encryption require` or `--transport utp`.
    pub fn args(mut self, args: &[&str]) -> LtLeechCmd {
        self.cmd.args(args);
        self
    }

    /// Starts it in the background; its stdout goes to the same log as its stderr.
    pub fn spawn(self, name: &str, log_dir: &Path) -> Proc {
        Proc::spawn(name, self.cmd, log_dir, false)
    }

    /// Runs it to completion; panics with its output if it fails. Returns its log (stderr, then
    /// its JSON report on stdout).
    ///
    /// libtorrent's Python binding now and then dies of SIGSEGV (1 run in 19 of
    /// `utp_only_libtorrent_leecher_completes_from_sluice_seed`, with nothing in its log): the
    /// reference peer crashing is not a transfer failing, so such a run is repeated once, and
    /// says so.
    pub fn run(self, name: &str, log_dir: &Path) -> String {
        use std::os::unix::process::ExitStatusExt;
        let timeout = self.timeout;
        let mut again = Command::new(self.cmd.get_program());
        again.args(self.cmd.get_args());
        let mut proc = self.spawn(name, log_dir);
        let mut status = proc.wait_exit(timeout + Duration::from_secs(30));
        let mut log = proc.stderr();
        if status.signal() == Some(11) {
            eprintln!("libtorrent leecher {name} crashed (SIGSEGV); running it once more:\n{}", tail(&log, 10));
            let mut proc = Proc::spawn(&format!("{name}-again"), again, log_dir, false);
            status = proc.wait_exit(timeout + Duration::from_secs(30));
            log = proc.stderr();
        }
        assert!(status.success(), "libtorrent leecher {name} failed ({status}):\n{}", tail(&log, 40));
        log
    }
}

/// `sluice <args>` with SLUICE_LOOPBACK_ONLY=1, output logged to `<log_dir>/<name>.stderr`.
pub fn spawn_sluice<S: AsRef<OsStr>>(name: &str, args: &[S], log_dir: &Path) -> Proc {
    Proc::spawn(name, sluice_command(args), log_dir, false)
}

fn sluice_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(args).env("SLUICE_LOOPBACK_ONLY", "1").env("RUST_BACKTRACE", "1");
    cmd
}

/// `magnet:?xt=urn:btih:<hash>&dn=<name>` with an `x.pe` per peer, for the fixture's torrent.
pub fn magnet_for(fx: &Fixture, peers: &[&str]) -> String {
    let bytes = fs::read(&fx.torrent).expect("read torrent");
    let meta = sluice_core::metainfo::Metainfo::from_bytes(&bytes).expect("valid torrent");
    let mut link = format!("magnet:?xt=urn:btih:{}&dn={}", meta.info_hash.to_hex(), fx.name);
    for p in peers {
        link.push_str("&x.pe=");
        link.push_str(p);
    }
    link
}

/// The arguments of `sluice download <torrent> --out <out> --listen <listen> --loopback-only`, plus a
/// `--peer` per seeder added with [`DownloadCmd::peers`], more arguments from [`DownloadCmd::args`]
/// and environment from [`DownloadCmd::env`].
#[derive(Debug, Clone)]
pub struct DownloadCmd {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl DownloadCmd {
    pub fn new(fx: &Fixture, out: &Path, listen: &str) -> DownloadCmd {
        Self::of(fx.torrent.clone().into(), out, listen)
    }

    /// `sluice download <source>`: a magnet link, a bare info-hash or a `.torrent` path.
    pub fn of(source: OsString, out: &Path, listen: &str) -> DownloadCmd {
        let args = vec![
            "download".into(),
            source,
            "--out".into(),
            out.into(),
            "--listen".into(),
            listen.into(),
            "--loopback-only".into(),
        ];
        DownloadCmd { args, env: Vec::new() }
    }

    /// Adds `--peer <endpoint>` for each seeder, in order.
    pub fn peers<'a>(mut self, seeders: impl IntoIterator<Item = &'a LtSeeder>) -> DownloadCmd {
        for s in seeders {
            self.args.extend(["--peer".into(), s.endpoint.clone().into()]);
        }
        self
    }

    /// More arguments, e.g. `--no-utp` or `--encryption off`.
    pub fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> DownloadCmd {
        self.args.extend(args.into_iter().map(OsString::from));
        self
    }

    /// An environment variable for the process, e.g. `SLUICE_LOG`.
    pub fn env(mut self, key: &str, value: &str) -> DownloadCmd {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Spawns the download (see [`spawn_sluice`]); may be called again for a restart.
    pub fn spawn(&self, name: &str, log_dir: &Path) -> Proc {
        let mut cmd = sluice_command(&self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Proc::spawn(name, cmd, log_dir, false)
    }
}

/// The arguments of `sluice seed <torrent> --data <data> --listen <listen> --loopback-only`, plus
/// more from [`SeedCmd::args`].
#[derive(Debug, Clone)]
pub struct SeedCmd {
    args: Vec<OsString>,
}

impl SeedCmd {
    pub fn new(fx: &Fixture, listen: &str) -> SeedCmd {
        let args = vec![
            "seed".into(),
            fx.torrent.clone().into(),
            "--data".into(),
            fx.data.clone().into(),
            "--listen".into(),
            listen.into(),
            "--loopback-only".into(),
        ];
        SeedCmd { args }
    }

    /// More arguments, e.g. `--encryption require`.
    pub fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> SeedCmd {
        self.args.extend(args.into_iter().map(OsString::from));
        self
    }

    /// Spawns `sluice-seed` and waits until it is listening; panics (with its stderr) if it exits
    /// first or is not listening within 120 s.
    pub fn start(&self, log_dir: &Path) -> Proc {
        let mut sluice = spawn_sluice("sluice-seed", &self.args, log_dir);
        let up = wait_until(Duration::from_secs(120), || {
            sluice.stderr().contains("listening on") || sluice.try_status().is_some()
        });
        assert!(
            up && sluice.try_status().is_none(),
            "sluice seed did not start listening; stderr:\n{}",
            tail(&sluice.stderr(), 40)
        );
        sluice
    }
}

/// Runs a sluice process to exit and asserts success; returns its stderr.
pub fn expect_success(proc: &mut Proc, timeout: Duration) -> String {
    let status = proc.wait_exit(timeout);
    let stderr = proc.stderr();
    assert!(status.success(), "{} exited with {status}; stderr tail:\n{}", proc.name, tail(&stderr, 60));
    assert!(!stderr.contains("panicked"), "sluice panicked:\n{stderr}");
    stderr
}

/// Regular files under `root`, as (relative path, full path), sorted.
pub fn list_files(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.push((rel, path));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Asserts that `got` holds exactly the files of `want`, byte for byte.
pub fn assert_same_tree(want: &Path, got: &Path) {
    let w = list_files(want);
    let g = list_files(got);
    let wn: Vec<_> = w.iter().map(|(r, _)| r.clone()).collect();
    let gn: Vec<_> = g.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(gn, wn, "file sets differ between {got:?} and {want:?}");
    for ((rel, wp), (_, gp)) in w.iter().zip(&g) {
        let (a, b) = (fs::read(wp).expect("read"), fs::read(gp).expect("read"));
        assert_eq!(a.len(), b.len(), "{rel:?}: size differs");
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            panic!("{rel:?}: first differing byte at offset {i}");
        }
    }
}

/// N from the first line of the form `<prefix>N<suffix>`, e.g. `resume: ` N ` verified pieces`.
pub fn number_in_line(text: &str, prefix: &str, suffix: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let n = line.trim().strip_prefix(prefix)?.strip_suffix(suffix)?;
        n.trim().parse().ok()
    })
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close` expected in `head`):
/// (status, response head, body).
pub fn http_exchange(addr: &str, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to sluice");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().expect("status code");
    (status, head, raw[split + 4..].to_vec())
}

/// A running `sluice serve`: HTTP on 127.0.BLOCK.1:PORT, peers on PORT+1, data under `dir`.
pub struct Serve {
    pub proc: Proc,
    pub http: String,
}

impl Serve {
    pub fn start(block: u8, port: u16, dir: &Path) -> Serve {
        Self::start_with(block, port, dir, &[])
    }

    /// [`Serve::start`] with more command-line arguments.
    pub fn start_with(block: u8, port: u16, dir: &Path, extra: &[&str]) -> Serve {
        let http = addr(block, 1, port);
        let data_dir = dir.join("served-data");
        let peer = addr(block, 1, port + 1);
        let mut args = vec![
            "serve",
            "--listen",
            &http,
            "--peer-listen",
            &peer,
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--loopback-only",
        ];
        args.extend_from_slice(extra);
        let proc = spawn_sluice("sluice-serve", &args, dir);
        assert!(
            wait_until(Duration::from_secs(30), || proc.stderr().contains("http on")),
            "serve did not start:\n{}",
            tail(&proc.stderr(), 20)
        );
        Serve { proc, http }
    }

    /// `POST /api/v1/torrents` with `{"magnet": magnet}`: (status, JSON body).
    pub fn add_magnet(&self, magnet: &str) -> (u16, serde_json::Value) {
        let body = serde_json::to_vec(&serde_json::json!({ "magnet": magnet })).expect("json");
        let (status, body) = self.post("/api/v1/torrents", "application/json", &body);
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&body)));
        (status, json)
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: sluice\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (status, _, body) = http_exchange(&self.http, &head, body);
        (status, body)
    }

    /// Adds `torrent` (expecting 201) and gives it `peers` (expecting 204); returns the add's JSON.
    pub fn add(&self, torrent: &[u8], peers: &[LtSeeder]) -> serde_json::Value {
        let (status, body) = self.post("/api/v1/torrents", "application/x-bittorrent", torrent);
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let added: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let hash = added["info_hash"].as_str().expect("info_hash");
        let peers: Vec<&str> = peers.iter().map(|s| s.endpoint.as_str()).collect();
        let peers = serde_json::to_vec(&peers).expect("json");
        let (status, _) = self.post(&format!("/api/v1/torrents/{hash}/peers"), "application/json", &peers);
        assert_eq!(status, 204);
        added
    }
}
