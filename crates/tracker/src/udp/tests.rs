use super::*;
use sluice_core::PeerId;

fn announce() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([9; 20]),
        peer_id: PeerId([b'p'; 20]),
        port: 51413,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event: Event::Completed,
        numwant: None,
        key: 77,
    }
}

#[test]
fn connect_request_is_the_bep_15_layout() {
    let b = Request::Connect { transaction: 0x0102_0304 }.encode();
    assert_eq!(b, [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]);
}

#[test]
fn announce_request_layout_and_round_trip() {
    let req = Request::Announce { connection: 0xabcd, transaction: 5, announce: announce(), url_data: vec![] };
    let b = req.encode();
    assert_eq!(b.len(), 98);
    assert_eq!(&b[8..12], &[0, 0, 0, 1]);
    assert_eq!(&b[80..84], &[0, 0, 0, 1], "event completed is 1");
    assert_eq!(&b[92..96], &[0xff; 4], "numwant -1: the tracker's default");
    assert_eq!(&b[96..98], &51413u16.to_be_bytes());
    assert_eq!(Request::decode(&b), Ok(req));
    let scrape = Request::Scrape { connection: 1, transaction: 2, hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])] };
    assert_eq!(Request::decode(&scrape.encode()), Ok(scrape));
    assert_eq!(Request::decode(&[0; 16]), Err(PacketError::ProtocolId));
}

#[test]
fn url_data_goes_in_bep_41_options_of_at_most_255_bytes() {
    let path = format!("/announce?passkey={}", "k".repeat(300));
    let req =
        Request::Announce { connection: 1, transaction: 2, announce: announce(), url_data: path.clone().into_bytes() };
    let b = req.encode();
    assert_eq!(b.len(), 98 + 2 + 255 + 2 + (path.len() - 255));
    assert_eq!(&b[98..100], &[2, 255]);
    assert_eq!(&b[100..355], &path.as_bytes()[..255]);
    assert_eq!(&b[355..357], &[2, (path.len() - 255) as u8]);
    assert_eq!(Request::decode(&b), Ok(req));

    // NOP and unknown options are skipped, EndOfOptions ends parsing; a cut option is an error.
    let mut b = Request::Announce { connection: 1, transaction: 2, announce: announce(), url_data: vec![] }.encode();
    b.extend_from_slice(&[1, 2, 2, b'/', b'a', 9, 1, b'x', 2, 1, b'b', 0, 2, 1, b'c']);
    let Ok(Request::Announce { url_data, .. }) = Request::decode(&b) else { panic!() };
    assert_eq!(url_data, b"/ab");
    b.truncate(b.len() - 7);
    b.extend_from_slice(&[2, 9, b'x']);
    assert_eq!(Request::decode(&b), Err(PacketError::Short(8)));
}

#[test]
fn responses_round_trip() {
    let peers: Vec<SocketAddr> = vec!["127.0.0.5:6881".parse().unwrap(), "127.0.0.6:1".parse().unwrap()];
    let reply = AnnounceReply {
        interval: Duration::from_secs(120),
        seeders: Some(1),
        leechers: Some(2),
        peers,
        ..AnnounceReply::default()
    };
    for r in [
        Response::Connect { transaction: 1, connection: u64::MAX },
        Response::Announce { transaction: 2, reply },
        Response::Scrape { transaction: 3, stats: vec![ScrapeStats { seeders: 4, completed: 5, leechers: 6 }] },
        Response::Error { transaction: 4, message: "unknown torrent".into() },
    ] {
        assert_eq!(Response::decode(&r.encode(), false), Ok(r));
    }
    let v6 = Response::Announce {
        transaction: 9,
        reply: AnnounceReply {
            interval: Duration::from_secs(1),
            seeders: Some(0),
            leechers: Some(0),
            peers: vec!["[::1]:7".parse().unwrap()],
            ..AnnounceReply::default()
        },
    };
    assert_eq!(Response::decode(&v6.encode(), true), Ok(v6.clone()));
    let mut ragged = v6.encode();
    ragged.pop();
    assert_eq!(Response::decode(&ragged, true), Err(PacketError::Peers));
}

#[test]
fn short_and_unknown_packets_are_errors() {
    assert!(matches!(Response::decode(&[0, 0, 0], false), Err(PacketError::Short(_))));
    assert!(matches!(Response::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0], false), Err(PacketError::Short(_))));
    assert_eq!(Response::decode(&[0, 0, 0, 9, 0, 0, 0, 0], false), Err(PacketError::Action(9)));
}

#[test]
fn timing_follows_bep_15() {
    assert_eq!(retransmit_timeout(0), Duration::from_secs(15));
    assert_eq!(retransmit_timeout(3), Duration::from_secs(120));
    assert_eq!(retransmit_timeout(8), Duration::from_secs(3840));
    assert_eq!(retransmit_timeout(50), Duration::from_secs(3840));
    let c = ConnectionId { id: 7, received: Timestamp::from_micros(1_000_000) };
    assert_eq!(c.valid_at(Timestamp::from_micros(60_999_999)), Some(7));
    assert_eq!(c.valid_at(Timestamp::from_micros(61_000_000)), None);
}

proptest::proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), v6: bool) {
        let _ = Response::decode(&bytes, v6);
        let _ = Request::decode(&bytes);
    }
}
