//! Helpers shared by the HTTP API tests: a router served over TCP on 127.0.0.1 with its fake
//! behind it, raw HTTP/1.1 exchanges and golden files.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A router served in the background on 127.0.0.1 (a port of the system's choosing), and the
/// fake it serves, for the test to inspect.
pub struct Server<F> {
    pub addr: SocketAddr,
    pub fake: Arc<F>,
}

/// Serves `router(fake)`.
pub async fn serve<F>(fake: F, router: impl FnOnce(Arc<F>) -> axum::Router) -> Server<F> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(fake);
    let app = router(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { addr, fake }
}

pub async fn get<F>(s: &Server<F>, target: &str) -> Raw {
    send(s.addr, "GET", target, &[], b"").await
}

/// `method target` with `body` as `application/json`.
pub async fn send_json<F>(s: &Server<F>, method: &str, target: &str, body: &Value) -> Raw {
    send(s.addr, method, target, &[("Content-Type", "application/json")], body.to_string().as_bytes()).await
}

#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub head_text: String,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn content_length(&self) -> usize {
        self.header("content-length").expect("content-length").parse().unwrap()
    }

    /// The `error.code` of a JSON error body.
    pub fn json_code(&self) -> String {
        self.json()["error"]["code"].as_str().expect("error.code").to_owned()
    }
}

pub async fn send(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)], body: &[u8]) -> Raw {
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !extra.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a huge body.
    let _ = stream.write_all(body).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("no answer")
        .unwrap_or_default();
    parse(&bytes)
}

pub fn parse(bytes: &[u8]) -> Raw {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    headers.sort();
    let mut head_text = format!("{status_line}\n");
    for (n, v) in headers.iter().filter(|(n, _)| n != "date") {
        head_text.push_str(&format!("{n}: {v}\n"));
    }
    Raw { status, headers, head_text, body: bytes[split + 4..].to_vec() }
}

/// Compares a response with `tests/golden/<dir>/<name>.txt`: the status line, the headers
/// sorted (`date` left out), a blank line, then the body (JSON one key per line). The port
/// changes every run: goldens see it as `PORT`. `SLUICE_BLESS=1` rewrites the files.
pub fn golden(dir: &str, addr: SocketAddr, name: &str, raw: &Raw) {
    let body = if raw.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
        raw.json();
        reindent(raw.text())
    } else if raw.header("content-type").is_some_and(|t| t.starts_with("video/") || t.starts_with("application/octet"))
    {
        format!("<{} bytes>\n", raw.body.len())
    } else {
        String::from_utf8_lossy(&raw.body).into_owned()
    };
    let text = format!("{}\n{body}", raw.head_text).replace(&addr.port().to_string(), "PORT");
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(dir).join(format!("{name}.txt"));
    if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &text).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e} (SLUICE_BLESS=1 writes it)", file.display()));
    assert_eq!(text, expected, "response differs from {}", file.display());
}

/// One key or element per line, keeping the server's key order (which `Value` would sort).
pub fn reindent(json: &str) -> String {
    let (mut out, mut depth, mut in_string, mut escaped) = (String::new(), 0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
            if in_string {
                continue;
            }
        } else {
            match c {
                '"' => in_string = true,
                '{' | '[' if chars.peek().is_some_and(|n| *n != '}' && *n != ']') => {
                    depth += 1;
                    newline(&mut out, depth);
                }
                ',' => newline(&mut out, depth),
                ':' => out.push(' '),
                _ => {}
            }
        }
        if !in_string && chars.peek().is_some_and(|n| (*n == '}' || *n == ']') && !matches!(c, '{' | '[')) {
            depth = depth.saturating_sub(1);
            newline(&mut out, depth);
        }
    }
    out + "\n"
}
