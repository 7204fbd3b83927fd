//! Network bring-up: loopback, the first Ethernet link, its address (DHCPv4 or
//! static), the default route, resolv.conf and the hostname. Runs on its own
//! thread so PID 1 keeps answering signals while a DHCP server is slow, and
//! stays there to renew the lease.

pub mod dhcp;
pub mod netlink;
pub mod rtnl;

use crate::cmdline::{NetMode, Settings};
use crate::error_chain;
use rtnl::{Link, Rtnl};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub const RUN_DIR: &str = "/run/cairn";

/// How the network came up, reported once to the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Configured { iface: String, addr: Ipv4Addr, prefix: u8 },
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
    if settings.net == NetMode::Off {
        return report(Status::Off);
    }
    if let Err(e) = rtnl.set_up(link.index) {
        return report(Status::Failed(format!("cannot bring {} up: {}", link.name, error_chain(&e))));
    }
    match &settings.net {
        NetMode::Off => {}
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
    std::fs::create_dir_all(RUN_DIR)?;
    let tmp = format!("{RUN_DIR}/.{name}.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, format!("{RUN_DIR}/{name}"))
}

/// The text of resolv.conf. It is read line by line and word by word, so the
/// search domain is written only when it is a plain DNS name: whatever came
/// from the network cannot add a line or a word.
pub fn resolv_conf(dns: &[Ipv4Addr], domain: Option<&str>) -> String {
    let mut s = String::from("# written by cairn-init\n");
    if let Some(d) = domain.and_then(|d| dhcp::dns_name(d.as_bytes())) {
        s.push_str(&format!("search {d}\n"));
    }
    for ns in dns.iter().take(3) {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s
}

fn write_resolv_conf(dns: &[Ipv4Addr], domain: Option<&str>) {
    if let Err(e) = write_run_file("resolv.conf", &resolv_conf(dns, domain)) {
        warn!("cannot write {RUN_DIR}/resolv.conf: {e}");
    }
}

/// What a lease sets on the link; a renewal sets only what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Changes {
    address: bool,
    route: bool,
    resolv: bool,
}

impl Changes {
    const ALL: Changes = Changes { address: true, route: true, resolv: true };

    /// What `new` changes against the lease held until now. A new address
    /// takes the route with it (the kernel drops a route whose gateway is no
    /// longer reachable), so it is set again too.
    fn between(old: &dhcp::Lease, new: &dhcp::Lease) -> Changes {
        let address = old.addr != new.addr || old.prefix != new.prefix;
        Changes {
            address,
            route: address || old.router != new.router,
            resolv: old.dns != new.dns || old.domain != new.domain,
        }
    }
}

fn apply_lease(
    rtnl: &mut Rtnl,
    link: &Link,
    lease: &dhcp::Lease,
    settings: &Settings,
    what: Changes,
) -> Result<(), String> {
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
    }
    if what.resolv {
        let dns = if settings.dns.is_empty() { &lease.dns } else { &settings.dns };
        write_resolv_conf(dns, lease.domain.as_deref());
    }
    Ok(())
}

