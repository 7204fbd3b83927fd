//! The cluster routes: status for people, and what nodes ask each other for
//! (a join token, labels for the asking node).

use super::swarm::{self, SwarmError};
use super::Cluster;
use crate::error::{ApiError, ApiResult, Kind};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

pub fn engine_error(e: SwarmError) -> ApiError {
    match &e {
        SwarmError::Engine { status: 503, .. } => ApiError::new(Kind::Unavailable, e.to_string()),
        SwarmError::Engine { status: 404, .. } => ApiError::new(Kind::NotFound, e.to_string()),
        _ => ApiError::new(Kind::Unavailable, e.to_string()),
    }
}

pub fn no_cluster() -> ApiError {
    ApiError::new(Kind::NotFound, "this machine's config has no [cluster] section")
}

/// `GET /v1/cluster`: what the config says, what the engine says, and on a
/// manager every node of the swarm.
pub async fn status(c: Option<&Cluster>) -> ApiResult<Value> {
    let Some(c) = c else {
        return Ok(json!({"configured": false}));
    };
    let seen = c.seen();
    let pending = super::upgrade::load(&c.marker);
    let mut v = json!({
        "configured": true,
        "pending_update": pending,
        "role": c.settings.role,
        "managers": c.settings.managers,
        "max_parallel": c.settings.max_parallel,
        "state": seen.state,
        "node_id": seen.node_id,
        "manager": seen.manager,
        "joins": seen.joins,
        "error": seen.error,
    });
    if seen.manager {
        match super::store::read(&c.engine).await {
            Ok(r) => v["rollout"] = json!(r),
            Err(e) => v["rollout_error"] = json!(e.to_string()),
        }
        match swarm::get(&c.engine, "/nodes").await {
            Ok(nodes) => {
                let list: Vec<Value> = nodes.as_array().map(|a| a.iter().map(swarm::node_view).collect()).unwrap_or_default();
                v["nodes"] = json!(list);
            }
            Err(e) => v["nodes_error"] = json!(e.to_string()),
        }
    }
    Ok(v)
}

/// `GET /v1/cluster/token/{role}`: the swarm's join token, from a manager.
pub async fn token(c: Option<&Cluster>, role: &str) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    if role != "worker" && role != "manager" {
        return Err(ApiError::new(Kind::BadRequest, format!("{role:?} is not a swarm role (worker or manager)")));
    }
    if !c.seen().manager {
        return Err(ApiError::new(Kind::Unavailable, "this node is not a swarm manager (yet); ask another manager"));
    }
    let t = swarm::token(&c.engine, role).await.map_err(engine_error)?;
    if t.is_empty() {
        return Err(ApiError::new(Kind::Unavailable, "the engine gave no join token"));
    }
    Ok(json!({"role": role, "token": t}))
}

/// The body's `key` as a short name (a node id, a version, a slot).
pub fn name_field(v: &Value, k: &str) -> ApiResult<String> {
    v[k].as_str()
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ".-_+".contains(ch)))
        .map(str::to_string)
        .ok_or_else(|| ApiError::new(Kind::BadRequest, format!("{k}: missing, or not a short name")))
}

pub fn json_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(Kind::BadRequest, format!("the body is not JSON: {e}")))
}

/// Who calls a route that acts for a node.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub peer: SocketAddr,
    /// An admin may act for any node (maintenance by hand); a node only for
    /// itself.
    pub admin: bool,
}

/// The swarm node `id`, if the caller may act for it: an admin, or the node
/// itself (the request comes from its swarm address).
pub async fn caller_node(c: &Cluster, caller: Caller, id: &str) -> ApiResult<Value> {
    let node = swarm::get(&c.engine, &format!("/nodes/{id}")).await.map_err(engine_error)?;
    if caller.admin {
        return Ok(node);
    }
    let peer = caller.peer;
    let addr: Option<IpAddr> = node["Status"]["Addr"].as_str().and_then(|a| a.parse().ok());
    if addr != Some(canonical(peer.ip())) {
        return Err(ApiError::new(
            Kind::Forbidden,
            format!("node {id} is at {} in the swarm, but this request comes from {}", addr.map_or("?".into(), |a| a.to_string()), peer.ip()),
        ));
    }
    Ok(node)
}

/// `POST /v1/cluster/report`: a worker's agent asks a manager to label its
/// node, and learns how the swarm sees it (state, availability).
pub async fn report(c: Option<&Cluster>, caller: Caller, body: &[u8]) -> ApiResult<Value> {
    let c = c.ok_or_else(no_cluster)?;
    let v = json_body(body)?;
    let (id, version, slot) = (name_field(&v, "node_id")?, name_field(&v, "version")?, name_field(&v, "slot")?);
    let node = caller_node(c, caller, &id).await?;
    let changed = swarm::label_node(&c.engine, &id, &[("cairn.version", &version), ("cairn.slot", &slot)]).await.map_err(engine_error)?;
    Ok(json!({"node_id": id, "changed": changed, "state": node["Status"]["State"], "availability": node["Spec"]["Availability"]}))
}

/// An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_address_is_its_ipv4() {
        assert_eq!(canonical("::ffff:10.77.0.12".parse().unwrap()), "10.77.0.12".parse::<IpAddr>().unwrap());
        assert_eq!(canonical("fd00::1".parse().unwrap()), "fd00::1".parse::<IpAddr>().unwrap());
    }
}
