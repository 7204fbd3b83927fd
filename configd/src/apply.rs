//! What a checked config turns into at boot: settings for cairn-init (as
//! command line words), added service specs for cairn-svcload, kernel
//! parameters, the updater's repository. What this Cairn cannot apply yet is
//! said, key by key, never silently dropped.

use cairn_model::config::{Channel, LinkMatch, MachineConfig};
use std::net::IpAddr;
use std::path::Path;

/// Where added service specs go for cairn-svcload.
pub const SERVICES_DIR: &str = "/run/cairn/config/services";
const UPDATE_CONFIG: &str = "/var/lib/cairn/update/config";

/// The machine around the loader: where it writes. Tests point it elsewhere.
pub struct Paths<'a> {
    pub services: &'a Path,
    pub sys_net: &'a Path,
    pub proc_sys: &'a Path,
    pub update_config: &'a Path,
}

impl Paths<'static> {
    pub fn real() -> Paths<'static> {
        Paths {
            services: Path::new(SERVICES_DIR),
            sys_net: Path::new("/sys/class/net"),
            proc_sys: Path::new("/proc/sys"),
            update_config: Path::new(UPDATE_CONFIG),
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
    network(c, paths, &mut args, &mut not_yet);
    if !c.time.ntp.is_empty() {
        not_yet("time.ntp (chrony keeps its shipped pool)");
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
    let mut notes2 = Vec::new();
    write_services(c, paths.services, &mut notes2);
    if !c.modules.is_empty() {
        args.push(format!("cairn.modules={}", c.modules.join(",")));
    }
    if c.logs.level != "info" {
        args.push(format!("cairn.log={}", c.logs.level));
    }
    if c.logs.max_file_kb != 1024 {
        not_yet("logs.max_file_kb");
    }
    if !c.access.ssh_authorized_keys.is_empty() {
        not_yet("access.ssh_authorized_keys (there is no SSH server)");
    }
    if c.cluster.is_some() {
        not_yet("[cluster] (there is no cluster agent)");
    }
    if c.metrics.enabled || c.metrics.listen.is_some() {
        not_yet("[metrics]");
    }
    if c.update.policy == cairn_model::config::UpdatePolicy::Auto || c.update.window.is_some() {
        not_yet("update.policy = \"auto\" and update.window (updates stay manual)");
    }
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
        let v4 = a.addresses.iter().find(|c| c.addr.is_ipv4());
        match v4 {
            Some(c) => {
                args.push(format!("cairn.ip={}/{}", c.addr, c.prefix));
                if let Some(IpAddr::V4(gw)) = a.gateway {
                    args.push(format!("cairn.gw={gw}"));
                }
                if a.dhcp {
                    not_yet("DHCP beside static addresses on one link");
                }
            }
            None if a.dhcp => args.push("cairn.ip=dhcp".into()),
            None => args.push("cairn.ip=off".into()),
        }
        if a.addresses.len() > v4.map_or(0, |_| 1) {
            not_yet("more than one address on a link, and IPv6 addresses");
        }
        if !a.routes.is_empty() {
            not_yet("network.links[0].routes");
        }
        if a.mtu.is_some() {
            not_yet("network.links[0].mtu");
        }
    }
    if n.links.len() > 1 {
        not_yet("network.links past the first");
    }
    if !n.vlans.is_empty() {
        not_yet("network.vlans");
    }
    let dns: Vec<String> = n.dns.iter().filter(|a| a.is_ipv4()).map(ToString::to_string).collect();
    if !dns.is_empty() {
        args.push(format!("cairn.dns={}", dns.join(",")));
    }
    if dns.len() < n.dns.len() {
        not_yet("IPv6 name servers");
    }
    if !n.search.is_empty() {
        not_yet("network.search");
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
        let p = Paths { services: &services, sys_net: &net, proc_sys: &sys, update_config: &update };
        let (args, notes) = apply(&c, &p);
        assert_eq!(
            args,
            [
                "cairn.hostname=node-7",
                "cairn.iface=eth0",
                "cairn.ip=10.0.2.77/24",
                "cairn.gw=10.0.2.2",
                "cairn.dns=10.0.2.3,9.9.9.9",
                "cairn.enable=admin",
                "cairn.modules=br_netfilter",
            ]
        );
        assert!(std::fs::read_to_string(services.join("hello.toml")).unwrap().contains("command"));
        assert_eq!(std::fs::read_to_string(sys.join("net/ipv4/ip_forward")).unwrap(), "1\n");
        assert_eq!(
            std::fs::read_to_string(&update).unwrap(),
            "ca=/var/lib/cairn/update/ca.pem\nurl=https://updates.example/cairn\nchannel=stable\n"
        );
        let said: Vec<&str> = notes.iter().map(|(_, m)| m.as_str()).collect();
        for what in ["network.vlans", "network.links[0].routes", "network.links[0].mtu", "[cluster]", "[metrics]", "time.ntp"] {
            assert!(said.iter().any(|m| m.contains(what)), "{what} not named in {said:?}");
        }
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
