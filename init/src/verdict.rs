//! The ready line, and the boot's verdict handed to the updater.
//!
//! The verdict is the trial gate: a new release is blessed only if it can do
//! its job. Healthy means the service loader succeeded, every service it says
//! gates (the shipped, enabled ones, and an operator's with `gates_update`)
//! is up, containerd too, `/var` is the booted disk's STATE, and the network
//! is configured unless `cairn.ip=off`. What cannot get better by waiting
//! (the loader failed, /var is not STATE, a gating service was never handed
//! over) is unhealthy at once; the rest is waited for until
//! `cairn.health_timeout`.

use crate::boot::load_module_names;
use crate::{net, say, supervisor, sys, Init};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The ready line, for whoever asks later (sysagent).
const READY_FILE: &str = "/run/cairn/ready";
/// The updater's verdict on a boot: healthy blesses a trial entry, unhealthy
/// gives it up; on every boot it also notices a trial that failed before.
const CAIRNCTL: &str = "/usr/bin/cairnctl";
/// What the updater needs on a UEFI machine: the ESP and systemd-boot's variables.
const UPDATE_MODULES: &[&str] = &["efivarfs", "vfat", "nls_cp437", "nls_iso8859_1"];

fn rss_kb() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What a trial boot must reach, as boot found it.
#[derive(Debug, Default)]
pub struct Gate {
    /// Why `cairn-svcload` did not do its job, if it did not.
    pub loader_failed: Option<String>,
    /// The services that must be up.
    pub services: Vec<String>,
    /// Whether /var is the ext4 STATE of the booted disk.
    pub var_is_state: bool,
    /// Files another part of the system writes once its part is done (the
    /// node back in its cluster), each with what it stands for.
    pub files: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Not yet; what is missing.
    Wait(Vec<String>),
    /// Never will be; what is wrong, and what is still missing.
    Unhealthy(Vec<String>),
}

impl Gate {
    /// `up(name)`: whether that service is up (None: no such service), and
    /// if not, why, for the operator.
    pub fn check(&self, up: impl Fn(&str) -> Option<Result<(), String>>, net: Option<&net::Status>, net_off: bool) -> Verdict {
        let (mut wrong, mut missing) = (Vec::new(), Vec::new());
        if let Some(why) = &self.loader_failed {
            wrong.push(format!("the service loader failed: {why}"));
        }
        if !self.var_is_state {
            wrong.push("/var is not the STATE partition of the booted disk".into());
        }
        for name in &self.services {
            match up(name) {
                None => wrong.push(format!("{name} (shipped and enabled, but its spec or unit was rejected)")),
                Some(Err(why)) => missing.push(why),
                Some(Ok(())) => {}
            }
        }
        for (path, what) in &self.files {
            if !Path::new(path).exists() {
                missing.push((*what).to_string());
            }
        }
        match net {
            _ if net_off => {}
            Some(net::Status::Configured { .. }) => {}
            Some(net::Status::Failed(why)) => missing.push(format!("network (not configured: {why})")),
            _ => missing.push("network (not configured yet)".into()),
        }
        if !wrong.is_empty() {
            wrong.extend(missing);
            Verdict::Unhealthy(wrong)
        } else if !missing.is_empty() {
            Verdict::Wait(missing)
        } else {
            Verdict::Healthy
        }
    }
}

impl Init {
    /// One service's part in the gate.
    fn service_up(&self, name: &str) -> Option<Result<(), String>> {
        let up = self.supervisor.is_up(name)?;
        if up {
            return Some(Ok(()));
        }
        let why = self.supervisor.not_ready().into_iter().find(|w| w.starts_with(&format!("{name} (")));
        Some(Err(why.unwrap_or_else(|| name.to_string())))
    }

    pub(crate) fn maybe_ready(&mut self) {
        if self.ready {
            return;
        }
        if !self.supervisor.ready() {
            if !self.warned_not_ready && self.boot_started.elapsed() > Duration::from_secs(60) {
                self.warned_not_ready = true;
                warn!("not ready after 60 s; waiting for: {}", self.supervisor.not_ready().join(", "));
            }
            return;
        }
        let net_done = self.net_status.is_some()
            || self.settings.net.hands_off()
            || Instant::now() >= self.net_deadline;
        if !net_done {
            return;
        }
        self.ready = true;
        let ip = match &self.net_status {
            _ if self.settings.net == crate::cmdline::NetMode::Daemon => " ip=netd".into(),
            Some(net::Status::Configured { addr, prefix, .. }) => format!(" ip={addr}/{prefix}"),
            Some(net::Status::Off) => " ip=off".into(),
            _ => " ip=none".into(),
        };
        let boot_ms = sys::boottime_ms();
        crate::timeline::mark_at("ready", boot_ms);
        let line = format!(
            "cairn-init: ready boot_ms={boot_ms} rss_kb={} services={}{ip} config={}",
            rss_kb(),
            self.supervisor.services_running(),
            self.config
        );
        say(&line);
        // For sysagent's status and metrics; /run is a tmpfs, so this cannot block.
        if let Err(e) = std::fs::write(READY_FILE, format!("{line}\n")) {
            warn!("cannot write {READY_FILE}: {e}");
        }
        info!("{}", crate::timeline::line());
        if self.platform == "azure" {
            // Azure marks a VM failed that never reports ready; once per boot,
            // with the config applied and the services up.
            let spec = supervisor::Spec {
                restart: cairn_model::wire::RestartPolicy::OnFailure,
                ..supervisor::Spec::process("azure-ready", vec![crate::config::LOADER.into(), "azure-ready".into()])
            };
            self.supervisor.add(spec, std::time::Instant::now());
        }
    }

