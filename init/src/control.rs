//! The local control socket (/run/cairn/control.sock, root only) that
//! `cairnctl` talks to: one request line of tab-separated words, an answer that
//! starts with `ok` or `error: ...`, then text until init closes.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};

pub const SOCKET: &str = "/run/cairn/control.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    List,
    Logs(String),
    Follow(String),
    Restart(String),
    Exec(String, Vec<String>),
    Reboot,
    PowerOff,
}

pub fn parse(line: &str) -> Result<Request, String> {
    let words: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
    Ok(match words.as_slice() {
        ["list"] => Request::List,
        ["logs", name] => Request::Logs(name.to_string()),
        ["logs-follow", name] => Request::Follow(name.to_string()),
        ["restart", name] => Request::Restart(name.to_string()),
        ["exec", name, cmd @ ..] if !cmd.is_empty() => {
            Request::Exec(name.to_string(), cmd.iter().map(|s| s.to_string()).collect())
        }
        ["reboot"] => Request::Reboot,
        ["poweroff"] => Request::PowerOff,
        _ => return Err(format!("unknown request {:?}", line.trim_end())),
    })
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

pub struct Control {
    listener: UnixListener,
    clients: Vec<Client>,
}

impl Control {
    pub fn open() -> std::io::Result<Control> {
        let _ = std::fs::create_dir_all("/run/cairn");
        let _ = std::fs::remove_file(SOCKET);
        let listener = UnixListener::bind(SOCKET)?;
        std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Control { listener, clients: Vec::new() })
    }

    /// The fds to poll: the listener, then each client.
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd()).chain(self.clients.iter().map(|c| c.stream.as_raw_fd())).collect()
    }

    /// Accepts and reads what is waiting; returns complete requests with their
    /// connection, to be answered by the caller.
    pub fn poll(&mut self) -> Vec<(UnixStream, Result<Request, String>)> {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client { stream, buf: Vec::new() });
        }
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for mut c in self.clients.drain(..) {
            let mut chunk = [0u8; 1024];
            let closed = loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if let Some(nl) = c.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&c.buf[..nl]).into_owned();
                // Answers are written blocking (briefly) so they arrive whole.
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.set_write_timeout(Some(std::time::Duration::from_secs(2)));
                done.push((c.stream, parse(&line)));
            } else if !closed && c.buf.len() < 64 * 1024 {
                keep.push(c);
            }
        }
        self.clients = keep;
        done
    }
}

pub fn answer(mut stream: UnixStream, result: Result<String, String>) {
    let text = match result {
        Ok(body) => format!("ok\n{body}"),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = stream.write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request_and_rejects_the_rest() {
        assert_eq!(parse("list\n"), Ok(Request::List));
        assert_eq!(parse("logs\tchrony"), Ok(Request::Logs("chrony".into())));
        assert_eq!(parse("logs-follow\tchrony"), Ok(Request::Follow("chrony".into())));
        assert_eq!(parse("restart\tx"), Ok(Request::Restart("x".into())));
        assert_eq!(parse("exec\tadmin\tps\t-o\tpid"), Ok(Request::Exec("admin".into(), vec!["ps".into(), "-o".into(), "pid".into()])));
        assert_eq!(parse("reboot"), Ok(Request::Reboot));
        assert_eq!(parse("poweroff"), Ok(Request::PowerOff));
        assert!(parse("exec\tadmin").is_err());
        assert_eq!(parse("format\tdisk").unwrap_err(), "unknown request \"format\\tdisk\"");
    }
}
