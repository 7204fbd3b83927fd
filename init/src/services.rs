//! System services: specs read from the verified root (and from STATE, for
//! what an operator adds), turned into OCI bundles under /run and into
//! supervised `crun run` processes.

use crate::health::Probe;
use crate::supervisor::{self, Backoff, Check, Condition, HealthSpec, RestartPolicy, Spec};
use cairn_model::service::{self as model, ServiceSpec};
use std::path::Path;
use tracing::{error, info, warn};

/// Where specs are read from, in order; a later file with the same name wins.
pub const SPEC_DIRS: &[&str] = &["/usr/lib/cairn/services", "/var/lib/cairn/services"];
pub const BUNDLE_DIR: &str = "/run/cairn/services";

/// Reads every `*.toml` in the spec directories. A bad file is reported with
/// its file, key and problem, and the others still load.
pub fn read_specs(dirs: &[&str]) -> Vec<ServiceSpec> {
    let mut by_name: std::collections::BTreeMap<String, ServiceSpec> = Default::default();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let file = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    error!("service spec {file} not read: {e}");
                    continue;
                }
            };
            match model::parse(&text, &file) {
                Ok(spec) => {
                    by_name.insert(spec.name.clone(), spec);
                }
                Err(e) => error!("service spec rejected: {e}"),
            }
        }
    }
    by_name.into_values().collect()
}

/// Applies `cairn.enable=` / `cairn.disable=` from the command line.
pub fn apply_overrides(specs: &mut [ServiceSpec], enable: &[String], disable: &[String]) {
    for name in enable.iter().chain(disable) {
        if !specs.iter().any(|s| &s.name == name) {
            warn!("kernel command line names service {name}, which does not exist");
        }
    }
    for s in specs.iter_mut() {
        if enable.contains(&s.name) {
            s.enabled = true;
        }
        if disable.contains(&s.name) {
            s.enabled = false;
        }
    }
}

/// Lets services use the cgroup v2 controllers: enabled in the root and in
/// /sys/fs/cgroup/cairn, where every service gets its own group.
pub fn prepare_cgroups() {
    let controllers = "+cpu +memory +pids +io";
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/cairn"] {
        let _ = std::fs::create_dir_all(dir);
        if let Err(e) = std::fs::write(format!("{dir}/cgroup.subtree_control"), controllers) {
            warn!("cannot enable cgroup controllers in {dir}: {e}");
        }
    }
}

fn to_supervised(spec: &ServiceSpec, bundle: &str) -> Spec {
    let id = format!("cairn-{}", spec.name);
    let restart = match spec.restart.policy {
        model::RestartPolicy::Always => RestartPolicy::Always,
        model::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
        model::RestartPolicy::Never => RestartPolicy::Never,
    };
    let health = spec.health.as_ref().map(|h| HealthSpec {
        check: match &h.check {
            model::Check::Exec(argv) => Check::Exec(argv.clone()),
            model::Check::Tcp(host, port) => Check::Probe(Probe::Tcp { host: host.clone(), port: *port }),
            model::Check::Http { host, port, path } => {
                Check::Probe(Probe::Http { host: host.clone(), port: *port, path: path.clone() })
            }
        },
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
    });
    Spec {
        name: spec.name.clone(),
        argv: vec![
            supervisor::CRUN.into(),
            "--root".into(),
            supervisor::CRUN_ROOT.into(),
            "run".into(),
            "--bundle".into(),
            bundle.into(),
            id.clone(),
        ],
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
        tty: None,
        stop_signal: spec.stop_signal,
        stop_timeout: spec.stop_timeout,
        service: true,
        restart,
        backoff: Backoff { base: spec.restart.initial_delay, cap: spec.restart.max_delay, stable_after: spec.restart.reset_after },
        depends: spec
            .depends_on
            .iter()
            .map(|(n, c)| (n.clone(), if *c == model::Condition::Healthy { Condition::Healthy } else { Condition::Started }))
            .collect(),
        capture: true,
        container: Some(id),
        health,
    }
}

fn write_bundle(spec: &ServiceSpec) -> Result<String, String> {
    let rootfs = match &spec.root {
        model::Root::Rootfs(path) => path.clone(),
        model::Root::Image(r) => return Err(format!("image {r}: pulling images is not supported yet; use a baked rootfs")),
    };
    if !Path::new(&rootfs).is_dir() {
        return Err(format!("rootfs {rootfs} does not exist"));
    }
    let cfg = cairn_model::bundle::oci_config(spec, &rootfs, &format!("/cairn/{}", spec.name)).map_err(|e| e.to_string())?;
    let json = cairn_model::bundle::to_json(&cfg).map_err(|e| e.to_string())?;
    let dir = format!("{BUNDLE_DIR}/{}", spec.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
    std::fs::write(format!("{dir}/config.json"), json).map_err(|e| format!("cannot write {dir}/config.json: {e}"))?;
    Ok(dir)
}

/// The enabled services in dependency order, ready for the supervisor.
pub fn load(enable: &[String], disable: &[String]) -> Vec<Spec> {
    let mut specs = read_specs(SPEC_DIRS);
    if specs.is_empty() {
        return Vec::new();
    }
    apply_overrides(&mut specs, enable, disable);
    let enabled: Vec<ServiceSpec> = specs.into_iter().filter(|s| s.enabled).collect();
    let order = match model::start_order(&enabled) {
        Ok(o) => o,
        Err(e) => {
            error!("service dependencies: {e}; starting in name order");
            (0..enabled.len()).collect()
        }
    };
    prepare_cgroups();
    let mut out = Vec::new();
    for i in order {
        let spec = &enabled[i];
        match write_bundle(spec) {
            Ok(bundle) => out.push(to_supervised(spec, &bundle)),
            Err(e) => error!("service {} not started: {e}", spec.name),
        }
    }
    info!("{} system services enabled: {}", out.len(), out.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
    out
}
