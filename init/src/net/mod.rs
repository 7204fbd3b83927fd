//! Network bring-up: loopback, the first Ethernet link, its address (DHCPv4 or
//! static), the default route, resolv.conf and the hostname. Runs on its own
//! thread so PID 1 keeps answering signals while a DHCP server is slow, and
//! stays there to renew the lease.

use crate::cmdline::{NetMode, Settings};
use crate::error_chain;
use cairn_netconf::dhcp::{self, session};
use cairn_netconf::rtnl::{Link, Rtnl};
use cairn_netconf::{netlink, resolv};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub const RUN_DIR: &str = "/run/cairn";

/// How the network came up, reported once to the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Configured { iface: String, addr: Ipv4Addr, prefix: u8 },
    /// No link configured here (`cairn.ip=off`, or cairn-netd has them).
    Off,
    Failed(String),
}

/// Starts the network thread. It reports the first outcome on the channel and
/// writes a byte to `wake` so the main loop's poll returns.
pub fn spawn(settings: &Settings, wake: OwnedFd) -> std::io::Result<mpsc::Receiver<Status>> {
    let (tx, rx) = mpsc::channel();
    let settings = settings.clone();
    std::thread::Builder::new().name("net".into()).stack_size(256 * 1024).spawn(move || {
        let report = |s: Status| {
            let _ = tx.send(s);
            // SAFETY: writing one byte from a valid buffer to a pipe we own.
            unsafe { libc::write(wake.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        };
        run(&settings, report);
    })?;
    Ok(rx)
}

fn run(settings: &Settings, report: impl Fn(Status)) {
    let mut rtnl = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => return report(Status::Failed(format!("cannot open rtnetlink: {e}"))),
    };
    if let Err(e) = bring_up_loopback(&mut rtnl) {
        warn!("loopback not up: {}", error_chain(&e));
    }
    let link = match find_link(&mut rtnl, settings.iface.as_deref(), Duration::from_secs(5)) {
        Ok(l) => l,
        Err(e) => {
            set_hostname(settings.hostname.clone().unwrap_or_else(|| "cairn".into()));
            return report(Status::Failed(e));
        }
    };
    let mac: [u8; 6] = link.mac.get(..6).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]);
    let hostname = settings
        .hostname
        .clone()
        .unwrap_or_else(|| format!("cairn-{:02x}{:02x}{:02x}", mac[3], mac[4], mac[5]));
    set_hostname(hostname.clone());
    if settings.net.hands_off() {
        return report(Status::Off);
    }
    if let Err(e) = rtnl.set_up(link.index) {
        return report(Status::Failed(format!("cannot bring {} up: {}", link.name, error_chain(&e))));
    }
    match &settings.net {
        NetMode::Off | NetMode::Daemon => {}
        NetMode::Static(st) => {
            let result = rtnl.add_addr(link.index, st.addr, st.prefix).map_err(|e| {
                format!("cannot set {}/{} on {}: {}", st.addr, st.prefix, link.name, error_chain(&e))
            });
            if let Err(e) = result {
                return report(Status::Failed(e));
            }
            if let Some(gw) = settings.gateway {
                if let Err(e) = rtnl.set_default_route(link.index, gw, false) {
                    warn!("cannot set default route via {gw}: {}", error_chain(&e));
                }
            }
            write_resolv_conf(&settings.dns, None);
            info!("network configured iface={} addr={}/{} gw={} source=static", link.name, st.addr, st.prefix,
                settings.gateway.map_or("none".into(), |g| g.to_string()));
            report(Status::Configured { iface: link.name.clone(), addr: st.addr, prefix: st.prefix });
        }
        NetMode::Dhcp => dhcp_loop(&mut rtnl, &link, mac, hostname, settings, report),
    }
}

fn bring_up_loopback(rtnl: &mut Rtnl) -> Result<(), netlink::NetlinkError> {
    let links = rtnl.links()?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        rtnl.set_up(lo.index)?;
    }
    Ok(())
}

