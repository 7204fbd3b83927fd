//! Cluster membership: this node in a Docker Swarm, from the machine
//! config's `[cluster]` section (which cairn-config writes for the agent as
//! `cluster.json`). The agent initialises the swarm on the first manager,
//! joins every other node with a token it fetches from a manager's agent over
//! mutual TLS, and keeps the node's labels (OS version, slot) current. The
//! engine keeps the membership across reboots; the agent never joins twice.

pub mod handlers;
pub mod member;
pub mod rollout;
pub mod slots;
pub mod store;
pub mod swarm;
pub mod upgrade;

use crate::client::{Engine, Peers};
use crate::node::Node;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What cairn-config hands the agent from `[cluster]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Settings {
    /// `manager` or `worker`.
    pub role: String,
    /// The managers' swarm addresses (`host:2377`); empty on the first
    /// manager, which initialises the swarm.
    #[serde(default)]
    pub managers: Vec<String>,
    /// The address the swarm reaches this node on.
    pub advertise: Option<IpAddr>,
    /// Where the managers' agents listen (the same port as this one's).
    #[serde(default = "default_agent_port")]
    pub agent_port: u16,
    /// A join token on the machine, read instead of asking a manager.
    pub token_file: Option<String>,
    #[serde(default = "one")]
    pub max_parallel: u32,
}

fn default_agent_port() -> u16 {
    9440
}

fn one() -> u32 {
    1
}

impl Settings {
    pub fn load(path: &Path) -> Result<Option<Settings>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn is_manager(&self) -> bool {
        self.role == "manager"
    }

    /// The managers' agents, `host:agent_port`.
    pub fn manager_agents(&self) -> Vec<String> {
        self.managers
            .iter()
            .map(|m| {
                let host = m.rsplit_once(':').map_or(m.as_str(), |(h, _)| h);
                format!("{host}:{}", self.agent_port)
            })
            .collect()
    }
}

/// What the membership loop last saw, for status and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Seen {
    /// The engine's `LocalNodeState` (`inactive`, `pending`, `active`,
    /// `error`, `locked`), or `no-engine` while dockerd does not answer.
    pub state: String,
    pub node_id: Option<String>,
    /// Whether this node is a manager the swarm lets write (`ControlAvailable`).
    pub manager: bool,
    /// The last thing that went wrong, cleared once all is well.
    pub error: Option<String>,
    /// Joins or inits this agent made since it started (0 after a reboot
    /// when the engine rejoined by itself).
    pub joins: u32,
}

pub struct Cluster {
    pub settings: Settings,
    pub engine: Engine,
    /// Other agents, with this node's certificate; None when the files do not
    /// make a client identity (then the node cannot fetch a token).
    pub peers: Option<Peers>,
    pub seen: Mutex<Seen>,
    /// This node's OS version and slot, for its labels.
    pub version: String,
    pub slot: String,
    /// cairn-init and cairnctl, for the update a rollout runs.
    pub node: Node,
    /// Where the rollout this node is in is kept (STATE).
    pub marker: PathBuf,
    /// Written once the node is in the swarm and Ready: cairn-init's trial
    /// gate waits for it.
    pub ready_file: PathBuf,
}

impl Cluster {
    pub fn seen(&self) -> Seen {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_seen(&self, f: impl FnOnce(&mut Seen)) {
        if let Ok(mut s) = self.seen.lock() {
            f(&mut s);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_what_cairn_config_writes() {
        let s: Settings = serde_json::from_str(r#"{"role":"worker","managers":["10.77.0.11:2377","m2:2377"],"advertise":"10.77.0.12"}"#).unwrap();
        assert!(!s.is_manager());
        assert_eq!(s.manager_agents(), ["10.77.0.11:9440", "m2:9440"]);
        assert_eq!(s.max_parallel, 1);
        let d = tempdir();
        assert_eq!(Settings::load(&d.join("none.json")).unwrap(), None);
        std::fs::write(d.join("bad.json"), "{").unwrap();
        assert!(Settings::load(&d.join("bad.json")).unwrap_err().contains("bad.json"));
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cairn-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
