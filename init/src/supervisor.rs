//! Processes init keeps running: started in order, restarted with exponential
//! back-off when they exit, stopped in reverse order at shutdown.

use crate::reaper::{Exit, Owner, Registry};
use crate::sys::ExitStatus;
use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};
use tracing::{info, warn};

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

#[derive(Debug)]
struct Proc {
    spec: Spec,
    pid: Option<i32>,
    started: Option<Instant>,
    next_start: Option<Instant>,
    quick_exits: u32,
    restarts: u32,
}

/// Starts a process for a spec; the seam tests replace.
pub trait Spawn {
    fn spawn(&mut self, spec: &Spec) -> io::Result<i32>;
}

pub struct Supervisor {
    procs: Vec<Proc>,
    backoff: Backoff,
    stopping: bool,
}

impl Supervisor {
    pub fn new(backoff: Backoff) -> Supervisor {
        Supervisor { procs: Vec::new(), backoff, stopping: false }
    }

    pub fn add(&mut self, spec: Spec, now: Instant) {
        self.procs.push(Proc { spec, pid: None, started: None, next_start: Some(now), quick_exits: 0, restarts: 0 });
    }

    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.procs.iter().filter(|p| p.pid.is_some()).count()
    }

    /// True once everything added has been started at least once.
    pub fn all_started(&self) -> bool {
        self.procs.iter().all(|p| p.started.is_some())
    }

    /// System services running now.
    pub fn services_running(&self) -> usize {
        self.procs.iter().filter(|p| p.pid.is_some() && p.spec.service).count()
    }

    /// Starts what is due, in the order added.
    pub fn start_due(&mut self, now: Instant, spawner: &mut dyn Spawn, reg: &mut Registry) {
        if self.stopping {
            return;
        }
        for (idx, p) in self.procs.iter_mut().enumerate() {
            if p.pid.is_some() || p.next_start.is_none_or(|t| t > now) {
                continue;
            }
            match spawner.spawn(&p.spec) {
                Ok(pid) => {
                    reg.register(pid, Owner::Supervised(idx));
                    info!("started {} pid={pid}", p.spec.name);
                    p.pid = Some(pid);
                    p.started = Some(now);
                    p.next_start = None;
                }
                Err(e) => {
                    let delay = self.backoff.delay(p.quick_exits);
                    p.quick_exits += 1;
                    warn!("cannot start {}: {e}; next try in {delay:?}", p.spec.name);
                    p.next_start = Some(now + delay);
                }
            }
        }
    }

    /// Takes an exit from the reaper and schedules the restart.
    pub fn on_exit(&mut self, exit: Exit, now: Instant) {
        let Owner::Supervised(idx) = exit.owner;
        let Some(p) = self.procs.get_mut(idx) else { return };
        if p.pid != Some(exit.pid) {
            return;
        }
        p.pid = None;
        let ran = p.started.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        if self.stopping {
            info!("stopped {} pid={} {}", p.spec.name, exit.pid, exit.status);
            return;
        }
        if ran >= self.backoff.stable_after {
            p.quick_exits = 0;
        }
        let delay = self.backoff.delay(p.quick_exits);
        p.quick_exits += 1;
        p.restarts += 1;
        p.next_start = Some(now + delay);
        let how = match exit.status {
            ExitStatus::Code(0) => "exited".to_string(),
            other => format!("failed with {other}"),
        };
        warn!(
            "{} pid={} {how} after {:.1}s; restart {} in {:.1}s",
            p.spec.name,
            exit.pid,
            ran.as_secs_f64(),
            p.restarts,
            delay.as_secs_f64()
        );
    }

    /// When the next delayed start is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.procs.iter().filter(|p| p.pid.is_none()).filter_map(|p| p.next_start).min()
    }

    /// Stops everything in reverse order: the stop signal, a wait of up to each
    /// one's stop timeout, then SIGKILL.
    pub fn stop_all(&mut self, reg: &mut Registry) {
        self.stopping = true;
        for idx in (0..self.procs.len()).rev() {
            let Some(pid) = self.procs[idx].pid else { continue };
            let (name, sig, timeout) =
                (self.procs[idx].spec.name.clone(), self.procs[idx].spec.stop_signal, self.procs[idx].spec.stop_timeout);
            info!("stopping {name} pid={pid}");
            let _ = crate::sys::kill(pid, sig);
            let deadline = Instant::now() + timeout;
            while self.procs[idx].pid.is_some() && Instant::now() < deadline {
                for exit in reg.reap() {
                    self.on_exit(exit, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.procs[idx].pid.is_some() {
                warn!("{name} pid={pid} did not stop within {timeout:?}; killing it");
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Spawns real processes.
pub struct RealSpawner;

impl Spawn for RealSpawner {
    fn spawn(&mut self, spec: &Spec) -> io::Result<i32> {
        let (prog, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v))).current_dir("/");
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
        // std resets the signal mask in the child, so the signals PID 1 blocks
        // for its signalfd reach children normally. The Child handle is dropped
        // without waiting: the reaper owns all waiting.
        let child = cmd.spawn()?;
        Ok(child.id() as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        next_pid: i32,
        fail: bool,
        started: Vec<String>,
    }

    impl Spawn for Fake {
        fn spawn(&mut self, spec: &Spec) -> io::Result<i32> {
            if self.fail {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.next_pid += 1;
            self.started.push(spec.name.clone());
            Ok(self.next_pid)
        }
    }

    fn spec(name: &str) -> Spec {
        Spec {
            name: name.into(),
            argv: vec!["/bin/true".into()],
            env: vec![],
            tty: None,
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_secs(1),
            service: true,
        }
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
        let mut sup = Supervisor::new(Backoff::default());
        let mut reg = Registry::default();
        let mut fake = Fake { next_pid: 100, fail: false, started: vec![] };
        sup.add(spec("a"), t0);
        sup.add(spec("b"), t0);
        sup.start_due(t0, &mut fake, &mut reg);
        assert_eq!(fake.started, ["a", "b"]);
        assert_eq!(sup.running(), 2);

        let exit = reg.take(101, ExitStatus::Code(3)).unwrap();
        sup.on_exit(exit, t0 + Duration::from_secs(1));
        assert_eq!(sup.next_deadline(), Some(t0 + Duration::from_millis(1500)));
        sup.start_due(t0 + Duration::from_millis(1400), &mut fake, &mut reg);
        assert_eq!(fake.started.len(), 2, "not before its back-off");
        sup.start_due(t0 + Duration::from_millis(1500), &mut fake, &mut reg);
        assert_eq!(fake.started.len(), 3);

        let exit = reg.take(103, ExitStatus::Signal(9)).unwrap();
        let t = t0 + Duration::from_millis(1600);
        sup.on_exit(exit, t);
        assert_eq!(sup.next_deadline(), Some(t + Duration::from_secs(1)), "second quick exit doubles");

        sup.start_due(t + Duration::from_secs(1), &mut fake, &mut reg);
        let exit = reg.take(104, ExitStatus::Code(1)).unwrap();
        let t = t + Duration::from_secs(60);
        sup.on_exit(exit, t);
        assert_eq!(sup.next_deadline(), Some(t + Duration::from_millis(500)), "a long run resets");
    }

    #[test]
    fn a_failed_spawn_is_retried_later() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(Backoff::default());
        let mut reg = Registry::default();
        let mut fake = Fake { next_pid: 1, fail: true, started: vec![] };
        sup.add(spec("a"), t0);
        sup.start_due(t0, &mut fake, &mut reg);
        assert_eq!(sup.running(), 0);
        assert_eq!(sup.next_deadline(), Some(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn exits_after_stop_are_not_restarted() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(Backoff::default());
        let mut reg = Registry::default();
        let mut fake = Fake { next_pid: 1, fail: false, started: vec![] };
        sup.add(spec("a"), t0);
        sup.start_due(t0, &mut fake, &mut reg);
        sup.stopping = true;
        let exit = reg.take(2, ExitStatus::Code(0)).unwrap();
        sup.on_exit(exit, t0);
        assert_eq!(sup.next_deadline(), None);
    }
}
