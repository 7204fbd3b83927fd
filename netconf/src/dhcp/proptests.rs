//! `decode` on what anyone on the link can send: arbitrary bytes, and valid
//! replies with bytes flipped, inserted and removed. It never panics, a
//! refusal says what was wrong, and whatever it accepts meets the lease rules.

use super::tests::{reply_with, server_reply};
use super::*;
use proptest::prelude::*;

/// Valid replies of each kind, then up to eight edits.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    cairn_mutate::mutated([2, 5, 6].iter().map(|&k| server_reply(k, 7, [2, 0, 0, 0, 0, 1])).collect(), 8)
}

/// What every accepted reply must satisfy, whatever came in.
fn check(p: &[u8]) -> Result<(), TestCaseError> {
    match decode(p) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(r) => {
            let l = &r.lease;
            prop_assert!(MIN_LEASE_SECS <= l.lease_secs);
            prop_assert!(MIN_RENEW_SECS <= l.t1_secs && l.t1_secs <= l.t2_secs && l.t2_secs <= l.lease_secs);
            prop_assert!(l.prefix >= 1 && l.prefix <= 32);
            for name in l.domain.iter().chain(&l.hostname) {
                prop_assert!(dns_name(name.as_bytes()).as_deref() == Some(name.as_str()), "{name:?}");
            }
            prop_assert!(l.dns.iter().chain(&l.router).all(|a| unicast(*a)));
            if matches!(r.kind, MsgType::Offer | MsgType::Ack) {
                prop_assert!(unicast(l.addr));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_bytes(p in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&p)?;
    }

    #[test]
    fn arbitrary_options_after_a_valid_header(opts in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut p = reply_with(5, 1, [2, 0, 0, 0, 0, 1], &[]);
        p.truncate(240);
        p.extend_from_slice(&opts);
        check(&p)?;
    }

    #[test]
    fn mutated_replies(p in mutated()) {
        check(&p)?;
    }

    /// Valid options of any value come out as they went in, lease times
    /// put in order.
    #[test]
    fn valid_options_round_trip(
        prefix in 1u32..=32,
        router in any::<[u8; 4]>(),
        dns in prop::collection::vec(any::<[u8; 4]>(), 1..4),
        (lease, t1, t2) in (any::<u32>(), any::<u32>(), any::<u32>()),
        domain in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z]{1,10}){0,3}",
    ) {
        let mask = (u32::MAX << (32 - prefix)).to_be_bytes();
        let dns_bytes: Vec<u8> = dns.concat();
        let p = reply_with(5, 9, [2, 0, 0, 0, 0, 1], &[
            (OPT_SUBNET, &mask),
            (OPT_ROUTER, &router),
            (OPT_DNS, &dns_bytes),
            (OPT_LEASE, &lease.to_be_bytes()),
            (OPT_T1, &t1.to_be_bytes()),
            (OPT_T2, &t2.to_be_bytes()),
            (OPT_DOMAIN, domain.as_bytes()),
        ]);
        let l = decode(&p).map_err(|e| TestCaseError::fail(e.to_string()))?.lease;
        prop_assert_eq!(u32::from(l.prefix), prefix);
        prop_assert_eq!(l.router, Some(Ipv4Addr::from(router)).filter(|a| unicast(*a)));
        let want: Vec<Ipv4Addr> = dns.into_iter().map(Ipv4Addr::from).filter(|a| unicast(*a)).collect();
        prop_assert_eq!(l.dns, want);
        prop_assert_eq!((l.lease_secs, l.t1_secs, l.t2_secs), lease_times(lease, t1, t2));
        prop_assert_eq!(l.domain.as_deref(), Some(domain.as_str()));
        check(&p)?;
    }

    /// Options 119 and 121 on any bytes: a list or a reason, never a panic,
    /// and what is accepted is plain names and routes with clean prefixes.
    #[test]
    fn search_and_classless_on_arbitrary_bytes(v in prop::collection::vec(any::<u8>(), 0..80)) {
        match options::search_list(&v) {
            Ok(names) => for n in &names {
                prop_assert!(dns_name(n.as_bytes()).as_deref() == Some(n.as_str()), "{n:?}");
            },
            Err(e) => prop_assert!(!e.is_empty()),
        }
        match options::classless_routes(&v) {
            Ok(routes) => for r in routes {
                prop_assert!(r.prefix <= 32);
                let mask = if r.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(r.prefix)) };
                prop_assert_eq!(u32::from(r.dest) & !mask, 0);
            },
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    /// Routes written as RFC 3442 says come back as they went in, and in a
    /// reply they replace the router.
    #[test]
    fn classless_routes_round_trip(routes in prop::collection::vec((0u8..=32, any::<[u8; 4]>(), any::<[u8; 4]>()), 0..6)) {
        let mut v = Vec::new();
        let mut want = Vec::new();
        for (prefix, dest, gw) in routes {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            let dest = Ipv4Addr::from(u32::from_be_bytes(dest) & mask);
            let gw = Ipv4Addr::from(gw);
            if gw.is_broadcast() || gw.is_multicast() || gw.is_loopback() {
                continue;
            }
            v.push(prefix);
            v.extend_from_slice(&dest.octets()[..usize::from(prefix).div_ceil(8)]);
            v.extend_from_slice(&gw.octets());
            want.push(options::Route { dest, prefix, gateway: gw });
        }
        prop_assert_eq!(options::classless_routes(&v), Ok(want.clone()));
        let p = reply_with(5, 9, [2, 0, 0, 0, 0, 1], &[(OPT_ROUTER, &[10, 0, 2, 2]), (OPT_CLASSLESS, &v)]);
        let l = decode(&p).map_err(|e| TestCaseError::fail(e.to_string()))?.lease;
        if !want.is_empty() {
            let got = l.effective_routes();
            prop_assert_eq!(got.len(), want.len());
            prop_assert!(want.iter().all(|r| got.contains(r)));
        }
    }
}
