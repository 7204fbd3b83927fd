//! What a manager's agent does for the rollout: hand out and take back
//! reboot slots, record a halt, drain and reactivate the asking node, and say
//! when the swarm has moved its work elsewhere. Every write goes through the
//! swarm store's compare-and-swap (`store::change`).

use super::handlers::{caller_node, engine_error, json_body, name_field, no_cluster, Caller};
use super::rollout::{Ask, Refusal, Rollout};
use super::{store, swarm, Cluster};
use crate::error::{ApiError, ApiResult, Kind};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// A slot holder whose node has been down this long, while not rebooting
/// for its update, has disappeared: the rollout halts.
pub const LOST_AFTER_S: u64 = 600;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::Full { .. } | Refusal::Quorum(_) => ApiError::new(Kind::Conflict, r.to_string()),
        Refusal::Halted(_) | Refusal::BadVersion { .. } => ApiError::new(Kind::Refused, r.to_string()),
    }
}

async fn nodes(c: &Cluster) -> ApiResult<Vec<Value>> {
    let v = swarm::get(&c.engine, "/nodes").await.map_err(engine_error)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Slots whose node left the swarm are freed (and a halt for having lost
/// it goes with them); a holder that stays down too long halts the rollout.
pub async fn sweep(c: &Cluster) -> ApiResult<Rollout> {
    let all = nodes(c).await?;
    let state_of = |id: &str| all.iter().find(|n| n["ID"] == id).map(|n| n["Status"]["State"].as_str().unwrap_or("").to_string());
    let t = now();
    let outcome = store::change(&c.engine, |r| {
        let mut changed = false;
        let holders: Vec<(String, u64)> = r.holders.iter().map(|(n, h)| (n.clone(), h.since)).collect();
        for (node, since) in holders {
            match state_of(&node) {
                None => {
                    changed |= r.release(&node);
                    if r.halt.as_ref().is_some_and(|h| h.node == node && h.reason.starts_with("lost:")) {
                        r.halt = None;
                        changed = true;
                    }
                }
                Some(s) if s == "down" && t.saturating_sub(since) > LOST_AFTER_S => {
                    changed |= r.halt(&node, "", &format!("lost: node {node} holds a reboot slot and has been down since before {}", since + LOST_AFTER_S), t);
                }
                Some(_) => {}
            }
        }
        Ok(changed)
    })
    .await
    .map_err(engine_error)?;
    outcome.map_err(refused)
}

/// `POST /v1/cluster/lock {node_id, to}`.
pub async fn lock(c: Option<&Cluster>, caller: Caller, body: &[u8]) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let v = json_body(body)?;
    let (id, to) = (name_field(&v, "node_id")?, name_field(&v, "to")?);
    // Lost holders are swept by the manager's membership loop (every 30 s),
    // not here: under a burst of requests every engine call counts.
    let node = caller_node(c, caller, &id).await?;
    let manager = node["Spec"]["Role"] == "manager";
    let all = if manager { nodes(c).await? } else { vec![] };
    let managers: Vec<&Value> = all.iter().filter(|n| n["Spec"]["Role"] == "manager").collect();
    let unreachable: Vec<String> = managers
        .iter()
        .filter(|n| n["ID"] != id.as_str() && n["ManagerStatus"]["Reachability"] != "reachable")
        .map(|n| n["Description"]["Hostname"].as_str().unwrap_or("?").to_string())
        .collect();
    let t = now();
    let ask = Ask {
        node: &id,
        group: if manager { "managers" } else { "workers" },
        to: &to,
        slots: if manager { 1 } else { c.settings.max_parallel },
        unreachable_managers: unreachable,
        // With fewer than three managers, losing one loses the quorum.
        exclusive: manager && managers.len() < 3,
        now: t,
    };
    let r = store::change(&c.engine, |r| r.acquire(&ask)).await.map_err(engine_error)?.map_err(refused)?;
    Ok(json!({"node_id": id, "held": true, "holders": r.holders.keys().collect::<Vec<_>>()}))
}

/// `POST /v1/cluster/unlock {node_id}`: the holder gives its slot back.
pub async fn unlock(c: Option<&Cluster>, caller: Caller, body: &[u8]) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let id = name_field(&json_body(body)?, "node_id")?;
    caller_node(c, caller, &id).await?;
    let r = store::change(&c.engine, |r| Ok(r.release(&id))).await.map_err(engine_error)?.map_err(refused)?;
    Ok(json!({"node_id": id, "held": false, "holders": r.holders.keys().collect::<Vec<_>>()}))
}

