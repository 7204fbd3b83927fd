//! What a checked config turns into at boot: settings for cairn-init (as
//! command line words), added service specs for cairn-svcload, kernel
//! parameters, the updater's repository, the network for cairn-netd. What
//! this Cairn cannot apply yet is said, key by key, never silently dropped.
//!
//! A network that PID 1's first-link path covers (one link, DHCP or one IPv4
//! address with a gateway and IPv4 name servers) goes to PID 1 as command
//! line words: the fast path, no extra process. Anything more (more links,
//! VLANs, routes, MTU, IPv6, search domains) goes to cairn-netd: the section
//! is written to `network.toml` and PID 1 is told `cairn.ip=netd`.

use cairn_model::config::{network_text, Channel, LinkMatch, MachineConfig, Network};
use std::net::IpAddr;
use std::path::Path;

/// Where added service specs go for cairn-svcload.
pub const SERVICES_DIR: &str = "/run/cairn/config/services";
/// What cairn-netd reads (and reads again on SIGHUP).
pub const NETWORK_FILE: &str = "/run/cairn/config/network.toml";
const UPDATE_CONFIG: &str = "/var/lib/cairn/update/config";

/// The machine around the loader: where it writes. Tests point it elsewhere.
pub struct Paths<'a> {
    pub services: &'a Path,
    pub sys_net: &'a Path,
    pub proc_sys: &'a Path,
    pub update_config: &'a Path,
    pub network: &'a Path,
    pub agent: &'a Path,
    pub chrony: &'a Path,
    pub ssh_keys: &'a Path,
    pub ssh_host_keys: &'a Path,
    pub docker: &'a Path,
}

impl Paths<'static> {
    pub fn real() -> Paths<'static> {
        Paths {
            services: Path::new(SERVICES_DIR),
            sys_net: Path::new("/sys/class/net"),
            proc_sys: Path::new("/proc/sys"),
            update_config: Path::new(UPDATE_CONFIG),
            network: Path::new(NETWORK_FILE),
            agent: Path::new(crate::agent::DIR),
            chrony: Path::new(crate::chrony::DIR),
            ssh_keys: Path::new(crate::ssh::KEYS_DIR),
            ssh_host_keys: Path::new(crate::ssh::HOST_KEYS_DIR),
            docker: Path::new(crate::docker::DIR),
        }
    }
}

