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

/// Runs the loader and takes its answer. No loader (the initramfs-only
/// development mode) means no services.
pub fn load(enable: &[String], disable: &[String], runtime: &str) -> Vec<Spec> {
    if !std::path::Path::new(SVCLOAD).exists() {
        return Vec::new();
    }
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
        Err(e) => {
            tracing::error!("cannot run {SVCLOAD}: {e}; no services");
            return Vec::new();
        }
    };
    if !out.status.success() {
        tracing::error!("{SVCLOAD} failed ({}); no services", out.status);
        return Vec::new();
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
    answer.units.into_iter().map(to_spec).collect()
}
