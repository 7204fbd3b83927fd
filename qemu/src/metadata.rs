//! A metadata server for tests: speaks the parts of the EC2 (IMDSv1 and v2),
//! GCE, Azure (IMDS and WireServer) and OpenStack protocols that Cairn's
//! config loader uses, over real HTTP on a host port, and records every
//! request it was asked. In QEMU the guest reaches it at the real link-local
//! addresses through user networking's `guestfwd`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// How IMDSv2's token call behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// IMDSv2: a token, required on every later request.
    Required,
    /// An IMDS that knows only v1: the token call is 404.
    V1Only,
    /// IMDS turned off for the instance: 403.
    Forbidden,
}

/// What the server hands out.
#[derive(Debug, Clone)]
pub struct Setup {
    pub user_data: Option<String>,
    pub instance_id: String,
    pub token: Token,
}

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

const TOKEN: &str = "AQAEAtest-token==";

impl Server {
    /// Listens on 127.0.0.1 (a free port) until the process ends.
    pub fn start(setup: Setup) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let (setup, log) = (setup.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &setup, &log);
                });
            }
        });
        Ok(Server { port, seen })
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn serve(conn: TcpStream, setup: &Setup, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let seen = Seen { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() };
    let (status, extra, payload) = answer(&seen, setup);
    if let Ok(mut l) = log.lock() {
        l.push(seen);
    }
    let mut out = conn;
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        if status < 300 { "OK" } else { "Error" },
        payload.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(payload.as_bytes())
}

fn answer(r: &Seen, s: &Setup) -> (u16, String, String) {
    let ok = |body: String| (200, String::new(), body);
    let missing = || (404, String::new(), "not found".to_string());
    let data = || s.user_data.clone().map_or_else(missing, ok);
    let p = r.path.as_str();
    match (r.method.as_str(), p) {
        ("PUT", "/latest/api/token") => match s.token {
            Token::Required if r.header("X-aws-ec2-metadata-token-ttl-seconds").is_some() => ok(TOKEN.into()),
            Token::Required => (400, String::new(), "no ttl".into()),
            Token::V1Only => missing(),
            Token::Forbidden => (403, String::new(), "forbidden".into()),
        },
        ("GET", _) if p.starts_with("/latest/") => {
            if s.token == Token::Required && r.header("X-aws-ec2-metadata-token") != Some(TOKEN) {
                return (401, String::new(), "no token".into());
            }
            match p {
                "/latest/meta-data/instance-id" => ok(s.instance_id.clone()),
                "/latest/user-data" => data(),
                _ => missing(),
            }
        }
        ("GET", _) if p.starts_with("/computeMetadata/v1/") => {
            if r.header("Metadata-Flavor") != Some("Google") {
                return (403, String::new(), "Missing Metadata-Flavor:Google header".into());
            }
            let with_flavor = |(st, _, b): (u16, String, String)| (st, "Metadata-Flavor: Google\r\n".to_string(), b);
            match p {
                "/computeMetadata/v1/instance/id" => with_flavor(ok(s.instance_id.clone())),
                "/computeMetadata/v1/instance/attributes/user-data" => with_flavor(data()),
                _ => with_flavor(missing()),
            }
        }
        ("GET", _) if p.starts_with("/metadata/instance/compute/") => {
            if r.header("Metadata") != Some("true") {
                return (400, String::new(), "Required metadata header not specified".into());
            }
            match p.split('?').next().unwrap_or("") {
                "/metadata/instance/compute/vmId" => ok(s.instance_id.clone()),
                "/metadata/instance/compute/userData" => ok(s.user_data.as_deref().map(base64).unwrap_or_default()),
                _ => missing(),
            }
        }
        ("GET", "/machine/?comp=goalstate") => ok(format!(
            "<?xml version=\"1.0\"?><GoalState><Incarnation>7</Incarnation><Container><ContainerId>c-{id}</ContainerId><RoleInstanceList><RoleInstance><InstanceId>{id}.0</InstanceId></RoleInstance></RoleInstanceList></Container></GoalState>",
            id = s.instance_id
        )),
        ("POST", "/machine/?comp=health") => ok(String::new()),
        ("GET", "/openstack/latest/meta_data.json") => ok(format!("{{\"uuid\": \"{}\"}}", s.instance_id)),
        ("GET", "/openstack/latest/user_data") => data(),
        _ => missing(),
    }
}

fn base64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
