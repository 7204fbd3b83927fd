//! A process on its way down, as a state with deadlines rather than a wait:
//! the stop signal, SIGKILL at the stop timeout, a grace after that; and the
//! runtime calls (`crun kill`, `crun delete`) made for it, children of init
//! with deadlines of their own. The event loop moves them on with
//! [`Supervisor::advance`]; shutdown drives the same states from
//! [`Supervisor::stop_all`].

use super::{Spawn, Supervisor};
use crate::reaper::{Exit, Owner, Registry};
use crate::sys::ExitStatus;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a runtime call (`crun kill`, `crun delete`) may take before it is
/// killed, and how long a SIGKILLed process or call is waited for after that.
pub(super) const RUNTIME_DEADLINE: Duration = Duration::from_secs(10);
pub(super) const KILL_GRACE: Duration = Duration::from_secs(5);

/// A process on its way down: its stop signal went out; at `deadline` it
/// gets SIGKILL (`killed`), and after that it is waited for one more grace
/// (then `given_up`: stuck in the kernel, it no longer holds anything up).
#[derive(Debug, Clone, Copy)]
pub(super) struct Stopping {
    pub(super) deadline: Instant,
    pub(super) killed: bool,
    pub(super) given_up: bool,
    /// Start it again once it is down (`cairnctl restart`).
    pub(super) restart: bool,
}

/// A runtime call on behalf of one process, an owned child with a deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call {
    pub(super) pid: i32,
    pub(super) what: CallKind,
    pub(super) deadline: Instant,
    pub(super) killed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    /// `crun kill` with this signal, for the process with this pid.
    Kill { sig: i32, target: i32 },
    /// `crun delete -f`: the container id is free again when it ends.
    Delete,
}

impl Supervisor {
    pub(super) fn on_call_exit(&mut self, idx: usize, exit: Exit, sp: &mut dyn Spawn) {
        let Some(p) = self.procs.get_mut(idx) else { return };
        let Some(at) = p.calls.iter().position(|c| c.pid == exit.pid) else { return };
        let call = p.calls.remove(at);
        if let CallKind::Kill { sig, target } = call.what {
            if exit.status != ExitStatus::Code(0) && p.pid == Some(target) {
                // The runtime may have lost the container; its process is
                // still ours to end.
                warn!("{}: the runtime's kill {}; signalling pid {target} itself", p.spec.name, exit.status);
                sp.kill(target, sig);
            }
        } else if exit.status != ExitStatus::Code(0) {
            warn!("{}: removing its container {}", p.spec.name, exit.status);
        }
    }

    /// Sends the stop signal and sets the deadline for SIGKILL.
    pub(super) fn begin_stop(&mut self, idx: usize, now: Instant, restart: bool, sp: &mut dyn Spawn, reg: &mut Registry) {
        let p = &mut self.procs[idx];
        let Some(pid) = p.pid else { return };
        if let Some(s) = &mut p.stopping {
            s.restart |= restart;
            return;
        }
        info!("stopping {} pid={pid}", p.spec.name);
        p.stopping = Some(Stopping { deadline: now + p.spec.stop_timeout, killed: false, given_up: false, restart });
        let sig = p.spec.stop_signal;
        self.send(idx, pid, sig, now, sp, reg);
    }

    fn send(&mut self, idx: usize, pid: i32, sig: i32, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) {
        let p = &mut self.procs[idx];
        if let Some(call) = sp.signal(&p.spec, pid, sig) {
            reg.register(call, Owner::Runtime(idx));
            let what = CallKind::Kill { sig, target: pid };
            p.calls.push(Call { pid: call, what, deadline: now + RUNTIME_DEADLINE, killed: false });
        }
    }

    /// Moves every deadline on: SIGKILL for a process past its stop timeout,
    /// SIGKILL for a runtime call or an exec check that ran late.
    pub fn advance(&mut self, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) {
        for idx in 0..self.procs.len() {
            let p = &mut self.procs[idx];
            for call in p.calls.iter_mut().filter(|c| c.deadline <= now) {
                if call.killed {
                    warn!("{}: runtime call pid={} outlived its SIGKILL; given up", p.spec.name, call.pid);
                } else {
                    warn!("{}: runtime call pid={} ({:?}) took over {RUNTIME_DEADLINE:?}; killing it", p.spec.name, call.pid, call.what);
                    sp.kill(call.pid, libc::SIGKILL);
                    call.killed = true;
                    call.deadline = now + KILL_GRACE;
                }
            }
            // A call that outlives its SIGKILL (stuck in the kernel) no
            // longer holds the process; the reaper forgets it when it ends.
            p.calls.retain(|c| !(c.killed && c.deadline <= now));
            let (Some(pid), Some(stop)) = (p.pid, p.stopping.as_mut()) else { continue };
            if stop.given_up || stop.deadline > now {
                continue;
            }
            if stop.killed {
                warn!("{} pid={pid} is still there {KILL_GRACE:?} after SIGKILL; given up", p.spec.name);
                stop.given_up = true;
                continue;
            }
            warn!("{} pid={pid} did not stop within {:?}; killing it", p.spec.name, p.spec.stop_timeout);
            stop.killed = true;
            stop.deadline = now + KILL_GRACE;
            self.send(idx, pid, libc::SIGKILL, now, sp, reg);
        }
        self.check_timeouts(now, sp);
    }

    /// Restarts a service by name: starts its stop and returns at once; the
    /// event loop starts it again, without back-off, once it is down.
    pub fn restart(&mut self, name: &str, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) -> Result<(), String> {
        if self.shutting_down {
            return Err("shutting down".into());
        }
        let idx = self.index(name).ok_or_else(|| format!("no service named {name}"))?;
        if self.procs[idx].retired {
            return Err(format!("{name} is disabled by the machine config"));
        }
        self.procs[idx].restarts += 1;
        if self.procs[idx].pid.is_some() {
            self.begin_stop(idx, now, true, sp, reg);
        } else {
            let p = &mut self.procs[idx];
            p.quick_exits = 0;
            p.next_start = Some(now);
        }
        Ok(())
    }

    /// Shutdown: stops everything in reverse order of start, each process
    /// down (or given up after SIGKILL and a grace) before the next, driving
    /// the same state machine as the event loop. `tick` runs between turns
    /// (the caller pets its watchdog there), so a slow stop never resets
    /// the machine; the whole is bounded by the stop timeouts.
    pub fn stop_all(&mut self, sp: &mut dyn Spawn, reg: &mut Registry, tick: &mut dyn FnMut()) {
        self.shutting_down = true;
        for p in &mut self.procs {
            // A restart asked for earlier is void now.
            if let Some(s) = &mut p.stopping {
                s.restart = false;
            }
        }
        let mut next = self.procs.len();
        loop {
            let now = Instant::now();
            for exit in sp.reap(reg) {
                self.on_exit(exit, now, sp, reg);
            }
            self.advance(now, sp, reg);
            // The next one goes down once the one before it is down, or its
            // SIGKILL went unanswered for a grace.
            let busy = self.procs.iter().any(|p| p.pid.is_some() && p.stopping.is_some_and(|s| !s.given_up));
            if !busy {
                while next > 0 {
                    next -= 1;
                    if self.procs[next].pid.is_some() && self.procs[next].stopping.is_none() {
                        self.begin_stop(next, now, false, sp, reg);
                        break;
                    }
                }
            }
            let settled = self.procs.iter().all(|p| {
                p.calls.is_empty() && (p.pid.is_none() || p.stopping.is_some_and(|s| s.given_up))
            });
            if next == 0 && !busy && settled {
                return;
            }
            tick();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
