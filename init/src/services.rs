//! System services, as PID 1 sees them: `cairn-svcload` reads the specs and
//! writes the OCI bundles; PID 1 takes the units it prints and supervises
//! each as a `crun run` of its bundle.

use crate::supervisor::{Backoff, Spec};
use cairn_model::wire;

pub const SVCLOAD: &str = "/usr/bin/cairn-svcload";
/// It reads a few files and writes a bundle per service: seconds at most.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

fn to_spec(u: wire::Unit) -> Spec {
    Spec {
        env: u.env,
        stop_signal: u.stop_signal,
        stop_timeout: u.stop_timeout,
        service: true,
        restart: u.restart,
        backoff: Backoff { base: u.backoff_base, cap: u.backoff_cap, stable_after: u.stable_after },
        depends: u.depends,
        capture: true,
        container: u.container,
        health: u.health,
        ..Spec::process(&u.name, u.argv)
    }
}

/// What the loader gave PID 1.
#[derive(Debug, Default)]
pub struct Loaded {
    pub specs: Vec<Spec>,
    /// The services a trial boot needs up (see `verdict`).
    pub gates: Vec<String>,
    /// Why the loader did not do its job, if it did not: no trial can pass.
    pub failed: Option<String>,
}

/// Runs the loader and takes its answer. No loader (the initramfs-only
/// development mode) means no services, and no trial could pass. `pet`
/// runs while it waits (the watchdog).
pub fn load(enable: &[String], disable: &[String], runtime: &str, pet: &mut dyn FnMut()) -> Loaded {
    if !std::path::Path::new(SVCLOAD).exists() {
        return Loaded { failed: Some(format!("{SVCLOAD} is missing")), ..Loaded::default() };
    }
    let failed = |why: String| {
        tracing::error!("{why}; no services");
        Loaded { failed: Some(why), ..Loaded::default() }
    };
    let (enable, disable) = (enable.join(","), disable.join(","));
    let out = match crate::helper::run(SVCLOAD, &[&enable, &disable, runtime], LIMIT, pet) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let answer = wire::read(&out);
    for (level, msg) in &answer.logs {
        match level.as_str() {
            "error" => tracing::error!("{msg}"),
            "warn" => tracing::warn!("{msg}"),
            _ => tracing::info!("{msg}"),
        }
    }
    for why in &answer.rejected {
        tracing::error!("{SVCLOAD}'s answer: {why}; that service is not started");
    }
    Loaded { specs: answer.units.into_iter().map(to_spec).collect(), gates: answer.gates, failed: None }
}
