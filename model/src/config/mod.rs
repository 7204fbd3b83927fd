//! The machine config: what makes one machine itself, as one typed,
//! versioned TOML document.
//!
//! [`parse`] checks a whole document in one pass and returns either the
//! typed [`MachineConfig`] or every [`Problem`] it found, each with its
//! source, line, column and key path, so an operator fixes all of them at
//! once. Nothing here does I/O: the config loader on the machine and
//! `cairnctl config validate` on a laptop run the same code.
//!
//! Every key, its default and its range are documented on the types below
//! and in `docs/config.md`; `docs/machine-config.example.toml` uses them all
//! and is parsed by the tests, so it cannot drift.
//!
//! What the platform says about the machine (instance id, the names and keys
//! a metadata service hands out) is kept apart in [`PlatformFacts`]: it is
//! not what the operator wrote and never overrides it.

mod check;
mod docker;
pub mod handoff;
pub mod network_text;
mod walk;
#[cfg(test)]
mod tests;

use crate::service::ServiceSpec;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The config format this Cairn reads.
pub const VERSION: i64 = 1;

/// A whole machine config, checked, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineConfig {
    /// `hostname`: the machine's name (RFC 1123). None: the platform's, else
    /// `cairn-` and the end of the first MAC.
    pub hostname: Option<String>,
    /// `[network]`.
    pub network: Network,
    /// `[time]`.
    pub time: Time,
    /// `[services]`.
    pub services: Services,
    /// `[update]`.
    pub update: Update,
    /// `[cluster]`: None when the machine joins no cluster.
    pub cluster: Option<Cluster>,
    /// `[docker]`: the Docker engine (on whenever `[cluster]` is given).
    pub docker: Docker,
    /// `[access]`.
    pub access: Access,
    /// `[api]`: the node agent.
    pub api: Api,
    /// `[logs]`.
    pub logs: Logs,
    /// `[metrics]`.
    pub metrics: Metrics,
    /// `[sysctl]`: kernel parameters by their dotted name, as text.
    pub sysctl: BTreeMap<String, String>,
    /// `modules`: extra kernel modules to load at boot.
    pub modules: Vec<String>,
}

/// `[network]`: links, VLANs and name resolution. With no links, the first
/// Ethernet link gets DHCP.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    /// `[[network.links]]`, in order; the first match of a link wins.
    pub links: Vec<Link>,
    /// `[[network.vlans]]`.
    pub vlans: Vec<Vlan>,
    /// `network.dns`: servers, replacing what DHCP offers when given.
    pub dns: Vec<IpAddr>,
    /// `network.search`: search domains.
    pub search: Vec<String>,
}

/// How a `[[network.links]]` entry picks its link.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkMatch {
    /// `name = "eth0"`: the kernel's name.
    Name(String),
    /// `mac = "52:54:00:12:34:56"`: the hardware address.
    Mac([u8; 6]),
}

/// An address with its prefix length, `10.0.2.50/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length: at most 32 for IPv4, 128 for IPv6.
    pub prefix: u8,
}

/// A static route, `{ to = "10.1.0.0/16", via = "10.0.2.1" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `to`: the destination (`0.0.0.0/0` is the default route).
    pub to: Cidr,
    /// `via`: the gateway.
    pub via: IpAddr,
}

/// How one link (or VLAN) is addressed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Addressing {
    /// `dhcp`: DHCPv4 on the link. Default: true when no `addresses` are given.
    pub dhcp: bool,
    /// `addresses`: static addresses.
    pub addresses: Vec<Cidr>,
    /// `gateway`: the default route's gateway.
    pub gateway: Option<IpAddr>,
    /// `routes`: more routes.
    pub routes: Vec<Route>,
    /// `mtu`: 68 to 9216; None keeps the link's (or DHCP option 26's).
    pub mtu: Option<u16>,
}

/// `[[network.links]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// `name` or `mac`, exactly one.
    pub matches: LinkMatch,
    /// The addressing keys.
    pub addressing: Addressing,
}

/// `[[network.vlans]]`: an 802.1Q VLAN on a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Vlan {
    /// `name`: the VLAN link's name (at most 15 bytes).
    pub name: String,
    /// `link`: the parent link's name.
    pub link: String,
    /// `id`: 1 to 4094.
    pub id: u16,
    /// The addressing keys, as for a link.
    pub addressing: Addressing,
}

/// `[time]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Time {
    /// `ntp`: NTP servers (names or addresses); empty keeps the shipped pool.
    pub ntp: Vec<String>,
}

/// `[services]`: which system services run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Services {
    /// `enable`: shipped services to turn on.
    pub enable: Vec<String>,
    /// `disable`: shipped services to turn off (`containerd` too).
    pub disable: Vec<String>,
    /// `[services.add.NAME]`: more services, each a full service spec.
    pub add: BTreeMap<String, ServiceSpec>,
    /// The TOML text of each added service, as a service file would hold it.
    pub add_toml: BTreeMap<String, String>,
}

/// `update.channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `stable` (the default).
    Stable,
    /// `beta`.
    Beta,
    /// `alpha`.
    Alpha,
}

/// `update.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePolicy {
    /// `manual` (the default): updates only when an operator asks.
    Manual,
    /// `auto`: the node checks and installs by itself inside its window.
    Auto,
}

