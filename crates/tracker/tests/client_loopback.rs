//! The async client against small in-process trackers on 127.0.0.1 (ephemeral ports).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_core::{InfoHash, PeerId};
use sluice_tracker::client::{Client, ClientConfig, ClientError};
use sluice_tracker::udp::{Request, Response};
use sluice_tracker::{AnnounceReply, AnnounceRequest, Event, ScrapeStats, TrackerUrl};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

mod support;
use support::read_head;

fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0xaa; 20]),
        peer_id: PeerId(*b"-SL0100-000000000000"),
        port: 7000,
        uploaded: 0,
        downloaded: 0,
        left: 100,
        event: Event::Started,
        numwant: Some(20),
        key: 1,
    }
}

fn client() -> Client {
    Client::new(ClientConfig {
        loopback_only: true,
        udp_timeouts: vec![Duration::from_millis(300); 3],
        ..ClientConfig::default()
    })
}

/// An HTTP server answering each connection with `status` and `body`; returns its address and
/// the request heads it saw.
async fn http_tracker(status: &'static str, body: Vec<u8>) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    http_tracker_with(status, String::new(), body).await
}

/// [`http_tracker`] with `headers` (each line ending in CRLF) in every reply.
async fn http_tracker_with(
    status: &'static str,
    headers: String,
    body: Vec<u8>,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let head = read_head(&mut s).await.unwrap_or_default();
            log.lock().unwrap().push(head);
            let head =
                format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn http_announce_returns_peers_and_sends_the_query() {
    let mut body = b"d8:intervali900e5:peers6:".to_vec();
    body.extend_from_slice(&[127, 0, 0, 9, 0x1b, 0x58]);
    body.push(b'e');
    let (addr, seen) = http_tracker("200 OK", body).await;
    let url = TrackerUrl::parse(&format!("http://{addr}/announce")).unwrap();
    let reply = client().announce(&url, &request(), Some(b"tid")).await.unwrap();
    assert_eq!(reply.interval, Duration::from_secs(900));
    assert_eq!(reply.peers, ["127.0.0.9:7000".parse::<SocketAddr>().unwrap()]);
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /announce?info_hash=%AA%AA"), "{head}");
    assert!(head.contains("&event=started&trackerid=tid HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {addr}")) || head.contains(&format!("Host: {addr}")), "{head}");
}

#[tokio::test]
async fn http_refusals_and_bad_replies_are_errors() {
    let (addr, _) = http_tracker("200 OK", b"d14:failure reason8:not heree".to_vec()).await;
    let url = TrackerUrl::parse(&format!("http://{addr}/announce")).unwrap();
    let e = client().announce(&url, &request(), None).await.unwrap_err();
    assert!(e.to_string().contains("not here"), "{e}");

    let (addr, _) = http_tracker("404 Not Found", b"nope".to_vec()).await;
    let url = TrackerUrl::parse(&format!("http://{addr}/announce")).unwrap();
    assert!(matches!(client().announce(&url, &request(), None).await, Err(ClientError::Status(404))));

    let (addr, _) = http_tracker("200 OK", vec![b'x'; sluice_tracker::http::MAX_REPLY + 1]).await;
    let url = TrackerUrl::parse(&format!("http://{addr}/announce")).unwrap();
    let too_large = client().announce(&url, &request(), None).await;
    assert!(matches!(too_large, Err(ClientError::TooLarge(sluice_tracker::http::MAX_REPLY))));
}

