//! The local control socket (/run/cairn/control.sock, root only) that
//! `cairnctl` talks to: one request line of tab-separated words, an answer that
//! starts with `ok` or `error: ...`, then text until init closes.
//!
//! No client can stall PID 1 or grow its memory: connections are capped (a
//! new one evicts the oldest that has not sent a full request yet), requests
//! are capped in size and time, and every answer and followed log line goes
//! through a bounded outbox written only when the socket takes it. A client
//! that stops reading is dropped when its outbox overflows or stalls.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

pub const SOCKET: &str = "/run/cairn/control.sock";
/// Open connections, whatever their state.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest request line, newline included.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an outbox may hold bytes the client does not take.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// What a follower's outbox may hold; past it the follower is dropped. The
/// socket's own buffer (about 200 KiB) fills first.
pub const FOLLOW_BYTES: usize = 32 * 1024;
/// New connections taken per loop turn; the rest wait in the listen backlog.
const ACCEPTS_PER_TURN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    List,
    Logs(String),
    Follow(String),
    Restart(String),
    Exec(String, Vec<String>),
    Reboot,
    PowerOff,
    /// `cairnctl config ...`: the config loader's arguments (`apply FILE`,
    /// `try FILE SECS`, `confirm`, `rollback`, `status [--json]`).
    Config(Vec<String>),
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
        ["config", "apply", file] if file.starts_with('/') => Request::Config(vec!["apply".into(), file.to_string()]),
        ["config", "try", file, secs] if file.starts_with('/') && secs.parse::<u64>().is_ok() => {
            Request::Config(vec!["try".into(), file.to_string(), secs.to_string()])
        }
        ["config", verb @ ("confirm" | "rollback" | "status")] => Request::Config(vec![verb.to_string()]),
        ["config", "status", "json"] => Request::Config(vec!["status".into(), "--json".into()]),
        _ => return Err(format!("unknown request {:?}", line.trim_end())),
    })
}

/// Which connection a request came on; valid until it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId(u64);

#[derive(Debug)]
enum State {
    /// Waiting for the request line.
    Reading(Vec<u8>),
    /// A request is out for the caller to answer.
    Asked,
    /// Writing the answer, then closing.
    Answering,
    /// Writing the answer, then every new line of one log.
    Following(String),
}

/// Bytes on their way to one client, written without blocking.
#[derive(Debug, Default)]
struct Outbox {
    bytes: VecDeque<u8>,
    /// When the client last took bytes (or when bytes first waited).
    progress: Option<Instant>,
}

impl Outbox {
    fn push(&mut self, bytes: &[u8], now: Instant) {
        if self.bytes.is_empty() {
            self.progress = Some(now);
        }
        self.bytes.extend(bytes);
    }

    /// Writes what the socket takes. Err: the client is gone.
    fn flush(&mut self, stream: &mut UnixStream, now: Instant) -> std::io::Result<()> {
        while !self.bytes.is_empty() {
            let (head, _) = self.bytes.as_slices();
            match stream.write(head) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.bytes.drain(..n);
                    self.progress = Some(now);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.bytes.is_empty() {
            // Keep a follower's memory at what it needs now, not its peak.
            self.bytes = VecDeque::new();
        }
        Ok(())
    }

    fn stalled_since(&self) -> Option<Instant> {
        if self.bytes.is_empty() {
            None
        } else {
            self.progress
        }
    }
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    stream: UnixStream,
    opened: Instant,
    state: State,
    out: Outbox,
}

impl Conn {
    /// When this connection is dropped unless something happens.
    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Reading(_) => Some(self.opened + REQUEST_TIMEOUT),
            // The caller answers in the same turn; this only guards a slip.
            State::Asked => Some(self.opened + STALL_TIMEOUT),
            State::Answering | State::Following(_) => self.out.stalled_since().map(|t| t + STALL_TIMEOUT),
        }
    }
}

pub struct Control {
    listener: UnixListener,
    conns: Vec<Conn>,
    next_id: u64,
}

