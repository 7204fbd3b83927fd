//! The cluster-wide reboot semaphore and fleet halt, kept in the swarm's own
//! store: the labels of one swarm config object, `cairn.rollout`, written
//! only with compare-and-swap on its version. The rules here are pure; the
//! store round trip is `swarm::update`.
//!
//! Labels: `cairn.lock.<node id>` = a holder (JSON), `cairn.halt` = why the
//! rollout stopped (JSON), `cairn.bad.<version>` = the node that rolled back
//! from it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const OBJECT: &str = "cairn.rollout";
const LOCK: &str = "cairn.lock.";
const HALT: &str = "cairn.halt";
const BAD: &str = "cairn.bad.";

/// One node's slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// `workers` or `managers`.
    pub group: String,
    /// The version the node moves to.
    pub to: String,
    /// Unix seconds when it took the slot.
    pub since: u64,
    /// A manager the swarm cannot spare (fewer than three managers): while
    /// it reboots the swarm has no control plane, so nobody else holds a slot.
    #[serde(default)]
    pub exclusive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halt {
    pub node: String,
    pub version: String,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rollout {
    pub holders: BTreeMap<String, Hold>,
    pub halt: Option<Halt>,
    /// Version -> the node it rolled back on.
    pub bad: BTreeMap<String, String>,
}

/// Why a slot is not given.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Every slot of the group is held.
    Full { group: String, holders: Vec<String>, slots: u32 },
    Halted(Halt),
    BadVersion { version: String, node: String },
    /// A manager may not reboot while another manager is unreachable.
    Quorum(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Full { group, holders, slots } => {
                write!(f, "all {slots} reboot slot(s) of the {group} are held (by {})", holders.join(", "))
            }
            Refusal::Halted(h) => write!(
                f,
                "the rollout is halted: node {} at version {}: {} (`cairnctl cluster resume` clears it)",
                h.node, h.version, h.reason
            ),
            Refusal::BadVersion { version, node } => write!(f, "version {version} rolled back on node {node}; no node installs it"),
            Refusal::Quorum(why) => write!(f, "a manager reboot now would risk the swarm's quorum: {why}"),
        }
    }
}

/// What a slot request knows of the swarm, read by the caller.
pub struct Ask<'a> {
    pub node: &'a str,
    pub group: &'a str,
    pub to: &'a str,
    /// Slots for this group (managers: always 1).
    pub slots: u32,
    /// For a manager: the other managers that are not reachable.
    pub unreachable_managers: Vec<String>,
    /// A manager the swarm cannot spare: its slot is the only one held.
    pub exclusive: bool,
    pub now: u64,
}

impl Rollout {
    pub fn from_labels(labels: &Map<String, Value>) -> Rollout {
        let mut r = Rollout::default();
        for (k, v) in labels {
            let text = v.as_str().unwrap_or_default();
            if let Some(node) = k.strip_prefix(LOCK) {
                if let Ok(h) = serde_json::from_str(text) {
                    r.holders.insert(node.to_string(), h);
                }
            } else if k == HALT {
                r.halt = serde_json::from_str(text).ok();
            } else if let Some(version) = k.strip_prefix(BAD) {
                r.bad.insert(version.to_string(), text.to_string());
            }
        }
        r
    }

    /// The labels, with every other label kept as it was.
    pub fn to_labels(&self, labels: &mut Map<String, Value>) {
        labels.retain(|k, _| !(k.starts_with(LOCK) || k == HALT || k.starts_with(BAD)));
        for (node, h) in &self.holders {
            labels.insert(format!("{LOCK}{node}"), Value::String(serde_json::to_string(h).unwrap_or_default()));
        }
        if let Some(h) = &self.halt {
            labels.insert(HALT.into(), Value::String(serde_json::to_string(h).unwrap_or_default()));
        }
        for (version, node) in &self.bad {
            labels.insert(format!("{BAD}{version}"), Value::String(node.clone()));
        }
    }

    /// Takes a slot. Recursive: a holder asking again keeps its slot.
    /// Returns whether anything changed.
    pub fn acquire(&mut self, ask: &Ask<'_>) -> Result<bool, Refusal> {
        if let Some(h) = &self.halt {
            return Err(Refusal::Halted(h.clone()));
        }
        if let Some(node) = self.bad.get(ask.to) {
            return Err(Refusal::BadVersion { version: ask.to.to_string(), node: node.clone() });
        }
        if let Some(h) = self.holders.get(ask.node) {
            if h.to == ask.to && h.group == ask.group {
                return Ok(false);
            }
        }
        let others: Vec<String> =
            self.holders.iter().filter(|(n, h)| h.group == ask.group && *n != ask.node).map(|(n, _)| n.clone()).collect();
        if others.len() as u32 >= ask.slots {
            return Err(Refusal::Full { group: ask.group.to_string(), holders: others, slots: ask.slots });
        }
        let exclusive: Vec<String> =
            self.holders.iter().filter(|(n, h)| h.exclusive && *n != ask.node).map(|(n, _)| n.clone()).collect();
        if !exclusive.is_empty() {
            return Err(Refusal::Full { group: "swarm (a manager it cannot spare is rebooting)".into(), holders: exclusive, slots: 1 });
        }
        let anyone: Vec<String> = self.holders.keys().filter(|n| *n != ask.node).cloned().collect();
        if ask.exclusive && !anyone.is_empty() {
            return Err(Refusal::Full { group: "swarm (this manager reboots alone)".into(), holders: anyone, slots: 1 });
        }
        if ask.group == "managers" && !ask.unreachable_managers.is_empty() {
            return Err(Refusal::Quorum(format!("not reachable: {}", ask.unreachable_managers.join(", "))));
        }
        let hold = Hold { group: ask.group.to_string(), to: ask.to.to_string(), since: ask.now, exclusive: ask.exclusive };
        self.holders.insert(ask.node.to_string(), hold);
        Ok(true)
    }

