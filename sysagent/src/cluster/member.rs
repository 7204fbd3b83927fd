//! The membership loop: bring this node into the swarm the config names and
//! keep it labelled. Each round is bounded; a round that fails is retried
//! with back-off, and says why in status.

use super::swarm::{self, SwarmError};
use super::Cluster;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Between rounds once the node is a member.
const STEADY: Duration = Duration::from_secs(30);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(20);
/// How long a join may stay `pending` before the round gives up on it.
const JOIN_WAIT: Duration = Duration::from_secs(120);

/// What a round did.
#[derive(Debug, PartialEq)]
enum Round {
    /// A member, labelled.
    Member,
    /// Not yet (the engine is not up, the join is pending): look again soon.
    Waiting(String),
}

pub async fn run(cluster: Arc<Cluster>) {
    let mut retry = FIRST_RETRY;
    loop {
        match round(&cluster).await {
            Ok(Round::Member) => {
                cluster.set_seen(|s| s.error = None);
                retry = FIRST_RETRY;
                // A rollout in progress is followed closely.
                let pace = if cluster.marker.exists() { FIRST_RETRY * 3 } else { STEADY };
                tokio::time::sleep(pace).await;
            }
            Ok(Round::Waiting(why)) => {
                cluster.set_seen(|s| s.error = Some(why));
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
            Err(e) => {
                warn!("cluster: {e}");
                cluster.set_seen(|s| s.error = Some(e.to_string()));
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

async fn round(c: &Cluster) -> Result<Round, SwarmError> {
    let local = match swarm::local(&c.engine).await {
        Ok(l) => l,
        Err(SwarmError::Client(e)) => {
            c.set_seen(|s| s.state = "no-engine".into());
            return Ok(Round::Waiting(format!("the Docker engine does not answer yet: {e}")));
        }
        Err(e) => return Err(e),
    };
    c.set_seen(|s| {
        s.state = local.state.clone();
        s.node_id = Some(local.node_id.clone()).filter(|id| !id.is_empty());
        s.manager = local.control;
    });
    match local.state.as_str() {
        "active" => member(c, &local.node_id, local.control).await,
        "pending" => Ok(Round::Waiting("the join is in progress".into())),
        "locked" => Ok(Round::Waiting("the swarm is locked (autolock): unlock it with `docker swarm unlock`".into())),
        "error" => Ok(Round::Waiting(format!("the engine reports a swarm error: {}", local.error))),
        _ => {
            become_member(c).await?;
            wait_active(c).await
        }
    }
}

async fn become_member(c: &Cluster) -> Result<(), SwarmError> {
    let s = &c.settings;
    if s.is_manager() && s.managers.is_empty() {
        let id = swarm::init(&c.engine, s.advertise).await?;
        info!("cluster: initialised a new swarm; this node is {id}");
    } else {
        let token = fetch_token(c).await?;
        swarm::join(&c.engine, s.advertise, &s.managers, &token).await?;
        info!("cluster: joining the swarm of {} as a {}", s.managers.join(", "), s.role);
    }
    c.set_seen(|seen| seen.joins += 1);
    Ok(())
}

async fn wait_active(c: &Cluster) -> Result<Round, SwarmError> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < JOIN_WAIT {
        let l = swarm::local(&c.engine).await?;
        match l.state.as_str() {
            "active" => {
                c.set_seen(|s| {
                    s.state = l.state.clone();
                    s.node_id = Some(l.node_id.clone());
                    s.manager = l.control;
                });
                return member(c, &l.node_id, l.control).await;
            }
            "error" => return Ok(Round::Waiting(format!("the join failed: {}", l.error))),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    Ok(Round::Waiting(format!("not active {JOIN_WAIT:?} after joining")))
}

/// A join token: from the token file when the config names one, else from
/// the first manager's agent that answers (over mutual TLS, as role `node`).
async fn fetch_token(c: &Cluster) -> Result<String, SwarmError> {
    let s = &c.settings;
    if let Some(path) = &s.token_file {
        return std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| SwarmError::Cluster(format!("the join token file {path}: {e}")));
    }
    let Some(peers) = &c.peers else {
        return Err(SwarmError::Cluster(
            "no client identity to ask a manager's agent with (the node certificate did not load)".into(),
        ));
    };
    let mut why = Vec::new();
    for agent in s.manager_agents() {
        match peers.call(&agent, "GET", &format!("/v1/cluster/token/{}", s.role), None).await {
            Ok(a) if a.status == 200 => {
                if let Some(t) = a.json()["token"].as_str().filter(|t| !t.is_empty()) {
                    return Ok(t.to_string());
                }
                why.push(format!("{agent}: no token in the answer"));
            }
            Ok(a) => why.push(format!("{agent}: {} {}", a.status, a.message())),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(SwarmError::Cluster(format!("no manager's agent gave a join token: {}", why.join("; "))))
}

/// A member's round: labels, the Ready file the trial gate waits for, on a
/// manager the sweep of lost slot holders, and any rollout left from before
/// the boot.
async fn member(c: &Cluster, id: &str, manager: bool) -> Result<Round, SwarmError> {
    let ready = label_self(c, id, manager).await?;
    if ready && !c.ready_file.exists() {
        if let Err(e) = std::fs::write(&c.ready_file, format!("{id}\n")) {
            warn!("cluster: {}: {e}", c.ready_file.display());
        }
        info!("cluster: node {id} is in the swarm and Ready");
    }
    if manager {
        if let Err(e) = super::slots::sweep(c).await {
            warn!("cluster: the rollout sweep: {}", e.message);
        }
    }
    if let Err(e) = super::upgrade::resume_after_boot(c, &c.node, &c.marker, ready).await {
        return Ok(Round::Waiting(format!("the rollout after this boot: {e}")));
    }
    Ok(Round::Member)
}

/// The node's `cairn.version` and `cairn.slot` labels; whether the swarm
/// sees the node Ready. Only managers write
/// to the swarm: a worker asks a manager's agent, which labels the node the
/// request comes from.
async fn label_self(c: &Cluster, id: &str, manager: bool) -> Result<bool, SwarmError> {
    let labels = [("cairn.version", c.version.as_str()), ("cairn.slot", c.slot.as_str())];
    if manager {
        if swarm::label_node(&c.engine, id, &labels).await? {
            info!("cluster: labelled this node cairn.version={} cairn.slot={}", c.version, c.slot);
        }
        let me = swarm::get(&c.engine, &format!("/nodes/{id}")).await?;
        return Ok(me["Status"]["State"] == "ready");
    }
    let Some(peers) = &c.peers else { return Ok(false) };
    let body = json!({"node_id": id, "version": c.version, "slot": c.slot});
    let mut why = Vec::new();
    for agent in c.settings.manager_agents() {
        match peers.call(&agent, "POST", "/v1/cluster/report", Some(&body)).await {
            Ok(a) if a.status == 200 => return Ok(a.json()["state"] == "ready"),
            Ok(a) => why.push(format!("{agent}: {} {}", a.status, a.message())),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(SwarmError::Cluster(format!("no manager's agent took this node's labels: {}", why.join("; "))))
}
