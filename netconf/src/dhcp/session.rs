//! The life of a lease on one link: acquire, apply, renew with the server at
//! T1, rebind by broadcast at T2, drop at expiry, start over. What a lease
//! sets on the link is the caller's ([`Hooks`]): cairn-init sets an address
//! and a default route, cairn-netd routes, the MTU and resolv.conf too.

use super::{Client, Lease};
use crate::error_chain;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What a lease sets on the link; a renewal sets only what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub address: bool,
    pub route: bool,
    pub resolv: bool,
    pub mtu: bool,
}

impl Changes {
    pub const ALL: Changes = Changes { address: true, route: true, resolv: true, mtu: true };

    /// What `new` changes against the lease held until now. A new address
    /// takes the routes with it (the kernel drops a route whose gateway is
    /// no longer reachable), so they are set again too.
    pub fn between(old: &Lease, new: &Lease) -> Changes {
        let address = old.addr != new.addr || old.prefix != new.prefix;
        Changes {
            address,
            route: address || old.router != new.router || old.routes != new.routes,
            resolv: old.dns != new.dns || old.domain != new.domain || old.search != new.search,
            mtu: old.mtu != new.mtu,
        }
    }
}

/// What the caller does with a lease.
pub trait Hooks {
    /// Sets `what` of `lease` on the link; `old` is the lease it replaces
    /// (a renewal), whose routes are the caller's to remove when they go.
    fn apply(&mut self, lease: &Lease, old: Option<&Lease>, what: Changes) -> Result<(), String>;
    /// Takes off the link what `lease` set (it expired, or the server moved
    /// the address).
    fn remove(&mut self, lease: &Lease);
    /// The outcome of each acquisition: the lease applied, or why not.
    fn outcome(&mut self, result: Result<&Lease, &str>);
    /// Whether to stop: checked at least once a second while waiting.
    fn stopped(&self) -> bool {
        false
    }
}

/// How long an exchange may take: the first one (a boot waits on it), and
/// the ones after a failure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub first: Duration,
    pub retry: Duration,
}