impl Control {
    pub fn open() -> std::io::Result<Control> {
        let _ = std::fs::create_dir_all("/run/cairn");
        let _ = std::fs::remove_file(SOCKET);
        let listener = UnixListener::bind(SOCKET)?;
        std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o600))?;
        Control::with_listener(listener)
    }

    fn with_listener(listener: UnixListener) -> std::io::Result<Control> {
        listener.set_nonblocking(true)?;
        Ok(Control { listener, conns: Vec::new(), next_id: 0 })
    }

    /// The fds to poll with their events: the listener, then each connection
    /// (readable for a request or a hang-up, writable while bytes wait).
    pub fn fds(&self) -> Vec<(RawFd, libc::c_short)> {
        let mut fds = vec![(self.listener.as_raw_fd(), libc::POLLIN)];
        for c in &self.conns {
            let mut events = 0;
            if !matches!(c.state, State::Asked) {
                events |= libc::POLLIN;
            }
            if !c.out.bytes.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push((c.stream.as_raw_fd(), events));
        }
        fds
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The nearest time a connection times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().filter_map(Conn::deadline).min()
    }

    /// Accepts, reads and writes what is ready, drops what timed out or went
    /// away, and returns the complete requests for the caller to answer
    /// (with `answer`, `follow` or `take`).
    pub fn poll(&mut self, now: Instant) -> Vec<(ConnId, Result<Request, String>)> {
        self.accept(now);
        let mut done = Vec::new();
        self.conns.retain_mut(|c| {
            let alive = service(c, now, &mut done);
            if !alive {
                tracing::debug!("control client dropped");
            }
            alive
        });
        done
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Ok((stream, _)) = self.listener.accept() else { return };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= MAX_CONNECTIONS {
                // The oldest client still to send its request makes room; a
                // real cairnctl sends at once, so only the slow lose theirs.
                match self.conns.iter().position(|c| matches!(c.state, State::Reading(_))) {
                    Some(i) => {
                        self.conns.remove(i);
                    }
                    None => {
                        let _ = (&stream).write(b"error: too many control clients\n");
                        continue;
                    }
                }
            }
            self.next_id += 1;
            self.conns.push(Conn {
                id: ConnId(self.next_id),
                stream,
                opened: now,
                state: State::Reading(Vec::new()),
                out: Outbox::default(),
            });
        }
    }

    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    /// Answers a request; the connection closes once the client has it.
    pub fn answer(&mut self, id: ConnId, result: Result<String, String>, now: Instant) {
        let Some(c) = self.conn(id) else { return };
        let text = match result {
            Ok(body) => format!("ok\n{body}"),
            Err(e) => format!("error: {e}\n"),
        };
        c.out.push(text.as_bytes(), now);
        c.state = State::Answering;
        if c.out.flush(&mut c.stream, now).is_err() || c.out.bytes.is_empty() {
            self.conns.retain(|c| c.id != id);
        }
    }

    /// Answers with a log's text so far, then keeps sending its new lines.
    pub fn follow(&mut self, id: ConnId, name: &str, text: &str, now: Instant) {
        let Some(c) = self.conn(id) else { return };
        c.out.push(b"ok\n", now);
        c.out.push(text.as_bytes(), now);
        c.state = State::Following(name.to_string());
        if c.out.flush(&mut c.stream, now).is_err() {
            self.conns.retain(|c| c.id != id);
        }
    }

    /// Takes the connection out of the socket's care (for `exec`, whose
    /// output goes straight to the client). Blocking again, as a child expects.
    pub fn take(&mut self, id: ConnId) -> Option<UnixStream> {
        let i = self.conns.iter().position(|c| c.id == id)?;
        let c = self.conns.remove(i);
        c.stream.set_nonblocking(false).ok()?;
        Some(c.stream)
    }

    /// Sends one new line of a log to its followers; a follower whose outbox
    /// would pass its cap is dropped.
    pub fn publish(&mut self, name: &str, line: &str, now: Instant) {
        self.conns.retain_mut(|c| {
            if !matches!(&c.state, State::Following(n) if n == name) {
                return true;
            }
            if c.out.bytes.len() + line.len() + 1 > FOLLOW_BYTES {
                tracing::debug!("log follower of {name} dropped: it does not read");
                return false;
            }
            c.out.push(line.as_bytes(), now);
            c.out.push(b"\n", now);
            c.out.flush(&mut c.stream, now).is_ok()
        });
    }
}