/// The named link, or the first Ethernet link; waits for the driver to create it.
fn find_link(rtnl: &mut Rtnl, name: Option<&str>, wait: Duration) -> Result<Link, String> {
    let deadline = Instant::now() + wait;
    loop {
        let links = rtnl.links().map_err(|e| error_chain(&e))?;
        let found = match name {
            Some(n) => links.iter().find(|l| l.name == n),
            None => links.iter().find(|l| l.is_ethernet()),
        };
        if let Some(l) = found {
            return Ok(l.clone());
        }
        if Instant::now() >= deadline {
            let seen: Vec<_> = links.iter().map(|l| l.name.as_str()).collect();
            return Err(format!(
                "no {} within {wait:?}; links seen: {}",
                name.map_or("Ethernet link".to_string(), |n| format!("link {n}")),
                seen.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_hostname(name: String) {
    if let Err(e) = crate::sys::sethostname(&name) {
        warn!("cannot set hostname {name}: {e}");
    }
    if let Err(e) = write_run_file("hostname", &format!("{name}\n")) {
        warn!("cannot write {RUN_DIR}/hostname: {e}");
    }
    info!("hostname {name}");
}

/// Writes a file under /run/cairn whole or not at all (temporary name, rename).
pub fn write_run_file(name: &str, content: &str) -> std::io::Result<()> {
    resolv::write_atomic(Path::new(RUN_DIR), name, content)
}

fn write_resolv_conf(dns: &[Ipv4Addr], domain: Option<&str>) {
    let servers: Vec<IpAddr> = dns.iter().copied().map(IpAddr::V4).collect();
    let search: Vec<String> = domain.into_iter().map(str::to_string).collect();
    if let Err(e) = write_run_file("resolv.conf", &resolv::text("cairn-init", &servers, &search)) {
        warn!("cannot write {RUN_DIR}/resolv.conf: {e}");
    }
}

/// What a lease sets on the first link: its address, a default route via
/// its router (or the command line's gateway), resolv.conf; the first
/// outcome goes to the main loop.
struct FirstLink<'a, R: Fn(Status)> {
    rtnl: &'a mut Rtnl,
    link: &'a Link,
    settings: &'a Settings,
    report: R,
    reported: bool,
}

impl<R: Fn(Status)> session::Hooks for FirstLink<'_, R> {
    fn apply(&mut self, lease: &dhcp::Lease, old: Option<&dhcp::Lease>, what: session::Changes) -> Result<(), String> {
        let (rtnl, link, settings) = (&mut *self.rtnl, self.link, self.settings);
        if what.address {
            rtnl.add_addr(link.index, lease.addr, lease.prefix).map_err(|e| {
                format!("cannot set {}/{} on {}: {}", lease.addr, lease.prefix, link.name, error_chain(&e))
            })?;
        }
        if what.route {
            if let Some(gw) = settings.gateway.or(lease.router) {
                if let Err(e) = rtnl.set_default_route(link.index, gw, true) {
                    warn!("cannot set default route via {gw}: {}", error_chain(&e));
                }
            }
            // A new address took the old route with it; otherwise a router
            // the server no longer names is removed here (none from the
            // command line).
            let router_gone = !what.address && settings.gateway.is_none() && lease.router.is_none();
            if let (true, Some(old)) = (router_gone, old.and_then(|o| o.router)) {
                warn!("DHCP server no longer names a router on {}; default route via {old} removed", link.name);
                if let Err(e) = rtnl.del_default_route(link.index, old) {
                    warn!("cannot remove the default route via {old}: {}", error_chain(&e));
                }
            }
        }
        if what.resolv {
            let dns = if settings.dns.is_empty() { &lease.dns } else { &settings.dns };
            write_resolv_conf(dns, lease.domain.as_deref());
        }
        Ok(())
    }

    fn remove(&mut self, lease: &dhcp::Lease) {
        let _ = self.rtnl.del_addr(self.link.index, lease.addr, lease.prefix);
    }

    fn outcome(&mut self, result: Result<&dhcp::Lease, &str>) {
        // Until the first outcome the ready line waits on us; after it, a
        // success (DHCP answered after a retry) still counts for the verdict.
        match result {
            Ok(l) => {
                (self.report)(Status::Configured { iface: self.link.name.clone(), addr: l.addr, prefix: l.prefix });
                self.reported = true;
            }
            Err(why) if !self.reported => {
                (self.report)(Status::Failed(why.to_string()));
                self.reported = true;
            }
            Err(_) => {}
        }
    }
}

fn dhcp_loop(rtnl: &mut Rtnl, link: &Link, mac: [u8; 6], hostname: String, settings: &Settings, report: impl Fn(Status)) {
    let mut client = match dhcp::Client::new(&link.name, mac, Some(hostname)) {
        Ok(c) => c,
        Err(e) => return report(Status::Failed(error_chain(&e))),
    };
    let mut hooks = FirstLink { rtnl, link, settings, report, reported: false };
    let timing = session::Timing { first: settings.net_timeout, retry: Duration::from_secs(60) };
    session::run(&mut client, &mut hooks, timing);
}
