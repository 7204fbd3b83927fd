//! The node agent's files from `[api]`: what sysagent reads, and whose
//! server certificate's presence makes cairn-init start it.

use cairn_model::config::{Api, MachineConfig, Update, UpdatePolicy};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const DIR: &str = "/var/lib/cairn/sysagent";

/// What the agent reads of `[cluster]` (`cluster.json`): the role, the
/// managers, the address to advertise (given, else the first static address
/// in the network config) and the agent port the managers' agents use.
pub fn cluster_json(c: &MachineConfig) -> Option<String> {
    let cl = c.cluster.as_ref()?;
    let first_static = || {
        c.network.links.iter().flat_map(|l| l.addressing.addresses.iter()).chain(c.network.vlans.iter().flat_map(|v| v.addressing.addresses.iter())).map(|a| a.addr).next()
    };
    let advertise = cl.advertise_address.or_else(first_static);
    let port = c.api.listen.map_or(9440, |l| l.port());
    let v = serde_json::json!({
        "role": match cl.role { cairn_model::config::Role::Manager => "manager", cairn_model::config::Role::Worker => "worker" },
        "managers": cl.managers,
        "advertise": advertise.map(|a| a.to_string()),
        "agent_port": port,
        "token_file": cl.token_file,
        "max_parallel": cl.max_parallel,
    });
    Some(v.to_string())
}

/// What the agent reads of `[update]` (`update.json`): whether it updates
/// the node by itself, when it may, and how often it asks the repository.
/// The agent reads it before every check, so a change applies live.
pub fn update_json(u: &Update) -> String {
    let window = u.window.as_ref().map(|w| {
        serde_json::json!({"days": w.days, "start_minute": w.start_minute, "length_minutes": w.length.as_secs() / 60})
    });
    serde_json::json!({
        "policy": match u.policy { UpdatePolicy::Auto => "auto", UpdatePolicy::Manual => "manual" },
        "window": window,
        "check_minutes": u.check_every.as_secs() / 60,
    })
    .to_string()
}

/// Writes `update.json` beside the agent's other files (nothing when the
/// agent is off: there is no one to read it).
pub fn write_update(u: &Update, dir: &Path) -> Vec<(String, String)> {
    if !dir.join("server.pem").exists() {
        return Vec::new();
    }
    let path = dir.join("update.json");
    match crate::store::write_durable(&path, update_json(u).as_bytes()) {
        Ok(()) if u.policy == UpdatePolicy::Auto => {
            vec![("info".into(), "config: the node agent updates this machine by itself (update.policy = \"auto\")".into())]
        }
        Ok(()) => Vec::new(),
        Err(e) => vec![("error".into(), format!("config: cannot write {}: {e}; automatic updates keep their last setting", path.display()))],
    }
}

