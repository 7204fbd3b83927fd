use super::*;

/// A server reply of `kind` for 10.0.2.15 carrying `opts` (code, value) in
/// that order, then END.
pub(super) fn reply_with(kind: u8, xid: u32, mac: [u8; 6], opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&[10, 0, 2, 15]);
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[OPT_MSG_TYPE, 1, kind]);
    for (code, val) in opts {
        p.push(*code);
        p.push(val.len() as u8);
        p.extend_from_slice(val);
    }
    p.push(OPT_END);
    p
}

pub(super) fn server_reply(kind: u8, xid: u32, mac: [u8; 6]) -> Vec<u8> {
    let mut p = reply_with(
        kind,
        xid,
        mac,
        &[
            (OPT_SUBNET, &[255, 255, 255, 0]),
            (OPT_ROUTER, &[10, 0, 2, 2]),
            (OPT_DNS, &[10, 0, 2, 3, 1, 1, 1, 1]),
            (OPT_SERVER_ID, &[10, 0, 2, 2]),
            (OPT_LEASE, &[0, 1, 81, 128]),
        ],
    );
    p.pop();
    p.extend_from_slice(&[OPT_PAD, OPT_DOMAIN, 7]);
    p.extend_from_slice(b"example");
    p.push(OPT_END);
    p
}

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn ack(opts: &[(u8, &[u8])]) -> Result<Lease, DecodeError> {
    decode(&reply_with(5, 1, MAC, opts)).map(|r| r.lease)
}

#[test]
fn decodes_a_full_ack() {
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let r = decode(&server_reply(5, 77, mac)).unwrap();
    assert_eq!(decode(&server_reply(2, 77, mac)).map(|r| r.kind), Ok(MsgType::Offer));
    assert_eq!(r.kind, MsgType::Ack);
    assert_eq!((r.xid, r.mac), (77, mac));
    let l = r.lease;
    assert_eq!((l.addr, l.prefix), (Ipv4Addr::new(10, 0, 2, 15), 24));
    assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(l.dns, [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]);
    assert_eq!((l.lease_secs, l.t1_secs, l.t2_secs), (86400, 43200, 75600));
    assert_eq!(l.domain.as_deref(), Some("example"));
}

#[test]
fn rejects_requests_truncation_and_garbage() {
    let mut p = server_reply(2, 1, MAC);
    p[0] = 1;
    assert_eq!(decode(&p), Err(DecodeError::NotReply(1, MAGIC)), "a BOOTREQUEST is not a reply");
    let p = server_reply(2, 1, MAC);
    assert!(matches!(decode(&p[..250]), Err(DecodeError::Truncated { .. })), "an option cut short");
    assert_eq!(decode(&[0u8; 100]), Err(DecodeError::Short(100)));
    assert_eq!(decode(&reply_with(2, 1, MAC, &[])[..243]).map(|r| r.kind), Ok(MsgType::Offer), "END is optional");
}

#[test]
fn options_of_the_wrong_length_are_refused_by_code() {
    for (code, val) in [
        (OPT_SUBNET, &[255, 255, 255][..]),
        (OPT_LEASE, &[0, 0, 0, 0, 60][..]),
        (OPT_T1, &[][..]),
        (OPT_SERVER_ID, &[10, 0, 2][..]),
        (OPT_ROUTER, &[10, 0, 2, 2, 10][..]),
        (OPT_DNS, &[][..]),
    ] {
        match ack(&[(code, val)]) {
            Err(DecodeError::BadLength { code: c, len, .. }) => assert_eq!((c, len), (code, val.len())),
            other => panic!("option {code} of {} bytes: {other:?}", val.len()),
        }
    }
}

#[test]
fn a_mask_with_holes_or_no_bits_is_refused() {
    assert_eq!(ack(&[(OPT_SUBNET, &[255, 0, 255, 0])]), Err(DecodeError::BadMask(Ipv4Addr::new(255, 0, 255, 0))));
    assert!(matches!(ack(&[(OPT_SUBNET, &[0, 0, 0, 0])]), Err(DecodeError::BadMask(_))));
    assert_eq!(ack(&[(OPT_SUBNET, &[255, 255, 255, 255])]).map(|l| l.prefix), Ok(32));
}

