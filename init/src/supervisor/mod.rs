//! Processes init keeps running: system services (each a `crun run` of its
//! bundle) and the debug shell. Started in dependency order, restarted per
//! policy with exponential back-off, health-checked, stopped in reverse order.
//!
//! Nothing here waits. Every process, runtime call and exec check is a child
//! the reaper hands back by pid; stopping is a state with a deadline that the
//! event loop drives ([`Supervisor::advance`]), so a service that ignores its
//! stop signal, or a runtime call that hangs, never holds PID 1.
//!
//! The decisions live here (starts, exits, restart policy), in [`stop`]
//! (stopping and runtime calls) and in [`health`]; what touches the machine
//! sits behind [`Spawn`] ([`runtime`] has the real one), so the logic is
//! unit-tested with a fake.

mod health;
mod reconcile;
mod runtime;
mod stop;
#[cfg(test)]
mod tests;

use crate::reaper::{Exit, Owner, Registry};
use crate::sys::ExitStatus;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub use runtime::{runtime, set_runtime, RealSpawner};
use stop::{Call, CallKind, Stopping, RUNTIME_DEADLINE};
#[cfg(test)]
use stop::KILL_GRACE;

// The service model (restart policy, dependency condition, health check) is
// the one cairn-svcload hands over; init adds only how to run and stop.
pub use cairn_model::wire::{Check, Condition, HealthSpec, RestartPolicy};

/// What to run and how to stop it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run as a session leader with this terminal as controlling tty and stdio.
    pub tty: Option<String>,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    /// Counts as a system service in the ready line (debug tools do not).
    pub service: bool,
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub depends: Vec<(String, Condition)>,
    /// Capture stdout and stderr into the service's log.
    pub capture: bool,
    /// The OCI container id, when the process is `crun run`.
    pub container: Option<String>,
    pub health: Option<HealthSpec>,
}

impl Spec {
    /// A plain process with the defaults of a supervised helper.
    pub fn process(name: &str, argv: Vec<String>) -> Spec {
        Spec {
            name: name.into(),
            argv,
            env: Vec::new(),
            tty: None,
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            service: false,
            restart: RestartPolicy::Always,
            backoff: Backoff::default(),
            depends: Vec::new(),
            capture: false,
            container: None,
            health: None,
        }
    }
}

/// Restart delays: `base` doubled on every quick exit, at most `cap`; a process
/// that stayed up `stable_after` starts again from `base`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30), stable_after: Duration::from_secs(10) }
    }
}