/// One turn for one connection: read, write, time out. False: drop it.
fn service(c: &mut Conn, now: Instant, done: &mut Vec<(ConnId, Result<Request, String>)>) -> bool {
    match &mut c.state {
        State::Reading(buf) => {
            let mut chunk = [0u8; 1024];
            loop {
                let room = (MAX_REQUEST + 1).saturating_sub(buf.len()).min(chunk.len());
                if room == 0 {
                    break;
                }
                match c.stream.read(&mut chunk[..room]) {
                    Ok(0) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
                if buf.contains(&b'\n') {
                    break;
                }
            }
            if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&buf[..nl]).into_owned();
                done.push((c.id, parse(&line)));
                c.state = State::Asked;
            } else if buf.len() > MAX_REQUEST {
                let _ = c.stream.write(format!("error: request longer than {MAX_REQUEST} bytes\n").as_bytes());
                return false;
            } else if now >= c.opened + REQUEST_TIMEOUT {
                let _ = c.stream.write(format!("error: no request within {} s\n", REQUEST_TIMEOUT.as_secs()).as_bytes());
                return false;
            }
            true
        }
        State::Asked => !c.deadline().is_some_and(|d| now >= d),
        State::Answering | State::Following(_) => {
            // Nothing more is expected from the client: what it sends is
            // dropped, and the end of its stream means it is gone.
            let mut chunk = [0u8; 512];
            for _ in 0..8 {
                match c.stream.read(&mut chunk) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            if c.out.flush(&mut c.stream, now).is_err() {
                return false;
            }
            if matches!(c.state, State::Answering) && c.out.bytes.is_empty() {
                return false;
            }
            !c.deadline().is_some_and(|d| now >= d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn parses_every_request_and_rejects_the_rest() {
        assert_eq!(parse("list\n"), Ok(Request::List));
        assert_eq!(parse("logs\tchrony"), Ok(Request::Logs("chrony".into())));
        assert_eq!(parse("logs-follow\tchrony"), Ok(Request::Follow("chrony".into())));
        assert_eq!(parse("restart\tx"), Ok(Request::Restart("x".into())));
        assert_eq!(parse("exec\tadmin\tps\t-o\tpid"), Ok(Request::Exec("admin".into(), vec!["ps".into(), "-o".into(), "pid".into()])));
        assert_eq!(parse("reboot"), Ok(Request::Reboot));
        assert_eq!(parse("poweroff"), Ok(Request::PowerOff));
        assert_eq!(parse("config\tapply\t/run/a.toml"), Ok(Request::Config(vec!["apply".into(), "/run/a.toml".into()])));
        assert_eq!(parse("config\ttry\t/a\t120"), Ok(Request::Config(vec!["try".into(), "/a".into(), "120".into()])));
        assert_eq!(parse("config\tstatus\tjson"), Ok(Request::Config(vec!["status".into(), "--json".into()])));
        assert_eq!(parse("config\tconfirm"), Ok(Request::Config(vec!["confirm".into()])));
        assert!(parse("config\tapply\trelative.toml").is_err(), "the loader does not share cairnctl's directory");
        assert!(parse("config\ttry\t/a\t2m").is_err());
        assert!(parse("config\tboot").is_err(), "only the live verbs");
        assert!(parse("exec\tadmin").is_err());
        assert_eq!(parse("format\tdisk").unwrap_err(), "unknown request \"format\\tdisk\"");
    }

    fn control() -> (Control, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("cairn-control-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        (Control::with_listener(UnixListener::bind(&path).unwrap()).unwrap(), path)
    }

    fn reply(stream: UnixStream) -> String {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stream).read_to_string(&mut s);
        s
    }

    #[test]
    fn a_request_is_answered_and_closed() {
        let (mut ctl, path) = control();
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"list\n").unwrap();
        let now = Instant::now();
        let got = ctl.poll(now);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Ok(Request::List));
        ctl.answer(got[0].0, Ok("x\n".into()), now);
        assert_eq!(ctl.connections(), 0);
        assert_eq!(reply(client), "ok\nx\n");
    }

    #[test]
    fn connections_are_capped_and_the_slowest_make_room() {
        let (mut ctl, path) = control();
        let now = Instant::now();
        let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS + 10).map(|_| UnixStream::connect(&path).unwrap()).collect();
        for _ in 0..4 {
            ctl.poll(now);
        }
        assert_eq!(ctl.connections(), MAX_CONNECTIONS);
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"list\n").unwrap();
        let got = ctl.poll(now);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(ctl.connections(), MAX_CONNECTIONS);
        drop(idle);
    }

    #[test]
    fn half_sent_and_oversized_requests_are_dropped() {
        let (mut ctl, path) = control();
        let start = Instant::now();
        let mut slow = UnixStream::connect(&path).unwrap();
        slow.write_all(b"li").unwrap();
        let mut big = UnixStream::connect(&path).unwrap();
        big.write_all(&vec![b'x'; MAX_REQUEST + 10]).unwrap();
        assert!(ctl.poll(start).is_empty());
        assert_eq!(ctl.connections(), 1);
        assert_eq!(ctl.next_deadline(), Some(start + REQUEST_TIMEOUT));
        assert!(ctl.poll(start + REQUEST_TIMEOUT).is_empty());
        assert_eq!(ctl.connections(), 0);
        assert_eq!(reply(big), format!("error: request longer than {MAX_REQUEST} bytes\n"));
        slow.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(reply(slow), "error: no request within 3 s\n");
    }

    #[test]
    fn a_follower_that_does_not_read_is_dropped_and_one_that_reads_keeps_up() {
        let (mut ctl, path) = control();
        let now = Instant::now();
        let mut stuck = UnixStream::connect(&path).unwrap();
        stuck.write_all(b"logs-follow\ts\n").unwrap();
        let reader = UnixStream::connect(&path).unwrap();
        (&reader).write_all(b"logs-follow\ts\n").unwrap();
        for (id, _) in ctl.poll(now) {
            ctl.follow(id, "s", "old\n", now);
        }
        let line = "y".repeat(1000);
        let mut reader = std::io::BufReader::new(reader);
        let mut got = String::new();
        // Far more than the socket buffer and the outbox hold together.
        for _ in 0..2000 {
            ctl.publish("s", &line, now);
            ctl.publish("other", &line, now);
            ctl.poll(now);
            got.clear();
            reader.read_line(&mut got).unwrap();
        }
        assert_eq!(ctl.connections(), 1, "the stuck follower is still there");
        assert_eq!(got.trim_end(), line);
        drop(reader);
        ctl.poll(now);
        assert_eq!(ctl.connections(), 0, "a follower that hung up is still there");
        stuck.write_all(b"x").ok();
    }

    #[test]
    fn an_answer_the_client_does_not_take_times_out() {
        let (mut ctl, path) = control();
        let now = Instant::now();
        let client = UnixStream::connect(&path).unwrap();
        (&client).write_all(b"logs\ts\n").unwrap();
        let got = ctl.poll(now);
        ctl.answer(got[0].0, Ok("z".repeat(4 << 20)), now);
        assert_eq!(ctl.connections(), 1);
        assert!(ctl.next_deadline().is_some_and(|d| d <= now + STALL_TIMEOUT));
        ctl.poll(now + STALL_TIMEOUT);
        assert_eq!(ctl.connections(), 0);
        drop(client);
    }
}