fn dhcp_loop(
    rtnl: &mut Rtnl,
    link: &Link,
    mac: [u8; 6],
    hostname: String,
    settings: &Settings,
    report: impl Fn(Status),
) {
    let mut client = match dhcp::Client::new(&link.name, mac, Some(hostname)) {
        Ok(c) => c,
        Err(e) => return report(Status::Failed(error_chain(&e))),
    };
    let mut reported = false;
    let mut retry = Duration::from_secs(1);
    loop {
        // Until the first lease, the ready line waits on us, so give up on the
        // exchange at net_timeout and report; then keep trying in the background.
        let limit = if reported { Duration::from_secs(60) } else { settings.net_timeout.max(Duration::from_secs(1)) };
        let lease = match client.acquire(Instant::now() + limit) {
            Ok(l) => l,
            Err(e) => {
                warn!("DHCP on {}: {}; retrying in {retry:?}", link.name, error_chain(&e));
                if !reported {
                    report(Status::Failed(error_chain(&e)));
                    reported = true;
                }
                std::thread::sleep(retry);
                retry = (retry * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        retry = Duration::from_secs(1);
        if let Err(e) = apply_lease(rtnl, link, &lease, settings, Changes::ALL) {
            warn!("{e}");
            if !reported {
                report(Status::Failed(e));
                reported = true;
            }
            std::thread::sleep(Duration::from_secs(5));
            continue;
        }
        info!("network configured iface={} {} source=dhcp server={}", link.name, describe(&lease), lease.server);
        report(Status::Configured { iface: link.name.clone(), addr: lease.addr, prefix: lease.prefix });
        reported = true;
        hold_lease(rtnl, link, &mut client, lease, settings);
    }
}

fn describe(lease: &dhcp::Lease) -> String {
    format!(
        "addr={}/{} gw={} dns={} lease={}s",
        lease.addr,
        lease.prefix,
        lease.router.map_or("none".into(), |g| g.to_string()),
        lease.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        lease.lease_secs
    )
}

/// Keeps a lease: renews with the server at T1, rebinds by broadcast at T2,
/// drops the address when it expires. A renewal that moves the address, the
/// router or the name servers applies what it moved. Returns when the lease
/// is gone.
fn hold_lease(rtnl: &mut Rtnl, link: &Link, client: &mut dhcp::Client, mut lease: dhcp::Lease, settings: &Settings) {
    loop {
        let got = Instant::now();
        let t1 = got + Duration::from_secs(u64::from(lease.t1_secs));
        let t2 = got + Duration::from_secs(u64::from(lease.t2_secs));
        let end = got + Duration::from_secs(u64::from(lease.lease_secs));
        std::thread::sleep(t1.saturating_duration_since(Instant::now()));
        let renewed = client
            .renew(&lease, lease.server, t2)
            .or_else(|_| client.renew(&lease, Ipv4Addr::BROADCAST, end));
        let new = match renewed {
            Ok(new) => new,
            Err(e) => {
                warn!("DHCP lease on {} expired: {}; address {} removed", link.name, error_chain(&e), lease.addr);
                let _ = rtnl.del_addr(link.index, lease.addr, lease.prefix);
                return;
            }
        };
        let what = Changes::between(&lease, &new);
        if what.address {
            warn!("DHCP server moved {} from {}/{} to {}/{}", link.name, lease.addr, lease.prefix, new.addr, new.prefix);
            let _ = rtnl.del_addr(link.index, lease.addr, lease.prefix);
        }
        if let Err(e) = apply_lease(rtnl, link, &new, settings, what) {
            warn!("{e}");
            return;
        }
        // A new address took the old route with it; otherwise a router the
        // server no longer names is removed here (none from the command line).
        let router_gone = what.route && !what.address && settings.gateway.is_none() && new.router.is_none();
        if let (true, Some(old)) = (router_gone, lease.router) {
            warn!("DHCP server no longer names a router on {}; default route via {old} removed", link.name);
            if let Err(e) = rtnl.del_default_route(link.index, old) {
                warn!("cannot remove the default route via {old}: {}", error_chain(&e));
            }
        }
        info!("DHCP lease renewed iface={} {}", link.name, describe(&new));
        lease = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_lists_search_and_at_most_three_servers() {
        let dns: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let text = resolv_conf(&dns, Some("lan"));
        assert_eq!(
            text,
            "# written by cairn-init\nsearch lan\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
        );
    }

    #[test]
    fn resolv_conf_never_takes_a_line_or_word_from_the_domain() {
        let dns = [Ipv4Addr::new(10, 0, 2, 3)];
        for bad in ["lan\nnameserver 6.6.6.6", "lan evil.example", "lan\roptions debug", "lan#"] {
            assert_eq!(resolv_conf(&dns, Some(bad)), "# written by cairn-init\nnameserver 10.0.2.3\n", "{bad:?}");
        }
    }

    fn lease() -> dhcp::Lease {
        dhcp::Lease {
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
        }
    }

    #[test]
    fn a_renewal_applies_what_it_changes() {
        let old = lease();
        let none = Changes { address: false, route: false, resolv: false };
        assert_eq!(Changes::between(&old, &dhcp::Lease { lease_secs: 7200, ..lease() }), none);
        let router = dhcp::Lease { router: Some(Ipv4Addr::new(10, 0, 2, 1)), ..lease() };
        assert_eq!(Changes::between(&old, &router), Changes { route: true, ..none });
        let no_router = dhcp::Lease { router: None, ..lease() };
        assert_eq!(Changes::between(&old, &no_router), Changes { route: true, ..none });
        let dns = dhcp::Lease { dns: vec![Ipv4Addr::new(1, 1, 1, 1)], ..lease() };
        assert_eq!(Changes::between(&old, &dns), Changes { resolv: true, ..none });
        let domain = dhcp::Lease { domain: None, ..lease() };
        assert_eq!(Changes::between(&old, &domain), Changes { resolv: true, ..none });
        let prefix = dhcp::Lease { prefix: 16, ..lease() };
        assert_eq!(Changes::between(&old, &prefix), Changes { address: true, route: true, ..none });
        let moved = dhcp::Lease { addr: Ipv4Addr::new(10, 0, 2, 16), ..lease() };
        assert_eq!(Changes::between(&old, &moved), Changes { address: true, route: true, ..none });
    }
}
