//! HTTP conformance on raw bytes: requests are written to a real TCP socket on 127.0.0.1 and
//! the responses are read back byte for byte, against an in-memory source that can delay,
//! trickle, stall or end early.
//!
//! Response heads are compared with tests/golden/*.txt (status line, then the headers sorted,
//! `date` left out). `SLUICE_BLESS=1 cargo test -p sluice-http` rewrites them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_core::InfoHash;
use sluice_http::{FileIndex, FileInfo, FileReader, HttpConfig, SourceError, StreamSource, router};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

mod support;
use support::{Raw, parse};

const MOVIE: InfoHash = InfoHash([0x11; 20]);
const OTHER: InfoHash = InfoHash([0x22; 20]);
const LEN: usize = 300_000;

/// How a fake file misbehaves from some offset on.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Reads stay pending forever.
    Stall(u64),
    /// Reads return end of file.
    Eof(u64),
}

#[derive(Clone)]
struct FakeFile {
    path: &'static str,
    data: Arc<[u8]>,
    modified: Option<SystemTime>,
    /// At most this many bytes per read, each read after `delay`.
    trickle: usize,
    delay: Duration,
    cut: Option<Cut>,
}

impl FakeFile {
    fn new(path: &'static str, len: usize) -> Self {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 251) as u8).collect();
        Self { path, data: data.into(), modified: None, trickle: usize::MAX, delay: Duration::ZERO, cut: None }
    }
}

#[derive(Default)]
struct Fake {
    files: HashMap<(InfoHash, usize), FakeFile>,
    opened: Mutex<Vec<Range<u64>>>,
}

impl Fake {
    fn with(mut self, torrent: InfoHash, index: usize, file: FakeFile) -> Self {
        self.files.insert((torrent, index), file);
        self
    }
}

impl StreamSource for Fake {
    fn file(&self, torrent: InfoHash, index: FileIndex) -> Result<FileInfo, SourceError> {
        if !self.files.keys().any(|(t, _)| *t == torrent) {
            return Err(SourceError::UnknownTorrent);
        }
        let f = self.files.get(&(torrent, index.0)).ok_or(SourceError::UnknownFile)?;
        Ok(FileInfo { path: f.path.to_owned(), length: f.data.len() as u64, modified: f.modified })
    }

    fn open(&self, torrent: InfoHash, index: FileIndex, range: Range<u64>) -> Result<Box<dyn FileReader>, SourceError> {
        let f = self.files.get(&(torrent, index.0)).ok_or(SourceError::UnknownFile)?.clone();
        self.opened.lock().unwrap().push(range.clone());
        Ok(Box::new(FakeReader { file: f, pos: range.start as usize, sleep: None }))
    }
}

struct FakeReader {
    file: FakeFile,
    pos: usize,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for FakeReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let mut end = this.file.data.len();
        match this.file.cut {
            Some(Cut::Stall(at)) if this.pos as u64 >= at => return Poll::Pending,
            Some(Cut::Stall(at) | Cut::Eof(at)) => end = end.min(at as usize),
            None => {}
        }
        if !this.file.delay.is_zero() {
            let delay = this.file.delay;
            ready!(this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(delay))).as_mut().poll(cx));
            this.sleep = None;
        }
        let n = this.file.trickle.min(buf.remaining()).min(end.saturating_sub(this.pos));
        buf.put_slice(&this.file.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn fake() -> Fake {
    let mut movie = FakeFile::new("Some Movie (2024)/movie.mkv", LEN);
    movie.modified = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    Fake::default()
        .with(MOVIE, 0, movie)
        .with(MOVIE, 1, FakeFile::new("Some Movie (2024)/subs/en.srt", 2_000))
        .with(MOVIE, 2, FakeFile::new("Some Movie (2024)/empty.txt", 0))
        .with(OTHER, 0, FakeFile::new("clip.ts", 50_000))
}

struct Server {
    addr: SocketAddr,
    source: Arc<Fake>,
}

async fn serve(source: Fake, config: HttpConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let source = Arc::new(source);
    let app = router(source.clone(), config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { addr, source }
}

fn small_chunks() -> HttpConfig {
    HttpConfig { chunk_size: 16 * 1024, ..HttpConfig::default() }
}

fn path(torrent: InfoHash, index: usize) -> String {
    format!("/api/v1/torrents/{torrent}/files/{index}/stream")
}

/// Sends one request with `Connection: close` and reads everything until the server closes.
async fn request(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Raw {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    exchange(addr, req.as_bytes()).await
}

async fn exchange(addr: SocketAddr, raw_request: &[u8]) -> Raw {
    parse(&exchange_bytes(addr, raw_request).await)
}

async fn exchange_bytes(addr: SocketAddr, raw_request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw_request).await.unwrap();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 65536];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server neither finished nor closed the connection");
    bytes
}

fn golden(name: &str, raw: &Raw) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&file, &raw.head_text).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e} (SLUICE_BLESS=1 writes it)", file.display()));
    assert_eq!(raw.head_text, expected, "response head differs from {}", file.display());
}