    /// Gives a slot back; only its holder does, once blessed and Ready.
    pub fn release(&mut self, node: &str) -> bool {
        self.holders.remove(node).is_some()
    }

    /// A node rolled back from `version`: the version is bad everywhere, the
    /// rollout stops, and the node keeps its slot.
    pub fn halt(&mut self, node: &str, version: &str, reason: &str, now: u64) -> bool {
        let before = (self.halt.clone(), self.bad.clone());
        if !version.is_empty() {
            self.bad.insert(version.to_string(), node.to_string());
        }
        if self.halt.is_none() {
            self.halt = Some(Halt { node: node.into(), version: version.into(), reason: reason.into(), at: now });
        }
        before != (self.halt.clone(), self.bad.clone())
    }

    /// An operator resumes: the halt goes, bad versions stay bad. The slot
    /// of the node that halted is freed only if it is back on a good
    /// version or gone (the caller decides which holders to drop).
    pub fn resume(&mut self, drop_holders: &[String]) -> bool {
        let mut changed = self.halt.take().is_some();
        for n in drop_holders {
            changed |= self.holders.remove(n).is_some();
        }
        changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ask<'a>(node: &'a str, group: &'a str, to: &'a str, slots: u32) -> Ask<'a> {
        Ask { node, group, to, slots, unreachable_managers: vec![], exclusive: false, now: 1 }
    }

    #[test]
    fn at_most_n_workers_and_one_manager_hold_slots() {
        let mut r = Rollout::default();
        assert_eq!(r.acquire(&ask("w1", "workers", "0.2.0", 1)), Ok(true));
        assert_eq!(r.acquire(&ask("w1", "workers", "0.2.0", 1)), Ok(false), "recursive");
        assert!(matches!(r.acquire(&ask("w2", "workers", "0.2.0", 1)), Err(Refusal::Full { .. })));
        assert_eq!(r.acquire(&ask("m1", "managers", "0.2.0", 1)), Ok(true), "groups count apart");
        assert!(matches!(r.acquire(&ask("m2", "managers", "0.2.0", 1)), Err(Refusal::Full { .. })));
        assert!(r.release("w1"));
        assert!(!r.release("w1"));
        assert_eq!(r.acquire(&ask("w2", "workers", "0.2.0", 1)), Ok(true));
    }

    #[test]
    fn a_manager_the_swarm_cannot_spare_reboots_alone() {
        let mut r = Rollout::default();
        let lone = Ask { exclusive: true, ..ask("m1", "managers", "0.2.0", 1) };
        r.acquire(&ask("w1", "workers", "0.2.0", 2)).unwrap();
        assert!(matches!(r.acquire(&lone), Err(Refusal::Full { .. })), "not while a worker reboots");
        r.release("w1");
        assert_eq!(r.acquire(&lone), Ok(true));
        assert!(matches!(r.acquire(&ask("w2", "workers", "0.2.0", 2)), Err(Refusal::Full { .. })), "no worker while it reboots");
    }

    #[test]
    fn a_manager_waits_while_another_is_unreachable() {
        let mut r = Rollout::default();
        let mut a = ask("m1", "managers", "0.2.0", 1);
        a.unreachable_managers = vec!["m3".into()];
        assert!(matches!(r.acquire(&a), Err(Refusal::Quorum(_))));
    }

    #[test]
    fn a_rollback_halts_everyone_and_marks_the_version_until_resumed() {
        let mut r = Rollout::default();
        r.acquire(&ask("w1", "workers", "0.3.0", 2)).unwrap();
        assert!(r.halt("w1", "0.3.0", "the trial rolled back", 5));
        assert!(r.holders.contains_key("w1"), "the node that halted keeps its slot");
        assert!(matches!(r.acquire(&ask("w2", "workers", "0.3.1", 2)), Err(Refusal::Halted(_))));
        assert!(r.resume(&["w1".into()]));
        assert!(matches!(r.acquire(&ask("w2", "workers", "0.3.0", 2)), Err(Refusal::BadVersion { .. })));
        assert_eq!(r.acquire(&ask("w2", "workers", "0.3.1", 2)), Ok(true));
    }

    #[test]
    fn labels_round_trip_and_keep_foreign_ones() {
        let mut r = Rollout::default();
        r.acquire(&ask("w1", "workers", "0.2.0", 1)).unwrap();
        r.halt("w1", "0.2.0", "rolled back", 9);
        let mut labels = Map::new();
        labels.insert("team".into(), Value::String("x".into()));
        labels.insert("cairn.lock.gone".into(), Value::String("{}".into()));
        r.to_labels(&mut labels);
        assert_eq!(labels["team"], "x");
        assert!(!labels.contains_key("cairn.lock.gone"));
        assert_eq!(Rollout::from_labels(&labels), r);
    }
}