#[test]
fn an_offer_of_no_host_address_is_refused_but_a_nak_needs_none() {
    let mut p = reply_with(2, 1, MAC, &[]);
    p[16..20].copy_from_slice(&[255, 255, 255, 255]);
    assert!(matches!(decode(&p), Err(DecodeError::BadAddr { kind: MsgType::Offer, .. })));
    let mut p = reply_with(6, 1, MAC, &[]);
    p[16..20].fill(0);
    assert_eq!(decode(&p).map(|r| r.kind), Ok(MsgType::Nak));
}

#[test]
fn routers_and_name_servers_must_be_unicast() {
    let l = ack(&[(OPT_ROUTER, &[0, 0, 0, 0, 10, 0, 2, 1]), (OPT_DNS, &[224, 0, 0, 1, 127, 0, 0, 1, 10, 0, 2, 3])])
        .unwrap();
    assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 1)));
    assert_eq!(l.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
}

#[test]
fn a_domain_or_hostname_that_is_not_a_dns_name_is_dropped() {
    for bad in [&b"lan\nnameserver 6.6.6.6"[..], b"lan example", b"lan#x", b"-lan", b"a..b", b"", b"\0", b"caf\xc3\xa9"] {
        let r = decode(&reply_with(5, 1, MAC, &[(OPT_DOMAIN, bad), (OPT_HOSTNAME, bad)])).unwrap();
        assert_eq!((r.lease.domain, r.lease.hostname), (None, None), "{:?}", String::from_utf8_lossy(bad));
        assert!(r.ignored[0].starts_with("option 15 ") && r.ignored[1].starts_with("option 12 "), "{:?}", r.ignored);
    }
    let l = ack(&[(OPT_DOMAIN, b"corp.example.\0"), (OPT_HOSTNAME, b"node-1")]).unwrap();
    assert_eq!((l.domain.as_deref(), l.hostname.as_deref()), (Some("corp.example"), Some("node-1")));
    assert_eq!(dns_name(&[b'a'; 64]), None, "a label is 63 bytes at most");
    let long = [&b"a".repeat(63)[..], &b"a".repeat(63)[..], &b"a".repeat(63)[..], &b"a".repeat(61)[..]].join(&b'.');
    assert_eq!(long.len(), 253);
    assert!(dns_name(&long).is_some());
    assert_eq!(dns_name(&[&long[..], b"a"].join(&b'.')), None, "a name is 253 bytes at most");
}

#[test]
fn lease_times_are_defaulted_ordered_and_bounded_below() {
    assert_eq!(ack(&[]).map(|l| (l.lease_secs, l.t1_secs, l.t2_secs)), Ok((3600, 1800, 3150)), "all absent");
    assert_eq!(lease_times(0, 0, 0), (60, 30, 49), "a zero lease is the minimum");
    assert_eq!(lease_times(1000, 900, 800), (1000, 500, 800), "T1 after T2: T1 defaulted");
    assert_eq!(lease_times(1000, 400, 2000), (1000, 400, 875), "T2 past the lease: T2 defaulted");
    assert_eq!(lease_times(1000, 1, 2), (1000, 30, 30), "renewals no sooner than the minimum");
    assert_eq!(lease_times(100, 90, 0), (100, 50, 84), "T1 after the default T2: T1 defaulted");
    assert_eq!(lease_times(u32::MAX, 0, 0), (u32::MAX, u32::MAX / 2, u32::MAX / 8 * 7));
    let l = ack(&[(OPT_LEASE, &[0, 0, 0, 0]), (OPT_T1, &[0, 0, 0, 5]), (OPT_T2, &[0, 0, 0, 9])]).unwrap();
    assert_eq!((l.lease_secs, l.t1_secs, l.t2_secs), (60, 30, 30));
}