/// Runs the lease loop until `hooks.stopped()`; returns the lease held then.
pub fn run(client: &mut Client, hooks: &mut dyn Hooks, timing: Timing) -> Option<Lease> {
    let mut tried = false;
    let mut backoff = Duration::from_secs(1);
    while !hooks.stopped() {
        let limit = if tried { timing.retry } else { timing.first.max(Duration::from_secs(1)) };
        tried = true;
        let lease = match client.acquire(Instant::now() + limit) {
            Ok(l) => l,
            Err(e) => {
                let why = error_chain(&e);
                warn!("DHCP on {}: {why}; retrying in {backoff:?}", client.iface());
                hooks.outcome(Err(&why));
                if !sleep_until(Instant::now() + backoff, hooks) {
                    return None;
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        if let Err(e) = hooks.apply(&lease, None, Changes::ALL) {
            warn!("{e}");
            hooks.outcome(Err(&e));
            if !sleep_until(Instant::now() + Duration::from_secs(5), hooks) {
                return None;
            }
            continue;
        }
        info!("network configured iface={} {} source=dhcp server={}", client.iface(), describe(&lease), lease.server);
        hooks.outcome(Ok(&lease));
        match hold(client, hooks, lease) {
            Held::Lost => {}
            Held::Stopped(lease) => return Some(lease),
        }
    }
    None
}

enum Held {
    Lost,
    Stopped(Lease),
}

/// Sleeps until `t` in steps of at most a second; false when told to stop.
fn sleep_until(t: Instant, hooks: &dyn Hooks) -> bool {
    loop {
        if hooks.stopped() {
            return false;
        }
        let left = t.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}

/// A lease, one line for the log.
pub fn describe(lease: &Lease) -> String {
    let mut s = format!(
        "addr={}/{} gw={} dns={} lease={}s",
        lease.addr,
        lease.prefix,
        lease.router.map_or("none".into(), |g| g.to_string()),
        lease.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        lease.lease_secs
    );
    if let Some(m) = lease.mtu {
        s.push_str(&format!(" mtu={m}"));
    }
    if !lease.routes.is_empty() {
        let r: Vec<String> = lease.routes.iter().map(|r| format!("{}/{}>{}", r.dest, r.prefix, r.gateway)).collect();
        s.push_str(&format!(" routes={}", r.join(",")));
    }
    s
}

/// Keeps a lease: renews with the server at T1, rebinds by broadcast at T2,
/// takes it off the link when it expires. A renewal that moves the address,
/// the routes or the name servers applies what it moved.
fn hold(client: &mut Client, hooks: &mut dyn Hooks, mut lease: Lease) -> Held {
    loop {
        let got = Instant::now();
        let t1 = got + Duration::from_secs(u64::from(lease.t1_secs));
        let t2 = got + Duration::from_secs(u64::from(lease.t2_secs));
        let end = got + Duration::from_secs(u64::from(lease.lease_secs));
        if !sleep_until(t1, hooks) {
            return Held::Stopped(lease);
        }
        let renewed = client.renew(&lease, lease.server, t2).or_else(|_| client.renew(&lease, Ipv4Addr::BROADCAST, end));
        let new = match renewed {
            Ok(new) => new,
            Err(e) => {
                warn!("DHCP lease on {} expired: {}; address {} removed", client.iface(), error_chain(&e), lease.addr);
                hooks.remove(&lease);
                return Held::Lost;
            }
        };
        let what = Changes::between(&lease, &new);
        if what.address {
            warn!("DHCP server moved {} from {}/{} to {}/{}", client.iface(), lease.addr, lease.prefix, new.addr, new.prefix);
            hooks.remove(&lease);
        }
        if let Err(e) = hooks.apply(&new, Some(&lease), what) {
            warn!("{e}");
            return Held::Lost;
        }
        info!("DHCP lease renewed iface={} {}", client.iface(), describe(&new));
        lease = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs: 3600,
            t1_secs: 1800,
            t2_secs: 3150,
            hostname: None,
            domain: Some("lan".into()),
            mtu: None,
            search: Vec::new(),
            routes: Vec::new(),
        }
    }

    #[test]
    fn a_renewal_applies_what_it_changes() {
        let old = lease();
        let none = Changes { address: false, route: false, resolv: false, mtu: false };
        assert_eq!(Changes::between(&old, &Lease { lease_secs: 7200, ..lease() }), none);
        let router = Lease { router: Some(Ipv4Addr::new(10, 0, 2, 1)), ..lease() };
        assert_eq!(Changes::between(&old, &router), Changes { route: true, ..none });
        let no_router = Lease { router: None, ..lease() };
        assert_eq!(Changes::between(&old, &no_router), Changes { route: true, ..none });
        let dns = Lease { dns: vec![Ipv4Addr::new(1, 1, 1, 1)], ..lease() };
        assert_eq!(Changes::between(&old, &dns), Changes { resolv: true, ..none });
        let domain = Lease { domain: None, ..lease() };
        assert_eq!(Changes::between(&old, &domain), Changes { resolv: true, ..none });
        let search = Lease { search: vec!["corp".into()], ..lease() };
        assert_eq!(Changes::between(&old, &search), Changes { resolv: true, ..none });
        let mtu = Lease { mtu: Some(1400), ..lease() };
        assert_eq!(Changes::between(&old, &mtu), Changes { mtu: true, ..none });
        let route = super::super::Route { dest: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: Ipv4Addr::new(10, 0, 2, 9) };
        let routes = Lease { routes: vec![route], ..lease() };
        assert_eq!(Changes::between(&old, &routes), Changes { route: true, ..none });
        let prefix = Lease { prefix: 16, ..lease() };
        assert_eq!(Changes::between(&old, &prefix), Changes { address: true, route: true, ..none });
        let moved = Lease { addr: Ipv4Addr::new(10, 0, 2, 16), ..lease() };
        assert_eq!(Changes::between(&old, &moved), Changes { address: true, route: true, ..none });
    }
}