#[tokio::test]
async fn http_redirects_are_followed_within_limits_and_policy() {
    let mut body = b"d8:intervali900e5:peers6:".to_vec();
    body.extend_from_slice(&[127, 0, 0, 9, 0x1b, 0x58]);
    body.push(b'e');
    let (real, real_seen) = http_tracker("200 OK", body).await;
    // An absolute redirect to another tracker, keeping the query the client built.
    let (moved, _) =
        http_tracker_with("301 Moved Permanently", format!("Location: http://{real}/announce?moved=1\r\n"), vec![])
            .await;
    let url = TrackerUrl::parse(&format!("http://{moved}/announce")).unwrap();
    let reply = client().announce(&url, &request(), None).await.unwrap();
    assert_eq!(reply.peers.len(), 1);
    let head = real_seen.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /announce?moved=1 HTTP/1.1"), "{head}");
    assert!(head.contains(&format!("{real}")), "Host names the new tracker: {head}");

    // A relative one, on the same tracker, then to the real one.
    let (hop, hop_seen) =
        http_tracker_with("302 Found", format!("Location: http://{real}/announce?hop=1\r\n"), vec![]).await;
    let (relative, _) = http_tracker_with("307 Temporary Redirect", "Location: /elsewhere\r\n".into(), vec![]).await;
    let url = TrackerUrl::parse(&format!("http://{relative}/announce")).unwrap();
    assert!(
        matches!(client().announce(&url, &request(), None).await, Err(ClientError::Http(e)) if e.contains("redirects"))
    );
    let url = TrackerUrl::parse(&format!("http://{hop}/announce")).unwrap();
    assert!(client().announce(&url, &request(), None).await.is_ok());
    assert_eq!(hop_seen.lock().unwrap().len(), 1);

    // Loopback-only holds for the redirect's target: no lookup, no connection.
    let (away, _) =
        http_tracker_with("302 Found", "Location: http://tracker.invalid/announce\r\n".into(), vec![]).await;
    let url = TrackerUrl::parse(&format!("http://{away}/announce")).unwrap();
    assert!(matches!(client().announce(&url, &request(), None).await, Err(ClientError::NotLoopback(_))));
    // A redirect to a UDP URL, or without a Location, is an error.
    let (to_udp, _) = http_tracker_with("302 Found", "Location: udp://127.0.0.1:6969\r\n".into(), vec![]).await;
    let url = TrackerUrl::parse(&format!("http://{to_udp}/announce")).unwrap();
    assert!(matches!(client().announce(&url, &request(), None).await, Err(ClientError::Http(_))));
    let (bare, _) = http_tracker("302 Found", vec![]).await;
    let url = TrackerUrl::parse(&format!("http://{bare}/announce")).unwrap();
    assert!(matches!(client().announce(&url, &request(), None).await, Err(ClientError::Status(302))));
}

#[tokio::test]
async fn http_scrape() {
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(&[0xaa; 20]);
    body.extend_from_slice(b"d8:completei1e10:downloadedi2e10:incompletei3eeee");
    let (addr, seen) = http_tracker("200 OK", body).await;
    let url = TrackerUrl::parse(&format!("http://{addr}/announce")).unwrap();
    let stats = client().scrape(&url, InfoHash([0xaa; 20])).await.unwrap();
    assert_eq!(stats, ScrapeStats { seeders: 1, completed: 2, leechers: 3 });
    assert!(seen.lock().unwrap()[0].starts_with("GET /scrape?info_hash=%AA"));
    let no_scrape = TrackerUrl::parse(&format!("http://{addr}/a")).unwrap();
    assert!(matches!(client().scrape(&no_scrape, InfoHash([0; 20])).await, Err(ClientError::NoScrape)));
}

#[tokio::test]
async fn loopback_only_never_resolves_other_names() {
    let c = client();
    for u in ["http://tracker.invalid/announce", "udp://10.0.0.1:6969", "http://[2001:db8::1]/announce"] {
        let url = TrackerUrl::parse(u).unwrap();
        assert!(matches!(c.announce(&url, &request(), None).await, Err(ClientError::NotLoopback(_))), "{u}");
    }
}

/// A UDP tracker that drops the first `drop_first` datagrams it gets, then answers per BEP 15.
async fn udp_tracker(drop_first: usize, error: Option<&'static str>) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, connects, _) = recording_udp_tracker(drop_first, error).await;
    (addr, connects)
}

