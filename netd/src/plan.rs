//! Which kernel link each entry of the network config is: links by name or
//! MAC, VLANs by their parent's name. Pure: the kernel's links come in, the
//! targets and what is missing come out.

use cairn_model::config::{Addressing, LinkMatch, Network};
use cairn_netconf::rtnl::Link;

/// One link to configure.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Where it is in the config, for the log: `network.links[1]`.
    pub entry: String,
    /// The kernel's name for it.
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub addressing: Addressing,
}

/// A VLAN to create (or keep) on its parent.
#[derive(Debug, Clone, PartialEq)]
pub struct VlanTarget {
    pub entry: String,
    pub name: String,
    pub parent: u32,
    pub id: u16,
    pub addressing: Addressing,
}

/// The links and VLANs of `n` that exist in `kernel`, and one line for each
/// entry that does not (logged; the rest is applied all the same).
pub fn resolve(n: &Network, kernel: &[Link]) -> (Vec<Target>, Vec<VlanTarget>, Vec<String>) {
    let mut targets: Vec<Target> = Vec::new();
    let mut missing = Vec::new();
    for (i, l) in n.links.iter().enumerate() {
        let entry = format!("network.links[{i}]");
        let found = kernel.iter().find(|k| match &l.matches {
            LinkMatch::Name(name) => &k.name == name,
            LinkMatch::Mac(mac) => k.mac.as_slice() == mac,
        });
        let Some(k) = found else {
            let seen: Vec<String> = kernel.iter().map(|k| format!("{} ({})", k.name, mac_text(&k.mac))).collect();
            missing.push(format!("{entry}: no link {}; links seen: {}", describe(&l.matches), seen.join(", ")));
            continue;
        };
        if let Some(first) = targets.iter().find(|t| t.index == k.index) {
            missing.push(format!("{entry}: link {} is {} already; the first entry wins", k.name, first.entry));
            continue;
        }
        let mac = k.mac.get(..6).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]);
        targets.push(Target { entry, name: k.name.clone(), index: k.index, mac, addressing: l.addressing.clone() });
    }
    let mut vlans = Vec::new();
    for (i, v) in n.vlans.iter().enumerate() {
        let entry = format!("network.vlans[{i}]");
        match kernel.iter().find(|k| k.name == v.link) {
            Some(p) => vlans.push(VlanTarget { entry, name: v.name.clone(), parent: p.index, id: v.id, addressing: v.addressing.clone() }),
            None => missing.push(format!("{entry}: VLAN {} has no parent link {}", v.name, v.link)),
        }
    }
    (targets, vlans, missing)
}

fn describe(m: &LinkMatch) -> String {
    match m {
        LinkMatch::Name(n) => format!("named {n}"),
        LinkMatch::Mac(mac) => format!("with MAC {}", mac_text(mac)),
    }
}

pub fn mac_text(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, last: u8) -> Link {
        Link { index, name: name.into(), kind: 1, mac: vec![0x52, 0x54, 0, 0, 0, last], mtu: Some(1500), parent: None }
    }

    fn network(text: &str) -> Network {
        cairn_model::config::parse(&format!("version = 1\n{text}"), "t.toml").unwrap_or_else(|p| panic!("{p}")).network
    }

    #[test]
    fn links_by_name_and_mac_and_vlans_by_parent() {
        let n = network(
            "[[network.links]]\nmac = \"52:54:00:00:00:02\"\n[[network.links]]\nname = \"eth0\"\naddresses = [\"10.0.0.2/24\"]\n\
             [[network.vlans]]\nname = \"eth0.42\"\nlink = \"eth0\"\nid = 42\naddresses = [\"10.42.0.2/24\"]\n",
        );
        let kernel = [link(1, "lo", 0), link(2, "eth0", 1), link(3, "eth1", 2)];
        let (t, v, missing) = resolve(&n, &kernel);
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(t.iter().map(|t| (t.entry.as_str(), t.name.as_str(), t.index)).collect::<Vec<_>>(), [("network.links[0]", "eth1", 3), ("network.links[1]", "eth0", 2)]);
        assert!(t[0].addressing.dhcp && !t[1].addressing.dhcp);
        assert_eq!((v[0].name.as_str(), v[0].parent, v[0].id), ("eth0.42", 2, 42));
    }

    #[test]
    fn a_missing_link_is_named_and_the_rest_kept() {
        let n = network(
            "[[network.links]]\nname = \"eth9\"\n[[network.links]]\nname = \"eth0\"\n[[network.links]]\nmac = \"52:54:00:00:00:01\"\n\
             [[network.vlans]]\nname = \"v7\"\nlink = \"eth7\"\nid = 7\n",
        );
        let (t, v, missing) = resolve(&n, &[link(2, "eth0", 1)]);
        assert_eq!(t.len(), 1);
        assert!(v.is_empty());
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing[0].starts_with("network.links[0]: no link named eth9; links seen: eth0 (52:54:00:00:00:01)"), "{}", missing[0]);
        assert!(missing[1].contains("network.links[2]: link eth0 is network.links[1] already"), "{}", missing[1]);
        assert!(missing[2].contains("network.vlans[0]: VLAN v7 has no parent link eth7"), "{}", missing[2]);
    }
}