fn movie_data(s: &Server) -> Arc<[u8]> {
    s.source.files[&(MOVIE, 0)].data.clone()
}

#[tokio::test]
async fn full_get_streams_the_whole_file() {
    let s = serve(fake(), small_chunks()).await;
    let r = request(s.addr, "GET", &path(MOVIE, 0), &[]).await;
    golden("get_full", &r);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), LEN);
    assert_eq!(r.body, &movie_data(&s)[..]);
    assert_eq!(s.source.opened.lock().unwrap().as_slice(), &[Range { start: 0, end: LEN as u64 }]);
}

#[tokio::test]
async fn filename_route_and_content_types() {
    let s = serve(fake(), small_chunks()).await;
    let r = request(s.addr, "GET", &format!("{}/anything.mkv", path(MOVIE, 1)), &[]).await;
    golden("get_srt_filename_route", &r);
    assert_eq!(r.header("content-type"), Some("application/x-subrip"));
    assert_eq!(r.body, &s.source.files[&(MOVIE, 1)].data[..]);
    let r = request(s.addr, "HEAD", &path(OTHER, 0), &[]).await;
    assert_eq!(r.header("content-type"), Some("video/mp2t"));
}

async fn range(s: &Server, value: &str) -> Raw {
    request(s.addr, "GET", &path(MOVIE, 0), &[("Range", value)]).await
}

#[tokio::test]
async fn range_forms() {
    let s = serve(fake(), small_chunks()).await;
    let data = movie_data(&s);
    let len = LEN as u64;
    let cases: [(&str, &str, Range<usize>); 5] = [
        ("range_first_last", "bytes=10-19", 10..20),
        ("range_open_end", "bytes=100000-", 100_000..LEN),
        ("range_suffix", "bytes=-1000", LEN - 1000..LEN),
        ("range_last_clamped", "bytes=299990-400000", LEN - 10..LEN),
        ("range_several_coalesced", "bytes=500-599, 100-199", 100..600),
    ];
    for (name, value, want) in cases {
        let r = range(&s, value).await;
        golden(name, &r);
        assert_eq!(r.status, 206, "{value}");
        assert_eq!(r.header("content-range").unwrap(), format!("bytes {}-{}/{len}", want.start, want.end - 1));
        assert_eq!(r.content_length(), want.len());
        assert_eq!(r.body, &data[want.clone()], "{value}");
        assert_eq!(s.source.opened.lock().unwrap().pop(), Some(want.start as u64..want.end as u64));
    }
}

