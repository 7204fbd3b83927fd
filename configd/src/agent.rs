//! The node agent's files from `[api]`: what sysagent reads, and whose
//! server certificate's presence makes cairn-init start it.

use cairn_model::config::Api;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const DIR: &str = "/var/lib/cairn/sysagent";

/// Writes (or, with the agent off, removes) the agent's files. Returns
/// (level, message) notes.
pub fn write(api: &Api, dir: &Path) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    let server = dir.join("server.pem");
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
    notes.push(("info".into(), format!("config: the node agent listens on {listen} (mutual TLS)")));
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
        write(&api, &dir);
        assert_eq!(std::fs::read_to_string(dir.join("server.pem")).unwrap(), "CERT\n");
        assert_eq!(std::fs::read_to_string(dir.join("deny")).unwrap(), "ab\ncd\n");
        assert_eq!(std::fs::read_to_string(dir.join("listen")).unwrap(), "0.0.0.0:9440\n");
        assert_eq!(std::fs::metadata(dir.join("server.key")).unwrap().permissions().mode() & 0o777, 0o600);
        api.enabled = false;
        write(&api, &dir);
        assert!(!dir.join("server.pem").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