/// Settings words for PID 1 and (level, message) notes.
pub fn apply(c: &MachineConfig, paths: &Paths<'_>) -> (Vec<String>, Vec<(String, String)>) {
    let mut args = Vec::new();
    let mut notes: Vec<(String, String)> = Vec::new();
    let mut not_yet = |what: &str| notes.push(("warn".into(), format!("config: {what} is not applied yet by this Cairn")));
    if let Some(h) = &c.hostname {
        args.push(format!("cairn.hostname={h}"));
    }
    let mut notes2 = Vec::new();
    if needs_netd(&c.network) {
        args.push("cairn.ip=netd".into());
        if let Err(e) = write_network(&c.network, paths.network) {
            notes2.push(("error".into(), format!("config: cannot write {}: {e}; no link is configured", paths.network.display())));
        }
    } else {
        let _ = std::fs::remove_file(paths.network);
        network(c, paths, &mut args, &mut not_yet);
    }
    let mut enable = c.services.enable.clone();
    if c.access.admin && !enable.iter().any(|e| e == "admin") {
        enable.push("admin".into());
    }
    if !enable.is_empty() {
        args.push(format!("cairn.enable={}", enable.join(",")));
    }
    if !c.services.disable.is_empty() {
        args.push(format!("cairn.disable={}", c.services.disable.join(",")));
    }
    write_services(c, paths.services, &mut notes2);
    notes2.extend(bind_sources(c, paths));
    let mut modules = c.modules.clone();
    if !c.network.vlans.is_empty() && !modules.iter().any(|m| m == "8021q") {
        modules.push("8021q".into());
    }
    if !modules.is_empty() {
        args.push(format!("cairn.modules={}", modules.join(",")));
    }
    if c.logs.level != "info" {
        args.push(format!("cairn.log={}", c.logs.level));
    }
    if c.logs.max_file_kb != 1024 {
        not_yet("logs.max_file_kb");
    }
    let cluster = crate::agent::cluster_json(c);
    if cluster.is_some() && c.api.certificate.is_none() {
        notes2.push(("error".into(), "config: [cluster] needs the node agent, and [api] gives it no certificate; this node joins no cluster".into()));
    }
    notes2.extend(crate::agent::write(&c.api, cluster.as_deref(), paths.agent));
    notes2.extend(crate::docker::write(&c.docker, paths.docker));
    if c.metrics.enabled || c.metrics.listen.is_some() {
        not_yet("[metrics]");
    }
    if c.update.policy == cairn_model::config::UpdatePolicy::Auto && c.api.certificate.is_none() {
        notes2.push(("error".into(), "config: update.policy = \"auto\" needs the node agent, and [api] gives it no certificate; updates stay manual".into()));
    }
    notes2.extend(crate::agent::write_update(&c.update, paths.agent));
    if let Err(e) = update_repository(c, paths.update_config) {
        notes2.push(("error".into(), format!("config: cannot set the update repository in {}: {e}", paths.update_config.display())));
    }
    for (key, value) in &c.sysctl {
        let path = paths.proc_sys.join(key.replace('.', "/"));
        if let Err(e) = std::fs::write(&path, format!("{value}\n")) {
            notes2.push(("error".into(), format!("config: sysctl {key} = {value}: {e}")));
        }
    }
    notes.extend(notes2);
    (args, notes)
}

/// What shipped services bind from /run and STATE: chrony's servers, the
/// admin container's SSH keys. Written with or without a machine config (a
/// bind without its source would keep the service from starting).
pub fn bind_sources(c: &MachineConfig, paths: &Paths<'_>) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    if let Err(e) = crate::chrony::write(&c.time.ntp, paths.chrony) {
        notes.push(("error".into(), format!("config: time.ntp: cannot write chrony's servers in {}: {e}", paths.chrony.display())));
    }
    if let Err(e) = crate::ssh::write(&c.access.ssh_authorized_keys, paths.ssh_keys, paths.ssh_host_keys) {
        notes.push(("error".into(), format!("config: access.ssh_authorized_keys: cannot write {}: {e}", paths.ssh_keys.display())));
    }
    if !c.access.ssh_authorized_keys.is_empty() && !c.access.admin && !c.services.enable.iter().any(|e| e == "admin") {
        notes.push(("warn".into(), "config: access.ssh_authorized_keys: SSH runs in the admin container, which this config does not enable (access.admin = true)".into()));
    }
    notes
}

/// Whether the network needs more than PID 1's first-link path.
pub fn needs_netd(n: &Network) -> bool {
    let beyond = |l: &cairn_model::config::Link| {
        let a = &l.addressing;
        a.addresses.len() > 1
            || a.addresses.iter().any(|c| !c.addr.is_ipv4())
            || (a.dhcp && !a.addresses.is_empty())
            || !a.routes.is_empty()
            || a.mtu.is_some()
            || a.gateway.is_some_and(|g| !g.is_ipv4())
    };
    n.links.len() > 1 || !n.vlans.is_empty() || !n.search.is_empty() || n.dns.iter().any(|d| !d.is_ipv4()) || n.links.iter().any(beyond)
}

fn write_network(n: &Network, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, network_text::to_toml(n))?;
    std::fs::rename(&tmp, path)
}

