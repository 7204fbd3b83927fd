//! A new service set from a config change: what is new starts, what is gone
//! stops, what changed restarts, and nothing else is touched.
//!
//! Processes keep their slot (the reaper knows them by index): one taken
//! out is retired, not removed, and takes a new spec if it comes back.

use super::{Health, Spawn, Spec, Supervisor};
use crate::reaper::Registry;
use std::time::Instant;

/// What a reconcile did, by service name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
}

impl Supervisor {
    /// Makes the loaded services `specs` (the service loader's whole answer)
    /// the set that runs; `restart` names services that restart even with an
    /// unchanged spec (their bundle changed). Processes the service loader
    /// does not make (containerd, the debug shell) are left alone.
    pub fn reconcile(&mut self, specs: Vec<Spec>, restart: &[String], now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) -> Changes {
        let mut ch = Changes::default();
        if self.shutting_down {
            return ch;
        }
        for idx in 0..self.procs.len() {
            let p = &self.procs[idx];
            let loaded = p.spec.service && p.spec.container.is_some();
            if !loaded || p.retired || specs.iter().any(|s| s.name == p.spec.name) {
                continue;
            }
            ch.stopped.push(p.spec.name.clone());
            let p = &mut self.procs[idx];
            p.retired = true;
            p.next_start = None;
            p.next_spec = None;
            if p.pid.is_some() {
                self.begin_stop(idx, now, false, sp, reg);
            }
        }
        for spec in specs {
            let Some(idx) = self.index(&spec.name) else {
                ch.started.push(spec.name.clone());
                self.add(spec, now);
                continue;
            };
            let p = &mut self.procs[idx];
            let was_retired = std::mem::replace(&mut p.retired, false);
            let changed = p.spec != spec || restart.contains(&spec.name);
            if !was_retired && !changed {
                continue;
            }
            if was_retired { &mut ch.started } else { &mut ch.restarted }.push(spec.name.clone());
            p.quick_exits = 0;
            if p.pid.is_some() {
                // Down first, under its old spec; it starts again with the new.
                p.next_spec = Some(spec);
                if let Some(s) = &mut p.stopping {
                    s.restart = true;
                } else {
                    self.begin_stop(idx, now, true, sp, reg);
                }
            } else {
                p.health = if spec.health.is_some() { Health::Starting } else { Health::NoCheck };
                p.spec = spec;
                p.next_start = Some(now);
            }
        }
        ch
    }
}

impl Supervisor {
    /// Sends `sig` to a running process that is not a container (a helper
    /// such as the network daemon). False when there is none running.
    pub fn signal(&mut self, name: &str, sig: i32, sp: &mut dyn Spawn) -> bool {
        match self.index(name).map(|i| &self.procs[i]) {
            Some(p) if p.spec.container.is_none() && p.stopping.is_none() => match p.pid {
                Some(pid) => {
                    sp.kill(pid, sig);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}
