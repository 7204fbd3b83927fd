//! DHCPv4 on one link, on a thread of its own: the shared lease loop with
//! what a lease sets here: the address, option 121's routes (else a default
//! route via the router), option 26's MTU, and its part of resolv.conf. What
//! the config says itself (a gateway, an MTU, name servers) wins over the
//! lease.

use crate::dns::Dns;
use crate::plan::Target;
use cairn_netconf::dhcp::{self, session, Lease};
use cairn_netconf::error_chain;
use cairn_netconf::rtnl::{RouteSpec, Rtnl};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{info, warn};

/// How long the first exchange may take, and each one after a failure. A
/// new config waits for a running exchange to end before it stops the loop.
const TIMING: session::Timing = session::Timing { first: Duration::from_secs(20), retry: Duration::from_secs(10) };

/// A running DHCP loop.
pub struct Running {
    pub index: u32,
    pub name: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<Lease>>,
}

impl Running {
    /// Stops the loop; returns the lease it held.
    pub fn stop(self) -> Option<Lease> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(None)
    }
}

/// Starts DHCP on `t`. `held` is a lease a previous loop left on the link:
/// taken off once a new lease differs from it.
pub fn start(t: &Target, hostname: Option<String>, dns: Dns, held: Option<Lease>) -> std::io::Result<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let target = t.clone();
    let thread = std::thread::Builder::new().name(format!("dhcp-{}", t.name)).spawn(move || {
        let mut rtnl = match Rtnl::open() {
            Ok(r) => r,
            Err(e) => {
                warn!("{}: DHCP on {}: cannot open rtnetlink: {e}", target.entry, target.name);
                return held;
            }
        };
        let mut client = match dhcp::Client::new(&target.name, target.mac, hostname) {
            Ok(c) => c.extended(),
            Err(e) => {
                warn!("{}: DHCP on {}: {}", target.entry, target.name, error_chain(&e));
                return held;
            }
        };
        let mut hooks = LinkLease { rtnl: &mut rtnl, target: &target, dns, stop: flag, held };
        let got = session::run(&mut client, &mut hooks, TIMING);
        got.or(hooks.held)
    })?;
    Ok(Running { index: t.index, name: t.name.clone(), stop, thread })
}

/// Takes a lease a stopped loop held off its link (the new config has no
/// DHCP there).
pub fn release(rtnl: &mut Rtnl, index: u32, name: &str, lease: &Lease, dns: &Dns) {
    for r in lease_routes(index, lease) {
        let _ = rtnl.del_route(&r);
    }
    if let Err(e) = rtnl.del_addr(index, lease.addr, lease.prefix) {
        warn!("cannot remove the DHCP address {}/{} from {name}: {}", lease.addr, lease.prefix, error_chain(&e));
    }
    dns.set_lease(name, None);
    info!("DHCP on {name} stopped: the config has it no more; {}/{} removed", lease.addr, lease.prefix);
}

fn lease_routes(index: u32, lease: &Lease) -> Vec<RouteSpec> {
    lease
        .effective_routes()
        .into_iter()
        .map(|r| RouteSpec {
            index,
            dest: IpAddr::V4(r.dest),
            prefix: r.prefix,
            gateway: Some(IpAddr::V4(r.gateway)).filter(|g| !g.is_unspecified()),
            dhcp: true,
        })
        .collect()
}

struct LinkLease<'a> {
    rtnl: &'a mut Rtnl,
    target: &'a Target,
    dns: Dns,
    stop: Arc<AtomicBool>,
    held: Option<Lease>,
}

impl session::Hooks for LinkLease<'_> {
    fn apply(&mut self, lease: &Lease, old: Option<&Lease>, what: session::Changes) -> Result<(), String> {
        let (t, a) = (self.target, &self.target.addressing);
        if let Some(prev) = self.held.take().filter(|p| p.addr != lease.addr || p.prefix != lease.prefix) {
            self.remove(&prev);
        }
        if what.mtu || old.is_none() {
            if let (None, Some(mtu)) = (a.mtu, lease.mtu) {
                if let Err(e) = self.rtnl.set_mtu(t.index, u32::from(mtu)) {
                    warn!("{}: cannot set the DHCP MTU {mtu} on {}: {}", t.entry, t.name, error_chain(&e));
                }
            }
        }
        if what.address {
            self.rtnl.add_addr(t.index, lease.addr, lease.prefix).map_err(|e| {
                format!("{}: cannot set {}/{} on {}: {}", t.entry, lease.addr, lease.prefix, t.name, error_chain(&e))
            })?;
        }
        // The config's gateway, set by the config, wins over the lease's.
        if what.route && a.gateway.is_none() {
            let new = lease_routes(t.index, lease);
            for r in old.map(|o| lease_routes(t.index, o)).unwrap_or_default().iter().filter(|r| !new.contains(r)) {
                let _ = self.rtnl.del_route(r);
            }
            for r in &new {
                if let Err(e) = self.rtnl.add_route(r) {
                    warn!("{}: cannot add the DHCP route to {}/{} on {}: {}", t.entry, r.dest, r.prefix, t.name, error_chain(&e));
                }
            }
        }
        if what.resolv || old.is_none() {
            self.dns.set_lease(&t.name, Some(lease));
        }
        Ok(())
    }

    fn remove(&mut self, lease: &Lease) {
        for r in lease_routes(self.target.index, lease) {
            let _ = self.rtnl.del_route(&r);
        }
        let _ = self.rtnl.del_addr(self.target.index, lease.addr, lease.prefix);
        self.dns.set_lease(&self.target.name, None);
    }

    fn outcome(&mut self, result: Result<&Lease, &str>) {
        if let Err(why) = result {
            warn!("{}: no DHCP lease on {} yet: {why}", self.target.entry, self.target.name);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