impl Backoff {
    pub fn delay(&self, quick_exits: u32) -> Duration {
        let factor = 1u32.checked_shl(quick_exits.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No health check: running counts as healthy.
    NoCheck,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    fn word(self) -> &'static str {
        match self {
            Health::NoCheck => "-",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// A health check in flight.
#[derive(Debug)]
struct Pending {
    seq: u64,
    /// The exec check's `crun exec`, or none for a probe.
    pid: Option<i32>,
    deadline: Instant,
}

#[derive(Debug)]
struct Proc {
    spec: Spec,
    pid: Option<i32>,
    started: Option<Instant>,
    ever_started: bool,
    next_start: Option<Instant>,
    quick_exits: u32,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    health: Health,
    fails: u32,
    next_check: Option<Instant>,
    seq: u64,
    pending: Option<Pending>,
    stopping: Option<Stopping>,
    calls: Vec<Call>,
    out: Vec<(OwnedFd, u8)>,
    /// Taken out of the service set by a config change: stopped, never
    /// started again unless a later change brings it back.
    retired: bool,
    /// The spec it starts with once its current run is down (a config change).
    next_spec: Option<Spec>,
}

impl Proc {
    /// Its container id is still taken by a `crun delete` in flight.
    fn deleting(&self) -> bool {
        self.calls.iter().any(|c| c.what == CallKind::Delete)
    }
}

/// A process started by a [`Spawn`].
pub struct Spawned {
    pub pid: i32,
    /// Read ends of its stdout (1) and stderr (2), when captured.
    pub out: Vec<(OwnedFd, u8)>,
}

/// Everything that touches the machine; tests replace it. Nothing here may
/// wait for a process: what takes time is a child whose pid comes back.
pub trait Spawn {
    fn spawn(&mut self, spec: &Spec) -> io::Result<Spawned>;
    /// Starts an exec health check in the service's container; its pid.
    fn exec_check(&mut self, spec: &Spec, argv: &[String]) -> io::Result<i32>;
    /// Ends an exec check that ran late: its client at `pid`, and what it
    /// started inside the container.
    fn kill_check(&mut self, spec: &Spec, pid: i32);
    /// Forgets what an exec check that ended left behind.
    fn check_done(&mut self, spec: &Spec);
    /// Sends `sig` to the process at `pid`: at once, or through a runtime
    /// call whose pid is returned.
    fn signal(&mut self, spec: &Spec, pid: i32, sig: i32) -> Option<i32>;
    /// Removes what is left of a stopped container: the runtime call's pid,
    /// or none when there is nothing to remove.
    fn cleanup(&mut self, spec: &Spec) -> Option<i32>;
    /// Sends `sig` to a child init started.
    fn kill(&mut self, pid: i32, sig: i32);
    /// The exits of init's children so far, sorted by owner.
    fn reap(&mut self, reg: &mut Registry) -> Vec<Exit>;
}

/// A row of `cairnctl list`.
pub struct Row {
    pub name: String,
    pub state: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub uptime: Option<Duration>,
    pub health: &'static str,
}

pub struct Supervisor {
    procs: Vec<Proc>,
    /// Shutdown: nothing starts or restarts any more.
    shutting_down: bool,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor { procs: Vec::new(), shutting_down: false }
    }

    pub fn add(&mut self, spec: Spec, now: Instant) {
        let health = if spec.health.is_some() { Health::Starting } else { Health::NoCheck };
        self.procs.push(Proc {
            spec,
            pid: None,
            started: None,
            ever_started: false,
            next_start: Some(now),
            quick_exits: 0,
            restarts: 0,
            last_exit: None,
            health,
            fails: 0,
            next_check: None,
            seq: 0,
            pending: None,
            stopping: None,
            calls: Vec::new(),
            out: Vec::new(),
            retired: false,
            next_spec: None,
        });
    }

    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.procs.iter().filter(|p| p.pid.is_some()).count()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.spec.name == name)
    }

    fn deps_met(&self, idx: usize) -> Result<(), String> {
        for (dep, cond) in &self.procs[idx].spec.depends {
            let Some(d) = self.index(dep).map(|i| &self.procs[i]) else {
                return Err(format!("{dep} (not a known service)"));
            };
            let up = d.pid.is_some() && d.stopping.is_none();
            let ok = match cond {
                Condition::Started => up,
                Condition::Healthy => up && matches!(d.health, Health::Healthy | Health::NoCheck),
            };
            if !ok {
                return Err(format!("{dep} to be {}", if *cond == Condition::Started { "started" } else { "healthy" }));
            }
        }
        Ok(())
    }

    /// Starts what is due and whose dependencies are met, in the order added.
    pub fn start_due(&mut self, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) {
        if self.shutting_down {
            return;
        }
        for idx in 0..self.procs.len() {
            let p = &self.procs[idx];
            if p.pid.is_some() || p.retired || p.deleting() || p.next_start.is_none_or(|t| t > now) || self.deps_met(idx).is_err() {
                continue;
            }
            let p = &mut self.procs[idx];
            match sp.spawn(&p.spec) {
                Ok(spawned) => {
                    reg.register(spawned.pid, Owner::Supervised(idx));
                    info!("started {} pid={}", p.spec.name, spawned.pid);
                    crate::timeline::mark(&format!("start_{}", p.spec.name));
                    p.pid = Some(spawned.pid);
                    p.started = Some(now);
                    p.ever_started = true;
                    p.next_start = None;
                    p.out = spawned.out;
                    if let Some(h) = &p.spec.health {
                        p.health = Health::Starting;
                        p.fails = 0;
                        p.next_check = Some(now + h.interval.min(Duration::from_millis(500)));
                    }
                }
                Err(e) => {
                    let delay = p.spec.backoff.delay(p.quick_exits);
                    p.quick_exits += 1;
                    let prog = p.spec.argv.first().map_or("", String::as_str);
                    warn!("cannot start {} ({prog}): {e}; next try in {delay:?}", p.spec.name);
                    p.next_start = Some(now + delay);
                }
            }
        }
    }

    /// Takes an exit from the reaper: a service's, a runtime call's or a
    /// health check's.
    pub fn on_exit(&mut self, exit: Exit, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) {
        match exit.owner {
            Owner::Supervised(idx) => self.on_service_exit(idx, exit, now, sp, reg),
            Owner::Runtime(idx) => self.on_call_exit(idx, exit, sp),
            Owner::Check(idx) => self.on_check_exit(idx, exit, now, sp),
        }
    }

    fn on_service_exit(&mut self, idx: usize, exit: Exit, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) {
        let shutting_down = self.shutting_down;
        let Some(p) = self.procs.get_mut(idx) else { return };
        if p.pid != Some(exit.pid) {
            return;
        }
        p.pid = None;
        p.last_exit = Some(exit.status);
        p.pending = None;
        p.next_check = None;
        if p.spec.health.is_some() {
            p.health = Health::Starting;
        }
        // A `crun kill` for the process that just went is moot.
        p.calls.retain(|c| !matches!(c.what, CallKind::Kill { target, .. } if target == exit.pid));
        if let Some(pid) = sp.cleanup(&p.spec) {
            reg.register(pid, Owner::Runtime(idx));
            p.calls.push(Call { pid, what: CallKind::Delete, deadline: now + RUNTIME_DEADLINE, killed: false });
        }
        let ran = p.started.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        if let Some(next) = p.next_spec.take() {
            // Its container is deleted under the old spec's id (above).
            p.health = if next.health.is_some() { Health::Starting } else { Health::NoCheck };
            p.spec = next;
        }
        if let Some(stop) = p.stopping.take() {
            info!("stopped {} pid={} {}", p.spec.name, exit.pid, exit.status);
            if stop.restart && !shutting_down {
                p.quick_exits = 0;
                p.next_start = Some(now);
            }
            return;
        }
        if shutting_down || p.retired {
            info!("{} pid={} {} ({})", p.spec.name, exit.pid, exit.status, if shutting_down { "during shutdown" } else { "taken out of the service set" });
            return;
        }
        let failed = exit.status != ExitStatus::Code(0);
        let how = if failed { format!("failed with {}", exit.status) } else { "exited".to_string() };
        let again = match p.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !again {
            warn!("{} pid={} {how} after {:.1}s; not restarted (restart policy)", p.spec.name, exit.pid, ran.as_secs_f64());
            return;
        }
        if ran >= p.spec.backoff.stable_after {
            p.quick_exits = 0;
        }
        let delay = p.spec.backoff.delay(p.quick_exits);
        p.quick_exits += 1;
        p.restarts += 1;
        p.next_start = Some(now + delay);
        warn!(
            "{} pid={} {how} after {:.1}s; restart {} in {:.1}s",
            p.spec.name,
            exit.pid,
            ran.as_secs_f64(),
            p.restarts,
            delay.as_secs_f64()
        );
    }

    /// When something next needs doing.
    pub fn next_deadline(&self) -> Option<Instant> {
        let shutting_down = self.shutting_down;
        self.procs
            .iter()
            .flat_map(|p| {
                let start = (p.pid.is_none() && !p.deleting() && !shutting_down).then_some(p.next_start).flatten();
                let check = p.next_check.filter(|_| p.pid.is_some() && p.pending.is_none() && !shutting_down);
                let pending = p.pending.as_ref().map(|q| q.deadline);
                let stop = p.stopping.filter(|s| !s.given_up).map(|s| s.deadline);
                let call = p.calls.iter().map(|c| c.deadline).min();
                [start, check, pending, stop, call]
            })
            .flatten()
            .min()
    }

    /// Up: running and, where it has a check, healthy; or a one-shot that
    /// finished cleanly and is not to run again.
    fn up(p: &Proc) -> bool {
        let running = p.pid.is_some() && matches!(p.health, Health::Healthy | Health::NoCheck);
        let completed = p.pid.is_none() && p.next_start.is_none() && p.last_exit == Some(ExitStatus::Code(0));
        running || completed
    }

    /// True once every service is up (and every helper has started).
    pub fn ready(&self) -> bool {
        self.procs.iter().filter(|p| !p.retired).all(|p| if p.spec.service { Self::up(p) } else { p.ever_started })
    }

    /// Whether the service `name` is up; None if there is no such service.
    pub fn is_up(&self, name: &str) -> Option<bool> {
        self.index(name).map(|i| Self::up(&self.procs[i]))
    }

    /// What keeps `ready` false, for the operator.
    pub fn not_ready(&self) -> Vec<String> {
        self.procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.spec.service && !p.retired && !Self::up(p))
            .map(|(i, p)| match (p.pid, self.deps_met(i)) {
                (None, Err(w)) => format!("{} (waiting for {w})", p.spec.name),
                (None, Ok(())) => format!("{} (not running; last exit {})", p.spec.name, p.last_exit.map_or("none".into(), |s| s.to_string())),
                (Some(_), _) => format!("{} ({})", p.spec.name, p.health.word()),
            })
            .collect()
    }

