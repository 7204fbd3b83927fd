//! Clean power-off and reboot: stop the services, kill what is left, reap,
//! unmount, sync, then reboot(2).

use crate::{mounts, say, supervisor, sys, Action, Init};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

impl Init {

    /// Stops everything, unmounts, syncs and powers off or reboots. Never returns.
    pub(crate) fn shutdown(&mut self, action: Action, reason: &str) -> ! {
        let verb = if action == Action::PowerOff { "power off" } else { "reboot" };
        warn!("shutdown: {reason}; will {verb}");
        // Stopping may take every service's stop timeout in turn; the
        // watchdog still guards against a shutdown that hangs for good.
        if let Some(w) = &mut self.watchdog {
            let _ = w.set_timeout(Duration::from_secs(600));
        }
        let watchdog = &mut self.watchdog;
        self.supervisor.stop_all(&mut supervisor::RealSpawner, &mut self.registry, &mut || {
            if let Some(w) = watchdog.as_mut() {
                w.pet();
            }
        });

        let _ = sys::kill(-1, libc::SIGTERM);
        let left = self.wait_children(self.settings.stop_timeout);
        if left {
            warn!("processes left after {:?}; sending SIGKILL", self.settings.stop_timeout);
            let _ = sys::kill(-1, libc::SIGKILL);
            self.wait_children(Duration::from_secs(2));
        }
        info!("orphans reaped since boot: {}", self.registry.orphans_reaped());
        sys::sync();
        for (target, e) in mounts::unmount_all(&mut mounts::RealMounter, &mut self.mounted) {
            warn!("cannot unmount {target}: {e}");
        }
        sys::sync();
        let done = if action == Action::PowerOff { "powering off" } else { "rebooting" };
        say(&format!("cairn-init: clean shutdown complete, {done}"));
        let cmd = if action == Action::PowerOff { libc::RB_POWER_OFF } else { libc::RB_AUTOBOOT };
        let err = sys::reboot(cmd);
        error!("reboot(2) failed: {err}; halting here");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    /// Reaps until no children are left or `limit` passes; true if some remain.
    fn wait_children(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            loop {
                match sys::reap_one() {
                    Ok(Some((pid, status))) => {
                        if let Some(exit) = self.registry.take(pid, status) {
                            self.supervisor.on_exit(exit, Instant::now(), &mut supervisor::RealSpawner, &mut self.registry);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return false,
                }
            }
            if Instant::now() >= deadline {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
