//! TCP and HTTP health probes, each on a short-lived thread of its own so a
//! slow or silent service never holds up PID 1 or another service's probe.
//! At most [`MAX_IN_FLIGHT`] run at once, one per service at most (the
//! supervisor keeps one check in flight per service); each probe's deadline
//! counts from when its thread starts. Exec probes run as children of init
//! instead (`crun exec`), owned through the reaper.
//!
//! Threads rather than non-blocking sockets in the main loop: a probe is a
//! connect, a write and a read of one line, and a 64 KiB stack each, touched
//! only as far as it is used, keeps PID 1 smaller than the code a state
//! machine per socket would add.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cairn_model::wire::Check;

/// Probes running at once; more that are due wait for a slot.
pub const MAX_IN_FLIGHT: usize = 8;
/// An HTTP status line longer than this is not one.
const MAX_STATUS_LINE: usize = 512;

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

/// Time left before `deadline`, or an error naming what ran out of time.
fn left(deadline: Instant, what: &str) -> Result<Duration, String> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(format!("{what}: timed out"))
    } else {
        Ok(d)
    }
}

/// Probes take IP addresses (and `localhost`): resolving names would pull
/// glibc's resolver into PID 1 and make a check depend on DNS.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| format!("{h} is not an IP address; health probes do not resolve names"))?,
    };
    let addr = SocketAddr::new(ip, port);
    let s = TcpStream::connect_timeout(&addr, left(deadline, "connect")?).map_err(|e| format!("connect {addr}: {e}"))?;
    Ok(s)
}

/// Reads up to the end of the first line (or EOF), however the server splits
/// it, all before `deadline`.
fn read_status_line(s: &mut TcpStream, deadline: Instant) -> Result<String, String> {
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 128];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        s.set_read_timeout(Some(left(deadline, "read")?)).map_err(|e| format!("read: {e}"))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err("read: timed out".into())
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).trim_end().to_string())
}

/// Runs one probe, all of it before `deadline`; Ok with a short
/// description, or why it failed.
pub fn run(probe: &Check, deadline: Instant) -> Result<String, String> {
    match probe {
        Check::Exec(_) => Err("exec checks run in the container, not as probes".into()),
        Check::Tcp { host, port } => connect(host, *port, deadline).map(|_| format!("tcp {host}:{port} open")),
        Check::Http { host, port, path } => {
            let mut s = connect(host, *port, deadline)?;
            let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: cairn-init\r\nConnection: close\r\n\r\n");
            s.set_write_timeout(Some(left(deadline, "send")?)).map_err(|e| format!("send: {e}"))?;
            s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
            let status = read_status_line(&mut s, deadline)?;
            let mut words = status.split_whitespace();
            let code = match (words.next(), words.next()) {
                (Some(v), Some(c)) if v.starts_with("HTTP/") => c,
                _ => "",
            };
            if code.len() == 3 && code.starts_with('2') && code.bytes().all(|b| b.is_ascii_digit()) {
                Ok(format!("http {code}"))
            } else {
                Err(format!("http status {status:?}"))
            }
        }
    }
}

/// The probes in flight, and where their outcomes arrive.
pub struct Probes {
    tx: mpsc::Sender<Outcome>,
    rx: mpsc::Receiver<Outcome>,
    /// A byte here tells the main loop to look.
    wake: Arc<OwnedFd>,
    in_flight: usize,
}

impl Probes {
    pub fn new(wake: OwnedFd) -> Probes {
        let (tx, rx) = mpsc::channel();
        Probes { tx, rx, wake: Arc::new(wake), in_flight: 0 }
    }

    /// How many more probes may start now.
    pub fn room(&self) -> usize {
        MAX_IN_FLIGHT.saturating_sub(self.in_flight)
    }