    /// Once per boot, on a disk booted through UEFI: hand the verdict to the
    /// updater (`cairnctl update settle`): healthy when the gate passes,
    /// unhealthy when it cannot or `cairn.health_timeout` passes first.
    pub(crate) fn maybe_verdict(&mut self) {
        if self.verdict {
            return;
        }
        let timed_out = self.boot_started.elapsed() >= self.settings.health_timeout;
        let secs = self.settings.health_timeout.as_secs();
        let gate = self.gate.check(|n| self.service_up(n), self.net_status.as_ref(), self.settings.net.hands_off());
        let unhealthy = match gate {
            // After the ready line when it comes (the console tells one
            // story), but an operator's service that gates nothing and never
            // gets up only delays a healthy verdict.
            Verdict::Healthy if !self.ready && !timed_out => return,
            Verdict::Healthy => None,
            Verdict::Unhealthy(why) => Some(why.join(", ")),
            Verdict::Wait(why) if timed_out => Some(format!("not healthy within {secs} s: {}", why.join(", "))),
            Verdict::Wait(_) => return,
        };
        self.verdict = true;
        if self.settings.slot.is_none() || !Path::new("/sys/firmware/efi").exists() || !Path::new(CAIRNCTL).exists() {
            return;
        }
        let release = sys::kernel_release().unwrap_or_default();
        let names: Vec<String> = UPDATE_MODULES.iter().map(|m| m.to_string()).collect();
        load_module_names(&release, &names);
        let efivars = "/sys/firmware/efi/efivars";
        if !sys::is_mountpoint(Path::new(efivars)) {
            if let Err(e) = sys::mount("efivarfs", efivars, "efivarfs", (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as u64, "") {
                warn!("cannot mount efivarfs on {efivars}: {e}");
            }
        }
        let mut argv: Vec<String> = [CAIRNCTL, "update", "settle"].iter().map(|s| s.to_string()).collect();
        match unhealthy {
            None => argv.push("healthy".into()),
            Some(why) => {
                warn!("this boot is not healthy: {why}");
                argv.extend(["unhealthy".to_string(), why]);
            }
        }
        // A verdict that fails (the ESP busy or unreadable for a moment) is
        // tried again with back-off: left undone, a healthy trial would be
        // counted down and dropped at the next reboots.
        let spec = supervisor::Spec {
            restart: cairn_model::wire::RestartPolicy::OnFailure,
            env: vec![("PATH".into(), "/usr/sbin:/usr/bin".into())],
            ..supervisor::Spec::process("update-verdict", argv)
        };
        self.supervisor.add(spec, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn gate() -> Gate {
        Gate { loader_failed: None, services: vec!["chrony".into(), "containerd".into()], var_is_state: true, files: vec![] }
    }

    fn configured() -> net::Status {
        net::Status::Configured { iface: "eth0".into(), addr: Ipv4Addr::new(10, 0, 2, 15), prefix: 24 }
    }

    fn all_up(_: &str) -> Option<Result<(), String>> {
        Some(Ok(()))
    }

    #[test]
    fn healthy_needs_every_gating_service_var_and_the_network() {
        assert_eq!(gate().check(all_up, Some(&configured()), false), Verdict::Healthy);
        let chrony_down = |n: &str| Some(if n == "chrony" { Err("chrony (unhealthy)".into()) } else { Ok(()) });
        assert_eq!(gate().check(chrony_down, Some(&configured()), false), Verdict::Wait(vec!["chrony (unhealthy)".into()]));
        let failed = net::Status::Failed("no link".into());
        assert_eq!(gate().check(all_up, Some(&failed), false), Verdict::Wait(vec!["network (not configured: no link)".into()]));
        assert_eq!(gate().check(all_up, None, false), Verdict::Wait(vec!["network (not configured yet)".into()]));
        assert_eq!(gate().check(all_up, Some(&failed), true), Verdict::Healthy, "cairn.ip=off needs no network");
        let member = Gate { files: vec![("/nonexistent/cluster-ready", "the cluster")], ..gate() };
        assert_eq!(member.check(all_up, Some(&configured()), false), Verdict::Wait(vec!["the cluster".into()]));
        let here = Gate { files: vec![("/proc/self", "the cluster")], ..gate() };
        assert_eq!(here.check(all_up, Some(&configured()), false), Verdict::Healthy);
    }

    #[test]
    fn what_waiting_cannot_mend_is_unhealthy_at_once() {
        let loader = Gate { loader_failed: Some("exit status: 1".into()), services: vec![], var_is_state: true, files: vec![] };
        assert_eq!(
            loader.check(all_up, Some(&configured()), false),
            Verdict::Unhealthy(vec!["the service loader failed: exit status: 1".into()])
        );
        let tmpfs = Gate { var_is_state: false, ..gate() };
        assert_eq!(
            tmpfs.check(all_up, None, false),
            Verdict::Unhealthy(vec!["/var is not the STATE partition of the booted disk".into(), "network (not configured yet)".into()])
        );
        let dropped = |n: &str| (n != "chrony").then_some(Ok(()));
        assert_eq!(
            gate().check(dropped, Some(&configured()), false),
            Verdict::Unhealthy(vec!["chrony (shipped and enabled, but its spec or unit was rejected)".into()])
        );
    }
}