/// `[update.window]`: when automatic updates may reboot the machine (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `days`: `mon` .. `sun`; default every day. 0 is Monday.
    pub days: Vec<u8>,
    /// `start`: `HH:MM`, as minutes after midnight.
    pub start_minute: u16,
    /// `length_minutes`: 1 to 1440.
    pub length: Duration,
}

/// `[update]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// `repository`: the repository's `http://` or `https://` URL; None keeps
    /// the one the image was built with.
    pub repository: Option<String>,
    /// `channel`.
    pub channel: Channel,
    /// `policy`.
    pub policy: UpdatePolicy,
    /// `[update.window]`: None is any time.
    pub window: Option<Window>,
    /// `check_minutes`: how often a node with the `auto` policy asks its
    /// repository for a new version (1 to 1440; default 60).
    pub check_every: Duration,
}

/// `cluster.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `manager`.
    Manager,
    /// `worker`.
    Worker,
}

/// `[cluster]`: the orchestrator this machine joins.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `orchestrator`: `swarm` (Docker Swarm), the only one so far.
    pub orchestrator: String,
    /// `role`.
    pub role: Role,
    /// `managers`: `host:port` of the managers to join; empty on the first
    /// manager, which initialises the cluster.
    pub managers: Vec<String>,
    /// `token_file`: where a join token lies on the machine, if not fetched
    /// from a manager's agent.
    pub token_file: Option<String>,
    /// `max_parallel`: at most this many workers reboot for an update at once
    /// (1 to 100, default 1).
    pub max_parallel: u32,
    /// `advertise_address`: the address other nodes reach this one on.
    /// Default: the first static address of the network config; a manager
    /// needs a fixed one.
    pub advertise_address: Option<IpAddr>,
}

/// `[docker]`: the Docker engine, dockerd on cairn-init's containerd,
/// answering on `/run/docker.sock` (docs/docker.md). A change takes effect
/// at the next boot.
#[derive(Debug, Clone, PartialEq)]
pub struct Docker {
    /// `enabled`: run dockerd. Default false, true once the section is
    /// written, and always true with a `[cluster]` section.
    pub enabled: bool,
    /// `address_pools`: IPv4 networks (`10.20.0.0/16`) that dockerd cuts its
    /// local (bridge) networks from; empty keeps dockerd's own
    /// (172.17.0.0/16 onwards).
    pub address_pools: Vec<Cidr>,
    /// `pool_size`: the prefix length of each network cut from a pool, 8 to
    /// 30 (default 24).
    pub pool_size: u8,
}

impl Default for Docker {
    fn default() -> Self {
        Docker { enabled: false, address_pools: Vec::new(), pool_size: 24 }
    }
}

/// `[access]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Access {
    /// `admin`: run the admin container (default false).
    pub admin: bool,
    /// `ssh_authorized_keys`: OpenSSH public key lines.
    pub ssh_authorized_keys: Vec<String>,
}

/// `[api]`: sysagent, the node's API (HTTPS with mutual TLS). It runs when
/// the section gives the node its certificate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Api {
    /// `enabled`: default true when `certificate` is given; false turns the
    /// agent off while keeping its files in the config.
    pub enabled: bool,
    /// `listen`: `address:port` (default `0.0.0.0:9440`).
    pub listen: Option<SocketAddr>,
    /// `ca`: PEM, the cluster CA that client certificates must chain to.
    pub ca: Option<String>,
    /// `certificate`: PEM, the node's server certificate (and any
    /// intermediates after it).
    pub certificate: Option<String>,
    /// `key`: PEM, the server certificate's private key.
    pub key: Option<String>,
    /// `deny_serials`: client certificate serials (hex) refused outright.
    pub deny_serials: Vec<String>,
}

/// `[logs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logs {
    /// `level`: `error`, `warn`, `info` (default), `debug`, `trace`.
    pub level: String,
    /// `max_file_kb`: each service log's size before it rotates, 16 to
    /// 1048576 (default 1024).
    pub max_file_kb: u32,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// `enabled`: serve Prometheus metrics (default false).
    pub enabled: bool,
    /// `listen`: also serve them unauthenticated on this `address:port`.
    pub listen: Option<SocketAddr>,
}

/// What the platform (a metadata service, a config disk) says about the
/// machine, kept apart from what the operator wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlatformFacts {
    /// The platform: `qemu`, `ec2`, `gce`, `azure`, `openstack`, `nocloud`, `metal`.
    pub platform: String,
    /// The instance id; a new one means a new machine, provisioned afresh.
    pub instance_id: Option<String>,
    /// The name the platform gives the machine.
    pub hostname: Option<String>,
    /// SSH keys the platform hands out.
    pub ssh_keys: Vec<String>,
    /// Addresses the platform assigned.
    pub addresses: Vec<IpAddr>,
}

/// One thing wrong in a config, with its place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where the document came from: a file name or a source (`fw_cfg`, ...).
    pub source: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key at fault as a path: `network.links[0].mtu`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.source, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a config, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

/// Checks a whole machine config. `source` names it in problems.
pub fn parse(text: &str, source: &str) -> Result<MachineConfig, Problems> {
    check::check(text, source)
}
