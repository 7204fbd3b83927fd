//! The rollout object in the swarm's store: found or made, then changed only
//! by compare-and-swap on its version, so managers' agents answering at once
//! can never hand out more slots than there are.

use super::rollout::{Refusal, Rollout, OBJECT};
use super::swarm::{self, SwarmError};
use crate::client::Engine;
use serde_json::{json, Value};

/// `{"name":["cairn.rollout"]}`, URL-encoded.
const BY_NAME: &str = "/configs?filters=%7B%22name%22%3A%5B%22cairn.rollout%22%5D%7D";
/// The object's data: fixed (a swarm config's data cannot change), `{}`.
const DATA_B64: &str = "e30=";

/// The object's id, once found: it never changes while the swarm lives, so
/// a burst of slot requests costs no lookups.
static KNOWN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

async fn object_id(engine: &Engine) -> Result<String, SwarmError> {
    if let Some(id) = KNOWN.lock().ok().and_then(|k| k.clone()) {
        return Ok(id);
    }
    let id = find_or_make(engine).await?;
    if let Ok(mut k) = KNOWN.lock() {
        *k = Some(id.clone());
    }
    Ok(id)
}

/// Forgets the id (the object was removed by hand: 404).
fn forget() {
    if let Ok(mut k) = KNOWN.lock() {
        *k = None;
    }
}

async fn find_or_make(engine: &Engine) -> Result<String, SwarmError> {
    for _ in 0..3 {
        let list = swarm::get(engine, BY_NAME).await?;
        // The filter matches prefixes too.
        let found = list.as_array().into_iter().flatten().find(|c| c["Spec"]["Name"] == OBJECT);
        if let Some(id) = found.and_then(|c| c["ID"].as_str()) {
            return Ok(id.to_string());
        }
        let made = swarm::post(engine, "/configs/create", &json!({"Name": OBJECT, "Labels": {}, "Data": DATA_B64})).await;
        match made {
            Ok(v) => {
                if let Some(id) = v["ID"].as_str() {
                    return Ok(id.to_string());
                }
            }
            // Another manager made it first: read it.
            Err(SwarmError::Engine { status: 409, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Err(SwarmError::Cluster(format!("cannot find or make the swarm config {OBJECT}")))
}

pub async fn read(engine: &Engine) -> Result<Rollout, SwarmError> {
    let id = object_id(engine).await?;
    let obj = swarm::get(engine, &format!("/configs/{id}")).await.inspect_err(|e| {
        if matches!(e, SwarmError::Engine { status: 404, .. }) {
            forget();
        }
    })?;
    Ok(Rollout::from_labels(&obj["Spec"]["Labels"].as_object().cloned().unwrap_or_default()))
}

/// Applies `change` to the stored rollout at its current version, again on
/// every lost race. The outer error is the store; the inner one is the
/// rules' refusal.
pub async fn change<F>(engine: &Engine, mut change: F) -> Result<Result<Rollout, Refusal>, SwarmError>
where
    F: FnMut(&mut Rollout) -> Result<bool, Refusal>,
{
    let id = object_id(engine).await?;
    let mut outcome: Result<Rollout, Refusal> = Ok(Rollout::default());
    let written = swarm::update(engine, &format!("/configs/{id}"), |spec| {
        let mut labels = spec["Labels"].as_object().cloned().unwrap_or_default();
        let mut r = Rollout::from_labels(&labels);
        match change(&mut r) {
            Ok(changed) => {
                r.to_labels(&mut labels);
                spec["Labels"] = Value::Object(labels);
                outcome = Ok(r);
                changed
            }
            Err(refusal) => {
                outcome = Err(refusal);
                false
            }
        }
    })
    .await;
    if let Err(SwarmError::Engine { status: 404, .. }) = &written {
        forget();
    }
    written?;
    Ok(outcome)
}
