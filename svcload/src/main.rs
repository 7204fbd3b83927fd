//! cairn-svcload: run by cairn-init at boot. Reads the service specs (from the
//! verified root, then from STATE), writes each enabled service's OCI bundle
//! under /run/cairn/services/<name>, and prints the units to supervise, in
//! dependency order, in the `cairn_model::wire` text. Problems are reported in
//! the same text for PID 1 to log; a bad file never stops the others.
//!
//! `cairn-svcload ENABLE DISABLE RUNTIME` (comma-separated names from the
//! kernel command line's cairn.enable= and cairn.disable=, and `crun` or `runc`).

use cairn_model::service::{self as model, ServiceSpec};
use cairn_model::wire::{self, Check, Condition, HealthSpec, RestartPolicy, Unit};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where specs are read from, in order; a later file with the same name wins.
/// The machine config's added services sit between the shipped ones and STATE's.
pub const SPEC_DIRS: &[&str] = &["/usr/lib/cairn/services", "/run/cairn/config/services", "/var/lib/cairn/services"];
pub const BUNDLE_DIR: &str = "/run/cairn/services";

/// The specs read, and which of them the verified root ships.
#[derive(Debug, Default)]
pub struct Specs {
    pub specs: Vec<ServiceSpec>,
    /// Names whose file in effect is in the first (shipped) directory.
    pub shipped: BTreeSet<String>,
    /// Shipped files that were rejected and not replaced, by file stem: a
    /// release whose own loader rejects its own spec is broken.
    pub broken_shipped: BTreeSet<String>,
}

/// Reads every `*.toml` in the spec directories; the first is the one the
/// verified root ships. A bad file is reported with its file, key and
/// problem, and the others still load.
pub fn read_specs(dirs: &[&str], notes: &mut String) -> Specs {
    let mut by_name: BTreeMap<String, (ServiceSpec, bool)> = BTreeMap::new();
    let mut broken_shipped = BTreeSet::new();
    for (n, dir) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let file = path.display().to_string();
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("service spec {file} not read: {e}"))
                .and_then(|text| model::parse(&text, &file).map_err(|e| format!("service spec rejected: {e}")));
            match parsed {
                Ok(spec) => {
                    broken_shipped.remove(&spec.name);
                    by_name.insert(spec.name.clone(), (spec, n == 0));
                }
                Err(e) => {
                    wire::log(notes, "error", &e);
                    if n == 0 {
                        broken_shipped.insert(stem);
                    }
                }
            }
        }
    }
    let shipped = by_name.iter().filter(|(_, (_, s))| *s).map(|(n, _)| n.clone()).collect();
    Specs { specs: by_name.into_values().map(|(s, _)| s).collect(), shipped, broken_shipped }
}

/// The services a trial boot needs up: every enabled shipped one (and every
/// shipped one whose file was rejected, unless the command line disables
/// it), and an operator's only with `gates_update = true`.
pub fn gates(read: &Specs, disable: &[String]) -> Vec<String> {
    let mut out: Vec<String> = read
        .specs
        .iter()
        .filter(|s| s.enabled && (read.shipped.contains(&s.name) || s.gates_update))
        .map(|s| s.name.clone())
        .collect();
    out.extend(read.broken_shipped.iter().filter(|n| !disable.contains(n)).cloned());
    out
}