type Seen = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// [`udp_tracker`], also returning the BEP 41 URL data of each announce it answered.
async fn recording_udp_tracker(drop_first: usize, error: Option<&'static str>) -> (SocketAddr, Arc<AtomicUsize>, Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let connects = Arc::new(AtomicUsize::new(0));
    let count = connects.clone();
    let urls = Seen::default();
    let record = urls.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut seen = 0;
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            seen += 1;
            if seen <= drop_first {
                continue;
            }
            let reply = match Request::decode(&buf[..n]).unwrap() {
                Request::Connect { transaction } => {
                    count.fetch_add(1, Ordering::SeqCst);
                    Response::Connect { transaction, connection: 0x1234 }
                }
                Request::Announce { connection, transaction, announce, url_data } => {
                    assert_eq!(connection, 0x1234);
                    record.lock().unwrap().push(url_data);
                    match error {
                        Some(message) => Response::Error { transaction, message: message.into() },
                        None => Response::Announce {
                            transaction,
                            reply: AnnounceReply {
                                interval: Duration::from_secs(120),
                                seeders: Some(1),
                                leechers: Some(2),
                                peers: vec![SocketAddr::new(from.ip(), announce.port)],
                                ..AnnounceReply::default()
                            },
                        },
                    }
                }
                Request::Scrape { transaction, hashes, .. } => Response::Scrape {
                    transaction,
                    stats: hashes.iter().map(|_| ScrapeStats { seeders: 5, completed: 6, leechers: 7 }).collect(),
                },
            };
            // A stray packet with another transaction id first: the client must ignore it.
            let stray = Response::Error { transaction: reply.transaction() ^ 1, message: "stray".into() };
            socket.send_to(&stray.encode(), from).await.unwrap();
            socket.send_to(&reply.encode(), from).await.unwrap();
        }
    });
    (addr, connects, urls)
}

#[tokio::test]
async fn udp_announce_reuses_the_connection_id_and_scrapes() {
    let (addr, connects) = udp_tracker(0, None).await;
    let url = TrackerUrl::parse(&format!("udp://{addr}/announce")).unwrap();
    let c = client();
    let reply = c.announce(&url, &request(), None).await.unwrap();
    assert_eq!(reply.peers, ["127.0.0.1:7000".parse::<SocketAddr>().unwrap()]);
    assert_eq!((reply.seeders, reply.leechers, reply.interval), (Some(1), Some(2), Duration::from_secs(120)));
    c.announce(&url, &request(), None).await.unwrap();
    let stats = c.scrape(&url, InfoHash([1; 20])).await.unwrap();
    assert_eq!(stats.completed, 6);
    assert_eq!(connects.load(Ordering::SeqCst), 1, "the connection id is reused within its minute");
}

#[tokio::test]
async fn udp_announces_send_the_url_path_and_query_as_bep_41_url_data() {
    let (addr, _, urls) = recording_udp_tracker(0, None).await;
    let long = format!("/announce?passkey={}&x=%20y", "p".repeat(400));
    for path in ["/announce", long.as_str(), "", "/"] {
        let url = TrackerUrl::parse(&format!("udp://{addr}{path}")).unwrap();
        client().announce(&url, &request(), None).await.unwrap();
    }
    let got = urls.lock().unwrap().clone();
    assert_eq!(got, [b"/announce".to_vec(), long.into_bytes(), vec![], vec![]]);
}

#[tokio::test]
async fn udp_retransmits_after_a_lost_packet_and_reports_errors() {
    let (addr, _) = udp_tracker(1, None).await;
    let url = TrackerUrl::parse(&format!("udp://{addr}")).unwrap();
    assert!(client().announce(&url, &request(), None).await.is_ok());

    let (addr, _) = udp_tracker(0, Some("torrent not registered")).await;
    let url = TrackerUrl::parse(&format!("udp://{addr}")).unwrap();
    let e = client().announce(&url, &request(), None).await.unwrap_err();
    assert!(matches!(&e, ClientError::Refused(m) if m == "torrent not registered"), "{e}");

    let (addr, _) = udp_tracker(usize::MAX, None).await;
    let url = TrackerUrl::parse(&format!("udp://{addr}")).unwrap();
    assert!(matches!(client().announce(&url, &request(), None).await, Err(ClientError::Timeout(_))));
}
