//! System services, as PID 1 sees them: `cairn-svcload` reads the specs and
//! writes the OCI bundles; PID 1 takes the units it prints and supervises
//! each as a `crun run` of its bundle.

use crate::supervisor::{Backoff, Spec};
use cairn_model::wire;

pub const SVCLOAD: &str = "/usr/bin/cairn-svcload";

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
/// development mode) means no services, and no trial could pass.
pub fn load(enable: &[String], disable: &[String], runtime: &str) -> Loaded {
    if !std::path::Path::new(SVCLOAD).exists() {
        return Loaded { failed: Some(format!("{SVCLOAD} is missing")), ..Loaded::default() };
    }
    let failed = |why: String| {
        tracing::error!("{why}; no services");
        Loaded { failed: Some(why), ..Loaded::default() }
    };
    let out = crate::sys::command(SVCLOAD)
        .arg(enable.join(","))
        .arg(disable.join(","))
        .arg(runtime)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output();
    // output() waits for this one pid; the reaper is not running yet.
    let out = match out {
        Ok(o) => o,
        Err(e) => return failed(format!("cannot run {SVCLOAD}: {e}")),
    };
    if !out.status.success() {
        return failed(format!("{SVCLOAD} failed ({})", out.status));
    }
    let answer = wire::read(&String::from_utf8_lossy(&out.stdout));
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