/// `POST /v1/cluster/halt {node_id, version, reason}`: a node rolled back.
pub async fn halt(c: Option<&Cluster>, caller: Caller, body: &[u8]) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let v = json_body(body)?;
    let (id, version) = (name_field(&v, "node_id")?, name_field(&v, "version")?);
    let reason: String = v["reason"].as_str().unwrap_or("rolled back").chars().take(300).collect();
    caller_node(c, caller, &id).await?;
    let t = now();
    let r = store::change(&c.engine, |r| Ok(r.halt(&id, &version, &reason, t))).await.map_err(engine_error)?.map_err(refused)?;
    Ok(json!({"halt": r.halt, "bad": r.bad}))
}

/// `POST /v1/cluster/resume`: an operator lets the rollout go on.
pub async fn resume(c: Option<&Cluster>) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let r = store::change(&c.engine, |r| Ok(r.resume(&[]))).await.map_err(engine_error)?.map_err(refused)?;
    Ok(json!({"halt": r.halt, "bad": r.bad, "holders": r.holders.keys().collect::<Vec<_>>()}))
}

/// `POST /v1/cluster/availability {node_id, availability}`: drain or
/// reactivate the asking node (only a manager may write it).
pub async fn availability(c: Option<&Cluster>, caller: Caller, body: &[u8]) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let v = json_body(body)?;
    let id = name_field(&v, "node_id")?;
    let want = name_field(&v, "availability")?;
    if want != "drain" && want != "active" {
        return Err(ApiError::new(Kind::BadRequest, format!("availability {want:?}: drain or active")));
    }
    caller_node(c, caller, &id).await?;
    let changed = swarm::update(&c.engine, &format!("/nodes/{id}"), |spec| {
        if spec["Availability"] == want.as_str() {
            return false;
        }
        spec["Availability"] = json!(want);
        true
    })
    .await
    .map_err(engine_error)?;
    Ok(json!({"node_id": id, "availability": want, "changed": changed}))
}

/// `GET /v1/cluster/converged/{node}`: whether the swarm's work has left the
/// node: no task of a service still running there, and every replicated
/// service at its desired count elsewhere (a drain alone does not wait).
pub async fn converged(c: Option<&Cluster>, node: &str) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let services = swarm::get(&c.engine, "/services?status=true").await.map_err(engine_error)?;
    let short: Vec<Value> = services
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Spec"]["Mode"].get("Replicated").is_some())
        .filter(|s| s["ServiceStatus"]["RunningTasks"].as_u64() < s["ServiceStatus"]["DesiredTasks"].as_u64())
        .map(|s| json!({"service": s["Spec"]["Name"], "running": s["ServiceStatus"]["RunningTasks"], "desired": s["ServiceStatus"]["DesiredTasks"]}))
        .collect();
    // Every task on the node, whatever its desired state: one told to stop
    // still counts until it has.
    let filter = format!("{{\"node\":[\"{node}\"]}}");
    let tasks = swarm::get(&c.engine, &format!("/tasks?filters={}", encode(&filter))).await.map_err(engine_error)?;
    // Global services run everywhere and cannot move: they do not count.
    let global: Vec<&Value> = services.as_array().into_iter().flatten().filter(|s| s["Spec"]["Mode"].get("Global").is_some()).collect();
    let on_node = tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["Status"]["State"] == "running" && !global.iter().any(|g| g["ID"] == t["ServiceID"]))
        .count();
    Ok(json!({"node_id": node, "converged": short.is_empty() && on_node == 0, "tasks_on_node": on_node, "short": short}))
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("{\"node\":[\"a1\"]}"), "%7B%22node%22%3A%5B%22a1%22%5D%7D");
    }
}