/// The first-link path: command line words for PID 1. What it cannot say
/// (see `needs_netd`) never gets here.
fn network(c: &MachineConfig, paths: &Paths<'_>, args: &mut Vec<String>, not_yet: &mut dyn FnMut(&str)) {
    let n = &c.network;
    if let Some(link) = n.links.first() {
        let name = match &link.matches {
            LinkMatch::Name(name) => Some(name.clone()),
            LinkMatch::Mac(mac) => link_by_mac(paths.sys_net, mac),
        };
        match name {
            Some(name) => args.push(format!("cairn.iface={name}")),
            None => not_yet("network.links[0] (no link has its MAC)"),
        }
        let a = &link.addressing;
        match a.addresses.first() {
            Some(c) => {
                args.push(format!("cairn.ip={}/{}", c.addr, c.prefix));
                if let Some(IpAddr::V4(gw)) = a.gateway {
                    args.push(format!("cairn.gw={gw}"));
                }
            }
            None if a.dhcp => args.push("cairn.ip=dhcp".into()),
            None => args.push("cairn.ip=off".into()),
        }
    }
    let dns: Vec<String> = n.dns.iter().map(ToString::to_string).collect();
    if !dns.is_empty() {
        args.push(format!("cairn.dns={}", dns.join(",")));
    }
}

/// The kernel name of the link with this MAC.
fn link_by_mac(sys_net: &Path, mac: &[u8; 6]) -> Option<String> {
    let want = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut names: Vec<String> = std::fs::read_dir(sys_net).ok()?.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().find(|n| std::fs::read_to_string(sys_net.join(n).join("address")).is_ok_and(|a| a.trim() == want))
}

fn write_services(c: &MachineConfig, dir: &Path, notes: &mut Vec<(String, String)>) {
    let _ = std::fs::remove_dir_all(dir);
    if c.services.add_toml.is_empty() {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        notes.push(("error".into(), format!("config: cannot create {}: {e}; services.add not applied", dir.display())));
        return;
    }
    for (name, text) in &c.services.add_toml {
        let path = dir.join(format!("{name}.toml"));
        if let Err(e) = std::fs::write(&path, text) {
            notes.push(("error".into(), format!("config: services.add.{name}: cannot write {}: {e}", path.display())));
        }
    }
}

