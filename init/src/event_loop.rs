//! PID 1's one loop: wait on every fd it watches, with the nearest deadline
//! as the timeout, and hand each readable fd to its handler.

use crate::{net, supervisor, sys, Action, Init};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

/// Kernel log records drained per loop turn: a kernel that logs without pause
/// must not keep the loop from everything else.
const KMSG_PER_TURN: usize = 64;

/// What one entry of the poll table is.
#[derive(Debug, Clone, Copy)]
enum Source {
    Signals,
    Wake,
    Acpi,
    Kmsg,
    Control,
    /// A supervised process's stdout (1) or stderr (2).
    Output { idx: usize, stream: u8 },
}

impl Init {
    pub(crate) fn run(&mut self) -> ! {
        loop {
            let now = Instant::now();
            self.supervisor.advance(now, &mut supervisor::RealSpawner, &mut self.registry);
            self.supervisor.start_due(now, &mut supervisor::RealSpawner, &mut self.registry);
            let room = self.probes.as_ref().map_or(usize::MAX, |p| p.room());
            for req in self.supervisor.checks_due(now, &mut supervisor::RealSpawner, &mut self.registry, room) {
                match &mut self.probes {
                    Some(p) => p.start(req),
                    None => self.supervisor.on_check(req.service, req.seq, false, "no TCP/HTTP probes in this boot", now),
                }
            }
            self.maybe_ready();
            self.maybe_verdict();
            self.maybe_config_revert(now);
            if let Some(w) = &mut self.watchdog {
                w.pet();
            }
            let now = Instant::now();
            let mut deadline = self.supervisor.next_deadline();
            if let Some(w) = &self.watchdog {
                let pet = now + w.interval();
                deadline = Some(deadline.map_or(pet, |d| d.min(pet)));
            }
            if !self.verdict {
                let limit = self.boot_started + self.settings.health_timeout;
                deadline = Some(deadline.map_or(limit, |d| d.min(limit)));
            }
            if let Some(t) = self.config_try {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
            if let Some(t) = self.control.as_ref().and_then(|c| c.next_deadline()) {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
            if !self.ready {
                let wake = if self.net_status.is_none() { self.net_deadline } else { now + Duration::from_secs(5) };
                deadline = Some(deadline.map_or(wake, |d| d.min(wake)));
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            let (fds, sources) = self.poll_table();
            let readable = match sys::poll(&fds, timeout) {
                Ok(r) => r,
                Err(e) => {
                    error!("poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let mut control = false;
            for (source, _) in sources.iter().zip(&readable).filter(|(_, r)| **r) {
                match *source {
                    Source::Signals => self.on_signals(),
                    Source::Wake => self.on_wake(),
                    Source::Acpi => self.on_acpi(),
                    Source::Kmsg => self.on_kmsg(),
                    // The listener and every client are served in one go.
                    Source::Control => control = true,
                    Source::Output { .. } => {}
                }
            }
            // Timeouts are served too when no client fd stirred.
            let expired = self.control.as_ref().and_then(|c| c.next_deadline()).is_some_and(|d| d <= Instant::now());
            if control || expired {
                self.on_control();
            }
            for ((source, (fd, _)), _) in sources.iter().zip(&fds).zip(&readable).filter(|(_, r)| **r) {
                if let Source::Output { idx, stream } = *source {
                    self.on_output(*fd, idx, stream);
                }
            }
        }
    }

    /// The poll table: each fd with what it is.
    fn poll_table(&self) -> (Vec<(RawFd, libc::c_short)>, Vec<Source>) {
        let mut fds = vec![(self.signals.as_raw_fd(), libc::POLLIN), (self.wake.as_raw_fd(), libc::POLLIN)];
        let mut sources = vec![Source::Signals, Source::Wake];
        if let Some(a) = &self.acpi {
            fds.push((a.raw_fd(), libc::POLLIN));
            sources.push(Source::Acpi);
        }
        if let Some(k) = &self.kmsg {
            fds.push((k.as_raw_fd(), libc::POLLIN));
            sources.push(Source::Kmsg);
        }
        if let Some(c) = &self.control {
            for fd in c.fds() {
                fds.push(fd);
                sources.push(Source::Control);
            }
        }
        for (fd, idx, stream) in self.supervisor.outputs() {
            fds.push((fd, libc::POLLIN));
            sources.push(Source::Output { idx, stream });
        }
        (fds, sources)
    }

    fn on_output(&mut self, fd: std::os::fd::RawFd, idx: usize, stream: u8) {
        let mut buf = [0u8; 8192];
        // SAFETY: reading into a valid local buffer from a non-blocking pipe
        // the supervisor owns; it stays open until close_output below.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let name = self.supervisor.name(idx).unwrap_or("?").to_string();
        if n > 0 {
            let (now, control) = (Instant::now(), &mut self.control);
            self.logs.feed(&name, stream, &buf[..n as usize], &mut |log, line| publish(control, log, line, now));
        } else if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
            self.supervisor.close_output(idx, fd);
        }
    }

    fn on_kmsg(&mut self) {
        let Some(k) = self.kmsg.as_mut() else { return };
        let mut buf = [0u8; 8192];
        let (now, control) = (Instant::now(), &mut self.control);
        // What is left waits for the next turn: the fd stays readable.
        for _ in 0..KMSG_PER_TURN {
            match std::io::Read::read(k, &mut buf) {
                Ok(n) if n > 0 => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "prio,seq,usec,flags;message"
                    let (head, msg) = rec.split_once(';').unwrap_or(("", &rec));
                    let usec: u64 = head.split(',').nth(2).and_then(|v| v.parse().ok()).unwrap_or(0);
                    let line = format!("{:>5}.{:06} {}", usec / 1_000_000, usec % 1_000_000, msg.lines().next().unwrap_or(""));
                    self.logs.line("kernel", &line, &mut |log, line| publish(control, log, line, now));
                }
                Ok(_) => break,
                // EPIPE: records were overwritten before we read them; go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
    }

    fn on_signals(&mut self) {
        for sig in sys::read_signals(&self.signals) {
            match sig as libc::c_int {
                libc::SIGCHLD => {
                    for exit in self.registry.reap() {
                        self.supervisor.on_exit(exit, Instant::now(), &mut supervisor::RealSpawner, &mut self.registry);
                    }
                }
                libc::SIGTERM => self.shutdown(Action::PowerOff, "SIGTERM"),
                libc::SIGPWR => self.shutdown(Action::PowerOff, "SIGPWR"),
                libc::SIGINT => self.shutdown(Action::Reboot, "Ctrl-Alt-Del"),
                other => debug!("ignoring signal {other}"),
            }
        }
    }

    fn on_acpi(&mut self) {
        let Some(acpi) = &self.acpi else { return };
        for ev in acpi.read_events() {
            debug!("ACPI event class={} bus={} type={:#x}", ev.device_class, ev.bus_id, ev.kind);
            if ev.is_power_button() {
                self.shutdown(Action::PowerOff, "ACPI power button");
            }
        }
    }

    fn on_wake(&mut self) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a valid local buffer from our non-blocking pipe.
        while unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        if let Some(probes) = &mut self.probes {
            let now = Instant::now();
            for o in probes.done() {
                self.supervisor.on_check(o.service, o.seq, o.ok, &o.detail, now);
            }
        }
        let Some(rx) = &self.net else { return };
        while let Ok(status) = rx.try_recv() {
            if let net::Status::Failed(why) = &status {
                warn!("network not configured: {why}");
            }
            if self.net_status.is_none() {
                crate::timeline::mark("net");
            }
            // The first report ends the ready line's wait; a later success
            // (DHCP answered after a retry) still counts for the verdict.
            if self.net_status.is_none() || matches!(status, net::Status::Configured { .. }) {
                self.net_status = Some(status);
            }
        }
    }
}

/// Hands a new log line to the control socket's followers of that log.
fn publish(control: &mut Option<crate::control::Control>, log: &str, line: &str, now: Instant) {
    if let Some(c) = control {
        c.publish(log, line, now);
    }
}
