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

pub fn resolv_conf(dns: &[Ipv4Addr], domain: Option<&str>) -> String {
    let mut s = String::from("# written by cairn-init\n");
    if let Some(d) = domain {
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

fn apply_lease(rtnl: &mut Rtnl, link: &Link, lease: &dhcp::Lease, settings: &Settings) -> Result<(), String> {
    rtnl.add_addr(link.index, lease.addr, lease.prefix)
        .map_err(|e| format!("cannot set {}/{} on {}: {}", lease.addr, lease.prefix, link.name, error_chain(&e)))?;
    if let Some(gw) = settings.gateway.or(lease.router) {
        if let Err(e) = rtnl.set_default_route(link.index, gw, true) {
            warn!("cannot set default route via {gw}: {}", error_chain(&e));
        }
    }
    let dns = if settings.dns.is_empty() { &lease.dns } else { &settings.dns };
    write_resolv_conf(dns, lease.domain.as_deref());
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
        if let Err(e) = apply_lease(rtnl, link, &lease, settings) {
            warn!("{e}");
            if !reported {
                report(Status::Failed(e));
                reported = true;
            }
            std::thread::sleep(Duration::from_secs(5));
            continue;
        }
        info!(
            "network configured iface={} addr={}/{} gw={} dns={} lease={}s source=dhcp server={}",
            link.name,
            lease.addr,
            lease.prefix,
            lease.router.map_or("none".into(), |g| g.to_string()),
            lease.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
            lease.lease_secs,
            lease.server
        );
        report(Status::Configured { iface: link.name.clone(), addr: lease.addr, prefix: lease.prefix });
        reported = true;
        hold_lease(rtnl, link, &mut client, lease, settings);
    }
}

/// Keeps a lease: renews with the server at T1, rebinds by broadcast at T2,
/// drops the address when it expires. Returns when the lease is gone.
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
        match renewed {
            Ok(new) if new.addr == lease.addr => {
                info!("DHCP lease renewed iface={} addr={} lease={}s", link.name, new.addr, new.lease_secs);
                lease = new;
            }
            Ok(new) => {
                warn!("DHCP server moved {} from {} to {}", link.name, lease.addr, new.addr);
                let _ = rtnl.del_addr(link.index, lease.addr, lease.prefix);
                if let Err(e) = apply_lease(rtnl, link, &new, settings) {
                    warn!("{e}");
                    return;
                }
                lease = new;
            }
            Err(e) => {
                warn!("DHCP lease on {} expired: {}; address {} removed", link.name, error_chain(&e), lease.addr);
                let _ = rtnl.del_addr(link.index, lease.addr, lease.prefix);
                return;
            }
        }
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
}