    /// Starts a probe on a thread of its own; its deadline counts from now.
    /// A probe that cannot start is an outcome at once.
    pub fn start(&mut self, r: Request) {
        let deadline = Instant::now() + r.timeout;
        let (tx, wake) = (self.tx.clone(), Arc::clone(&self.wake));
        let (service, seq) = (r.service, r.seq);
        let spawned = std::thread::Builder::new().name("probe".into()).stack_size(64 * 1024).spawn(move || {
            let (ok, detail) = match run(&r.probe, deadline) {
                Ok(d) => (true, d),
                Err(d) => (false, d),
            };
            let _ = tx.send(Outcome { service, seq, ok, detail });
            // SAFETY: writing one byte from a valid buffer to a pipe we own.
            unsafe { libc::write(wake.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        });
        match spawned {
            Ok(_) => self.in_flight += 1,
            Err(e) => {
                let _ = self.tx.send(Outcome { service, seq, ok: false, detail: format!("cannot start a probe thread: {e}") });
                // The outcome is taken at the next turn of the loop.
                self.in_flight += 1;
            }
        }
    }

    /// The outcomes that have arrived.
    pub fn done(&mut self) -> Vec<Outcome> {
        let done: Vec<Outcome> = self.rx.try_iter().collect();
        self.in_flight = self.in_flight.saturating_sub(done.len());
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn tcp_probe_sees_open_and_closed_ports() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(run(&Check::Tcp { host: "127.0.0.1".into(), port }, soon()).is_ok());
        drop(l);
        assert!(run(&Check::Tcp { host: "127.0.0.1".into(), port }, soon()).is_err());
    }

    #[test]
    fn names_other_than_localhost_are_refused() {
        let err = run(&Check::Tcp { host: "example.org".into(), port: 80 }, soon()).unwrap_err();
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
            let r = run(&Check::Http { host: "127.0.0.1".into(), port, path: "/h".into() }, soon());
            assert_eq!(r.is_ok(), ok, "{r:?}");
            t.join().unwrap();
        }
    }

    /// A server that writes its status line a few bytes at a time.
    #[test]
    fn http_probe_reads_a_status_line_split_across_writes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            s.set_nodelay(true).unwrap();
            for part in ["HT", "TP/1.1 2", "00 O", "K\r\n\r\n"] {
                s.write_all(part.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let r = run(&Check::Http { host: "127.0.0.1".into(), port, path: "/".into() }, soon());
        assert_eq!(r, Ok("http 200".into()));
        t.join().unwrap();
    }

    /// A server that accepts and never answers fails its probe by the
    /// deadline, while another service's probe started meanwhile passes.
    #[test]
    fn a_hung_probe_holds_up_no_other() {
        let hung = TcpListener::bind("127.0.0.1:0").unwrap();
        let hung_port = hung.local_addr().unwrap().port();
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let good_port = good.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (_held, _) = hung.accept().unwrap();
            let (mut s, _) = good.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let (wake_rd, wake_wr) = crate::sys::pipe().unwrap();
        let mut probes = Probes::new(wake_wr);
        let http = |port| Check::Http { host: "127.0.0.1".into(), port, path: "/".into() };
        let t0 = Instant::now();
        probes.start(Request { service: 0, seq: 1, probe: http(hung_port), timeout: Duration::from_millis(1500) });
        probes.start(Request { service: 1, seq: 1, probe: http(good_port), timeout: Duration::from_millis(500) });
        assert_eq!(probes.room(), MAX_IN_FLIGHT - 2);
        let mut outcomes = Vec::new();
        while outcomes.len() < 2 && t0.elapsed() < Duration::from_secs(5) {
            outcomes.extend(probes.done().into_iter().map(|o| (o.service, o.ok, t0.elapsed())));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(outcomes.len(), 2, "both probes end");
        assert_eq!((outcomes[0].0, outcomes[0].1), (1, true), "the good one first, and healthy: {outcomes:?}");
        assert!(outcomes[0].2 < Duration::from_millis(500), "{outcomes:?}");
        assert_eq!((outcomes[1].0, outcomes[1].1), (0, false), "{outcomes:?}");
        assert!(outcomes[1].2 >= Duration::from_millis(1400), "the hung one fails at its own deadline: {outcomes:?}");
        assert_eq!(probes.room(), MAX_IN_FLIGHT);
        drop(wake_rd);
        server.join().unwrap();
    }
}
