//! http(s) `.torrent` links through `sluice serve`: TorrServer's `/torrents add` and
//! `/stream?link=http://...`, and the own `POST /api/v1/torrents {"link"}`, fetch the file
//! from a small HTTP server in the test (redirects followed, a redirect to a magnet used);
//! a 404, an oversized body, a body that is not a torrent, an https link and a public host
//! under loopback-only give TorrServer's 400 and the own API's JSON error, and save nothing.

mod common;
mod ts_client;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};
use ts_client::*;

const BLOCK: u8 = 90;
const PORT: u16 = 29000;

/// Serves `routes` (path -> status line, extra headers, body) on `addr`, counting requests
/// per path; unknown paths get 404.
fn http_server(addr: &str, routes: HashMap<String, (String, String, Vec<u8>)>) -> Arc<Mutex<HashMap<String, u32>>> {
    let listener = TcpListener::bind(addr).expect("bind test HTTP server");
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let (routes, counter) = (Arc::new(routes), hits.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (routes, hits) = (routes.clone(), counter.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                // A request line must come first; anything else (a TLS ClientHello, say) is
                // answered at once as a plain HTTP server would, never left waiting for a line
                // end that random bytes may not contain.
                let mut line = Vec::new();
                if reader.fill_buf().is_ok_and(|b| b.first().is_some_and(u8::is_ascii_uppercase)) {
                    let _ = reader.read_until(b'\n', &mut line);
                }
                let Some(path) = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| l.strip_prefix("GET "))
                    .and_then(|l| l.split(' ').next())
                    .map(str::to_owned)
                else {
                    let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                    return;
                };
                loop {
                    let mut h = String::new();
                    if !matches!(reader.read_line(&mut h), Ok(n) if n > 0) || h == "\r\n" {
                        break;
                    }
                }
                *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let not_found = ("404 Not Found".to_owned(), String::new(), b"not here".to_vec());
                let (status, headers, body) = routes.get(&path).unwrap_or(&not_found);
                let head = format!(
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body));
            });
        }
    });
    hits
}

fn ok(body: Vec<u8>) -> (String, String, Vec<u8>) {
    ("200 OK".into(), "Content-Type: application/x-bittorrent\r\n".into(), body)
}

fn moved(to: &str) -> (String, String, Vec<u8>) {
    ("302 Found".into(), format!("Location: {to}\r\n"), Vec::new())
}

fn api_add(http: &str, link: &str) -> (u16, Value) {
    let (code, body) = post(http, "/api/v1/torrents", &json!({ "link": link }));
    (code, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&body))))
}

