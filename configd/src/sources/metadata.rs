//! The cloud metadata services, reached at their link-local addresses once
//! the first link has DHCP: EC2 (IMDSv2 token, v1 when the token call is not
//! known, stop on 403), GCE (`Metadata-Flavor: Google`), Azure (IMDS user
//! data; the WireServer's "ready" report, without which Azure marks the VM
//! failed) and OpenStack.

use super::http::{self, Answer};
use super::{check_user_data, failed, Found, SourceError};

/// The metadata address, overridable so tests can run a server elsewhere.
pub struct Endpoints {
    pub metadata: String,
    pub wireserver: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints { metadata: "http://169.254.169.254".into(), wireserver: "http://168.63.129.16".into() }
    }
}

/// The platform's metadata source, if it has one.
pub fn fetch(platform: &str, at: &Endpoints) -> Result<Option<Found>, SourceError> {
    match platform {
        "ec2" => ec2(at),
        "gce" => gce(at),
        "azure" => azure(at),
        "openstack" => openstack(at),
        _ => Ok(None),
    }
}

/// Whether the platform has a metadata service to ask.
pub fn exists(platform: &str) -> bool {
    matches!(platform, "ec2" | "gce" | "azure" | "openstack")
}

fn get_text(source: &'static str, url: &str, headers: &[(&str, &str)]) -> Result<Option<String>, SourceError> {
    match http::request("GET", url, headers) {
        Answer::Status(200, body, _) => http::text(body, url).map(Some).map_err(|e| failed(source, e)),
        Answer::Status(404, _, _) => Ok(None),
        Answer::Status(s, _, _) => Err(failed(source, format!("GET {url}: status {s}"))),
        Answer::Unreachable(why) => Err(failed(source, why)),
    }
}

fn found(source: &'static str, text: Option<String>, instance_id: Option<String>) -> Result<Option<Found>, SourceError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else { return Ok(None) };
    check_user_data(source, &text)?;
    Ok(Some(Found { source, text, instance_id: instance_id.map(|s| s.trim().to_string()) }))
}

fn ec2(at: &Endpoints) -> Result<Option<Found>, SourceError> {
    let token_url = format!("{}/latest/api/token", at.metadata);
    let token = match http::request("PUT", &token_url, &[("X-aws-ec2-metadata-token-ttl-seconds", "300")]) {
        Answer::Status(200, body, _) => Some(http::text(body, "the IMDSv2 token").map_err(|e| failed("ec2", e))?.trim().to_string()),
        // An IMDS without v2 does not know the call: v1 it is.
        Answer::Status(404 | 405, _, _) => None,
        Answer::Status(403, _, _) => {
            return Err(failed("ec2", "IMDSv2 refused the token (403): the metadata service is turned off for this instance"))
        }
        Answer::Status(s, _, _) => return Err(failed("ec2", format!("PUT {token_url}: status {s}"))),
        Answer::Unreachable(why) => return Err(failed("ec2", why)),
    };
    let header = token.as_deref().map(|t| ("X-aws-ec2-metadata-token", t));
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    let id = get_text("ec2", &format!("{}/latest/meta-data/instance-id", at.metadata), &headers)?;
    let data = get_text("ec2", &format!("{}/latest/user-data", at.metadata), &headers)?;
    found("ec2", data, id)
}

fn gce(at: &Endpoints) -> Result<Option<Found>, SourceError> {
    let h = [("Metadata-Flavor", "Google")];
    let base = format!("{}/computeMetadata/v1/instance", at.metadata);
    let id = get_text("gce", &format!("{base}/id"), &h)?;
    let data = get_text("gce", &format!("{base}/attributes/user-data"), &h)?;
    found("gce", data, id)
}

fn azure(at: &Endpoints) -> Result<Option<Found>, SourceError> {
    let h = [("Metadata", "true")];
    let base = format!("{}/metadata/instance/compute", at.metadata);
    let id = get_text("azure", &format!("{base}/vmId?api-version=2021-01-01&format=text"), &h)?;
    let data = get_text("azure", &format!("{base}/userData?api-version=2021-01-01&format=text"), &h)?;
    let data = match data {
        Some(b64) if !b64.trim().is_empty() => {
            let bytes = base64_decode(b64.trim()).ok_or_else(|| failed("azure", "userData is not base64"))?;
            Some(http::text(bytes, "Azure's userData").map_err(|e| failed("azure", e))?)
        }
        _ => None,
    };
    found("azure", data, id)
}

fn openstack(at: &Endpoints) -> Result<Option<Found>, SourceError> {
    let base = format!("{}/openstack/latest", at.metadata);
    let meta = get_text("openstack", &format!("{base}/meta_data.json"), &[])?;
    let id = meta.and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok()?.get("uuid")?.as_str().map(str::to_string));
    let data = get_text("openstack", &format!("{base}/user_data"), &[])?;
    found("openstack", data, id)
}

/// Tells Azure's WireServer the machine is ready: its goal state names the
/// container and instance, the health report answers for them.
pub fn azure_ready(at: &Endpoints) -> Result<(), String> {
    let v = [("x-ms-version", "2012-11-30")];
    let goal = match http::request("GET", &format!("{}/machine/?comp=goalstate", at.wireserver), &v) {
        Answer::Status(200, body, _) => http::text(body, "the goal state")?,
        Answer::Status(s, _, _) => return Err(format!("the WireServer's goal state: status {s}")),
        Answer::Unreachable(why) => return Err(why),
    };
    let tag = |name: &str| -> Result<String, String> {
        let open = format!("<{name}>");
        let start = goal.find(&open).ok_or_else(|| format!("the goal state has no {name}"))? + open.len();
        let end = goal[start..].find('<').ok_or_else(|| format!("the goal state's {name} is not closed"))?;
        Ok(goal[start..start + end].trim().to_string())
    };
    let (incarnation, container, instance) = (tag("Incarnation")?, tag("ContainerId")?, tag("InstanceId")?);
    let report = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><GoalStateIncarnation>{incarnation}</GoalStateIncarnation><Container><ContainerId>{container}</ContainerId><RoleInstanceList><Role><InstanceId>{instance}</InstanceId><Health><State>Ready</State></Health></Role></RoleInstanceList></Container></Health>"
    );
    let url = format!("{}/machine/?comp=health", at.wireserver);
    // One try only: a report that may have arrived is not sent twice.
    let resp = http::agent(std::time::Duration::from_secs(5))
        .post(&url)
        .header("x-ms-version", "2012-11-30")
        .header("x-ms-agent-name", "cairn")
        .header("Content-Type", "text/xml;charset=utf-8")
        .send(report.as_bytes())
        .map_err(|e| format!("POST {url}: {e}"))?;
    match resp.status().as_u16() {
        200 | 201 | 202 => Ok(()),
        s => Err(format!("POST {url}: status {s}")),
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = A.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
