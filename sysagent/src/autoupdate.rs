//! Automatic updates: with the config's `update.policy = "auto"`, the agent
//! asks the repository for a new version every `check_minutes` while the
//! maintenance window is open, and installs it the way an operator's
//! `update apply` through the API would: on a cluster member through the
//! rollout (a reboot slot, a drain, the halt honoured), elsewhere directly.
//!
//! The policy file (`update.json`, written by cairn-config) is read before
//! every check, so a config applied live changes the schedule without a
//! restart; a missing or broken file means manual.

use crate::api::App;
use crate::audit::Record;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// How long after the agent starts the first check waits: a node that has
/// just booted into a trial lets its verdict come first.
const FIRST_CHECK: Duration = Duration::from_secs(60);
/// How often a node on the manual policy looks at the file again.
const IDLE_POLL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Window {
    /// 0 is Monday.
    pub days: Vec<u8>,
    /// Minutes after midnight, UTC.
    pub start_minute: u32,
    pub length_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Policy {
    pub policy: String,
    pub window: Option<Window>,
    pub check_minutes: u64,
}

impl Policy {
    pub fn load(path: &Path) -> Option<Policy> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                warn!("auto update: {}: {e}; updates stay manual", path.display());
                None
            }
        }
    }

    fn auto(&self) -> bool {
        self.policy == "auto"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(60 * self.check_minutes.clamp(1, 1440))
    }
}

/// Whether `unix` (seconds, UTC) falls inside the window; no window is
/// always open. A window may run past midnight into the next day.
pub fn in_window(w: Option<&Window>, unix: u64) -> bool {
    let Some(w) = w else { return true };
    let minute_of_day = (unix / 60) % 1440;
    let day = unix / 86_400;
    // 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday.
    let weekday = |d: u64| ((d + 3) % 7) as u8;
    let opened = |d: u64, minutes_since_midnight_of_d: u64| {
        w.days.contains(&weekday(d))
            && minutes_since_midnight_of_d >= u64::from(w.start_minute)
            && minutes_since_midnight_of_d < u64::from(w.start_minute) + u64::from(w.length_minutes)
    };
    opened(day, minute_of_day) || (day > 0 && opened(day - 1, minute_of_day + 1440))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The scheduler, for the agent's whole life.
pub async fn run(app: Arc<App>, policy_file: PathBuf) {
    tokio::time::sleep(FIRST_CHECK).await;
    loop {
        let policy = Policy::load(&policy_file).filter(Policy::auto);
        let Some(policy) = policy else {
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        };
        if in_window(policy.window.as_ref(), now()) {
            check_once(&app).await;
        }
        tokio::time::sleep(policy.every()).await;
    }
}

async fn check_once(app: &Arc<App>) {
    if app.cluster.as_ref().is_some_and(|c| c.marker.exists()) {
        // A rollout of this node is under way (or halted on it).
        return;
    }
    let check = match app.node.cairnctl(&["update", "check"], None).await {
        Ok((_, out)) => out,
        Err(e) => {
            warn!("auto update: cairnctl update check: {}", e.message);
            return;
        }
    };
    let Some(to) = crate::cluster::upgrade::offered(&check) else { return };
    info!("auto update: {to} is available; installing it in the maintenance window");
    let result = match app.clone().update_apply().await {
        Ok(_) => format!("started the update to {to}"),
        Err(e) => {
            warn!("auto update: {}", e.message);
            e.message
        }
    };
    let record = Record {
        time: now(),
        subject: "sysagent (update.policy = auto)",
        serial: "",
        role: "auto",
        peer: "",
        method: "POST",
        path: "/v1/update/apply",
        status: 0,
        result: &result,
    };
    if let Err(e) = app.audit.record(&record) {
        warn!("audit log in {}: {e}", app.audit.dir().display());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-12-05 is a Saturday (weekday 5).
    const SAT_0000: u64 = 1_796_428_800;

    #[test]
    fn the_epoch_arithmetic_knows_the_weekday() {
        let sat = Window { days: vec![5], start_minute: 0, length_minutes: 1440 };
        assert!(in_window(Some(&sat), SAT_0000 + 3600));
        assert!(!in_window(Some(&sat), SAT_0000 - 60), "Friday 23:59");
        assert!(!in_window(Some(&sat), SAT_0000 + 86_400), "Sunday 00:00");
    }

    #[test]
    fn a_window_opens_at_its_start_and_closes_after_its_length() {
        let w = Window { days: vec![5], start_minute: 2 * 60, length_minutes: 90 };
        assert!(!in_window(Some(&w), SAT_0000 + 119 * 60));
        assert!(in_window(Some(&w), SAT_0000 + 120 * 60));
        assert!(in_window(Some(&w), SAT_0000 + 209 * 60));
        assert!(!in_window(Some(&w), SAT_0000 + 210 * 60));
        assert!(!in_window(Some(&w), SAT_0000 + 86_400 + 120 * 60), "Sunday is not in days");
    }

    #[test]
    fn a_window_may_run_past_midnight_into_the_next_day() {
        let w = Window { days: vec![5], start_minute: 23 * 60, length_minutes: 120 };
        assert!(in_window(Some(&w), SAT_0000 + 86_400 + 30 * 60), "Sunday 00:30 is in Saturday's window");
        assert!(!in_window(Some(&w), SAT_0000 + 86_400 + 60 * 60), "Sunday 01:00 is past it");
        assert!(!in_window(Some(&w), SAT_0000 + 30 * 60), "Saturday 00:30 belongs to Friday, not in days");
    }

    #[test]
    fn no_window_is_always_open_and_a_broken_file_is_manual() {
        assert!(in_window(None, 0));
        let path = std::env::temp_dir().join(format!("cairn-update-policy-{}.json", std::process::id()));
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(Policy::load(&path), None);
        std::fs::write(&path, r#"{"policy":"auto","window":null,"check_minutes":0}"#).unwrap();
        let p = Policy::load(&path).unwrap();
        assert!(p.auto());
        assert_eq!(p.every(), Duration::from_secs(60), "never a busy loop");
        std::fs::remove_file(&path).unwrap();
    }
}
