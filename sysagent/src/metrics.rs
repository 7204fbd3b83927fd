//! `/metrics` in the Prometheus text exposition format (version 0.0.4):
//! boot, services (state, restarts, health, cgroup CPU and memory), update
//! slot and version, config generation.

use crate::node::Service;
use std::fmt::Write;
use std::path::Path;

/// What the metrics are made of, read by the caller.
pub struct Facts<'a> {
    pub services: &'a [Service],
    /// The ready line cairn-init wrote (/run/cairn/ready), if it has.
    pub ready_line: Option<&'a str>,
    pub version: &'a str,
    pub slot: &'a str,
    pub config_generation: Option<u64>,
    pub cgroup_root: &'a Path,
    pub uptime_s: f64,
    /// The cluster membership, when the machine config has `[cluster]`:
    /// the configured role and what the membership loop last saw.
    pub cluster: Option<(&'a str, crate::cluster::Seen)>,
}

/// Label values escape `\`, `"` and newlines.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The value of `key=` in a line of `key=value` words (the ready line).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn cgroup_value(dir: &Path, file: &str, key: Option<&str>) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    match key {
        None => text.trim().parse().ok(),
        Some(k) => text.lines().find_map(|l| l.strip_prefix(k)?.trim().parse().ok()),
    }
}

pub fn render(f: &Facts<'_>) -> String {
    let mut out = String::new();
    family(&mut out, "cairn_info", "gauge", "The running OS version and slot.");
    let _ = writeln!(out, "cairn_info{{version=\"{}\",slot=\"{}\"}} 1", label(f.version), label(f.slot));
    family(&mut out, "cairn_uptime_seconds", "gauge", "Seconds since the kernel started.");
    let _ = writeln!(out, "cairn_uptime_seconds {}", f.uptime_s);
    if let Some(ms) = f.ready_line.and_then(|l| field(l, "boot_ms")).and_then(|v| v.parse::<f64>().ok()) {
        family(&mut out, "cairn_boot_seconds", "gauge", "Seconds from the kernel start to cairn-init's ready line.");
        let _ = writeln!(out, "cairn_boot_seconds {}", ms / 1000.0);
    }
    if let Some(kb) = f.ready_line.and_then(|l| field(l, "rss_kb")).and_then(|v| v.parse::<f64>().ok()) {
        family(&mut out, "cairn_init_ready_rss_bytes", "gauge", "cairn-init's resident memory at the ready line.");
        let _ = writeln!(out, "cairn_init_ready_rss_bytes {}", kb * 1024.0);
    }
    if let Some(g) = f.config_generation {
        family(&mut out, "cairn_config_generation", "gauge", "The machine config generation in use.");
        let _ = writeln!(out, "cairn_config_generation {g}");
    }
    family(&mut out, "cairn_service_up", "gauge", "1 when the service runs.");
    for s in f.services {
        let up = u8::from(s.state == "running");
        let _ = writeln!(out, "cairn_service_up{{service=\"{}\"}} {up}", label(&s.name));
    }
    family(&mut out, "cairn_service_healthy", "gauge", "1 when the service's health check passes.");
    for s in f.services {
        let ok = u8::from(s.health == "healthy" || s.health == "up");
        let _ = writeln!(out, "cairn_service_healthy{{service=\"{}\"}} {ok}", label(&s.name));
    }
    family(&mut out, "cairn_service_restarts_total", "counter", "Restarts of the service since boot.");
    for s in f.services {
        let _ = writeln!(out, "cairn_service_restarts_total{{service=\"{}\"}} {}", label(&s.name), s.restarts);
    }
    let groups: Vec<(&Service, std::path::PathBuf)> =
        f.services.iter().map(|s| (s, f.cgroup_root.join(&s.name))).filter(|(_, d)| d.is_dir()).collect();
    family(&mut out, "cairn_service_cpu_seconds_total", "counter", "CPU time of the service's cgroup.");
    for (s, dir) in &groups {
        if let Some(us) = cgroup_value(dir, "cpu.stat", Some("usage_usec")) {
            let _ = writeln!(out, "cairn_service_cpu_seconds_total{{service=\"{}\"}} {}", label(&s.name), us / 1e6);
        }
    }
    family(&mut out, "cairn_service_memory_bytes", "gauge", "Memory charged to the service's cgroup.");
    for (s, dir) in &groups {
        if let Some(b) = cgroup_value(dir, "memory.current", None) {
            let _ = writeln!(out, "cairn_service_memory_bytes{{service=\"{}\"}} {b}", label(&s.name));
        }
    }
    if let Some((role, seen)) = &f.cluster {
        family(&mut out, "cairn_cluster_member", "gauge", "1 when the node is an active member of its swarm.");
        let _ = writeln!(out, "cairn_cluster_member{{role=\"{}\",state=\"{}\"}} {}", label(role), label(&seen.state), u8::from(seen.state == "active"));
        family(&mut out, "cairn_cluster_manager", "gauge", "1 when the node is a swarm manager that may write.");
        let _ = writeln!(out, "cairn_cluster_manager {}", u8::from(seen.manager));
        family(&mut out, "cairn_cluster_joins_total", "counter", "Swarm joins or inits the agent made since it started.");
        let _ = writeln!(out, "cairn_cluster_joins_total {}", seen.joins);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_belongs_to_a_declared_family_and_labels_are_escaped() {
        let services = vec![
            Service { name: "chrony".into(), state: "running".into(), pid: Some(9), restarts: 2, uptime_s: Some(5), health: "healthy".into() },
            Service { name: "we\"ird".into(), state: "stopped".into(), pid: None, restarts: 0, uptime_s: None, health: "-".into() },
        ];
        let text = render(&Facts {
            services: &services,
            ready_line: Some("cairn-init: ready boot_ms=2400 rss_kb=1500 services=2 config=none"),
            version: "0.1.0",
            slot: "a",
            config_generation: Some(3),
            cgroup_root: Path::new("/nonexistent"),
            uptime_s: 12.5,
            cluster: Some(("worker", crate::cluster::Seen { state: "active".into(), joins: 1, ..Default::default() })),
        });
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
            }
        }
        assert!(text.contains("cairn_boot_seconds 2.4\n"));
        assert!(text.contains("cairn_service_restarts_total{service=\"chrony\"} 2\n"));
        assert!(text.contains("service=\"we\\\"ird\""));
        assert!(text.contains("cairn_cluster_member{role=\"worker\",state=\"active\"} 1\n"));
    }
}
