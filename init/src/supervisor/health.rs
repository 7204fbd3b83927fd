//! Health checks of supervised processes: when each is due, its outcome, and
//! the deadline of the one in flight (at most one per process). Exec checks
//! are children of init owned through the reaper; TCP and HTTP probes are
//! handed to [`crate::health::Probes`], which runs them concurrently.

use super::{Check, Health, Pending, Spawn, Supervisor};
use crate::health::Request;
use crate::reaper::{Exit, Owner, Registry};
use crate::sys::ExitStatus;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a due probe waits when every probe slot is taken.
pub(super) const NO_ROOM_RETRY: Duration = Duration::from_millis(100);

impl Supervisor {
    /// Starts the health checks that are due. Exec checks become children of
    /// init; up to `room` probes are returned to be started now, each with
    /// its deadline counted from now.
    pub fn checks_due(&mut self, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry, mut room: usize) -> Vec<Request> {
        let mut probes = Vec::new();
        if self.shutting_down {
            return probes;
        }
        for (idx, p) in self.procs.iter_mut().enumerate() {
            let (Some(h), Some(_)) = (&p.spec.health, p.pid) else { continue };
            if p.stopping.is_some() || p.pending.is_some() || p.next_check.is_none_or(|t| t > now) {
                continue;
            }
            let deadline = now + h.timeout;
            match &h.check {
                Check::Exec(argv) => match sp.exec_check(&p.spec, argv) {
                    Ok(pid) => {
                        p.seq += 1;
                        reg.register(pid, Owner::Check(idx));
                        p.pending = Some(Pending { seq: p.seq, pid: Some(pid), deadline });
                    }
                    Err(e) => {
                        warn!("cannot run the health check of {}: {e}", p.spec.name);
                        p.next_check = Some(now + h.interval);
                    }
                },
                _ if room == 0 => p.next_check = Some(now + NO_ROOM_RETRY),
                probe => {
                    room -= 1;
                    p.seq += 1;
                    p.pending = Some(Pending { seq: p.seq, pid: None, deadline });
                    probes.push(Request { service: idx, seq: p.seq, probe: probe.clone(), timeout: h.timeout });
                }
            }
        }
        probes
    }

    pub(super) fn on_check_exit(&mut self, idx: usize, exit: Exit, now: Instant, sp: &mut dyn Spawn) {
        let Some(p) = self.procs.get(idx) else { return };
        let Some(seq) = p.pending.as_ref().filter(|q| q.pid == Some(exit.pid)).map(|q| q.seq) else { return };
        sp.check_done(&p.spec);
        let ok = exit.status == ExitStatus::Code(0);
        self.on_check(idx, seq, ok, &format!("exec check {}", exit.status), now);
    }

    /// Fails the checks that ran past their deadline; a late exec check is
    /// killed with what it started in the container.
    pub(super) fn check_timeouts(&mut self, now: Instant, sp: &mut dyn Spawn) {
        for idx in 0..self.procs.len() {
            let p = &self.procs[idx];
            let Some(q) = p.pending.as_ref().filter(|q| q.deadline <= now) else { continue };
            let (seq, pid) = (q.seq, q.pid);
            if let Some(pid) = pid {
                sp.kill_check(&p.spec, pid);
            }
            self.on_check(idx, seq, false, "health check timed out", now);
        }
    }

    /// Records a check's outcome.
    pub fn on_check(&mut self, idx: usize, seq: u64, ok: bool, detail: &str, now: Instant) {
        let Some(p) = self.procs.get_mut(idx) else { return };
        let Some(h) = p.spec.health.clone() else { return };
        if p.pending.as_ref().map(|q| q.seq) != Some(seq) {
            return;
        }
        p.pending = None;
        p.next_check = Some(now + h.interval);
        if ok {
            p.fails = 0;
            if p.health != Health::Healthy {
                info!("{} is healthy ({detail})", p.spec.name);
                crate::timeline::mark(&format!("healthy_{}", p.spec.name));
            }
            p.health = Health::Healthy;
            return;
        }
        let in_start_period = p.started.is_some_and(|s| now.saturating_duration_since(s) < h.start_period);
        if in_start_period && p.health == Health::Starting {
            return;
        }
        p.fails += 1;
        if p.fails >= h.retries && p.health != Health::Unhealthy {
            warn!("{} is unhealthy after {} failed checks: {detail}", p.spec.name, p.fails);
            p.health = Health::Unhealthy;
        }
    }
}
