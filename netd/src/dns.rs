//! resolv.conf from every source at once: the config's servers and search
//! domains, and what each DHCP lease offers. The config's servers replace
//! DHCP's; search domains add up (the config's first). Written whole under
//! /run/cairn on every change.

use cairn_netconf::dhcp::{Lease, MAX_SEARCH};
use cairn_netconf::resolv;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::warn;

#[derive(Debug, Default)]
struct Sources {
    servers: Vec<IpAddr>,
    search: Vec<String>,
    /// Per link name: the lease's servers and search names.
    leases: BTreeMap<String, (Vec<IpAddr>, Vec<String>)>,
}

/// Shared by the main thread and every DHCP thread.
#[derive(Clone)]
pub struct Dns {
    dir: PathBuf,
    sources: Arc<Mutex<Sources>>,
}

impl Dns {
    pub fn new(dir: PathBuf) -> Dns {
        Dns { dir, sources: Arc::default() }
    }

    /// The config's part (a new config).
    pub fn set_config(&self, servers: Vec<IpAddr>, search: Vec<String>) {
        self.change(|s| {
            s.servers = servers;
            s.search = search;
        });
    }

    /// A lease's part; `None` when the link has none any more.
    pub fn set_lease(&self, link: &str, lease: Option<&Lease>) {
        self.change(|s| match lease {
            Some(l) => {
                let search = l.search.iter().cloned().chain(l.domain.clone()).collect();
                s.leases.insert(link.to_string(), (l.dns.iter().copied().map(IpAddr::V4).collect(), search));
            }
            None => {
                s.leases.remove(link);
            }
        });
    }

    fn change(&self, f: impl FnOnce(&mut Sources)) {
        // A thread that panicked holding the lock left plain data behind.
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        let text = text(&s);
        drop(s);
        if let Err(e) = resolv::write_atomic(&self.dir, "resolv.conf", &text) {
            warn!("cannot write {}/resolv.conf: {e}", self.dir.display());
        }
    }
}

fn text(s: &Sources) -> String {
    let mut servers = s.servers.clone();
    if servers.is_empty() {
        for (dns, _) in s.leases.values() {
            servers.extend(dns.iter().filter(|d| !s.servers.contains(d)));
        }
    }
    servers.dedup();
    let mut search: Vec<String> = Vec::new();
    for d in s.search.iter().chain(s.leases.values().flat_map(|(_, search)| search)) {
        if !search.contains(d) && search.len() < MAX_SEARCH {
            search.push(d.clone());
        }
    }
    resolv::text("cairn-netd", &servers, &search)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn config_servers_replace_dhcp_and_search_domains_add_up() {
        let mut s = Sources::default();
        s.leases.insert("eth0".into(), (vec![IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))], vec!["dhcp.example".into()]));
        assert_eq!(text(&s), "# written by cairn-netd\nsearch dhcp.example\nnameserver 10.0.2.3\n");
        s.servers = vec!["fd00::53".parse().unwrap()];
        s.search = vec!["lab.example".into(), "dhcp.example".into()];
        assert_eq!(text(&s), "# written by cairn-netd\nsearch lab.example dhcp.example\nnameserver fd00::53\n");
    }
}
