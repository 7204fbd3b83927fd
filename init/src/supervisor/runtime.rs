//! The real [`Spawn`]: supervised processes, and the OCI runtime's `kill`,
//! `delete` and `exec` as children of init. None of them is waited for here;
//! the reaper hands their exits to the supervisor, which holds their deadlines.

use super::{Spawn, Spawned, Spec};
use crate::reaper::{Exit, Registry};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use tracing::warn;

/// The OCI runtime every service uses: crun, or runc with `cairn.runtime=runc`.
static RUNTIME: std::sync::OnceLock<(&'static str, &'static str)> = std::sync::OnceLock::new();

/// Where an exec check's runtime writes the pid of what it started inside the
/// container, so a late check can be ended there too.
const CHECK_PIDS: &str = "/run/cairn/checks";

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

/// Starts a runtime command and returns its pid without waiting for it.
fn runtime_call(args: &[&str]) -> io::Result<i32> {
    let (bin, state) = runtime();
    let child = crate::sys::command(bin)
        .args(["--root", state])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Dropped without waiting: the reaper owns all waiting.
    Ok(child.id() as i32)
}

fn check_pid_file(spec: &Spec) -> String {
    format!("{CHECK_PIDS}/{}.pid", spec.name)
}

/// Spawns real processes.
pub struct RealSpawner;

impl Spawn for RealSpawner {
    fn spawn(&mut self, spec: &Spec) -> io::Result<Spawned> {
        // No `crun delete` first: every exit is cleaned up (see cleanup), the
        // next start waits for that, and /run starts empty.
        let (prog, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut cmd = crate::sys::command(prog);
        cmd.args(args).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v))).current_dir("/");
        cmd.stdin(Stdio::null());
        if spec.capture {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
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

    fn exec_check(&mut self, spec: &Spec, argv: &[String]) -> io::Result<i32> {
        let Some(id) = &spec.container else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an exec check needs a container"));
        };
        std::fs::create_dir_all(CHECK_PIDS)?;
        let pid_file = check_pid_file(spec);
        let _ = std::fs::remove_file(&pid_file);
        let mut args = vec!["exec", "--pid-file", &pid_file, id];
        args.extend(argv.iter().map(String::as_str));
        runtime_call(&args)
    }

    fn kill_check(&mut self, spec: &Spec, pid: i32) {
        // What runs in the container first: killing the client alone leaves
        // it running there, holding the container's pids.
        let pid_file = check_pid_file(spec);
        let inside = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
        match inside {
            Some(inner) if inner > 1 => {
                let _ = crate::sys::kill(inner, libc::SIGKILL);
            }
            _ => warn!("{}: the late health check left no pid in {pid_file}", spec.name),
        }
        let _ = crate::sys::kill(pid, libc::SIGKILL);
        let _ = std::fs::remove_file(&pid_file);
    }

    fn check_done(&mut self, spec: &Spec) {
        let _ = std::fs::remove_file(check_pid_file(spec));
    }

    fn signal(&mut self, spec: &Spec, pid: i32, sig: i32) -> Option<i32> {
        if let Some(id) = &spec.container {
            match runtime_call(&["kill", id, &sig.to_string()]) {
                Ok(call) => return Some(call),
                Err(e) => warn!("{}: cannot run the runtime's kill: {e}; signalling pid {pid} itself", spec.name),
            }
        }
        let _ = crate::sys::kill(pid, sig);
        None
    }

    fn cleanup(&mut self, spec: &Spec) -> Option<i32> {
        let id = spec.container.as_ref()?;
        runtime_call(&["delete", "-f", id])
            .map_err(|e| warn!("{}: cannot run the runtime's delete: {e}", spec.name))
            .ok()
    }

    fn kill(&mut self, pid: i32, sig: i32) {
        let _ = crate::sys::kill(pid, sig);
    }

    fn reap(&mut self, reg: &mut Registry) -> Vec<Exit> {
        reg.reap()
    }
}
