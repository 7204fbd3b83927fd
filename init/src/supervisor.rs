//! Processes init keeps running: system services (each a `crun run` of its
//! bundle) and the debug shell. Started in dependency order, restarted per
//! policy with exponential back-off, health-checked, stopped in reverse order.
//!
//! The decisions live here; what touches the machine sits behind [`Spawn`],
//! so the logic is unit-tested with a fake.

use crate::reaper::{Exit, Owner, Registry};
use crate::sys::ExitStatus;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};
use tracing::{info, warn};

// The service model (restart policy, dependency condition, health check) is
// the one cairn-svcload hands over; init adds only how to run and stop.
pub use cairn_model::wire::{Check, Condition, HealthSpec, RestartPolicy};

/// What to run and how to stop it.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Copy)]
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

#[derive(Debug)]
struct Pending {
    seq: u64,
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
    out: Vec<(OwnedFd, u8)>,
}

/// A process started by a [`Spawn`].
pub struct Spawned {
    pub pid: i32,
    /// Read ends of its stdout (1) and stderr (2), when captured.
    pub out: Vec<(OwnedFd, u8)>,
}

/// Everything that touches the machine; tests replace it.
pub trait Spawn {
    fn spawn(&mut self, spec: &Spec) -> io::Result<Spawned>;
    /// Starts an exec health check in a container; returns its pid.
    fn exec_check(&mut self, container: &str, argv: &[String]) -> io::Result<i32>;
    /// Sends `sig` to the process, through the runtime for containers.
    fn signal(&mut self, spec: &Spec, pid: i32, sig: i32);
    /// Removes what is left of a stopped container.
    fn cleanup(&mut self, spec: &Spec);
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
    stopping: bool,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor { procs: Vec::new(), stopping: false }
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
            out: Vec::new(),
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
            let up = d.pid.is_some();
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
        if self.stopping {
            return;
        }
        for idx in 0..self.procs.len() {
            let p = &self.procs[idx];
            if p.pid.is_some() || p.next_start.is_none_or(|t| t > now) || self.deps_met(idx).is_err() {
                continue;
            }
            let p = &mut self.procs[idx];
            match sp.spawn(&p.spec) {
                Ok(spawned) => {
                    reg.register(spawned.pid, Owner::Supervised(idx));
                    info!("started {} pid={}", p.spec.name, spawned.pid);
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

    /// Takes an exit from the reaper: a service's, or a health check's.
    pub fn on_exit(&mut self, exit: Exit, now: Instant, sp: &mut dyn Spawn) {
        match exit.owner {
            Owner::Supervised(idx) => self.on_service_exit(idx, exit, now, sp),
            Owner::Check(idx) => {
                let seq = self.procs.get(idx).and_then(|p| p.pending.as_ref()).filter(|q| q.pid == Some(exit.pid)).map(|q| q.seq);
                if let Some(seq) = seq {
                    let ok = exit.status == ExitStatus::Code(0);
                    self.on_check(idx, seq, ok, &format!("exec check {}", exit.status), now);
                }
            }
        }
    }

    fn on_service_exit(&mut self, idx: usize, exit: Exit, now: Instant, sp: &mut dyn Spawn) {
        let stopping = self.stopping;
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
        sp.cleanup(&p.spec);
        let ran = p.started.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        if stopping {
            info!("stopped {} pid={} {}", p.spec.name, exit.pid, exit.status);
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

    /// Starts the health checks that are due. Exec checks become children of
    /// init; probes are returned for the worker thread.
    pub fn checks_due(&mut self, now: Instant, sp: &mut dyn Spawn, reg: &mut Registry) -> Vec<crate::health::Request> {
        let mut probes = Vec::new();
        for (idx, p) in self.procs.iter_mut().enumerate() {
            let (Some(h), Some(_)) = (&p.spec.health, p.pid) else { continue };
            if p.pending.is_some() || p.next_check.is_none_or(|t| t > now) {
                continue;
            }
            p.seq += 1;
            let deadline = now + h.timeout;
            match &h.check {
                Check::Exec(argv) => {
                    let id = p.spec.container.clone().unwrap_or_default();
                    match sp.exec_check(&id, argv) {
                        Ok(pid) => {
                            reg.register(pid, Owner::Check(idx));
                            p.pending = Some(Pending { seq: p.seq, pid: Some(pid), deadline });
                        }
                        Err(e) => {
                            warn!("cannot run the health check of {}: {e}", p.spec.name);
                            p.next_check = Some(now + h.interval);
                        }
                    }
                }
                probe => {
                    p.pending = Some(Pending { seq: p.seq, pid: None, deadline });
                    probes.push(crate::health::Request { service: idx, seq: p.seq, probe: probe.clone(), timeout: h.timeout });
                }
            }
        }
        probes
    }

    /// Fails the checks that ran past their timeout (killing exec checks).
    pub fn check_timeouts(&mut self, now: Instant) {
        let mut late = Vec::new();
        for (idx, p) in self.procs.iter().enumerate() {
            if let Some(q) = p.pending.as_ref().filter(|q| q.deadline <= now) {
                late.push((idx, q.seq, q.pid));
            }
        }
        for (idx, seq, pid) in late {
            if let Some(pid) = pid {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
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

    /// When something next needs doing.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.procs
            .iter()
            .flat_map(|p| {
                let start = if p.pid.is_none() { p.next_start } else { None };
                let check = if p.pending.is_none() { p.next_check.filter(|_| p.pid.is_some()) } else { None };
                [start, check, p.pending.as_ref().map(|q| q.deadline)]
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
        self.procs.iter().all(|p| if p.spec.service { Self::up(p) } else { p.ever_started })
    }

    /// What keeps `ready` false, for the operator.
    pub fn not_ready(&self) -> Vec<String> {
        self.procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.spec.service && !Self::up(p))
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
                    (Some(_), _) => "running".to_string(),
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

    /// Reaps until the process at `idx` has exited or `limit` passes; true if it exited.
    fn wait_exited(&mut self, idx: usize, limit: Duration, reg: &mut Registry, sp: &mut dyn Spawn) -> bool {
        let deadline = Instant::now() + limit;
        while self.procs[idx].pid.is_some() && Instant::now() < deadline {
            for exit in reg.reap() {
                self.on_exit(exit, Instant::now(), sp);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.procs[idx].pid.is_none()
    }

    /// Stops one process: its stop signal, up to its timeout, then SIGKILL.
    fn stop_one(&mut self, idx: usize, reg: &mut Registry, sp: &mut dyn Spawn) {
        let Some(pid) = self.procs[idx].pid else { return };
        let spec = self.procs[idx].spec.clone();
        info!("stopping {} pid={pid}", spec.name);
        sp.signal(&spec, pid, spec.stop_signal);
        if !self.wait_exited(idx, spec.stop_timeout, reg, sp) {
            warn!("{} pid={pid} did not stop within {:?}; killing it", spec.name, spec.stop_timeout);
            sp.signal(&spec, pid, libc::SIGKILL);
            self.wait_exited(idx, Duration::from_secs(5).min(spec.stop_timeout * 2), reg, sp);
        }
    }

    /// Restarts a service by name now (stop, then start without back-off).
    pub fn restart(&mut self, name: &str, reg: &mut Registry, sp: &mut dyn Spawn) -> Result<(), String> {
        let idx = self.index(name).ok_or_else(|| format!("no service named {name}"))?;
        self.stopping = true;
        self.stop_one(idx, reg, sp);
        self.stopping = false;
        let p = &mut self.procs[idx];
        p.quick_exits = 0;
        p.restarts += 1;
        p.next_start = Some(Instant::now());
        Ok(())
    }

    /// Stops everything in reverse order of start.
    pub fn stop_all(&mut self, reg: &mut Registry, sp: &mut dyn Spawn) {
        self.stopping = true;
        for idx in (0..self.procs.len()).rev() {
            self.stop_one(idx, reg, sp);
        }
    }
}

/// The OCI runtime every service uses: crun, or runc with `cairn.runtime=runc`.
static RUNTIME: std::sync::OnceLock<(&'static str, &'static str)> = std::sync::OnceLock::new();

pub fn set_runtime(name: &str) {
    let _ = RUNTIME.set(cairn_model::wire::runtime_paths(name));
}

/// The runtime's binary and state directory.
pub fn runtime() -> (&'static str, &'static str) {
    RUNTIME.get().copied().unwrap_or_else(|| cairn_model::wire::runtime_paths("crun"))
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on an fd we own; only the O_NONBLOCK flag changes.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Runs a short runtime command to completion. Safe beside the reaper: both
/// run on the main thread, and this waits for its own pid only.
fn crun(args: &[&str]) -> io::Result<std::process::ExitStatus> {
    let (bin, state) = runtime();
    crate::sys::command(bin)
        .arg("--root")
        .arg(state)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
}

/// Spawns real processes.
pub struct RealSpawner;

impl Spawn for RealSpawner {
    fn spawn(&mut self, spec: &Spec) -> io::Result<Spawned> {
        // No `crun delete` first: every exit is cleaned up (see cleanup) and
        // /run starts empty, and a second runtime call would double the start.
        let (prog, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut cmd = crate::sys::command(prog);
        cmd.args(args).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v))).current_dir("/");
        cmd.stdin(std::process::Stdio::null());
        if spec.capture {
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        }
        if let Some(tty) = &spec.tty {
            let tty = CString::new(format!("/dev/{tty}"))
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in tty name"))?;
            // SAFETY: the closure runs between fork and exec and only makes
            // async-signal-safe calls (setsid, open, ioctl, dup2, close) on data
            // prepared before the fork.
            unsafe {
                cmd.pre_exec(move || crate::sys::become_tty_session(&tty));
            }
        }
        // sys::command gives the child a clean signal mask and default
        // dispositions. The Child handle is dropped without waiting: the
        // reaper owns all waiting.
        let mut child = cmd.spawn()?;
        let mut out = Vec::new();
        if let Some(o) = child.stdout.take() {
            out.push((OwnedFd::from(o), 1));
        }
        if let Some(e) = child.stderr.take() {
            out.push((OwnedFd::from(e), 2));
        }
        for (fd, _) in &out {
            set_nonblocking(fd);
        }
        Ok(Spawned { pid: child.id() as i32, out })
    }

    fn exec_check(&mut self, container: &str, argv: &[String]) -> io::Result<i32> {
        let (bin, state) = runtime();
        let child = crate::sys::command(bin)
            .args(["--root", state, "exec", container])
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(child.id() as i32)
    }

    fn signal(&mut self, spec: &Spec, pid: i32, sig: i32) {
        match &spec.container {
            Some(id) => {
                let ok = crun(&["kill", id, &sig.to_string()]).is_ok_and(|s| s.success());
                if !ok {
                    // The runtime may have lost the container; its process
                    // is still ours to end.
                    let _ = crate::sys::kill(pid, sig);
                }
            }
            None => {
                let _ = crate::sys::kill(pid, sig);
            }
        }
    }

    fn cleanup(&mut self, spec: &Spec) {
        if let Some(id) = &spec.container {
            let _ = crun(&["delete", "-f", id]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        next_pid: i32,
        fail: bool,
        started: Vec<String>,
        signals: Vec<(String, i32)>,
    }

    impl Spawn for Fake {
        fn spawn(&mut self, spec: &Spec) -> io::Result<Spawned> {
            if self.fail {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.next_pid += 1;
            self.started.push(spec.name.clone());
            Ok(Spawned { pid: self.next_pid, out: Vec::new() })
        }
        fn exec_check(&mut self, _: &str, _: &[String]) -> io::Result<i32> {
            self.next_pid += 1;
            Ok(self.next_pid)
        }
        fn signal(&mut self, spec: &Spec, _: i32, sig: i32) {
            self.signals.push((spec.name.clone(), sig));
        }
        fn cleanup(&mut self, _: &Spec) {}
    }

    fn spec(name: &str) -> Spec {
        Spec { service: true, ..Spec::process(name, vec!["/bin/true".into()]) }
    }

    fn exit(reg: &mut Registry, pid: i32, status: ExitStatus) -> Exit {
        reg.take(pid, status).unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(b.delay(u32::MAX), b.cap);
    }

    #[test]
    fn quick_exits_back_off_and_a_stable_run_resets() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut reg = Registry::default();
        let mut fake = Fake { next_pid: 100, ..Default::default() };
        sup.add(spec("a"), t0);
        sup.add(spec("b"), t0);
        sup.start_due(t0, &mut fake, &mut reg);
        assert_eq!(fake.started, ["a", "b"]);
        assert_eq!(sup.running(), 2);

        let e = exit(&mut reg, 101, ExitStatus::Code(3));
        sup.on_exit(e, t0 + Duration::from_secs(1), &mut fake);
        assert_eq!(sup.next_deadline(), Some(t0 + Duration::from_millis(1500)));
        sup.start_due(t0 + Duration::from_millis(1400), &mut fake, &mut reg);
        assert_eq!(fake.started.len(), 2, "not before its back-off");
        sup.start_due(t0 + Duration::from_millis(1500), &mut fake, &mut reg);
        assert_eq!(fake.started.len(), 3);

        let e = exit(&mut reg, 103, ExitStatus::Signal(9));
        let t = t0 + Duration::from_millis(1600);
        sup.on_exit(e, t, &mut fake);
        assert_eq!(sup.next_deadline(), Some(t + Duration::from_secs(1)), "second quick exit doubles");

        sup.start_due(t + Duration::from_secs(1), &mut fake, &mut reg);
        let e = exit(&mut reg, 104, ExitStatus::Code(1));
        let t = t + Duration::from_secs(60);
        sup.on_exit(e, t, &mut fake);
        assert_eq!(sup.next_deadline(), Some(t + Duration::from_millis(500)), "a long run resets");
    }

    #[test]
    fn restart_policies() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut reg = Registry::default();
        let mut fake = Fake::default();
        sup.add(Spec { restart: RestartPolicy::OnFailure, ..spec("onf") }, t0);
        sup.add(Spec { restart: RestartPolicy::Never, ..spec("never") }, t0);
        sup.start_due(t0, &mut fake, &mut reg);
        let e = exit(&mut reg, 1, ExitStatus::Code(0));
        sup.on_exit(e, t0, &mut fake);
        let e = exit(&mut reg, 2, ExitStatus::Code(1));
        sup.on_exit(e, t0, &mut fake);
        assert_eq!(sup.next_deadline(), None, "clean exit under on-failure and any exit under never end it");
        let rows = sup.rows(t0);
        assert_eq!(rows[0].state, "stopped (status 0)");
        assert_eq!(rows[1].state, "stopped (status 1)");
        assert!(!sup.ready(), "a failed one-shot is not up");
        assert_eq!(sup.not_ready(), ["never (not running; last exit status 1)"]);
    }

    #[test]
    fn a_failed_spawn_is_retried_later() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut reg = Registry::default();
        let mut fake = Fake { fail: true, ..Default::default() };
        sup.add(spec("a"), t0);
        sup.start_due(t0, &mut fake, &mut reg);
        assert_eq!(sup.running(), 0);
        assert_eq!(sup.next_deadline(), Some(t0 + Duration::from_millis(500)));
    }

    fn exec_health() -> HealthSpec {
        HealthSpec {
            check: Check::Exec(vec!["/bin/true".into()]),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 2,
            start_period: Duration::ZERO,
        }
    }

    #[test]
    fn depends_on_healthy_waits_for_the_check() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut reg = Registry::default();
        let mut fake = Fake::default();
        sup.add(Spec { health: Some(exec_health()), ..spec("db") }, t0);
        sup.add(Spec { depends: vec![("db".into(), Condition::Healthy)], ..spec("app") }, t0);
        sup.start_due(t0, &mut fake, &mut reg);
        assert_eq!(fake.started, ["db"], "app waits for db to be healthy");
        assert!(!sup.ready());
        assert_eq!(sup.not_ready(), ["db (starting)", "app (waiting for db to be healthy)"]);
        let t1 = t0 + Duration::from_millis(600);
        assert!(sup.checks_due(t1, &mut fake, &mut reg).is_empty(), "exec checks are children, not probes");
        let e = exit(&mut reg, 2, ExitStatus::Code(0));
        sup.on_exit(e, t1, &mut fake);
        sup.start_due(t1, &mut fake, &mut reg);
        assert_eq!(fake.started, ["db", "app"]);
        assert!(sup.ready());
    }

    #[test]
    fn failed_checks_make_a_service_unhealthy_after_its_retries() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut reg = Registry::default();
        let mut fake = Fake::default();
        sup.add(Spec { health: Some(exec_health()), ..spec("s") }, t0);
        sup.start_due(t0, &mut fake, &mut reg);
        let mut t = t0;
        for round in 0..2 {
            t += Duration::from_secs(1);
            sup.checks_due(t, &mut fake, &mut reg);
            let pid = fake.next_pid;
            let e = exit(&mut reg, pid, ExitStatus::Code(1));
            sup.on_exit(e, t, &mut fake);
            let h = sup.rows(t)[0].health;
            assert_eq!(h, if round == 0 { "starting" } else { "unhealthy" });
        }
    }

    #[test]
    fn stop_all_goes_in_reverse_and_nothing_restarts() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new();
        let mut reg = Registry::default();
        let mut fake = Fake::default();
        sup.add(Spec { stop_timeout: Duration::from_millis(30), ..spec("first") }, t0);
        sup.add(Spec { stop_signal: libc::SIGINT, stop_timeout: Duration::from_millis(30), ..spec("second") }, t0);
        sup.start_due(t0, &mut fake, &mut reg);
        sup.stop_all(&mut reg, &mut fake);
        let names: Vec<_> = fake.signals.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        assert_eq!(
            names,
            [("second", libc::SIGINT), ("second", libc::SIGKILL), ("first", libc::SIGTERM), ("first", libc::SIGKILL)]
        );
        assert_eq!(sup.next_deadline(), None);
    }
}
