//! What the config itself sets on a link: MTU, up, static addresses, the
//! gateway, routes; and VLANs. Each change that fails is logged with the
//! config entry it came from, and the rest goes on. What was set is
//! recorded, so the next config takes off what it no longer has.

use crate::plan::{Target, VlanTarget};
use cairn_model::config::Addressing;
use cairn_netconf::error_chain;
use cairn_netconf::rtnl::{RouteSpec, Rtnl};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tracing::{info, warn};

/// What one config put on the links (DHCP leases aside).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    pub addrs: Vec<(u32, IpAddr, u8)>,
    pub routes: Vec<RouteSpec>,
    /// VLANs this daemon created, by name.
    pub vlans: Vec<String>,
}

/// The routes an addressing block asks for on link `index`: the gateway as a
/// default route of its family, then the routes.
pub fn routes(index: u32, a: &Addressing) -> Vec<RouteSpec> {
    let default = |g: IpAddr| {
        let dest = if g.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        RouteSpec { index, dest, prefix: 0, gateway: Some(g), dhcp: false }
    };
    let more = a.routes.iter().map(|r| RouteSpec { index, dest: r.to.addr, prefix: r.to.prefix, gateway: Some(r.via), dhcp: false });
    a.gateway.map(default).into_iter().chain(more).collect()
}

/// Sets a link's MTU, brings it up, adds its addresses and routes.
pub fn link(rtnl: &mut Rtnl, t: &Target, done: &mut Applied) {
    configure(rtnl, &t.entry, &t.name, t.index, &t.addressing, done);
}

/// Creates a VLAN unless it is there, then configures it as a link.
pub fn vlan(rtnl: &mut Rtnl, v: &VlanTarget, done: &mut Applied) {
    let existing = rtnl.links().map(|ls| ls.into_iter().find(|l| l.name == v.name)).unwrap_or(None);
    let link = match existing {
        Some(l) if l.parent == Some(v.parent) => l,
        Some(l) => {
            warn!("{}: a link {} exists that is not a VLAN on link index {}; left alone", v.entry, l.name, v.parent);
            return;
        }
        None => {
            if let Err(e) = rtnl.add_vlan(&v.name, v.parent, v.id) {
                warn!("{}: cannot create VLAN {} (id {}): {} (is 8021q loaded?)", v.entry, v.name, v.id, error_chain(&e));
                return;
            }
            info!("{}: VLAN {} id {} created", v.entry, v.name, v.id);
            match rtnl.links().map(|ls| ls.into_iter().find(|l| l.name == v.name)) {
                Ok(Some(l)) => l,
                _ => {
                    warn!("{}: VLAN {} was created but is not listed", v.entry, v.name);
                    return;
                }
            }
        }
    };
    done.vlans.push(v.name.clone());
    configure(rtnl, &v.entry, &v.name, link.index, &v.addressing, done);
}

fn configure(rtnl: &mut Rtnl, entry: &str, name: &str, index: u32, a: &Addressing, done: &mut Applied) {
    if let Some(mtu) = a.mtu {
        if let Err(e) = rtnl.set_mtu(index, u32::from(mtu)) {
            warn!("{entry}: cannot set MTU {mtu} on {name}: {}", error_chain(&e));
        }
    }
    if let Err(e) = rtnl.set_up(index) {
        warn!("{entry}: cannot bring {name} up: {}", error_chain(&e));
    }
    for c in &a.addresses {
        match rtnl.add_ip(index, c.addr, c.prefix) {
            Ok(()) => done.addrs.push((index, c.addr, c.prefix)),
            Err(e) => warn!("{entry}: cannot set {}/{} on {name}: {}", c.addr, c.prefix, error_chain(&e)),
        }
    }
    for r in routes(index, a) {
        match rtnl.add_route(&r) {
            Ok(()) => done.routes.push(r),
            Err(e) => warn!("{entry}: cannot add the route to {}/{} via {:?} on {name}: {}", r.dest, r.prefix, r.gateway, error_chain(&e)),
        }
    }
    let addrs: Vec<String> = a.addresses.iter().map(|c| format!("{}/{}", c.addr, c.prefix)).collect();
    info!(
        "{entry}: {name} up addresses=[{}] routes={} mtu={} dhcp={}",
        addrs.join(","),
        routes(index, a).len(),
        a.mtu.map_or("kept".into(), |m| m.to_string()),
        a.dhcp
    );
}

/// Takes off what `old` set and `new` does not: routes, then addresses,
/// then VLANs (with what is on them).
pub fn remove_stale(rtnl: &mut Rtnl, old: &Applied, new: &Applied) {
    for r in old.routes.iter().filter(|r| !new.routes.contains(r)) {
        if let Err(e) = rtnl.del_route(r) {
            warn!("cannot remove the route to {}/{}: {}", r.dest, r.prefix, error_chain(&e));
        }
    }
    for (index, addr, prefix) in old.addrs.iter().filter(|a| !new.addrs.contains(a)) {
        if let Err(e) = rtnl.del_ip(*index, *addr, *prefix) {
            warn!("cannot remove {addr}/{prefix}: {}", error_chain(&e));
        }
    }
    let links = rtnl.links().unwrap_or_default();
    for name in old.vlans.iter().filter(|v| !new.vlans.contains(v)) {
        if let Some(l) = links.iter().find(|l| &l.name == name) {
            match rtnl.del_link(l.index) {
                Ok(()) => info!("VLAN {name} removed: the config has it no more"),
                Err(e) => warn!("cannot remove VLAN {name}: {}", error_chain(&e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_is_a_default_route_of_its_family() {
        let text = "version = 1\n[[network.links]]\nname = \"eth0\"\naddresses = [\"10.0.0.2/24\", \"fd00::2/64\"]\ngateway = \"fd00::1\"\n\
                    routes = [{ to = \"10.9.0.0/16\", via = \"10.0.0.1\" }]\n";
        let n = cairn_model::config::parse(text, "t").unwrap().network;
        let r = routes(7, &n.links[0].addressing);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].dest, r[0].prefix, r[0].gateway), ("::".parse().unwrap(), 0, Some("fd00::1".parse().unwrap())));
        assert_eq!((r[1].dest, r[1].prefix, r[1].index), ("10.9.0.0".parse().unwrap(), 16, 7));
    }
}
