//! `cairnctl config apply | try | confirm | rollback | status` on a running
//! machine. PID 1 runs the config loader for the verb (it checks the
//! document, keeps the generation on STATE and does what it can itself) and
//! then applies the compact answer: the hostname, the log level, the service
//! set (only the services that changed start, stop or restart), and the
//! deadline of a try. PID 1 reads no TOML here either.
//!
//! A try's deadline lives in the event loop; the loader keeps the try's
//! record on STATE, so a reboot during the try comes back to it (once).

use crate::cmdline::Settings;
use crate::control::ConnId;
use crate::{config, log, net, services, supervisor, sys, Init};
use cairn_model::config::handoff::Handoff;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// The supervised network daemon, once there is one: a changed network
/// section is handed to it with SIGHUP (it reads the generation in force).
const NETD: &str = "netd";

impl Init {
    /// Runs the loader for a `cairnctl config` request and answers it.
    pub(crate) fn on_config(&mut self, id: ConnId, args: &[String], now: Instant) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let h = match self.run_loader(&argv) {
            Ok(h) => h,
            Err(e) => return self.answer(id, Err(format!("machine config: {e}; nothing changed")), now),
        };
        if h.refused {
            for (level, msg) in &h.logs {
                info!("{level}: {msg}");
            }
            return self.answer(id, Err(h.say.join("\n")), now);
        }
        let mut lines = h.say.clone();
        if argv.first() != Some(&"status") {
            lines.extend(self.take_config(&h, Instant::now()));
        }
        let mut body = lines.join("\n");
        body.push('\n');
        self.answer(id, Ok(body), now);
    }

    /// The try's deadline passed without a confirm: back to the generation before it.
    pub(crate) fn maybe_config_revert(&mut self, now: Instant) {
        if self.config_try.is_none_or(|d| d > now) {
            return;
        }
        self.config_try = None;
        crate::say("cairn-init: the machine config on trial was not confirmed in time; going back to the one before it");
        match self.run_loader(&["revert"]) {
            Ok(h) => {
                for l in &h.say {
                    info!("config revert: {l}");
                }
                for l in self.take_config(&h, Instant::now()) {
                    info!("config revert: {l}");
                }
            }
            // The try's record stays on STATE: the next boot takes the try
            // once more (if its counter allows) and then goes back.
            Err(e) => error!("machine config: cannot revert the try: {e}; it stays in force until a reboot ends it"),
        }
    }

    fn run_loader(&mut self, args: &[&str]) -> Result<Handoff, String> {
        let wd = &mut self.watchdog;
        config::run(args, &mut || {
            if let Some(w) = wd.as_mut() {
                w.pet();
            }
        })
    }

    /// Applies the loader's answer to the running machine; says what it did.
    fn take_config(&mut self, h: &Handoff, now: Instant) -> Vec<String> {
        let mut said = Vec::new();
        let cmdline = std::fs::read("/proc/cmdline").unwrap_or_default();
        let new = config::settings_from(h, &cmdline);
        if new.hostname != self.settings.hostname {
            if let Some(name) = &new.hostname {
                match sys::sethostname(name).and_then(|()| net::write_run_file("hostname", &format!("{name}\n"))) {
                    Ok(()) => said.push(format!("hostname is {name}")),
                    Err(e) => said.push(format!("cannot set hostname {name}: {e}")),
                }
            }
        }
        if new.log_level != self.settings.log_level {
            if let Some(l) = log::get() {
                l.set_level(new.log_level);
            }
        }
        said.extend(self.reload_services(&new, &h.restart, now));
        if h.network_changed && self.supervisor.knows(NETD) {
            self.supervisor.signal(NETD, libc::SIGHUP, &mut supervisor::RealSpawner);
            said.push(format!("{NETD} takes the new network section"));
        }
        // The running link and the loaded modules stay as booted: what the
        // loader listed under `reboot` waits for the next boot.
        let booted = &self.settings;
        self.settings = Settings {
            net: booted.net.clone(),
            gateway: booted.gateway,
            dns: booted.dns.clone(),
            iface: booted.iface.clone(),
            modules: booted.modules.clone(),
            ..new
        };
        self.config = h.config.clone();
        self.config_try = h.try_secs.map(|s| now + Duration::from_secs(s));
        said
    }

    /// Runs the service loader with the new enable/disable lists and makes
    /// its answer the running set.
    fn reload_services(&mut self, new: &Settings, restart: &[String], now: Instant) -> Vec<String> {
        let wd = &mut self.watchdog;
        let loaded = services::load(&new.enable, &new.disable, &new.runtime, &mut || {
            if let Some(w) = wd.as_mut() {
                w.pet();
            }
        });
        if let Some(why) = loaded.failed {
            warn!("services unchanged: {why}");
            return vec![format!("services unchanged: {why}")];
        }
        let ch = self.supervisor.reconcile(loaded.specs, restart, now, &mut supervisor::RealSpawner, &mut self.registry);
        // A trial boot's verdict no longer waits for a service taken out.
        self.gate.services.retain(|g| !ch.stopped.contains(g));
        let mut said = Vec::new();
        for (what, names) in [("started", &ch.started), ("stopped", &ch.stopped), ("restarted", &ch.restarted)] {
            if !names.is_empty() {
                info!("machine config: {what} {}", names.join(", "));
                said.push(format!("{what}: {}", names.join(", ")));
            }
        }
        said
    }
}
