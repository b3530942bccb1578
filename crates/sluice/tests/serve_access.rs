//! Who may use a real `sluice serve`: the auth matrix (every route without credentials, with
//! a wrong password and with a right one), wrong passwords rationed per address, IP allow and deny lists seen from different client
//! addresses, and HTTPS with a certificate made here. No peers: the torrents are `.torrent`
//! files built in the test, and byte streams are asked for with `HEAD` (their bytes would
//! wait for peers).
//!
//! Clients bind their socket to 127.0.87.2, .3, ... (this test's block) before connecting, so
//! the server sees them as different addresses.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_core::metainfo::{Metainfo, TorrentBuilder};

const BLOCK: u8 = 87;
const USER: &str = "alice";
const PASSWORD: &str = "s3cret: with spaces";

/// `user:password` as a `Basic` credential.
fn basic(user: &str, password: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// A TCP connection from `127.0.87.<host>` to `to`.
fn connect_from(host: u8, to: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let from: SocketAddr = format!("127.0.{BLOCK}.{host}:0").parse().expect("addr");
    let to: SocketAddr = to.parse().expect("addr");
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&from.into()).expect("bind the client address");
    s.connect(&to.into()).expect("connect to sluice");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    Reply { status: head[9..12].parse().expect("status"), head, body: raw[split + 4..].to_vec() }
}

