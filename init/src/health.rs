//! TCP and HTTP health probes, made on a worker thread so a slow or silent
//! service never holds up PID 1. Exec probes run as children of init instead
//! (`crun exec`), owned through the reaper.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use cairn_model::wire::Check;

pub struct Request {
    pub service: usize,
    pub seq: u64,
    /// A TCP or HTTP check.
    pub probe: Check,
    pub timeout: Duration,
}

pub struct Outcome {
    pub service: usize,
    pub seq: u64,
    pub ok: bool,
    pub detail: String,
}

/// Probes take IP addresses (and `localhost`): resolving names would pull
/// glibc's resolver into PID 1 and make a check depend on DNS.
fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| format!("{h} is not an IP address; health probes do not resolve names"))?,
    };
    let addr = SocketAddr::new(ip, port);
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    Ok(s)
}

/// Runs one probe; Ok with a short description, or why it failed.
pub fn run(probe: &Check, timeout: Duration) -> Result<String, String> {
    match probe {
        Check::Exec(_) => Err("exec checks run in the container, not as probes".into()),
        Check::Tcp { host, port } => connect(host, *port, timeout).map(|_| format!("tcp {host}:{port} open")),
        Check::Http { host, port, path } => {
            let mut s = connect(host, *port, timeout)?;
            let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: cairn-init\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
            let mut head = [0u8; 64];
            let n = s.read(&mut head).map_err(|e| format!("read: {e}"))?;
            let status = String::from_utf8_lossy(&head[..n]);
            let code = status.split_whitespace().nth(1).unwrap_or("");
            if code.starts_with('2') && code.len() == 3 {
                Ok(format!("http {code}"))
            } else {
                Err(format!("http status {:?}", status.lines().next().unwrap_or("")))
            }
        }
    }
}

/// Starts the worker; answers come on the returned channel, and a byte on
/// `wake` tells the main loop to look.
pub fn spawn(wake: OwnedFd) -> std::io::Result<(mpsc::Sender<Request>, mpsc::Receiver<Outcome>)> {
    let (req_tx, req_rx) = mpsc::channel::<Request>();
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::Builder::new().name("health".into()).stack_size(128 * 1024).spawn(move || {
        for r in req_rx {
            let result = run(&r.probe, r.timeout);
            let (ok, detail) = match result {
                Ok(d) => (true, d),
                Err(d) => (false, d),
            };
            if out_tx.send(Outcome { service: r.service, seq: r.seq, ok, detail }).is_err() {
                return;
            }
            // SAFETY: writing one byte from a valid buffer to a pipe we own.
            unsafe { libc::write(wake.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }
    })?;
    Ok((req_tx, out_rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn tcp_probe_sees_open_and_closed_ports() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(run(&Check::Tcp { host: "127.0.0.1".into(), port }, Duration::from_secs(1)).is_ok());
        drop(l);
        assert!(run(&Check::Tcp { host: "127.0.0.1".into(), port }, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn names_other_than_localhost_are_refused() {
        let err = run(&Check::Tcp { host: "example.org".into(), port: 80 }, Duration::from_secs(1)).unwrap_err();
        assert_eq!(err, "example.org is not an IP address; health probes do not resolve names");
    }

    #[test]
    fn http_probe_wants_a_2xx() {
        for (answer, ok) in [("HTTP/1.0 204 No Content\r\n\r\n", true), ("HTTP/1.0 503 Busy\r\n\r\n", false)] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            });
            let r = run(&Check::Http { host: "127.0.0.1".into(), port, path: "/h".into() }, Duration::from_secs(2));
            assert_eq!(r.is_ok(), ok, "{r:?}");
            t.join().unwrap();
        }
    }
}