/// Writes (or, with the agent off, removes) the agent's files. Returns
/// (level, message) notes.
pub fn write(api: &Api, cluster: Option<&str>, dir: &Path) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    let server = dir.join("server.pem");
    let cluster_file = dir.join("cluster.json");
    let (Some(ca), Some(cert), Some(key), true) = (&api.ca, &api.certificate, &api.key, api.enabled) else {
        // No agent: without its certificate cairn-init does not start it.
        match std::fs::remove_file(&server) {
            Ok(()) => notes.push(("info".into(), "config: the node agent is off ([api] gives no certificate or enabled = false)".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push(("error".into(), format!("config: cannot remove {}: {e}", server.display()))),
        }
        return notes;
    };
    let listen = api.listen.map_or_else(|| "0.0.0.0:9440".to_string(), |l| l.to_string());
    let files: [(&str, &str, u32); 5] = [
        ("ca.pem", ca, 0o644),
        ("server.key", key, 0o600),
        ("deny", &api.deny_serials.join("\n"), 0o644),
        ("listen", &listen, 0o644),
        // Last: its presence is what starts the agent.
        ("server.pem", cert, 0o644),
    ];
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))) {
        notes.push(("error".into(), format!("config: cannot create {}: {e}; the node agent stays off", dir.display())));
        return notes;
    }
    for (name, text, mode) in files {
        let path = dir.join(name);
        let mut bytes = text.as_bytes().to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        let written = crate::store::write_durable(&path, &bytes)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)));
        if let Err(e) = written {
            notes.push(("error".into(), format!("config: cannot write {}: {e}; the node agent stays off", path.display())));
            let _ = std::fs::remove_file(&server);
            return notes;
        }
    }
    // Before server.pem would be better, but the agent reads it at start and
    // cairn-init starts the agent only after this program is done.
    let cluster_written = match cluster {
        Some(text) => crate::store::write_durable(&cluster_file, text.as_bytes()),
        None => match std::fs::remove_file(&cluster_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = cluster_written {
        notes.push(("error".into(), format!("config: {}: {e}; the node's cluster membership is not what the config says", cluster_file.display())));
    }
    notes.push(("info".into(), format!("config: the node agent listens on {listen} (mutual TLS)")));
    if cluster.is_some() {
        notes.push(("info".into(), "config: the node agent joins the cluster of [cluster]".into()));
    }
    notes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_appear_with_the_key_private_and_go_when_the_agent_is_off() {
        let dir = std::env::temp_dir().join(format!("cairn-agent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut api = Api {
            enabled: true,
            listen: None,
            ca: Some("CA".into()),
            certificate: Some("CERT".into()),
            key: Some("KEY".into()),
            deny_serials: vec!["ab".into(), "cd".into()],
        };
        write(&api, Some("{}"), &dir);
        assert_eq!(std::fs::read_to_string(dir.join("server.pem")).unwrap(), "CERT\n");
        assert_eq!(std::fs::read_to_string(dir.join("cluster.json")).unwrap(), "{}");
        assert_eq!(std::fs::read_to_string(dir.join("deny")).unwrap(), "ab\ncd\n");
        assert_eq!(std::fs::read_to_string(dir.join("listen")).unwrap(), "0.0.0.0:9440\n");
        assert_eq!(std::fs::metadata(dir.join("server.key")).unwrap().permissions().mode() & 0o777, 0o600);
        write(&api, None, &dir);
        assert!(!dir.join("cluster.json").exists(), "no [cluster], no membership");
        api.enabled = false;
        write(&api, None, &dir);
        assert!(!dir.join("server.pem").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_update_file_carries_the_policy_the_window_and_the_check_interval() {
        let text = "version = 1\n[update]\npolicy = \"auto\"\ncheck_minutes = 5\n[update.window]\ndays = [\"sat\"]\nstart = \"02:30\"\nlength_minutes = 90\n";
        let c = cairn_model::config::parse(text, "m.toml").unwrap();
        let v: serde_json::Value = serde_json::from_str(&update_json(&c.update)).unwrap();
        assert_eq!(v["policy"], "auto");
        assert_eq!(v["check_minutes"], 5);
        assert_eq!(v["window"]["days"], serde_json::json!([5]));
        assert_eq!(v["window"]["start_minute"], 150);
        assert_eq!(v["window"]["length_minutes"], 90);
        let c = cairn_model::config::parse("version = 1\n", "m.toml").unwrap();
        let v: serde_json::Value = serde_json::from_str(&update_json(&c.update)).unwrap();
        assert_eq!((v["policy"].as_str(), v["window"].is_null(), v["check_minutes"].as_u64()), (Some("manual"), true, Some(60)));
    }

    #[test]
    fn the_cluster_file_advertises_the_first_static_address_unless_told() {
        let text = "version = 1\n[[network.links]]\nname = \"eth0\"\naddresses = [\"10.77.0.12/24\"]\n[cluster]\nrole = \"worker\"\nmanagers = [\"10.77.0.11:2377\"]\n";
        let c = cairn_model::config::parse(text, "m.toml").unwrap();
        let v: serde_json::Value = serde_json::from_str(&cluster_json(&c).unwrap()).unwrap();
        assert_eq!(v["advertise"], "10.77.0.12");
        assert_eq!(v["role"], "worker");
        assert_eq!(v["managers"][0], "10.77.0.11:2377");
        assert_eq!(v["agent_port"], 9440);
        let c = cairn_model::config::parse(&format!("{text}advertise_address = \"10.77.0.99\"\n"), "m.toml").unwrap();
        let v: serde_json::Value = serde_json::from_str(&cluster_json(&c).unwrap()).unwrap();
        assert_eq!(v["advertise"], "10.77.0.99");
        assert!(cluster_json(&cairn_model::config::parse("version = 1\n", "m.toml").unwrap()).is_none());
    }
}
