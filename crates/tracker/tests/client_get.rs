//! `Client::get`, the plain GET the server fetches `.torrent` links with, against a small
//! in-process HTTP server on 127.0.0.1 (ephemeral port).

use std::net::SocketAddr;
use std::time::Duration;

use sluice_tracker::client::{Client, ClientConfig, ClientError, Fetched, GetLimits};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod support;
use support::read_head;

const LIMITS: GetLimits = GetLimits { max_body: 1024, timeout: Duration::from_secs(5) };

fn client() -> Client {
    Client::new(ClientConfig { loopback_only: true, ..ClientConfig::default() })
}

/// Answers by path: `/ok` a 100-byte body, `/big` 5000 bytes, `/missing` 404, `/magnet` a
/// redirect to a magnet link, `/away` a redirect to a public host, `/hop/N` a redirect to `/hop/N-1` (`/hop/0` to `/ok`),
/// `/silent` nothing at all.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else { return };
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, location, body) = match path.as_str() {
                    "/ok" => ("200 OK", None, vec![b'x'; 100]),
                    "/big" => ("200 OK", None, vec![b'y'; 5000]),
                    "/magnet" => ("302 Found", Some("magnet:?xt=urn:btih:".to_owned() + &"ab".repeat(20)), vec![]),
                    "/away" => ("302 Found", Some("http://example.com/x.torrent".to_owned()), vec![]),
                    "/silent" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    p if p.starts_with("/hop/") => {
                        let n: u32 = p[5..].parse().unwrap();
                        let to = if n == 0 { "/ok".to_owned() } else { format!("http://{addr}/hop/{}", n - 1) };
                        ("301 Moved Permanently", Some(to), vec![])
                    }
                    _ => ("404 Not Found", None, b"no".to_vec()),
                };
                let location = location.map(|l| format!("Location: {l}\r\n")).unwrap_or_default();
                let reply = format!(
                    "HTTP/1.1 {status}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn get_returns_bodies_and_typed_errors() {
    let addr = server().await;
    let c = client();
    let url = |path: &str| format!("http://{addr}{path}");
    let get = |path: &str| {
        let url = url(path);
        let c = &c;
        async move { c.get(&url, LIMITS).await }
    };
    assert_eq!(get("/ok").await.unwrap(), Fetched::Body(vec![b'x'; 100].into()));
    assert!(matches!(get("/missing").await, Err(ClientError::Status(404))));
    assert!(matches!(get("/big").await, Err(ClientError::TooLarge(1024))));
    match get("/magnet").await.unwrap() {
        Fetched::Elsewhere(link) => assert!(link.starts_with("magnet:?xt=urn:btih:abab"), "{link}"),
        other => panic!("{other:?}"),
    }
    // Three redirects are followed, a fourth is one too many.
    assert!(matches!(get("/hop/2").await, Ok(Fetched::Body(_))));
    assert!(matches!(get("/hop/3").await, Err(ClientError::Http(m)) if m.contains("redirects")));
    // A redirect is held to the same policy: no public host, no lookup.
    assert!(matches!(get("/away").await, Err(ClientError::NotLoopback(h)) if h == "example.com"));
    let short = GetLimits { timeout: Duration::from_millis(300), ..LIMITS };
    let r = c.get(&format!("http://{addr}/silent"), short).await;
    assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn get_keeps_to_the_loopback_policy_without_dns() {
    let c = client();
    // A public name is refused before any lookup (the test runs without a network).
    let r = c.get("http://example.com/x.torrent", LIMITS).await;
    assert!(matches!(&r, Err(ClientError::NotLoopback(h)) if h == "example.com"), "{r:?}");
    let r = c.get("http://10.0.0.1/x.torrent", LIMITS).await;
    assert!(matches!(r, Err(ClientError::NotLoopback(_))), "{r:?}");
    assert!(c.get("udp://127.0.0.1:1/announce", LIMITS).await.is_err());
    assert!(c.get("not a url", LIMITS).await.is_err());
}