/// Applies `cairn.enable=` / `cairn.disable=` from the command line.
pub fn apply_overrides(specs: &mut [ServiceSpec], enable: &[String], disable: &[String], notes: &mut String) {
    for name in enable.iter().chain(disable) {
        if !specs.iter().any(|s| &s.name == name) {
            wire::log(notes, "warn", &format!("kernel command line names service {name}, which does not exist"));
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
pub fn prepare_cgroups(notes: &mut String) {
    let controllers = "+cpu +memory +pids +io";
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/cairn"] {
        let _ = std::fs::create_dir_all(dir);
        if let Err(e) = std::fs::write(format!("{dir}/cgroup.subtree_control"), controllers) {
            wire::log(notes, "warn", &format!("cannot enable cgroup controllers in {dir}: {e}"));
        }
    }
}

fn to_unit(spec: &ServiceSpec, bundle: &str, runtime: &str) -> Unit {
    let (bin, state) = wire::runtime_paths(runtime);
    let id = format!("cairn-{}", spec.name);
    let health = spec.health.as_ref().map(|h| HealthSpec {
        check: match &h.check {
            model::Check::Exec(argv) => Check::Exec(argv.clone()),
            model::Check::Tcp(host, port) => Check::Tcp { host: host.clone(), port: *port },
            model::Check::Http { host, port, path } => Check::Http { host: host.clone(), port: *port, path: path.clone() },
        },
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
    });
    Unit {
        name: spec.name.clone(),
        argv: [bin, "--root", state, "run", "--bundle", bundle, &id].iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
        stop_signal: spec.stop_signal,
        stop_timeout: spec.stop_timeout,
        restart: match spec.restart.policy {
            model::RestartPolicy::Always => RestartPolicy::Always,
            model::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
            model::RestartPolicy::Never => RestartPolicy::Never,
        },
        backoff_base: spec.restart.initial_delay,
        backoff_cap: spec.restart.max_delay,
        stable_after: spec.restart.reset_after,
        depends: spec
            .depends_on
            .iter()
            .map(|(n, c)| (n.clone(), if *c == model::Condition::Healthy { Condition::Healthy } else { Condition::Started }))
            .collect(),
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

/// A unit as PID 1 will read it, checked the way PID 1 checks it: what PID 1
/// would drop is reported here, with the spec's name, and not handed over.
fn handoff(unit: &Unit) -> Result<String, String> {
    let mut text = String::new();
    wire::write(&mut text, unit);
    let answer = wire::read(&text);
    if answer.units.as_slice() == std::slice::from_ref(unit) {
        return Ok(text);
    }
    let why = answer.rejected.join("; ");
    Err(format!("its unit does not survive the handoff to cairn-init: {why}"))
}

/// Reads the specs, writes the bundles, and describes the enabled services
/// in dependency order (with what to log, and which services gate a trial
/// boot) in the specwire text.
fn load_to_text(enable: &[String], disable: &[String], runtime: &str) -> String {
    let mut notes = String::new();
    let mut read = read_specs(SPEC_DIRS, &mut notes);
    apply_overrides(&mut read.specs, enable, disable, &mut notes);
    for name in gates(&read, disable) {
        wire::gate(&mut notes, &name);
    }
    let enabled: Vec<ServiceSpec> = read.specs.into_iter().filter(|s| s.enabled).collect();
    if enabled.is_empty() {
        return notes;
    }
    let order = match model::start_order(&enabled) {
        Ok(o) => o,
        Err(e) => {
            wire::log(&mut notes, "error", &format!("service dependencies: {e}; starting in name order"));
            (0..enabled.len()).collect()
        }
    };
    prepare_cgroups(&mut notes);
    let mut names = Vec::new();
    for i in order {
        let spec = &enabled[i];
        match write_bundle(spec).and_then(|bundle| handoff(&to_unit(spec, &bundle, runtime))) {
            Ok(text) => {
                notes.push_str(&text);
                names.push(spec.name.as_str());
            }
            Err(e) => wire::log(&mut notes, "error", &format!("service {} not started: {e}", spec.name)),
        }
    }
    wire::log(&mut notes, "info", &format!("{} system services enabled: {}", names.len(), names.join(", ")));
    notes
}


fn main() {
    let args: Vec<String> = std::env::args().collect();
    let list = |i: usize| -> Vec<String> {
        args.get(i).map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    };
    let runtime = args.get(3).map_or("crun", String::as_str);
    print!("{}", load_to_text(&list(1), &list(2), runtime));
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shipped_services_gate_and_an_operators_only_when_it_says_so() {
        let root = std::env::temp_dir().join(format!("cairn-svcload-gates-{}", std::process::id()));
        let (shipped, state) = (root.join("shipped"), root.join("state"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&shipped).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let spec = |extra: &str| format!("rootfs = \"/r\"\ncommand = [\"/bin/true\"]\n{extra}\n");
        for (dir, name, text) in [
            (&shipped, "chrony", spec("")),
            (&shipped, "admin", spec("enabled = false")),
            (&shipped, "broken", spec("bogus_key = 1")),
            (&shipped, "replaced", spec("")),
            (&shipped, "off-by-cmdline", spec("bogus_key = 1")),
            (&state, "workload", spec("")),
            (&state, "db", spec("gates_update = true")),
            (&state, "replaced", spec("")),
        ] {
            std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        }
        let mut notes = String::new();
        let dirs = [shipped.to_str().unwrap(), state.to_str().unwrap()];
        let mut read = read_specs(&dirs, &mut notes);
        apply_overrides(&mut read.specs, &[], &["off-by-cmdline".to_string()], &mut notes);
        let mut g = gates(&read, &["off-by-cmdline".to_string()]);
        g.sort();
        assert_eq!(g, ["broken", "chrony", "db"], "{notes}");
        assert!(notes.contains("broken.toml"), "{notes}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_unit_pid1_would_drop_is_not_handed_over() {
        let spec = model::parse("rootfs = \"/r\"\ncommand = [\"/bin/true\"]\n", "/x/web.toml").unwrap();
        let unit = to_unit(&spec, "/run/cairn/services/web", "crun");
        let text = handoff(&unit).unwrap();
        assert_eq!(wire::read(&text).units, [unit.clone()]);
        let long = Unit { stop_timeout: Duration::from_secs(301), ..unit };
        let e = handoff(&long).unwrap_err();
        assert!(e.contains("service web: stop timeout 301000 ms is outside 0..=300000 ms"), "{e}");
    }
}
