//! The `[network]` section written back as a machine config of its own:
//! what the config loader hands cairn-netd. It is read with [`super::parse`],
//! the same checks as any config, and reads back to the same [`Network`]
//! (a property test holds it to that).

use super::{Addressing, LinkMatch, Network};
use std::fmt::Write as _;

/// `version = 1` and the `[network]` section, every key written out.
pub fn to_toml(n: &Network) -> String {
    let mut s = String::from("version = 1\n\n[network]\n");
    let _ = writeln!(s, "dns = [{}]", list(n.dns.iter().map(ToString::to_string)));
    let _ = writeln!(s, "search = [{}]", list(n.search.iter().cloned()));
    for l in &n.links {
        s.push_str("\n[[network.links]]\n");
        match &l.matches {
            LinkMatch::Name(name) => {
                let _ = writeln!(s, "name = {}", quote(name));
            }
            LinkMatch::Mac(m) => {
                let mac: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(s, "mac = {}", quote(&mac.join(":")));
            }
        }
        addressing(&mut s, &l.addressing);
    }
    for v in &n.vlans {
        s.push_str("\n[[network.vlans]]\n");
        let _ = writeln!(s, "name = {}\nlink = {}\nid = {}", quote(&v.name), quote(&v.link), v.id);
        addressing(&mut s, &v.addressing);
    }
    s
}

fn addressing(s: &mut String, a: &Addressing) {
    let _ = writeln!(s, "dhcp = {}", a.dhcp);
    let _ = writeln!(s, "addresses = [{}]", list(a.addresses.iter().map(|c| format!("{}/{}", c.addr, c.prefix))));
    if let Some(g) = a.gateway {
        let _ = writeln!(s, "gateway = {}", quote(&g.to_string()));
    }
    let routes: Vec<String> = a
        .routes
        .iter()
        .map(|r| format!("{{ to = {}, via = {} }}", quote(&format!("{}/{}", r.to.addr, r.to.prefix)), quote(&r.via.to_string())))
        .collect();
    let _ = writeln!(s, "routes = [{}]", routes.join(", "));
    if let Some(m) = a.mtu {
        let _ = writeln!(s, "mtu = {m}");
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.map(|i| quote(&i)).collect::<Vec<_>>().join(", ")
}

/// A TOML basic string: quotes, backslashes and control bytes escaped.
fn quote(text: &str) -> String {
    let mut q = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Cidr, Link, Route, Vlan};
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn the_example_network_reads_back_the_same() {
        let text = include_str!("../../../docs/machine-config.example.toml");
        let c = parse(text, "example.toml").unwrap();
        let back = parse(&to_toml(&c.network), "network.toml").unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(back.network, c.network);
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))), any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))]
    }

    fn cidr() -> impl Strategy<Value = Cidr> {
        (ip(), any::<u8>()).prop_map(|(addr, p)| Cidr { addr, prefix: p % if addr.is_ipv4() { 33 } else { 129 } })
    }

    /// Addressing the checks accept: a gateway or routes only beside an
    /// address or DHCP, and each route's gateway of its destination's family.
    fn addressing() -> impl Strategy<Value = Addressing> {
        (any::<bool>(), prop::collection::vec(cidr(), 0..3), prop::option::of(ip()), prop::collection::vec((cidr(), ip()), 0..3), prop::option::of(68u16..=9216))
            .prop_map(|(dhcp, addresses, gateway, routes, mtu)| {
                let reachable = dhcp || !addresses.is_empty();
                let gateway = gateway.filter(|g| addresses.iter().any(|c| c.addr.is_ipv4() == g.is_ipv4()) || (g.is_ipv4() && dhcp));
                let routes = routes
                    .into_iter()
                    .filter(|(to, via)| reachable && to.addr.is_ipv4() == via.is_ipv4())
                    .map(|(to, via)| Route { to, via })
                    .collect();
                Addressing { dhcp, addresses, gateway: gateway.filter(|_| reachable), routes, mtu }
            })
    }

    fn ifname() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9\"\\\\.:_-]{0,14}".prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    fn network() -> impl Strategy<Value = Network> {
        let link = (prop_oneof![ifname().prop_map(LinkMatch::Name), any::<[u8; 6]>().prop_map(LinkMatch::Mac)], addressing())
            .prop_map(|(matches, addressing)| Link { matches, addressing });
        let vlan = (ifname(), ifname(), 1u16..=4094, addressing()).prop_map(|(name, link, id, addressing)| Vlan { name, link, id, addressing });
        (
            prop::collection::vec(link, 0..3),
            prop::collection::vec(vlan, 0..2),
            prop::collection::vec(ip(), 0..3),
            prop::collection::vec("[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", 0..3),
        )
            .prop_map(|(links, vlans, dns, search)| Network { links, vlans, dns, search })
            .prop_filter("no two entries for one link or one VLAN", |n| {
                let unique = |v: Vec<String>| v.iter().enumerate().all(|(i, a)| !v[..i].contains(a));
                let picks = n.links.iter().map(|l| format!("{:?}", l.matches));
                let vlans = n.vlans.iter().map(|v| format!("{:?}", LinkMatch::Name(v.name.clone())));
                let ids = n.vlans.iter().map(|v| format!("{}.{}", v.link, v.id)).collect();
                unique(picks.chain(vlans).collect()) && unique(ids)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever network a config may hold, its text reads back to it.
        #[test]
        fn any_network_reads_back_the_same(n in network()) {
            let text = to_toml(&n);
            let back = parse(&text, "network.toml").map_err(|p| TestCaseError::fail(format!("{p}\n{text}")))?;
            prop_assert_eq!(back.network, n);
        }
    }
}