#[test]
fn encodes_discover_with_broadcast_flag_and_options() {
    let p = encode(&Request {
        kind: MsgType::Discover,
        xid: 0x01020304,
        mac: [2, 0, 0, 0, 0, 1],
        ciaddr: Ipv4Addr::UNSPECIFIED,
        requested: Some(Ipv4Addr::new(10, 0, 2, 15)),
        server: None,
        hostname: Some("node"),
        extended: false,
    });
    assert!(p.len() >= 300);
    assert_eq!(&p[4..8], &[1, 2, 3, 4]);
    assert_eq!(p[10], 0x80);
    assert_eq!(&p[236..240], &MAGIC);
    assert_eq!(&p[240..243], &[OPT_MSG_TYPE, 1, 1]);
    let opts = &p[240..];
    assert!(opts.windows(6).any(|w| w == [OPT_REQUESTED_IP, 4, 10, 0, 2, 15]));
    assert!(opts.windows(6).any(|w| w == [OPT_HOSTNAME, 4, b'n', b'o', b'd', b'e']));
}

#[test]
fn an_extended_client_asks_for_mtu_search_and_classless_routes() {
    let req = |extended| Request {
        kind: MsgType::Discover,
        xid: 1,
        mac: MAC,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        requested: None,
        server: None,
        hostname: None,
        extended,
    };
    let params = |p: &[u8]| p.windows(2).position(|w| w[0] == OPT_PARAMS).map(|i| p[i + 2..i + 2 + usize::from(p[i + 1])].to_vec());
    assert_eq!(params(&encode(&req(false))), Some(PARAMS.to_vec()));
    let ext = params(&encode(&req(true))).unwrap();
    assert!(ext.ends_with(&[OPT_MTU, OPT_SEARCH, OPT_CLASSLESS]), "{ext:?}");
}

#[test]
fn a_slash_32_lease_with_an_on_link_gateway() {
    // 10.128.0.5/32; 10.128.0.1 on the link, the default route behind it;
    // option 121 replaces the router of option 3.
    let classless = [0, 10, 128, 0, 1, 32, 10, 128, 0, 1, 0, 0, 0, 0];
    let mut search = options::tests::wire("lab.example");
    search.extend_from_slice(&[4, b'c', b'o', b'r', b'p', 0xc0, 4]);
    let l = ack(&[
        (OPT_SUBNET, &[255, 255, 255, 255]),
        (OPT_ROUTER, &[10, 0, 2, 2]),
        (OPT_CLASSLESS, &classless),
        (OPT_MTU, &[5, 120]),
        (OPT_SEARCH, &search),
    ])
    .unwrap();
    assert_eq!((l.prefix, l.mtu), (32, Some(1400)));
    assert_eq!(l.search, ["lab.example", "corp.example"]);
    let on_link = Route { dest: Ipv4Addr::new(10, 128, 0, 1), prefix: 32, gateway: Ipv4Addr::UNSPECIFIED };
    let default = Route { dest: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: Ipv4Addr::new(10, 128, 0, 1) };
    assert_eq!(l.effective_routes(), [on_link, default]);
    let plain = ack(&[(OPT_ROUTER, &[10, 0, 2, 2])]).unwrap();
    assert_eq!(plain.effective_routes(), [Route { gateway: Ipv4Addr::new(10, 0, 2, 2), ..default }]);
}

#[test]
fn a_long_option_split_in_two_is_joined_and_a_bad_one_left_out() {
    let classless = [24, 192, 168, 9, 10, 0, 2, 2];
    let l = ack(&[(OPT_CLASSLESS, &classless[..3]), (OPT_CLASSLESS, &classless[3..])]).unwrap();
    assert_eq!(l.routes.len(), 1);
    let r = decode(&reply_with(5, 1, MAC, &[(OPT_CLASSLESS, &[24, 1]), (OPT_MTU, &[0, 10])])).unwrap();
    assert!(r.lease.routes.is_empty() && r.lease.mtu.is_none());
    assert!(r.ignored.iter().any(|w| w.starts_with("option 121")) && r.ignored.iter().any(|w| w.starts_with("option 26")), "{:?}", r.ignored);
}
