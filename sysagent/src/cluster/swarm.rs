//! The Docker engine's swarm calls the agent makes, at API 1.41. Swarm
//! objects carry a version, and every write must name the version it read;
//! a stale one fails with "update out of sequence", and is read and tried
//! again.

use crate::client::{Answer, ClientError, Engine};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("docker {call}: {status} {message}")]
    Engine { call: String, status: u16, message: String },
    #[error("docker {0}: still out of sequence after {1} tries")]
    Contended(String, u32),
    /// Not the engine: a token file, another node's agent.
    #[error("{0}")]
    Cluster(String),
}

impl SwarmError {
    /// The engine refused a write made with a stale object version.
    pub fn out_of_sequence(&self) -> bool {
        matches!(self, SwarmError::Engine { message, .. } if message.contains("out of sequence"))
    }
}

/// The default address pool for overlay networks: swarmkit's own default
/// (10.0.0.0/8) would take addresses a lab or data centre already uses.
pub const ADDRESS_POOL: &str = "10.240.0.0/16";
/// How often a write is retried after "update out of sequence".
const CAS_TRIES: u32 = 20;

fn ok(call: &str, a: Answer) -> Result<Value, SwarmError> {
    if (200..300).contains(&a.status) {
        Ok(a.json())
    } else {
        Err(SwarmError::Engine { call: call.to_string(), status: a.status, message: a.message() })
    }
}

pub async fn get(engine: &Engine, path: &str) -> Result<Value, SwarmError> {
    ok(&format!("GET {path}"), engine.call("GET", path, None).await?)
}

pub async fn post(engine: &Engine, path: &str, body: &Value) -> Result<Value, SwarmError> {
    ok(&format!("POST {path}"), engine.call("POST", path, Some(body)).await?)
}

/// `GET /info`'s swarm part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Local {
    pub state: String,
    pub node_id: String,
    pub control: bool,
    pub error: String,
}

pub async fn local(engine: &Engine) -> Result<Local, SwarmError> {
    let info = get(engine, "/info").await?;
    let s = &info["Swarm"];
    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    Ok(Local {
        state: text("LocalNodeState"),
        node_id: text("NodeID"),
        control: s["ControlAvailable"].as_bool().unwrap_or(false),
        error: text("Error"),
    })
}

fn listen(advertise: Option<IpAddr>) -> String {
    // Bound to the advertised address when there is one, so the swarm port
    // is not offered on every link.
    match advertise {
        Some(IpAddr::V6(a)) => format!("[{a}]:2377"),
        Some(a) => format!("{a}:2377"),
        None => "0.0.0.0:2377".into(),
    }
}

