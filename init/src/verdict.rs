//! The ready line, and the boot's verdict handed to the updater.

use crate::boot::load_module_names;
use crate::cmdline::NetMode;
use crate::{net, say, supervisor, sys, Init};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::warn;

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

impl Init {
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
            || self.settings.net == NetMode::Off
            || Instant::now() >= self.net_deadline;
        if !net_done {
            return;
        }
        self.ready = true;
        let ip = match &self.net_status {
            Some(net::Status::Configured { addr, prefix, .. }) => format!(" ip={addr}/{prefix}"),
            Some(net::Status::Off) => " ip=off".into(),
            _ => " ip=none".into(),
        };
        let line = format!(
            "cairn-init: ready boot_ms={} rss_kb={} services={}{ip} config={}",
            sys::boottime_ms(),
            rss_kb(),
            self.supervisor.services_running(),
            self.config
        );
        say(&line);
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
    /// updater (`cairnctl update settle`), healthy when the ready line is
    /// out, unhealthy when `cairn.health_timeout` passes first.
    pub(crate) fn maybe_verdict(&mut self) {
        if self.verdict {
            return;
        }
        let timed_out = self.boot_started.elapsed() >= self.settings.health_timeout;
        if !self.ready && !timed_out {
            return;
        }
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
        if self.ready {
            argv.push("healthy".into());
        } else {
            let waiting = self.supervisor.not_ready().join(", ");
            warn!("not healthy within cairn.health_timeout={} s: {waiting}", self.settings.health_timeout.as_secs());
            argv.extend(["unhealthy".to_string(), format!("not healthy within {} s: {waiting}", self.settings.health_timeout.as_secs())]);
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