#[tokio::test]
async fn unsatisfiable_range_is_416() {
    let s = serve(fake(), small_chunks()).await;
    for value in ["bytes=300000-", "bytes=400000-400010", "bytes=-0"] {
        let r = range(&s, value).await;
        golden("range_unsatisfiable", &r);
        assert_eq!(r.status, 416, "{value}");
        assert_eq!(r.header("content-range"), Some("bytes */300000"));
        assert_eq!(r.json_code(), "range_not_satisfiable");
    }
    let r = request(s.addr, "GET", &path(MOVIE, 2), &[("Range", "bytes=0-")]).await;
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */0")));
    assert!(s.source.opened.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_range_is_ignored() {
    let s = serve(fake(), small_chunks()).await;
    for value in ["bytes=abc", "items=0-10", "bytes=20-10", "bytes=", "0-10", "bytes=1-2-3"] {
        let r = range(&s, value).await;
        golden("range_malformed", &r);
        assert_eq!(r.status, 200, "{value}");
        assert_eq!(r.body.len(), LEN, "{value}");
    }
    let twice = b"GET /api/v1/torrents/1111111111111111111111111111111111111111/files/0/stream HTTP/1.1\r\n\
        Host: x\r\nRange: bytes=0-1\r\nRange: bytes=5-6\r\nConnection: close\r\n\r\n";
    let r = exchange(s.addr, twice).await;
    assert_eq!((r.status, r.body.len()), (200, LEN));
}

#[tokio::test]
async fn head_has_the_get_headers_and_no_body() {
    let s = serve(fake(), small_chunks()).await;
    let r = request(s.addr, "HEAD", &path(MOVIE, 0), &[]).await;
    golden("head", &r);
    assert_eq!((r.status, r.content_length(), r.body.len()), (200, LEN, 0));
    let get = request(s.addr, "GET", &path(MOVIE, 0), &[]).await;
    assert_eq!(get.head_text, r.head_text);
    // Range is defined for GET only (RFC 9110 §14.2).
    let r = request(s.addr, "HEAD", &path(MOVIE, 0), &[("Range", "bytes=0-9")]).await;
    assert_eq!((r.status, r.content_length(), r.body.len()), (200, LEN, 0));
    assert!(s.source.opened.lock().unwrap().len() == 1, "HEAD never opens a reader");
}

#[tokio::test]
async fn if_range() {
    let s = serve(fake(), small_chunks()).await;
    let etag = request(s.addr, "HEAD", &path(MOVIE, 0), &[]).await.header("etag").unwrap().to_owned();
    let date = "Tue, 14 Nov 2023 22:13:20 GMT";
    let cases = [
        (etag.as_str(), 206),
        (date, 206),
        ("\"something-else\"", 200),
        (&format!("W/{etag}"), 200),
        ("Tue, 14 Nov 2023 22:13:21 GMT", 200),
        ("not a validator", 200),
    ];
    for (validator, status) in cases {
        let r = request(s.addr, "GET", &path(MOVIE, 0), &[("Range", "bytes=0-99"), ("If-Range", validator)]).await;
        assert_eq!(r.status, status, "If-Range: {validator}");
        assert_eq!(r.body.len(), if status == 206 { 100 } else { LEN });
    }
    let r = request(s.addr, "GET", &path(MOVIE, 0), &[("Range", "bytes=0-99"), ("If-Range", "\"stale\"")]).await;
    golden("if_range_mismatch", &r);
    // No Last-Modified: a date never matches.
    let r = request(s.addr, "GET", &path(OTHER, 0), &[("Range", "bytes=0-99"), ("If-Range", date)]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn etag_is_stable_and_distinct() {
    let a = serve(fake(), small_chunks()).await;
    let b = serve(fake(), HttpConfig::default()).await;
    let tag = |s: &Server, t, i| {
        let addr = s.addr;
        async move { request(addr, "HEAD", &path(t, i), &[]).await.header("etag").unwrap().to_owned() }
    };
    let first = tag(&a, MOVIE, 0).await;
    assert!(first.starts_with('"') && first.ends_with('"'), "strong: {first}");
    assert_eq!(first, tag(&a, MOVIE, 0).await);
    assert_eq!(first, tag(&b, MOVIE, 0).await, "another server over the same torrent");
    let r = range(&a, "bytes=5-6").await;
    assert_eq!(r.header("etag"), Some(first.as_str()), "a 206 carries the same tag");
    assert_ne!(first, tag(&a, MOVIE, 1).await);
    assert_ne!(first, tag(&a, OTHER, 0).await);
}

#[tokio::test]
async fn dlna_headers() {
    let s = serve(fake(), small_chunks()).await;
    let plain = request(s.addr, "HEAD", &path(MOVIE, 0), &[]).await;
    assert_eq!(plain.header("transfermode.dlna.org"), Some("Streaming"));
    assert_eq!(plain.header("contentfeatures.dlna.org"), None);
    let asked =
        request(s.addr, "GET", &path(MOVIE, 0), &[("getcontentFeatures.dlna.org", "1"), ("Range", "bytes=0-0")]).await;
    golden("dlna_content_features", &asked);
    assert_eq!(
        asked.header("contentfeatures.dlna.org"),
        Some("DLNA.ORG_OP=01;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01700000000000000000000000000000")
    );
    assert_eq!(asked.header("transfermode.dlna.org"), Some("Streaming"));
}

#[tokio::test]
async fn errors_are_json() {
    let config = HttpConfig { max_file_size: Some(100_000), ..small_chunks() };
    let s = serve(fake(), config).await;
    let too_large = request(s.addr, "GET", &path(MOVIE, 0), &[]).await;
    golden("forbidden_too_large", &too_large);
    assert_eq!((too_large.status, too_large.json_code()), (403, "file_too_large".to_owned()));
    let r = request(s.addr, "GET", &path(OTHER, 0), &[]).await;
    assert_eq!((r.status, r.body.len()), (200, 50_000), "under the limit");

    let r = request(s.addr, "GET", &path(InfoHash([0x33; 20]), 0), &[]).await;
    golden("not_found_torrent", &r);
    assert_eq!((r.status, r.json_code()), (404, "unknown_torrent".to_owned()));
    let r = request(s.addr, "GET", &path(MOVIE, 9), &[]).await;
    assert_eq!((r.status, r.json_code()), (404, "unknown_file".to_owned()));
    let r = request(s.addr, "GET", "/api/v1/torrents/xyz/files/0/stream", &[]).await;
    assert_eq!((r.status, r.json_code()), (400, "bad_info_hash".to_owned()));
    let r = request(s.addr, "GET", &format!("/api/v1/torrents/{MOVIE}/files/-1/stream"), &[]).await;
    assert_eq!((r.status, r.json_code()), (400, "bad_file_index".to_owned()));
}

#[tokio::test]
async fn empty_file() {
    let s = serve(fake(), small_chunks()).await;
    let r = request(s.addr, "GET", &path(MOVIE, 2), &[]).await;
    assert_eq!((r.status, r.content_length(), r.body.len()), (200, 0, 0));
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn slow_source_trickles_a_complete_body() {
    let mut slow = FakeFile::new("slow.mp4", 200_000);
    slow.trickle = 7_001;
    slow.delay = Duration::from_millis(3);
    let s = serve(Fake::default().with(MOVIE, 0, slow), small_chunks()).await;
    let r = range(&s, "bytes=1-").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.content_length(), 199_999);
    assert_eq!(r.body, &movie_data(&s)[1..]);
}

#[tokio::test]
async fn stalled_source_cuts_the_response_visibly() {
    let mut stalls = FakeFile::new("stall.mkv", 100_000);
    stalls.cut = Some(Cut::Stall(40_000));
    let config = HttpConfig { read_timeout: Duration::from_millis(300), ..small_chunks() };
    let s = serve(Fake::default().with(MOVIE, 0, stalls), config).await;
    let started = Instant::now();
    let r = request(s.addr, "GET", &path(MOVIE, 0), &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), 100_000);
    assert_eq!(r.body, &movie_data(&s)[..40_000], "everything before the stall, then the connection closes");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn source_ending_early_cuts_the_response_visibly() {
    let mut short = FakeFile::new("short.mkv", 100_000);
    short.cut = Some(Cut::Eof(70_000));
    let s = serve(Fake::default().with(MOVIE, 0, short), small_chunks()).await;
    let req = format!("GET {} HTTP/1.1\r\nHost: x\r\nRange: bytes=50000-\r\nConnection: close\r\n\r\n", path(MOVIE, 0));
    let bytes = exchange_bytes(s.addr, req.as_bytes()).await;
    // Hyper drops what it had not flushed when a body fails, so the client may get nothing at
    // all; whatever it gets is never a complete response.
    if bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        let r = parse(&bytes);
        assert_eq!((r.status, r.content_length()), (206, 50_000));
        assert!(r.body.len() < 50_000 && movie_data(&s)[50_000..].starts_with(&r.body));
    }
}

#[tokio::test]
async fn slow_client_is_not_charged_to_the_source() {
    // Reads wait a little, so each one is pending when the body polls it; the client stops
    // reading long enough for every buffer between it and the body to fill.
    let mut big = FakeFile::new("big.mkv", 16 << 20);
    big.delay = Duration::from_millis(1);
    let config = HttpConfig { read_timeout: Duration::from_millis(200), ..HttpConfig::default() };
    let s = serve(Fake::default().with(MOVIE, 0, big), config).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut stream = socket.connect(s.addr).await.unwrap();
    let req = format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path(MOVIE, 0));
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let mut paused = false;
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        if !paused && bytes.len() > 100_000 {
            paused = true;
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
    let r = parse(&bytes);
    assert_eq!(r.body, &movie_data(&s)[..]);
}

#[tokio::test]
async fn keep_alive_serves_requests_in_sequence() {
    let s = serve(fake(), small_chunks()).await;
    let p = path(MOVIE, 0);
    let two = format!(
        "GET {p} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\nGET {p} HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\nConnection: close\r\n\r\n"
    );
    let raw = exchange(s.addr, two.as_bytes()).await;
    let data = movie_data(&s);
    assert_eq!(raw.status, 206);
    let mut expected = data[..5].to_vec();
    expected.extend_from_slice(b"HTTP/1.1 206 Partial Content");
    assert!(raw.body.starts_with(&expected), "second response follows the first's 5 bytes");
    assert!(raw.body.ends_with(&data[5..10]));
}