pub async fn init(engine: &Engine, advertise: Option<IpAddr>) -> Result<String, SwarmError> {
    let mut body = json!({
        "ListenAddr": listen(advertise),
        "DefaultAddrPool": [ADDRESS_POOL],
        "SubnetSize": 24,
        "Spec": {"Orchestration": {"TaskHistoryRetentionLimit": 5}},
    });
    if let Some(a) = advertise {
        body["AdvertiseAddr"] = json!(a.to_string());
        body["DataPathAddr"] = json!(a.to_string());
    }
    let v = post(engine, "/swarm/init", &body).await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// Joins; the engine may answer before the join completes ("will continue in
/// the background"), so the caller polls `local` afterwards.
pub async fn join(engine: &Engine, advertise: Option<IpAddr>, managers: &[String], token: &str) -> Result<(), SwarmError> {
    let mut body = json!({"ListenAddr": listen(advertise), "RemoteAddrs": managers, "JoinToken": token});
    if let Some(a) = advertise {
        body["AdvertiseAddr"] = json!(a.to_string());
        body["DataPathAddr"] = json!(a.to_string());
    }
    // The engine waits up to 20 s for the join itself.
    let mut slow = engine.clone();
    slow.timeout = Duration::from_secs(60);
    match post(&slow, "/swarm/join", &body).await {
        Err(SwarmError::Engine { message, .. }) if message.contains("continue in the background") => Ok(()),
        r => r.map(|_| ()),
    }
}

/// The join token for `role` (`worker` or `manager`): managers only.
pub async fn token(engine: &Engine, role: &str) -> Result<String, SwarmError> {
    let swarm = get(engine, "/swarm").await?;
    let key = if role == "manager" { "Manager" } else { "Worker" };
    Ok(swarm["JoinTokens"][key].as_str().unwrap_or_default().to_string())
}

/// Reads object `path` (`/nodes/ID`, `/configs/ID`), lets `change` edit its
/// spec, and writes it back at the version read; on "out of sequence" reads
/// again. `change` returning false means nothing to write.
pub async fn update<F>(engine: &Engine, path: &str, mut change: F) -> Result<bool, SwarmError>
where
    F: FnMut(&mut Value) -> bool,
{
    for _ in 0..CAS_TRIES {
        let obj = get(engine, path).await?;
        let version = obj["Version"]["Index"].as_u64().unwrap_or(0);
        let mut spec = obj["Spec"].clone();
        if !change(&mut spec) {
            return Ok(false);
        }
        match post(engine, &format!("{path}/update?version={version}"), &spec).await {
            Ok(_) => return Ok(true),
            Err(e) if e.out_of_sequence() => {
                // Another writer won this round; a little jitter spreads the next.
                let jitter = u64::from(std::process::id() % 7) + (version % 13);
                tokio::time::sleep(Duration::from_millis(20 + jitter * 5)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(SwarmError::Contended(format!("POST {path}/update"), CAS_TRIES))
}

/// Sets `labels` on a node's spec (keeping every other label), if they differ.
pub async fn label_node(engine: &Engine, id: &str, labels: &[(&str, &str)]) -> Result<bool, SwarmError> {
    update(engine, &format!("/nodes/{id}"), |spec| {
        let current = spec["Labels"].as_object().cloned().unwrap_or_default();
        let mut changed = false;
        let mut next = current;
        for (k, v) in labels {
            if next.get(*k).and_then(Value::as_str) != Some(v) {
                next.insert((*k).to_string(), json!(v));
                changed = true;
            }
        }
        spec["Labels"] = Value::Object(next);
        changed
    })
    .await
}

/// One node as status shows it.
pub fn node_view(n: &Value) -> Value {
    let labels = n["Spec"]["Labels"].as_object().cloned().unwrap_or_default();
    let cairn: serde_json::Map<String, Value> = labels.into_iter().filter(|(k, _)| k.starts_with("cairn.")).collect();
    json!({
        "id": n["ID"],
        "hostname": n["Description"]["Hostname"],
        "role": n["Spec"]["Role"],
        "availability": n["Spec"]["Availability"],
        "state": n["Status"]["State"],
        "addr": n["Status"]["Addr"],
        "leader": n["ManagerStatus"]["Leader"].as_bool().unwrap_or(false),
        "reachability": n["ManagerStatus"]["Reachability"],
        "labels": cairn,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_write_is_told_apart_from_other_refusals() {
        let stale = SwarmError::Engine {
            call: "POST /nodes/x/update".into(),
            status: 500,
            message: "rpc error: code = Unknown desc = update out of sequence".into(),
        };
        assert!(stale.out_of_sequence());
        let other = SwarmError::Engine { call: "x".into(), status: 503, message: "This node is not a swarm manager.".into() };
        assert!(!other.out_of_sequence());
    }

    #[test]
    fn the_swarm_port_binds_to_the_advertised_address() {
        assert_eq!(listen(Some("10.77.0.11".parse().unwrap())), "10.77.0.11:2377");
        assert_eq!(listen(Some("fd00::1".parse().unwrap())), "[fd00::1]:2377");
        assert_eq!(listen(None), "0.0.0.0:2377");
    }

    #[test]
    fn status_shows_only_cairn_labels() {
        let n = json!({"ID": "abc", "Spec": {"Role": "worker", "Availability": "active", "Labels": {"cairn.version": "0.2.0", "team": "x"}},
                       "Status": {"State": "ready", "Addr": "10.77.0.12"}, "Description": {"Hostname": "w1"}});
        let v = node_view(&n);
        assert_eq!(v["labels"], json!({"cairn.version": "0.2.0"}));
        assert_eq!(v["state"], "ready");
        assert_eq!(v["leader"], false);
    }
}