#[test]
fn torrent_links_are_fetched_with_clear_errors() {
    let Some(tmp) = interop_tempdir("interop_torrent_url_links") else {
        return;
    };
    let dir = tmp.path();
    let (d1, d2) = (dir.join("one"), dir.join("two"));
    std::fs::create_dir_all(&d1).expect("mkdir");
    std::fs::create_dir_all(&d2).expect("mkdir");
    let spec =
        |name, seed| TorrentSpec { name, size: 3 * MIB + 11, seed, files: 2, piece_length: 64 * 1024, hybrid: false };
    let f1 = make_torrent(&d1, &spec("linked", 901));
    let f2 = make_torrent(&d2, &spec("redirected", 902));
    let (t1, t2) = (std::fs::read(&f1.torrent).expect("read"), std::fs::read(&f2.torrent).expect("read"));
    let hash = |t: &[u8]| sluice_core::metainfo::Metainfo::from_bytes(t).expect("torrent").info_hash.to_hex();
    let (h1, h2) = (hash(&t1), hash(&t2));
    let seeder = LtSeeder::start(&f1, &peer_addr(BLOCK, 2, PORT), &SeedOpts::default(), dir);

    let web = addr(BLOCK, 5, PORT);
    let base = format!("http://{web}");
    let routes: HashMap<String, _> = [
        ("/one.torrent", ok(t1.clone())),
        ("/two", moved(&format!("{base}/hop"))),
        ("/hop", moved("/two.torrent")),
        ("/two.torrent", ok(t2.clone())),
        ("/magnet", moved(&magnet_for(&f2, &[]))),
        ("/big.torrent", ok(vec![b'd'; 17 << 20])),
        (
            "/page.torrent",
            ("200 OK".into(), "Content-Type: text/html\r\n".into(), b"<html>login first</html>".to_vec()),
        ),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_owned(), r))
    .collect();
    let hits = http_server(&web, routes);

    let serve = Serve::start(BLOCK, PORT + 10, dir);
    let http = serve.http.clone();

    // TorrServer's add with an http link, then /stream with the same link (not fetched again).
    let link1 = format!("{base}/one.torrent");
    let added =
        post_json(&http, "/torrents", &json!({"action": "add", "link": link1, "title": "Linked", "save_to_db": true}));
    assert_eq!(added["hash"], h1.as_str(), "{added}");
    assert_eq!(added["title"], "Linked");
    give_peers(&http, &h1, &[&seeder.endpoint]);
    let s = wait_status(&http, &h1, std::time::Duration::from_secs(60), |s| {
        s["file_stats"].as_array().is_some_and(|f| f.len() == 2)
    });
    let path = s["file_stats"][1]["path"].as_str().expect("path");
    let content = std::fs::read(f1.data.join(path)).expect("source file");
    let (code, head, body) = get(&http, &format!("/stream?link={link1}&index=2&play"), "Range: bytes=100-\r\n");
    assert_eq!(code, 206, "{head}");
    assert!(body == content[100..], "streamed bytes differ");
    assert_eq!(hits.lock().unwrap().get("/one.torrent"), Some(&1), "the link was fetched again");

    // The own API: redirects are followed (absolute, then relative).
    let (code, json) = api_add(&http, &format!("{base}/two"));
    assert_eq!(code, 201, "{json}");
    assert_eq!(json["info_hash"], h2.as_str());
    assert_eq!(json["files"].as_array().map(Vec::len), Some(2), "{json}");
    // A redirect to a magnet link adds the magnet.
    let (code, json) = api_add(&http, &format!("{base}/magnet"));
    assert!(code == 200 || code == 202, "{code} {json}");
    assert_eq!(json["info_hash"], h2.as_str());

    // Bad links: TorrServer's 400 (add and /stream), the own API's JSON error saying why.
    let bad = [("/missing.torrent", "404"), ("/big.torrent", "larger than"), ("/page.torrent", "not a .torrent")];
    let mut links: Vec<(String, &str)> = bad.iter().map(|(p, why)| (format!("{base}{p}"), *why)).collect();
    // https to a plain HTTP server: the TLS handshake fails, and the reason is given.
    links.push((format!("https://{web}/one.torrent"), "TLS"));
    links.push(("http://torrents.example.com/x.torrent".into(), "not a loopback address"));
    for (link, why) in &links {
        let (code, _) = post(&http, "/torrents", &json!({"action": "add", "link": link}));
        assert_eq!(code, 400, "/torrents add {link}");
        let (code, _, _) = get(&http, &format!("/stream?link={link}&index=1&play"), "");
        assert_eq!(code, 400, "/stream {link}");
        let (code, json) = api_add(&http, link);
        assert_eq!(code, 400, "{link}: {json}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{link}: {message:?} should say {why:?}");
        eprintln!("{link}: {message}");
    }
    let list = post_json(&http, "/torrents", &json!({"action": "list"}));
    let mut hashes: Vec<&str> = list.as_array().expect("list").iter().filter_map(|t| t["hash"].as_str()).collect();
    hashes.sort();
    let mut want = vec![h1.as_str(), h2.as_str()];
    want.sort();
    assert_eq!(hashes, want, "only the fetched torrents are known");
    assert!(!serve.proc.stderr().contains("panicked"));
}
