//! cairn-netd: the network daemon. cairn-init starts and supervises it when
//! the machine config asks for more than the first link (`cairn.ip=netd`).
//!
//! It reads the network section the config loader wrote
//! (`/run/cairn/config/network.toml`, a machine config of its own, checked
//! with the same code), and applies it: links matched by name or MAC, static
//! IPv4 and IPv6 addresses, gateways, routes, MTU, VLANs, DHCPv4 per link
//! (options 3, 6, 15, 26, 119, 121, lease renewal) and resolv.conf. A link
//! that is missing is logged and the rest is applied. SIGHUP reads the file
//! again and applies the difference; SIGTERM ends it and leaves the links as
//! they are. Its pid is in `/run/cairn/netd.pid`.

mod apply;
mod dns;
mod lease;
mod plan;

use anyhow::{Context, Result};
use cairn_model::config::Network;
use cairn_netconf::rtnl::{Link, Rtnl};
use cairn_netconf::{error_chain, resolv};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

const CONFIG: &str = "/run/cairn/config/network.toml";
const RUN_DIR: &str = "/run/cairn";
/// How long a configured link may take to appear (its driver probing).
const LINK_WAIT: Duration = Duration::from_secs(5);

fn main() {
    tracing_subscriber::fmt().with_ansi(false).without_time().with_target(false).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.as_slice() {
        [] => PathBuf::from(CONFIG),
        [flag, path] if flag == "--config" => PathBuf::from(path),
        _ => {
            eprintln!("cairn-netd: usage: cairn-netd [--config FILE]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&config) {
        error!("{e:#}");
        std::process::exit(1);
    }
}

fn run(config: &Path) -> Result<()> {
    // Blocked before any thread exists, so they all arrive at sigwait below.
    let signals = block_signals().context("cannot block SIGHUP and SIGTERM")?;
    let _ = resolv::write_atomic(Path::new(RUN_DIR), "netd.pid", &format!("{}\n", std::process::id()));
    let mut daemon = Daemon { rtnl: Rtnl::open().context("cannot open rtnetlink")?, applied: Default::default(), dhcp: Vec::new(), dns: dns::Dns::new(RUN_DIR.into()) };
    loop {
        match read(config) {
            Ok(n) => daemon.apply(&n),
            Err(e) => error!("{e:#}; the network stays as it is"),
        }
        loop {
            match wait_signal(&signals) {
                libc::SIGHUP => {
                    info!("SIGHUP: reading {} again", config.display());
                    break;
                }
                libc::SIGTERM | libc::SIGINT => {
                    info!("stopping; the links stay as they are");
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

fn read(path: &Path) -> Result<Network> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let c = cairn_model::config::parse(&text, &path.display().to_string()).map_err(|p| anyhow::anyhow!("{p}"))?;
    Ok(c.network)
}

struct Daemon {
    rtnl: Rtnl,
    applied: apply::Applied,
    dhcp: Vec<lease::Running>,
    dns: dns::Dns,
}

impl Daemon {
    fn apply(&mut self, n: &Network) {
        let kernel = self.links_for(n);
        let (targets, vlans, missing) = plan::resolve(n, &kernel);
        for m in &missing {
            warn!("{m}; the rest is applied");
        }
        // DHCP loops stop first: a link that keeps DHCP starts a new loop
        // that takes over the lease; one that drops it loses the address.
        let mut held = Vec::new();
        for r in std::mem::take(&mut self.dhcp) {
            let (index, name) = (r.index, r.name.clone());
            if let Some(l) = r.stop() {
                held.push((index, name, l));
            }
        }
        let mut now = apply::Applied::default();
        for t in &targets {
            apply::link(&mut self.rtnl, t, &mut now);
        }
        for v in &vlans {
            apply::vlan(&mut self.rtnl, v, &mut now);
        }
        apply::remove_stale(&mut self.rtnl, &self.applied, &now);
        self.applied = now;
        self.dns.set_config(n.dns.clone(), n.search.clone());
        // VLANs are links too: DHCP may run on them.
        let links = self.rtnl.links().unwrap_or_default();
        let vlan_targets = vlans.iter().filter_map(|v| {
            let l = links.iter().find(|l| l.name == v.name)?;
            let mac = l.mac.get(..6).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]);
            Some(plan::Target { entry: v.entry.clone(), name: v.name.clone(), index: l.index, mac, addressing: v.addressing.clone() })
        });
        let hostname = std::fs::read_to_string(Path::new(RUN_DIR).join("hostname")).ok().map(|h| h.trim().to_string());
        for t in targets.iter().cloned().chain(vlan_targets).filter(|t| t.addressing.dhcp) {
            let keep = held.iter().position(|(i, _, _)| *i == t.index).map(|p| held.remove(p).2);
            match lease::start(&t, hostname.clone(), self.dns.clone(), keep) {
                Ok(r) => self.dhcp.push(r),
                Err(e) => warn!("{}: cannot start DHCP on {}: {e}", t.entry, t.name),
            }
        }
        for (index, name, l) in held {
            lease::release(&mut self.rtnl, index, &name, &l, &self.dns);
        }
        info!(
            "network applied: {} links, {} VLANs, {} with DHCP, {} missing",
            targets.len(),
            vlans.len(),
            self.dhcp.len(),
            missing.len()
        );
    }

    /// The kernel's links, waiting a little for configured ones to appear.
    fn links_for(&mut self, n: &Network) -> Vec<Link> {
        let deadline = Instant::now() + LINK_WAIT;
        loop {
            let links = match self.rtnl.links() {
                Ok(l) => l,
                Err(e) => {
                    warn!("cannot list links: {}", error_chain(&e));
                    Vec::new()
                }
            };
            let (_, _, missing) = plan::resolve(n, &links);
            if missing.is_empty() || Instant::now() >= deadline {
                return links;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn block_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data that sigemptyset fills.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the calls only change it and this
    // thread's mask.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid, initialised sigset_t and `sig` a valid out-pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        std::thread::sleep(Duration::from_millis(100));
        return 0;
    }
    sig
}
