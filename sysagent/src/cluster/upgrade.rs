//! An update on a cluster member: take a reboot slot from a manager's agent,
//! drain, wait until the swarm has moved the work elsewhere, install and
//! reboot; after the boot (`resume_after_boot`, from the membership loop),
//! once the trial is blessed and the node is back and Ready, reactivate and
//! give the slot back. A trial that rolled back halts the whole rollout and
//! keeps the slot until an operator resumes.
//!
//! Where the node is in this is kept on STATE (`rollout.json`), so a reboot
//! in the middle carries on.

use super::Cluster;
use crate::client::Answer;
use crate::node::Node;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tracing::{info, warn};

/// How long a node waits for a free slot.
const SLOT_WAIT: Duration = Duration::from_secs(3600);
/// How long the swarm gets to move the node's work elsewhere.
const DRAIN_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub to: String,
    pub from: String,
    /// `drain`, `reboot`, `halted`.
    pub phase: String,
}

pub fn load(path: &Path) -> Option<Pending> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn save(path: &Path, p: &Pending) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(p).unwrap_or_default();
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The version `cairnctl update check` offers, or None when up to date.
pub fn offered(check: &str) -> Option<String> {
    check.lines().find_map(|l| Some(l.strip_prefix("cairn-update: ")?.split_once(" is available")?.0.to_string()))
}

