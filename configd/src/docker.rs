//! The Docker engine's files from `[docker]` (and `[cluster]`): the marker
//! whose presence makes cairn-init start dockerd, and dockerd's
//! `daemon.json`. PID 1 reads no JSON: it only looks for the marker and
//! hands dockerd the file's path.

use cairn_model::config::Docker;
use std::path::Path;

pub const DIR: &str = "/var/lib/cairn/docker";
/// Its presence starts dockerd at boot.
const MARKER: &str = "enabled";
const DAEMON_JSON: &str = "daemon.json";

/// Where dockerd keeps its trust key: its default, /etc/docker, is on the
/// read-only root, and 20.10 has this as a config-file key only (no flag).
const KEY_PATH: &str = "/var/lib/docker/key.json";

/// dockerd's `daemon.json` for the section: the pools the config gives and
/// the key's place; nothing that clashes with the flags cairn-init passes.
pub fn daemon_json(d: &Docker) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("deprecated-key-path".into(), KEY_PATH.into());
    if !d.address_pools.is_empty() {
        let pools: Vec<serde_json::Value> = d
            .address_pools
            .iter()
            .map(|p| serde_json::json!({ "base": format!("{}/{}", p.addr, p.prefix), "size": d.pool_size }))
            .collect();
        doc.insert("default-address-pools".into(), pools.into());
    }
    format!("{}\n", serde_json::Value::Object(doc))
}

/// Writes (or, with the engine off, removes) the files. Returns (level,
/// message) notes. What changes here takes effect at the next boot.
pub fn write(d: &Docker, dir: &Path) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    let marker = dir.join(MARKER);
    if !d.enabled {
        match std::fs::remove_file(&marker) {
            Ok(()) => notes.push(("info".into(), "config: the Docker engine is off from the next boot".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push(("error".into(), format!("config: cannot remove {}: {e}", marker.display()))),
        }
        return notes;
    }
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| crate::store::write_durable(&dir.join(DAEMON_JSON), daemon_json(d).as_bytes()))
        // Last: its presence is what starts dockerd.
        .and_then(|()| crate::store::write_durable(&marker, b"1\n"));
    match written {
        Ok(()) => notes.push(("info".into(), "config: the Docker engine is on (dockerd on /run/docker.sock)".into())),
        Err(e) => {
            let _ = std::fs::remove_file(&marker);
            notes.push(("error".into(), format!("config: cannot write the Docker engine's files in {}: {e}; dockerd stays off", dir.display())));
        }
    }
    notes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_model::config::Cidr;

    #[test]
    fn pools_become_daemon_json_and_the_marker_follows_enabled() {
        let dir = std::env::temp_dir().join(format!("cairn-docker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut d = Docker { enabled: true, address_pools: vec![Cidr { addr: "10.20.0.0".parse().unwrap(), prefix: 16 }], pool_size: 24 };
        write(&d, &dir);
        assert_eq!(
            std::fs::read_to_string(dir.join("daemon.json")).unwrap(),
            "{\"default-address-pools\":[{\"base\":\"10.20.0.0/16\",\"size\":24}],\"deprecated-key-path\":\"/var/lib/docker/key.json\"}\n"
        );
        assert!(dir.join("enabled").exists());
        assert_eq!(daemon_json(&Docker::default()), "{\"deprecated-key-path\":\"/var/lib/docker/key.json\"}\n");
        d.enabled = false;
        let notes = write(&d, &dir);
        assert!(!dir.join("enabled").exists());
        assert_eq!(notes[0].1, "config: the Docker engine is off from the next boot");
        assert!(write(&d, &dir).is_empty(), "off and already off: nothing to say");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
