use super::*;

#[test]
fn requests_are_the_rfc_6886_layouts() {
    assert_eq!(Request::ExternalAddress.encode(), [0, 0]);
    let map = Request::Map { protocol: Protocol::Tcp, internal_port: 6881, external_port: 6881, lifetime: 3600 };
    assert_eq!(map.encode(), [0, 2, 0, 0, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x0e, 0x10]);
    let delete = Request::Map { protocol: Protocol::Udp, internal_port: 6881, external_port: 0, lifetime: 0 };
    assert_eq!(delete.encode(), [0, 1, 0, 0, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0]);
    for r in [Request::ExternalAddress, map, delete] {
        assert_eq!(Request::decode(&r.encode()), Ok(r));
    }
}

#[test]
fn responses_decode_and_round_trip() {
    let b = [0, 128, 0, 0, 0, 0, 1, 0, 203, 0, 113, 7];
    let r = Response::decode(&b).unwrap();
    assert_eq!(r, Response::ExternalAddress { epoch: 256, address: Ipv4Addr::new(203, 0, 113, 7) });
    assert_eq!(r.encode(), b);
    let b = [0, 130, 0, 0, 0, 0, 0, 9, 0x1a, 0xe1, 0x1a, 0xe2, 0, 0, 0x07, 0x08];
    let r = Response::decode(&b).unwrap();
    let want =
        Response::Map { protocol: Protocol::Tcp, epoch: 9, internal_port: 6881, external_port: 6882, lifetime: 1800 };
    assert_eq!(r, want);
    assert_eq!(r.encode(), b);
}

#[test]
fn bad_replies_are_typed_errors() {
    assert_eq!(Response::decode(&[0, 128, 0]), Err(PacketError::Short(3)));
    assert_eq!(Response::decode(&[0, 129, 0, 0, 0, 0, 0, 0, 1, 2]), Err(PacketError::Short(10)));
    assert_eq!(Response::decode(&[2, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(PacketError::Version(2)));
    assert_eq!(Response::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(PacketError::Opcode(1)));
    assert_eq!(Response::decode(&[0, 131, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(PacketError::Opcode(131)));
    let map = Request::Map { protocol: Protocol::Udp, internal_port: 1, external_port: 1, lifetime: 1 };
    let refusal = encode_refusal(&map, ResultCode::NotAuthorized, 5);
    assert_eq!(refusal.len(), 16);
    assert_eq!(Response::decode(&refusal), Err(PacketError::Refused(ResultCode::NotAuthorized)));
    let refusal = encode_refusal(&Request::ExternalAddress, ResultCode::Other(77), 5);
    assert_eq!(Response::decode(&refusal), Err(PacketError::Refused(ResultCode::Other(77))));
    assert_eq!(Request::decode(&[0, 2, 0]), Err(PacketError::Short(3)));
    assert_eq!(Request::decode(&[0, 3]), Err(PacketError::Opcode(3)));
}

#[test]
fn retransmits_double_from_250_ms() {
    let t: Vec<u64> = (0..4).map(|n| retransmit_timeout(n).as_millis() as u64).collect();
    assert_eq!(t, [250, 500, 1000, 2000]);
    assert_eq!(retransmit_timeout(40), Duration::from_secs(64));
}

#[test]
fn the_default_route_gateway_is_read_from_proc_net_route() {
    let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
    assert_eq!(default_gateway(table), Some(Ipv4Addr::new(10, 0, 0, 1)));
    let no_default = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
        eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\n\
        eth0\t00000000\t0101A8C0\t0001\t0\t0\t100\t00000000\n";
    assert_eq!(default_gateway(no_default), None);
    assert_eq!(default_gateway("garbage\n\t\tzz\n"), None);
}