/// One call to the first manager's agent that answers; a refusal is an
/// answer too.
async fn ask(c: &Cluster, method: &str, path: &str, body: Option<&Value>) -> Result<Answer, String> {
    let peers = c.peers.as_ref().ok_or("no client identity to reach the managers' agents with")?;
    let mut why = Vec::new();
    let mut agents = c.settings.manager_agents();
    if c.settings.is_manager() {
        // A manager asks its own agent first: its engine writes as well.
        agents.insert(0, format!("{}:{}", c.settings.advertise.map_or("127.0.0.1".into(), |a| a.to_string()), c.settings.agent_port));
    }
    for agent in agents {
        match peers.call(&agent, method, path, body).await {
            Ok(a) if a.status < 500 => return Ok(a),
            Ok(a) => why.push(format!("{agent}: {} {}", a.status, a.message())),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(format!("no manager's agent answered {method} {path}: {}", why.join("; ")))
}

async fn ok(c: &Cluster, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let a = ask(c, method, path, body).await?;
    if a.status == 200 {
        Ok(a.json())
    } else {
        Err(format!("{method} {path}: {} {}", a.status, a.message()))
    }
}

fn node_id(c: &Cluster) -> Result<String, String> {
    let s = c.seen();
    match (s.state.as_str(), s.node_id) {
        ("active", Some(id)) => Ok(id),
        (state, _) => Err(format!("this node is not an active swarm member (state {state:?}); it cannot take a reboot slot")),
    }
}

async fn set_availability(c: &Cluster, id: &str, a: &str) -> Result<(), String> {
    ok(c, "POST", "/v1/cluster/availability", Some(&json!({"node_id": id, "availability": a}))).await.map(|_| ())
}

/// The whole update of this member, as an operation; its text is the log.
pub async fn apply(c: &Cluster, node: &Node, marker: &Path) -> Result<String, String> {
    let mut log = Vec::new();
    let (_, check) = node.cairnctl(&["update", "check"], None).await.map_err(|e| e.message)?;
    let Some(to) = offered(&check) else {
        return Ok(check);
    };
    let id = node_id(c)?;
    let lock = json!({"node_id": id, "to": to});
    let start = tokio::time::Instant::now();
    loop {
        match ask(c, "POST", "/v1/cluster/lock", Some(&lock)).await {
            Ok(a) if a.status == 200 => break,
            // Full, or no manager answers (one may be rebooting for its update).
            Ok(a) if a.status == 409 && start.elapsed() < SLOT_WAIT => {}
            Err(e) if start.elapsed() < SLOT_WAIT => warn!("cluster: {e}"),
            Ok(a) => return Err(format!("no reboot slot for {to}: {}", a.message())),
            Err(e) => return Err(format!("no reboot slot for {to}: {e}")),
        }
        tokio::time::sleep(POLL).await;
    }
    log.push(format!("holding a reboot slot to move to {to}"));
    info!("cluster: holding a reboot slot to move to {to}");
    let from = c.version.clone();
    save(marker, &Pending { to: to.clone(), from: from.clone(), phase: "drain".into() })?;
    if let Err(e) = set_availability(c, &id, "drain").await {
        return Err(undo(c, &id, marker, e).await);
    }
    let start = tokio::time::Instant::now();
    loop {
        match ok(c, "GET", &format!("/v1/cluster/converged/{id}"), None).await {
            Ok(v) if v["converged"] == true => break,
            Ok(v) if start.elapsed() >= DRAIN_WAIT => {
                return Err(undo(c, &id, marker, format!("the swarm did not move this node's work within {DRAIN_WAIT:?}: {v}")).await);
            }
            Ok(_) => {}
            Err(e) if start.elapsed() >= DRAIN_WAIT => return Err(undo(c, &id, marker, e).await),
            Err(e) => warn!("cluster: {e}"),
        }
        tokio::time::sleep(POLL).await;
    }
    log.push("drained: every replicated service runs at its count elsewhere".into());
    save(marker, &Pending { to: to.clone(), from, phase: "reboot".into() })?;
    let (good, out) = node.cairnctl(&["update", "apply"], None).await.map_err(|e| e.message)?;
    if !good {
        return Err(undo(c, &id, marker, format!("{}\n{out}", log.join("\n"))).await);
    }
    log.push(out);
    Ok(log.join("\n"))
}

/// Gives up an update before its reboot: serve again, free the slot.
async fn undo(c: &Cluster, id: &str, marker: &Path, why: String) -> String {
    let mut why = why;
    if let Err(e) = set_availability(c, id, "active").await {
        why.push_str(&format!("; and reactivating this node failed: {e}"));
    }
    if let Err(e) = ok(c, "POST", "/v1/cluster/unlock", Some(&json!({"node_id": id}))).await {
        why.push_str(&format!("; and giving the slot back failed: {e}"));
    }
    let _ = std::fs::remove_file(marker);
    why
}

/// After a boot with a rollout pending: on the new version, blessed, back
/// and Ready → reactivate and release; back on the old version → halt the
/// fleet (once), serve again, and keep the slot until an operator resumes.
pub async fn resume_after_boot(c: &Cluster, node: &Node, marker: &Path, ready: bool) -> Result<(), String> {
    let Some(mut p) = load(marker) else { return Ok(()) };
    let id = node_id(c)?;
    if p.phase == "drain" {
        // Cut short before the install (the agent restarted): undo.
        set_availability(c, &id, "active").await?;
        ok(c, "POST", "/v1/cluster/unlock", Some(&json!({"node_id": id}))).await?;
        let _ = std::fs::remove_file(marker);
        return Ok(());
    }
    if c.version == p.to {
        let (_, status) = node.cairnctl(&["update", "status"], None).await.map_err(|e| e.message)?;
        if status.contains("waiting for its verdict") || !ready {
            return Ok(());
        }
        set_availability(c, &id, "active").await?;
        ok(c, "POST", "/v1/cluster/unlock", Some(&json!({"node_id": id}))).await?;
        let _ = std::fs::remove_file(marker);
        info!("cluster: on {} and blessed; the reboot slot is given back", p.to);
        return Ok(());
    }
    if p.phase != "halted" {
        let reason = format!("the trial of {} rolled back to {} on this node", p.to, c.version);
        ok(c, "POST", "/v1/cluster/halt", Some(&json!({"node_id": id, "version": p.to, "reason": reason}))).await?;
        set_availability(c, &id, "active").await?;
        warn!("cluster: {reason}; the rollout is halted for every node");
        p.phase = "halted".into();
        save(marker, &p)?;
        return Ok(());
    }
    let status = ok(c, "GET", "/v1/cluster", None).await?;
    if status["rollout"]["halt"].is_null() && status.get("rollout").is_some() {
        ok(c, "POST", "/v1/cluster/unlock", Some(&json!({"node_id": id}))).await?;
        let _ = std::fs::remove_file(marker);
        info!("cluster: the rollout was resumed; the reboot slot is given back");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_version_is_read_from_check() {
        assert_eq!(offered("cairn-update: 0.2.0 is available (running 0.1.0); `cairnctl update apply` installs it\n").as_deref(), Some("0.2.0"));
        assert_eq!(offered("cairn-update: up to date: the channel offers 0.1.0, running 0.1.0\n"), None);
    }

    #[test]
    fn the_marker_survives_a_round_trip() {
        let path = std::env::temp_dir().join(format!("cairn-rollout-{}.json", std::process::id()));
        let p = Pending { to: "0.2.0".into(), from: "0.1.0".into(), phase: "reboot".into() };
        save(&path, &p).unwrap();
        assert_eq!(load(&path), Some(p));
        std::fs::remove_file(&path).unwrap();
    }
}