/// Puts the repository and channel into the updater's config, keeping its
/// other keys.
fn update_repository(c: &MachineConfig, path: &Path) -> std::io::Result<()> {
    let Some(url) = &c.update.repository else { return Ok(()) };
    let channel = match c.update.channel {
        Channel::Stable => "stable",
        Channel::Beta => "beta",
        Channel::Alpha => "alpha",
    };
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| !l.trim_start().starts_with("url=") && !l.trim_start().starts_with("channel="))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("url={url}\nchannel={channel}\n"));
    if text == old {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::store::write_durable(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(root: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        (root.join("services"), root.join("net"), root.join("sys"), root.join("update/config"))
    }

    #[test]
    fn a_plain_first_link_stays_with_pid_1_and_more_goes_to_netd() {
        let root = std::env::temp_dir().join(format!("cairn-netd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (services, net, sys, update) = paths(&root);
        let network = root.join("network.toml");
        let p = Paths { services: &services, sys_net: &net, proc_sys: &sys, update_config: &update, network: &network, agent: &root.join("agent"), chrony: &root.join("chrony"), ssh_keys: &root.join("ssh"), ssh_host_keys: &root.join("ssh-host"), docker: &root.join("docker") };
        let plain = "version = 1\n[network]\ndns = [\"10.0.2.3\"]\n[[network.links]]\nname = \"eth0\"\naddresses = [\"10.0.2.77/24\"]\ngateway = \"10.0.2.2\"\n";
        let c = cairn_model::config::parse(plain, "plain").unwrap();
        let (args, _) = apply(&c, &p);
        assert_eq!(args, ["cairn.iface=eth0", "cairn.ip=10.0.2.77/24", "cairn.gw=10.0.2.2", "cairn.dns=10.0.2.3"]);
        assert!(!network.exists());
        let v4 = "addresses = [\"10.0.2.77/24\"]\n";
        for more in ["mtu = 1400\n", "routes = [{ to = \"10.9.0.0/16\", via = \"10.0.2.1\" }]\n", "dhcp = true\n"] {
            let c = cairn_model::config::parse(&format!("{plain}{more}"), "more").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(apply(&c, &p).0, ["cairn.ip=netd"], "{more}");
            let back = cairn_model::config::parse(&std::fs::read_to_string(&network).unwrap(), "network.toml").unwrap();
            assert_eq!(back.network, c.network);
        }
        let v6 = plain.replace(v4, "addresses = [\"10.0.2.77/24\", \"fd00::7/64\"]\n");
        assert_eq!(apply(&cairn_model::config::parse(&v6, "v6").unwrap(), &p).0, ["cairn.ip=netd"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_example_becomes_settings_specs_and_honest_notes() {
        let root = std::env::temp_dir().join(format!("cairn-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (services, net, sys, update) = paths(&root);
        std::fs::create_dir_all(sys.join("net/ipv4")).unwrap();
        std::fs::create_dir_all(sys.join("vm")).unwrap();
        std::fs::create_dir_all(update.parent().unwrap()).unwrap();
        std::fs::write(&update, "ca=/var/lib/cairn/update/ca.pem\nurl=http://old\n").unwrap();
        let text = include_str!("../../docs/machine-config.example.toml");
        let c = cairn_model::config::parse(text, "example").unwrap();
        let network = root.join("network.toml");
        let agent = root.join("agent");
        let p = Paths {
            services: &services,
            sys_net: &net,
            proc_sys: &sys,
            update_config: &update,
            network: &network,
            agent: &agent,
            chrony: &root.join("chrony"),
            ssh_keys: &root.join("ssh"),
            ssh_host_keys: &root.join("ssh-host"),
            docker: &root.join("docker"),
        };
        let (args, notes) = apply(&c, &p);
        assert_eq!(args, ["cairn.hostname=node-7", "cairn.ip=netd", "cairn.enable=admin", "cairn.modules=br_netfilter,8021q"]);
        let back = cairn_model::config::parse(&std::fs::read_to_string(&network).unwrap(), "network.toml").unwrap();
        assert_eq!(back.network, c.network, "cairn-netd reads the network as it was written");
        assert!(std::fs::read_to_string(services.join("hello.toml")).unwrap().contains("command"));
        assert_eq!(std::fs::read_to_string(sys.join("net/ipv4/ip_forward")).unwrap(), "1\n");
        assert_eq!(
            std::fs::read_to_string(&update).unwrap(),
            "ca=/var/lib/cairn/update/ca.pem\nurl=https://updates.example/cairn\nchannel=stable\n"
        );
        let said: Vec<&str> = notes.iter().map(|(_, m)| m.as_str()).collect();
        assert!(!said.iter().any(|m| m.contains("network")), "{said:?}");
        for what in ["[metrics]"] {
            assert!(said.iter().any(|m| m.contains(what)), "{what} not named in {said:?}");
        }
        assert!(!said.iter().any(|m| m.contains("time.ntp") || m.contains("ssh")), "{said:?}");
        assert_eq!(std::fs::read_to_string(root.join("chrony/cairn.sources")).unwrap(), "server time.cloudflare.com iburst\nserver 10.0.2.2 iburst\n");
        assert!(std::fs::read_to_string(root.join("ssh/authorized_keys")).unwrap().starts_with("ssh-ed25519 "));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_link_by_mac_is_found_by_its_address() {
        let root = std::env::temp_dir().join(format!("cairn-mac-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (n, a) in [("eth0", "52:54:00:12:34:56"), ("eth1", "52:54:00:12:34:57")] {
            std::fs::create_dir_all(root.join(n)).unwrap();
            std::fs::write(root.join(n).join("address"), format!("{a}\n")).unwrap();
        }
        assert_eq!(link_by_mac(&root, &[0x52, 0x54, 0, 0x12, 0x34, 0x57]).as_deref(), Some("eth1"));
        assert_eq!(link_by_mac(&root, &[1, 2, 3, 4, 5, 6]), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
