//! The Docker engine: dockerd as a supervised host process on init's
//! containerd, where the machine config enables it. cairn-config leaves a
//! marker on STATE (configd/src/docker.rs); PID 1 reads nothing else of the
//! config here, and hands dockerd the path of the `daemon.json` it wrote.

use crate::cmdline::Settings;
use crate::supervisor::{self, Condition};
use std::path::Path;
use std::time::Duration;
use tracing::{error, warn};

const BIN: &str = "/usr/sbin/dockerd";
/// cairn-config's marker: present when `[docker]` or `[cluster]` turns the engine on.
const ENABLED: &str = "/var/lib/cairn/docker/enabled";
const DAEMON_JSON: &str = "/var/lib/cairn/docker/daemon.json";
/// The modules dockerd needs, from kernel-config/required.txt (`docker` rows).
const MODULES: &str = "/etc/cairn/modules.docker";
/// The socket sysagent and the tools use; /var/run links to /run, so the
/// stock client's /var/run/docker.sock is the same file.
pub const SOCKET: &str = "/run/docker.sock";
const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// dockerd's spec, after loading its modules; None where the engine is off.
pub(crate) fn spec(release: &str, settings: &Settings) -> Option<supervisor::Spec> {
    if !Path::new(ENABLED).exists() || settings.disable.iter().any(|d| d == "docker") {
        return None;
    }
    if !Path::new(BIN).exists() {
        // Still supervised, so the verdict counts what is missing.
        error!("the machine config enables the Docker engine, but this image has no {BIN}");
    }
    if settings.disable.iter().any(|d| d == "containerd") {
        error!("the Docker engine runs on containerd, which cairn.disable=containerd turns off: dockerd waits for it");
    }
    match crate::modules::read_list(Path::new(MODULES)) {
        Ok(names) => crate::boot::load_module_names(release, &names),
        Err(e) => warn!("cannot read {MODULES}: {e}; dockerd may lack iptables and bridge support"),
    }
    var_run();
    Some(supervisor::Spec {
        service: true,
        capture: true,
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
        // dockerd stops its containers first (--shutdown-timeout), then exits.
        stop_timeout: Duration::from_secs(20),
        // containerd's socket appears some time after it starts: dockerd,
        // given --containerd, waits for it (up to 60 s) rather than starting
        // a containerd of its own; past that it exits and is restarted.
        depends: vec![("containerd".into(), Condition::Started)],
        ..supervisor::Spec::process("dockerd", argv())
    })
}

/// cairn-config writes daemon.json before the marker, so it is there.
fn argv() -> Vec<String> {
    [
        BIN,
        "--containerd",
        CONTAINERD_SOCKET,
        "--data-root",
        "/var/lib/docker",
        "--exec-root",
        "/run/docker",
        "--pidfile",
        "/run/docker.pid",
        "--host",
        "unix:///run/docker.sock",
        // There is no docker group: the socket is root's (0660).
        "--group",
        "root",
        "--shutdown-timeout",
        "10",
        "--config-file",
        DAEMON_JSON,
    ]
    .map(String::from)
    .to_vec()
}

/// /var is STATE: the FHS link /var/run -> /run is made there once.
fn var_run() {
    match std::fs::symlink_metadata("/var/run") {
        Ok(m) if m.file_type().is_symlink() => {}
        Ok(_) => warn!("/var/run on STATE is not a link to /run; the docker client needs DOCKER_HOST=unix://{SOCKET}"),
        Err(_) => {
            if let Err(e) = std::os::unix::fs::symlink("../run", "/var/run") {
                warn!("cannot link /var/run to /run: {e}; the docker client needs DOCKER_HOST=unix://{SOCKET}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerd_uses_inits_containerd_and_cairn_configs_file() {
        let a = argv();
        let flag = |name: &str| a.iter().position(|x| x == name).map(|i| a[i + 1].as_str());
        assert_eq!(flag("--containerd"), Some(CONTAINERD_SOCKET));
        assert_eq!(flag("--host"), Some("unix:///run/docker.sock"));
        assert_eq!(flag("--data-root"), Some("/var/lib/docker"));
        assert_eq!(flag("--config-file"), Some(DAEMON_JSON));
    }
}
