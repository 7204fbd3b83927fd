//! What PID 1 does for each `cairnctl` request on the control socket.

use crate::control::{ConnId, Request};
use crate::{supervisor, Action, Init};
use std::os::fd::OwnedFd;
use std::time::Instant;

impl Init {
    pub(crate) fn on_control(&mut self) {
        let now = Instant::now();
        let Some(c) = self.control.as_mut() else { return };
        let before = c.connections();
        for (id, req) in c.poll(now) {
            match req {
                Ok(req) => self.on_request(id, req, now),
                Err(e) => self.answer(id, Err(e), now),
            }
        }
        // After a burst of clients, give their buffers back to the kernel:
        // PID 1's resident memory should follow its work, not its peak.
        if before > 0 && self.control.as_ref().is_some_and(|c| c.connections() == 0) {
            crate::sys::trim_heap();
        }
    }

    pub(crate) fn answer(&mut self, id: ConnId, result: Result<String, String>, now: Instant) {
        if let Some(c) = self.control.as_mut() {
            c.answer(id, result, now);
        }
    }

    /// A log `cairnctl logs` may ask for: the kernel's, or a supervised process's.
    fn known_log(&self, name: &str) -> bool {
        name == "kernel" || self.supervisor.knows(name) || self.logs.text(name).is_some()
    }

    fn on_request(&mut self, id: ConnId, req: Request, now: Instant) {
        match req {
            Request::List => self.answer(id, Ok(list_table(&self.supervisor.rows(now))), now),
            Request::Logs(name) if self.known_log(&name) => self.answer(id, Ok(self.logs.text(&name).unwrap_or_default()), now),
            Request::Follow(name) if self.known_log(&name) => {
                let text = self.logs.text(&name).unwrap_or_default();
                if let Some(c) = self.control.as_mut() {
                    c.follow(id, &name, &text, now);
                }
            }
            Request::Logs(name) | Request::Follow(name) => self.answer(id, Err(format!("no service named {name}")), now),
            Request::Restart(name) => {
                let r = self.supervisor.restart(&name, now, &mut supervisor::RealSpawner, &mut self.registry);
                self.answer(id, r.map(|()| format!("restarting {name}\n")), now);
            }
            Request::Exec(name, argv) => self.exec_in(id, &name, &argv, now),
            Request::Reboot => {
                self.answer(id, Ok("rebooting\n".into()), now);
                self.shutdown(Action::Reboot, "cairnctl reboot");
            }
            Request::PowerOff => {
                self.answer(id, Ok("powering off\n".into()), now);
                self.shutdown(Action::PowerOff, "cairnctl poweroff");
            }
            Request::Config(args) => self.on_config(id, &args, now),
        }
    }

    /// `cairnctl exec`: the runtime's `exec` with the client's connection as its output.
    fn exec_in(&mut self, id: ConnId, name: &str, argv: &[String], now: Instant) {
        let Some(container) = self.supervisor.container(name) else {
            return self.answer(id, Err(format!("no service named {name}")), now);
        };
        let Some(stream) = self.control.as_mut().and_then(|c| c.take(id)) else { return };
        let (Ok(out), Ok(err)) = (stream.try_clone(), stream.try_clone()) else {
            // Dropping the stream closes it: the client sees no answer.
            return;
        };
        // A few bytes on a fresh connection: the socket buffer takes them at once.
        let _ = std::io::Write::write_all(&mut &stream, b"ok\n");
        let (bin, state) = supervisor::runtime();
        let spawned = crate::sys::command(bin)
            .args(["--root", state, "exec", &container])
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(OwnedFd::from(out))
            .stderr(OwnedFd::from(err))
            .spawn();
        if let Err(e) = spawned {
            let _ = std::io::Write::write_all(&mut &stream, format!("cannot run crun exec: {e}\n").as_bytes());
        }
        // The reaper takes the process as an orphan; its output went straight
        // to the client, which sees the end when the process closes it.
    }
}

/// `cairnctl list`: a header, then one row per supervised process.
fn list_table(rows: &[supervisor::Row]) -> String {
    let mut t = format!("{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n", "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTH");
    for r in rows {
        t.push_str(&format!(
            "{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n",
            r.name,
            r.state,
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.restarts,
            r.uptime.map_or("-".into(), |u| format!("{}s", u.as_secs())),
            r.health
        ));
    }
    t
}
