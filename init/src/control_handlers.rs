//! What PID 1 does for each `cairnctl` request on the control socket.

use crate::{control, supervisor, Action, Init};
use std::os::fd::OwnedFd;
use std::time::Instant;

impl Init {
    pub(crate) fn on_control(&mut self) {
        let Some(c) = self.control.as_mut() else { return };
        for (stream, req) in c.poll() {
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    control::answer(stream, Err(e));
                    continue;
                }
            };
            match req {
                control::Request::List => control::answer(stream, Ok(list_table(&self.supervisor.rows(Instant::now())))),
                control::Request::Logs(name) => {
                    let known = name == "kernel" || self.supervisor.container(&name).is_some() || self.supervisor.knows(&name);
                    let text = self.logs.text(&name).or_else(|| known.then(String::new));
                    control::answer(stream, text.ok_or_else(|| format!("no service named {name}")));
                }
                control::Request::Follow(name) => {
                    let text = self.logs.text(&name).unwrap_or_default();
                    if let Ok(s2) = stream.try_clone() {
                        control::answer(stream, Ok(text));
                        self.logs.follow(&name, s2);
                    }
                }
                control::Request::Restart(name) => {
                    let r = self.supervisor.restart(&name, &mut self.registry, &mut supervisor::RealSpawner);
                    control::answer(stream, r.map(|()| format!("restarting {name}\n")));
                }
                control::Request::Exec(name, argv) => self.exec_in(stream, &name, &argv),
                control::Request::Reboot => {
                    control::answer(stream, Ok("rebooting\n".into()));
                    self.shutdown(Action::Reboot, "cairnctl reboot");
                }
                control::Request::PowerOff => {
                    control::answer(stream, Ok("powering off\n".into()));
                    self.shutdown(Action::PowerOff, "cairnctl poweroff");
                }
            }
        }
    }

    /// `cairnctl exec`: the runtime's `exec` with the client's connection as its output.
    fn exec_in(&mut self, stream: std::os::unix::net::UnixStream, name: &str, argv: &[String]) {
        let Some(id) = self.supervisor.container(name) else {
            return control::answer(stream, Err(format!("no service named {name}")));
        };
        let (Ok(out), Ok(err)) = (stream.try_clone(), stream.try_clone()) else {
            return control::answer(stream, Err("cannot pass the connection on".into()));
        };
        let _ = std::io::Write::write_all(&mut &stream, b"ok\n");
        let (bin, state) = supervisor::runtime();
        let spawned = crate::sys::command(bin)
            .args(["--root", state, "exec", &id])
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