    pub fn services_running(&self) -> usize {
        self.procs.iter().filter(|p| p.pid.is_some() && p.spec.service).count()
    }

    pub fn rows(&self, now: Instant) -> Vec<Row> {
        self.procs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let state = match (p.pid, &p.next_start) {
                    (Some(_), _) if p.stopping.is_some() => "stopping".to_string(),
                    (Some(_), _) => "running".to_string(),
                    (None, _) if p.retired => "disabled".into(),
                    (None, Some(_)) if self.deps_met(i).is_err() => "waiting".into(),
                    (None, Some(_)) if p.ever_started => "restarting".into(),
                    (None, Some(_)) => "starting".into(),
                    (None, None) => format!("stopped ({})", p.last_exit.map_or("never ran".into(), |s| s.to_string())),
                };
                Row {
                    name: p.spec.name.clone(),
                    state,
                    pid: p.pid,
                    restarts: p.restarts,
                    uptime: p.pid.and(p.started).map(|s| now.saturating_duration_since(s)),
                    health: p.health.word(),
                }
            })
            .collect()
    }

    /// The captured output fds: (fd, service index, stream).
    pub fn outputs(&self) -> Vec<(RawFd, usize, u8)> {
        self.procs
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.out.iter().map(move |(fd, s)| (fd.as_raw_fd(), i, *s)))
            .collect()
    }

    pub fn close_output(&mut self, idx: usize, fd: RawFd) {
        if let Some(p) = self.procs.get_mut(idx) {
            p.out.retain(|(f, _)| f.as_raw_fd() != fd);
        }
    }

    pub fn name(&self, idx: usize) -> Option<&str> {
        self.procs.get(idx).map(|p| p.spec.name.as_str())
    }

    pub fn knows(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    pub fn container(&self, name: &str) -> Option<String> {
        self.index(name).and_then(|i| self.procs[i].spec.container.clone())
    }

}
