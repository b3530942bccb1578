//! A TorrServer client's calls, for the tests that drive `sluice serve` the way players and
//! apps do (one HTTP/1.1 exchange per call, `Connection: close`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::http_exchange;

/// `GET target` with extra header lines (each ending in CRLF): (status, head, body).
pub fn get(http: &str, target: &str, extra: &str) -> (u16, String, Vec<u8>) {
    http_exchange(http, &format!("GET {target} HTTP/1.1\r\nHost: {http}\r\n{extra}Connection: close\r\n\r\n"), b"")
}

/// `POST path` with a JSON body: (status, body).
pub fn post(http: &str, path: &str, body: &Value) -> (u16, Vec<u8>) {
    post_raw(http, path, "application/json", &serde_json::to_vec(body).expect("json"))
}

pub fn post_raw(http: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, _, body) = http_exchange(http, &head, body);
    (status, body)
}

/// `POST path` expecting 200 and a JSON answer.
pub fn post_json(http: &str, path: &str, body: &Value) -> Value {
    let (status, bytes) = post(http, path, body);
    assert_eq!(status, 200, "{path} {body}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{path}: {}", String::from_utf8_lossy(&bytes)))
}

/// `/torrents get`.
pub fn status(http: &str, hash: &str) -> Value {
    post_json(http, "/torrents", &json!({"action": "get", "hash": hash}))
}

/// Polls `/torrents get` every 100 ms until `cond` holds; panics with the last status after
/// `timeout`.
pub fn wait_status(http: &str, hash: &str, timeout: Duration, mut cond: impl FnMut(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let s = status(http, hash);
        if cond(&s) {
            return s;
        }
        assert!(started.elapsed() < timeout, "{hash}: condition not met within {timeout:?}: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// `/torrent/upload` of one `.torrent` with the client's fields (multipart/form-data).
pub fn upload(http: &str, torrent: &[u8], fields: &[(&str, &str)]) -> Value {
    let boundary = "sluice-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.torrent\"\r\n\
             Content-Type: application/x-bittorrent\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(torrent);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (code, bytes) = post_raw(http, "/torrent/upload", &format!("multipart/form-data; boundary={boundary}"), &body);
    assert_eq!(code, 200, "upload: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).expect("upload json")
}

/// `POST /api/v1/torrents/{hash}/peers`.
pub fn give_peers(http: &str, hash: &str, peers: &[&str]) {
    let (code, body) = post(http, &format!("/api/v1/torrents/{hash}/peers"), &json!(peers));
    assert_eq!(code, 204, "{}", String::from_utf8_lossy(&body));
}

/// A GET whose response is read slowly, as a player reads: `chunk` bytes every `pause`.
/// Returns the body (headers stripped) and the status line.
pub fn slow_get(http: &str, target: &str, chunk: usize, pause: Duration, mut between: impl FnMut(usize)) -> Vec<u8> {
    let mut s = TcpStream::connect(http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("write request");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; chunk];
    let mut reads = 0;
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        reads += 1;
        between(reads);
        std::thread::sleep(pause);
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    raw[split + 4..].to_vec()
}
