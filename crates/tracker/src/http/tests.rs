use super::*;
use sluice_core::PeerId;

fn request(event: Event) -> AnnounceRequest {
    let mut hash = [0u8; 20];
    hash[..6].copy_from_slice(&[0x00, 0x41, 0x7f, 0x80, 0xff, b'~']);
    AnnounceRequest {
        info_hash: InfoHash(hash),
        peer_id: PeerId(*b"-SL0100-abc def/+xyz"),
        port: 6881,
        uploaded: 1,
        downloaded: 2,
        left: 3,
        event,
        numwant: Some(50),
        key: 0xdead_beef,
    }
}

#[test]
fn announce_url_escapes_binary_fields_and_keeps_an_existing_query() {
    let t = TrackerUrl::parse("http://127.0.0.1:6969/announce?passkey=k").unwrap();
    let url = announce_url(&t, &request(Event::Started), Some(b"id 1"));
    assert_eq!(
        url,
        "http://127.0.0.1:6969/announce?passkey=k&info_hash=%00A%7F%80%FF~%00%00%00%00%00%00%00%00%00%00%00%00%00%00\
         &peer_id=-SL0100-abc%20def%2F%2Bxyz&port=6881&uploaded=1&downloaded=2&left=3&compact=1&key=deadbeef\
         &numwant=50&event=started&trackerid=id%201"
    );
    let t = TrackerUrl::parse("http://h/announce").unwrap();
    let url = announce_url(&t, &request(Event::None), None);
    assert!(url.starts_with("http://h:80/announce?info_hash="), "{url}");
    assert!(!url.contains("event=") && !url.contains("trackerid"), "{url}");
}

#[test]
fn scrape_url_lists_every_hash() {
    let t = TrackerUrl::parse("http://h:1/x/announce.php?k=v").unwrap();
    let url = scrape_url(&t, &[InfoHash([1; 20]), InfoHash([b'a'; 20])]).unwrap();
    assert_eq!(url, format!("http://h:1/x/scrape.php?k=v&info_hash={}&info_hash={}", "%01".repeat(20), "a".repeat(20)));
    assert_eq!(scrape_url(&TrackerUrl::parse("http://h/a").unwrap(), &[]), None);
}

#[test]
fn compact_reply_with_both_families() {
    let mut body = b"d8:completei5e10:incompletei7e8:intervali900e12:min intervali60e5:peers12:".to_vec();
    body.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 0]); // the second has port 0
    body.extend_from_slice(b"6:peers618:");
    let mut v6 = [0u8; 18];
    v6[15] = 1;
    v6[16..].copy_from_slice(&6881u16.to_be_bytes());
    body.extend_from_slice(&v6);
    body.extend_from_slice(b"10:tracker id3:xyz15:warning message4:hme!e");
    let r = parse_announce_reply(&body).unwrap();
    assert_eq!(r.interval, Duration::from_secs(900));
    assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
    assert_eq!((r.seeders, r.leechers), (Some(5), Some(7)));
    assert_eq!(r.tracker_id.as_deref(), Some(&b"xyz"[..]));
    assert_eq!(r.warning.as_deref(), Some("hme!"));
    let want: Vec<SocketAddr> = vec!["127.0.0.1:6881".parse().unwrap(), "[::1]:6881".parse().unwrap()];
    assert_eq!(r.peers, want);
}

#[test]
fn dictionary_peers_skip_names_and_bad_ports() {
    let body = b"d8:intervali60e5:peersld2:ip9:127.0.0.24:porti80eed2:ip11:example.com4:porti1eed2:ip3:::14:porti70000eed2:ip3:::14:porti9eeee";
    let r = parse_announce_reply(body).unwrap();
    let want: Vec<SocketAddr> = vec!["127.0.0.2:80".parse().unwrap(), "[::1]:9".parse().unwrap()];
    assert_eq!(r.peers, want);
}

#[test]
fn failure_and_malformed_replies_are_typed_errors() {
    assert_eq!(
        parse_announce_reply(b"d14:failure reason12:unregisterede"),
        Err(ReplyError::Failure("unregistered".into()))
    );
    assert_eq!(parse_announce_reply(b"le"), Err(ReplyError::NotDict));
    assert!(matches!(parse_announce_reply(b"d8:interval"), Err(ReplyError::Bencode(_))));
    assert!(matches!(parse_announce_reply(b"d5:peers5:abcdee"), Err(ReplyError::Malformed { field: "peers", .. })));
    assert!(matches!(parse_announce_reply(b"d6:peers6i1ee"), Err(ReplyError::Malformed { field: "peers6", .. })));
    assert!(matches!(parse_announce_reply(b"d8:intervali-1ee"), Err(ReplyError::Malformed { field: "interval", .. })));
    let big = vec![b' '; MAX_REPLY + 1];
    assert_eq!(parse_announce_reply(&big), Err(ReplyError::TooLarge(MAX_REPLY + 1)));
    // Deeply nested junk stops at the depth limit instead of growing a stack.
    let deep = [&b"d1:x"[..], &b"l".repeat(100), &b"e".repeat(101)].concat();
    assert!(matches!(parse_announce_reply(&deep), Err(ReplyError::Bencode(_))));
}

#[test]
fn peers_are_capped() {
    let n = MAX_PEERS + 10;
    let mut body = format!("d8:intervali60e5:peers{}:", n * 6).into_bytes();
    for i in 0..n {
        body.extend_from_slice(&[127, 0, (i >> 8) as u8, i as u8, 0, 1]);
    }
    body.push(b'e');
    assert_eq!(parse_announce_reply(&body).unwrap().peers.len(), MAX_PEERS);
}

#[test]
fn scrape_reply() {
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(&[7; 20]);
    body.extend_from_slice(b"d8:completei3e10:downloadedi9e10:incompletei4eeee");
    let got = parse_scrape_reply(&body).unwrap();
    assert_eq!(got, vec![(InfoHash([7; 20]), ScrapeStats { seeders: 3, completed: 9, leechers: 4 })]);
    assert!(matches!(parse_scrape_reply(b"d5:filesd3:abcdeee"), Err(ReplyError::Malformed { .. })));
    assert!(matches!(parse_scrape_reply(b"de"), Err(ReplyError::Malformed { .. })));
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = parse_announce_reply(&bytes);
        let _ = parse_scrape_reply(&bytes);
    }
}