fn request_bytes(method: &str, target: &str, auth: Option<&str>, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.{BLOCK}.1\r\nConnection: close\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if method == "POST" || method == "PATCH" {
        head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// One request on a fresh connection from `127.0.87.<host>`.
fn exchange(host: u8, to: &str, method: &str, target: &str, auth: Option<&str>, body: &Body) -> Reply {
    let mut s = connect_from(host, to);
    s.write_all(&request_bytes(method, target, auth, body.content_type(), body.bytes())).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_reply(&raw)
}

enum Body {
    None,
    Json(String),
    Torrent(Vec<u8>),
    Multipart(Vec<u8>),
}

impl Body {
    fn content_type(&self) -> &str {
        match self {
            Body::None | Body::Json(_) => "application/json",
            Body::Torrent(_) => "application/x-bittorrent",
            Body::Multipart(_) => "multipart/form-data; boundary=XyZ",
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Body::None => b"",
            Body::Json(s) => s.as_bytes(),
            Body::Torrent(b) | Body::Multipart(b) => b,
        }
    }
}

fn json(s: &str) -> Body {
    Body::Json(s.to_owned())
}

fn multipart(torrent: &[u8]) -> Body {
    let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n".to_vec();
    b.extend_from_slice(torrent);
    b.extend_from_slice(b"\r\n--XyZ--\r\n");
    Body::Multipart(b)
}

/// A two-file torrent with content from `seed` (no data on disk: nothing is served).
fn torrent(name: &str, seed: u8) -> (Vec<u8>, String) {
    let bytes = TorrentBuilder::new(name, 16384)
        .file(&["e1.mkv"], vec![seed; 40_000])
        .file(&["e2.mkv"], vec![seed.wrapping_add(1); 30_000])
        .build();
    let hash = Metainfo::from_bytes(&bytes).expect("torrent").info_hash.to_hex();
    (bytes, hash)
}

fn write_auth_file(dir: &Path) -> String {
    let path = dir.join("accounts");
    std::fs::write(&path, format!("# test accounts\nbob:other\n{USER}:{PASSWORD}\n")).expect("write accounts");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path.to_str().expect("utf-8").to_owned()
}

/// One row of the matrix: the request, and the status expected without credentials (the
/// same with a wrong password) and with the right ones (`None`: not sent with them, see the
/// row's comment).
struct Row {
    method: &'static str,
    target: String,
    body: Body,
    anonymous: u16,
    authorized: Option<u16>,
}

fn row(method: &'static str, target: impl Into<String>, body: Body, anonymous: u16, authorized: Option<u16>) -> Row {
    Row { method, target: target.into(), body, anonymous, authorized }
}

#[test]
fn auth_matrix_on_every_route() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let accounts = write_auth_file(tmp.path());
    let serve = Serve::start_with(BLOCK, 28701, tmp.path(), &["--auth-file", &accounts, "--metadata-timeout", "2"]);
    let http = serve.http.clone();
    let good = basic(USER, PASSWORD);
    let wrong = basic(USER, "s3cret");

    // The torrent every player link below points at, added with credentials.
    let (a_bytes, k) = torrent("show", 1);
    let (b_bytes, b) = torrent("other", 2);
    let r = exchange(2, &http, "POST", "/api/v1/torrents", None, &Body::Torrent(a_bytes.clone()));
    assert_eq!(r.status, 401, "anonymous add");
    assert!(r.head.contains("www-authenticate: Basic realm=\"Sluice\""), "{}", r.head);
    let r = exchange(2, &http, "POST", "/api/v1/torrents", Some(&good), &Body::Torrent(a_bytes));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let u = "cd".repeat(20);
    let magnet_u = format!("magnet:?xt=urn:btih:{u}");

    // Ten wrong passwords from one address, then it waits, the right password included;
    // its player links and other addresses go on.
    for i in 0..10 {
        let r = exchange(3, &http, "GET", "/api/v1/torrents", Some(&wrong), &Body::None);
        assert_eq!(r.status, 401, "wrong password {i}");
    }
    let r = exchange(3, &http, "GET", "/api/v1/torrents", Some(&good), &Body::None);
    assert_eq!(r.status, 429, "{}", r.head);
    assert!(r.head.contains("retry-after: 6"), "{}", r.head);
    assert!(serve.proc.stderr().contains("out of password guesses"));
    assert_eq!(exchange(3, &http, "HEAD", &format!("/play/{k}/1"), Some(&wrong), &Body::None).status, 200);
    assert_eq!(exchange(4, &http, "GET", "/api/v1/torrents", Some(&good), &Body::None).status, 200);
    let metrics = exchange(4, &http, "GET", "/metrics", Some(&good), &Body::None);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in ["sluice_http_wrong_passwords_total 10", "sluice_http_guess_refusals_total 1"] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in /metrics:\n{text}");
    }

    let rows = vec![
        // Open to everyone.
        row("GET", "/echo", Body::None, 200, Some(200)),
        row("OPTIONS", "/torrents", Body::None, 204, Some(204)),
        // Player links of a known torrent.
        row("HEAD", format!("/stream/e1.mkv?link={k}&index=1&play"), Body::None, 200, Some(200)),
        row("HEAD", format!("/stream?link=magnet:?xt=urn:btih:{k}&index=2&play"), Body::None, 200, Some(200)),
        row("GET", format!("/stream/show.m3u?link={k}&m3u"), Body::None, 200, Some(200)),
        row("GET", format!("/stream?link={k}&m3u&fromlast"), Body::None, 200, Some(200)),
        row("HEAD", format!("/play/{k}/1"), Body::None, 200, Some(200)),
        row("HEAD", format!("/play?hash={k}&id=2"), Body::None, 200, Some(200)),
        row("GET", format!("/playlist?hash={k}"), Body::None, 200, Some(200)),
        row("GET", format!("/playlist/x.m3u?hash={k}&fromlast"), Body::None, 200, Some(200)),
        row("HEAD", format!("/api/v1/torrents/{k}/files/0/stream"), Body::None, 200, Some(200)),
        row("HEAD", format!("/api/v1/torrents/{k}/files/1/stream/e2.mkv"), Body::None, 200, Some(200)),
        // /stream doing more than playing, or with peers in its magnet.
        row("GET", format!("/stream?link={k}&stat"), Body::None, 401, Some(200)),
        row("GET", format!("/stream?link={k}&index=1&stat&play"), Body::None, 401, Some(200)),
        row("GET", format!("/stream?link={k}&save"), Body::None, 401, Some(200)),
        // With credentials a preload waits for pieces no peer has.
        row("GET", format!("/stream?link={k}&index=1&preload"), Body::None, 401, None),
        row(
            "HEAD",
            format!("/stream?link=magnet:?xt=urn:btih:{k}%26x.pe=127.0.87.9:1&index=1&play"),
            Body::None,
            401,
            Some(200),
        ),
        // Links of an unknown torrent: with credentials `/stream` would add it and wait for
        // its metadata (no peer has it).
        row("HEAD", format!("/stream?link={u}&index=1&play"), Body::None, 401, None),
        row("GET", format!("/stream?link={u}&m3u"), Body::None, 401, None),
        row("HEAD", "/stream?link=http://127.0.87.9/a.torrent&play", Body::None, 401, Some(400)),
        row("HEAD", format!("/play/{u}/1"), Body::None, 401, Some(500)),
        row("HEAD", format!("/play?hash={u}&id=1"), Body::None, 401, Some(500)),
        row("GET", format!("/playlist?hash={u}"), Body::None, 401, Some(404)),
        row("HEAD", format!("/api/v1/torrents/{u}/files/0/stream"), Body::None, 401, Some(404)),
        // The API and admin routes.
        row("GET", "/playlistall/all.m3u", Body::None, 401, Some(200)),
        row("POST", "/settings", json(r#"{"action":"get"}"#), 401, Some(200)),
        row("POST", "/settings", json(r#"{"action":"def"}"#), 401, Some(200)),
        row("POST", "/torrents", json(r#"{"action":"list"}"#), 401, Some(200)),
        row("POST", "/torrents", json(&format!(r#"{{"action":"get","hash":"{k}"}}"#)), 401, Some(200)),
        row("POST", "/torrents", json(&format!(r#"{{"action":"set","hash":"{k}","title":"T"}}"#)), 401, Some(200)),
        row("POST", "/cache", json(&format!(r#"{{"action":"get","hash":"{k}"}}"#)), 401, Some(200)),
        row("POST", "/viewed", json(r#"{"action":"list"}"#), 401, Some(200)),
        row("POST", format!("/api/v1/torrents/{k}/peers"), json("[]"), 401, Some(204)),
        row("GET", format!("/api/v1/torrents/{k}/playlist.m3u"), Body::None, 200, Some(200)),
        row("GET", format!("/api/v1/torrents/{u}/playlist.m3u"), Body::None, 401, Some(404)),
        row("GET", "/api/v1/playlist.m3u", Body::None, 401, Some(200)),
        row("GET", "/api/v1/torrents", Body::None, 401, Some(200)),
        row("GET", format!("/api/v1/torrents/{k}"), Body::None, 401, Some(200)),
        row("GET", format!("/api/v1/torrents/{k}/files"), Body::None, 401, Some(200)),
        row("GET", "/api/v1/settings", Body::None, 401, Some(200)),
        row("PATCH", "/api/v1/settings", json("{}"), 401, Some(200)),
        row("GET", "/api/v1/openapi.json", Body::None, 401, Some(200)),
        // An event stream never ends: checked without credentials only.
        row("GET", "/api/v1/events", Body::None, 401, None),
        row("DELETE", format!("/api/v1/torrents/{}", "f".repeat(40)), Body::None, 401, Some(404)),
        row("GET", "/download/1", Body::None, 401, Some(200)),
        // With credentials ffprobe would read a stream no peer can serve.
        row("GET", format!("/ffp/{k}/1"), Body::None, 401, None),
        row("GET", "/metrics", Body::None, 401, Some(200)),
        row("GET", "/", Body::None, 401, Some(404)),
        row("GET", "/nowhere", Body::None, 401, Some(404)),
        row("POST", format!("/stream?link={k}&play"), Body::None, 401, Some(405)),
        // Adding: the unknown torrent becomes known with credentials (rows above are done).
        row("POST", "/api/v1/torrents", Body::Torrent(b_bytes.clone()), 401, Some(201)),
        row("POST", "/torrent/upload", multipart(&b_bytes), 401, Some(200)),
        row("POST", "/torrents", json(&format!(r#"{{"action":"add","link":"{magnet_u}"}}"#)), 401, Some(200)),
        // Removal, last.
        row("POST", "/torrents", json(&format!(r#"{{"action":"drop","hash":"{k}"}}"#)), 401, Some(200)),
        row("POST", "/torrents", json(&format!(r#"{{"action":"rem","hash":"{b}"}}"#)), 401, Some(200)),
        row("HEAD", format!("/play/{b}/1"), Body::None, 401, Some(500)),
        row("HEAD", format!("/play/{k}/1"), Body::None, 200, Some(200)),
        row("POST", "/torrents", json(r#"{"action":"wipe"}"#), 401, Some(200)),
        // Forgotten torrents' links close again.
        row("HEAD", format!("/play/{k}/1"), Body::None, 401, Some(500)),
        row("GET", format!("/playlist?hash={k}"), Body::None, 401, Some(404)),
        row("GET", "/shutdown", Body::None, 401, Some(200)),
    ];

    let mut failures = Vec::new();
    let mut table = String::from("route | anonymous | wrong password | credentials\n");
    // Wrong passwords are rationed per client address: each row's comes from another one.
    assert!(rows.len() < 180);
    for (i, r) in rows.iter().enumerate() {
        let anon = exchange(2, &http, r.method, &r.target, None, &r.body);
        let bad = exchange(20 + i as u8, &http, r.method, &r.target, Some(&wrong), &r.body);
        let authed = r.authorized.map(|_| exchange(4, &http, r.method, &r.target, Some(&good), &r.body));
        let got = (anon.status, bad.status, authed.as_ref().map(|a| a.status));
        let want = (r.anonymous, r.anonymous, r.authorized);
        table.push_str(&format!("{} {} | {} | {} | {:?}\n", r.method, r.target, got.0, got.1, got.2));
        if got != want {
            let body = authed.as_ref().map(|a| String::from_utf8_lossy(&a.body).into_owned()).unwrap_or_default();
            failures.push(format!("{} {}: got {got:?}, want {want:?} {body}", r.method, r.target));
        }
        for reply in [&anon, &bad] {
            if reply.status == 401 && !reply.head.contains("www-authenticate: Basic realm=\"Sluice\"") {
                failures.push(format!("{} {}: 401 without the challenge:\n{}", r.method, r.target, reply.head));
            }
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{}\n\nserver log:\n{}", failures.join("\n"), tail(&serve.proc.stderr(), 30));

    let mut proc = serve.proc;
    let status = proc.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "/shutdown with credentials stops the server: {status}");
    assert!(!proc.stderr().contains("panicked"));
}

#[test]
fn a_bad_auth_file_is_refused_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("accounts");
    std::fs::write(&path, "alice:x\n").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut p = spawn_sluice("open-file", &["serve", "--auth-file", path.to_str().unwrap()], tmp.path());
        assert!(!p.wait_exit(Duration::from_secs(20)).success());
        assert!(p.stderr().contains("chmod 600"), "{}", p.stderr());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    std::fs::write(&path, "alice\n").expect("write");
    let mut p = spawn_sluice("bad-line", &["serve", "--auth-file", path.to_str().unwrap()], tmp.path());
    assert!(!p.wait_exit(Duration::from_secs(20)).success());
    assert!(p.stderr().contains("line 1: expected user:password"), "{}", p.stderr());
}

#[test]
fn ip_lists_refuse_clients_before_routing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let accounts = write_auth_file(tmp.path());
    // Allowed: 127.0.87.0-3 and the server's own .1; .3 denied (deny wins); .5 not allowed.
    let serve = Serve::start_with(
        BLOCK,
        28711,
        tmp.path(),
        &["--allow-ip", "127.0.87.0/30,127.0.87.6", "--deny-ip", "127.0.87.3", "--auth-file", &accounts],
    );
    let http = serve.http.clone();
    let good = basic(USER, PASSWORD);
    let none = Body::None;
    let cases: &[(u8, &str, Option<&str>, u16)] = &[
        (2, "/echo", None, 200),
        (2, "/metrics", None, 401),
        (2, "/metrics", Some(&good), 200),
        (6, "/echo", None, 200),
        (3, "/echo", None, 403),
        (3, "/metrics", Some(&good), 403),
        (3, "/nowhere", None, 403),
        (5, "/echo", None, 403),
        (5, "/metrics", Some(&good), 403),
    ];
    for &(host, target, auth, want) in cases {
        let r = exchange(host, &http, "GET", target, auth, &none);
        assert_eq!(r.status, want, "GET {target} from 127.0.{BLOCK}.{host} (auth: {})", auth.is_some());
    }
    let r = exchange(5, &http, "POST", "/api/v1/torrents", Some(&good), &Body::Torrent(torrent("x", 3).0));
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("\"forbidden\""), "JSON error on /api/v1");
}

/// A self-signed certificate for 127.0.87.1 made with the openssl CLI: (cert.pem, key.pem).
fn self_signed(dir: &Path) -> Option<(String, String)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=sluice test", "-addext", &format!("subjectAltName=IP:127.0.{BLOCK}.1")])
        // A leaf, not a CA: webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Some((cert.to_str().expect("utf-8").to_owned(), key.to_str().expect("utf-8").to_owned()))
        }
        Ok(o) => panic!("openssl failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIPPED: the HTTPS test needs the openssl CLI ({e})");
            None
        }
    }
}

/// One request over TLS from 127.0.87.<host>, trusting only `cert`.
fn exchange_tls(host: u8, to: &str, cert: &str, method: &str, target: &str, auth: Option<&str>, body: &Body) -> Reply {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(cert).expect("cert")).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(format!("127.0.{BLOCK}.1")).expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, connect_from(host, to));
    tls.write_all(&request_bytes(method, target, auth, body.content_type(), body.bytes())).expect("write over TLS");
    let mut raw = Vec::new();
    // The server closes without close_notify after `Connection: close`; keep what came.
    if let Err(e) = tls.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    parse_reply(&raw)
}

#[test]
fn https_with_a_given_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((cert, key)) = self_signed(tmp.path()) else { return };
    let accounts = write_auth_file(tmp.path());
    let http = addr(BLOCK, 1, 28721);
    let data = tmp.path().join("data");
    let args = [
        "serve",
        "--listen",
        &http,
        "--peer-listen",
        &addr(BLOCK, 1, 28722),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--auth-file",
        &accounts,
        "--deny-ip",
        "127.0.87.3",
    ];
    let proc = spawn_sluice("sluice-https", &args, tmp.path());
    assert!(
        wait_until(Duration::from_secs(30), || proc.stderr().contains("https on")),
        "serve did not start:\n{}",
        tail(&proc.stderr(), 20)
    );
    let good = basic(USER, PASSWORD);
    let r = exchange_tls(2, &http, &cert, "GET", "/echo", None, &Body::None);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).starts_with("MatriX."));
    assert_eq!(exchange_tls(2, &http, &cert, "GET", "/metrics", None, &Body::None).status, 401);
    assert_eq!(exchange_tls(2, &http, &cert, "GET", "/metrics", Some(&good), &Body::None).status, 200);
    assert_eq!(exchange_tls(3, &http, &cert, "GET", "/echo", None, &Body::None).status, 403, "IP lists apply over TLS");

    // Plain HTTP gets no HTTP answer on the TLS port.
    let mut s = connect_from(2, &http);
    drop(s.write_all(b"GET /echo HTTP/1.1\r\n\r\n"));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&raw));

    // Add over TLS; the playlist links back over https.
    let (bytes, hash) = torrent("tls", 4);
    let r = exchange_tls(2, &http, &cert, "POST", "/api/v1/torrents", Some(&good), &Body::Torrent(bytes));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = exchange_tls(2, &http, &cert, "GET", &format!("/playlist?hash={hash}"), None, &Body::None);
    assert_eq!(r.status, 200);
    let m3u = String::from_utf8_lossy(&r.body);
    assert!(m3u.contains(&format!("https://127.0.{BLOCK}.1/stream/")), "{m3u}");
    let r = exchange_tls(2, &http, &cert, "HEAD", &format!("/play/{hash}/1"), None, &Body::None);
    assert_eq!(r.status, 200, "player link without credentials over TLS");
    assert!(!proc.stderr().contains("panicked"));
}
