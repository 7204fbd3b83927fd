//! The client against a small server on the loopback, answering what each
//! case needs; nothing leaves the machine.

use super::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

/// Serves each connection with `answer(request head)`, writing what it
/// returns; the requests it saw come back on the channel.
fn serve(host: &str, answer: impl Fn(&str, &mut TcpStream) + Send + 'static) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let head = read_head(&mut conn);
            answer(&head, &mut conn);
            let _ = tx.send(head);
        }
    });
    let base = if host.contains(':') { format!("http://[{host}]:{port}") } else { format!("http://{host}:{port}") };
    (base, rx)
}

fn quick() -> Timeouts {
    Timeouts { step: Duration::from_secs(5), whole: Duration::from_secs(10) }
}

fn ok(body: &'static [u8]) -> impl Fn(&str, &mut TcpStream) + Send + 'static {
    move |_, c| {
        let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = c.write_all(body);
    }
}

#[test]
fn a_ca_file_must_hold_certificates() {
    let dir = std::env::temp_dir().join(format!("cairn-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = Trust::new(Some(&empty)).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("empty.pem: holds no PEM certificate"), "{err}");
    let err = Trust::new(Some(&dir.join("missing.pem"))).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("missing.pem"), "{err}");
    assert!(Trust::new(None).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_http_and_https() {
    let trust = Trust::new(None).unwrap();
    let err = get("ftp://example/x", 0, &quick(), &trust).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(err, "ftp://example/x: not an http:// or https:// URL");
}

#[test]
fn gets_a_file_and_follows_a_redirect() {
    let (base, rx) = serve("127.0.0.1", |head, c| {
        if head.starts_with("GET /old ") {
            let _ = write!(c, "HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n");
        } else {
            let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        }
    });
    let trust = Trust::new(None).unwrap();
    let r = get(&join(&base, "old"), 0, &quick(), &trust).unwrap();
    assert_eq!((r.status, r.total), (200, Some(5)));
    assert_eq!(r.bytes(100).unwrap(), b"hello");
    assert!(rx.recv().unwrap().starts_with("GET /old "));
    assert!(rx.recv().unwrap().starts_with("GET /new "));
}

#[test]
fn ipv6_hosts_in_brackets() {
    if TcpListener::bind("[::1]:0").is_err() {
        panic!("this machine has no IPv6 loopback; the IPv6 case cannot be checked here");
    }
    let (base, _rx) = serve("::1", ok(b"six"));
    assert!(base.starts_with("http://[::1]:"), "{base}");
    let trust = Trust::new(None).unwrap();
    assert_eq!(get(&join(&base, "x"), 0, &quick(), &trust).unwrap().bytes(100).unwrap(), b"six");
}

#[test]
fn a_range_must_start_where_it_was_asked() {
    let (base, rx) = serve("127.0.0.1", |head, c| {
        let start = if head.contains("/wrong ") { 0 } else { 3 };
        let _ = write!(c, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-9/10\r\nContent-Length: {}\r\n\r\n", 10 - start);
        let _ = c.write_all(&b"0123456789"[start..]);
    });
    let trust = Trust::new(None).unwrap();
    let r = get(&join(&base, "right"), 3, &quick(), &trust).unwrap();
    assert_eq!((r.status, r.total), (206, Some(10)));
    assert_eq!(r.bytes(100).unwrap(), b"3456789");
    assert!(rx.recv().unwrap().to_ascii_lowercase().contains("\r\nrange: bytes=3-\r\n"));
    let e = get(&join(&base, "wrong"), 3, &quick(), &trust).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("Content-Range `bytes 0-9/10` starts at 0, asked for byte 3 on"), "{e}");
    for bad in ["bytes 5-2/10", "bytes 3-10/10", "bytes 3-/10", "3-9/10", "bytes 3-9/x"] {
        assert_eq!(content_range(bad), None, "{bad}");
    }
    assert_eq!(content_range("bytes 3-9/10"), Some((3, 9, 10)));
}

#[test]
fn an_endless_head_is_cut_off() {
    let (base, _rx) = serve("127.0.0.1", |_, c| {
        let _ = write!(c, "HTTP/1.1 200 OK\r\nX-Junk: ");
        for _ in 0..(MAX_HEAD / 1024 + 8) {
            if c.write_all(&[b'a'; 1024]).is_err() {
                return;
            }
        }
        let _ = write!(c, "\r\nContent-Length: 1\r\n\r\nx");
    });
    let trust = Trust::new(None).unwrap();
    let e = get(&join(&base, "x"), 0, &quick(), &trust).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("header"), "{e}");
}

#[test]
fn a_dripping_server_meets_one_deadline_for_the_request() {
    let (base, _rx) = serve("127.0.0.1", |_, c| {
        let _ = write!(c, "HTTP/1.1 200 OK\r\n");
        for i in 0..30 {
            std::thread::sleep(Duration::from_millis(300));
            if write!(c, "X-Drip-{i}: 1\r\n").is_err() {
                return;
            }
        }
    });
    let trust = Trust::new(None).unwrap();
    let t = Timeouts { step: Duration::from_secs(1), whole: Duration::from_secs(2) };
    let started = std::time::Instant::now();
    let e = get(&join(&base, "x"), 0, &t, &trust).err().expect("refused");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(e.transient(), "a timeout is worth a retry: {e}");
}

/// Reads one request head from `c`.
fn read_head(c: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_string()
}

#[test]
fn a_proxy_setting_sends_the_request_through_it() {
    // The proxy answers the CONNECT itself and then plays the server.
    let (tunnelled, inner) = mpsc::channel();
    let (proxy, rx) = serve("127.0.0.1", move |head, c| {
        if head.starts_with("CONNECT ") {
            let _ = write!(c, "HTTP/1.1 200 Connection established\r\n\r\n");
            let _ = tunnelled.send(read_head(c));
            let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nvia");
        }
    });
    let trust = Trust::with_proxy(None, Some(&proxy)).unwrap();
    let body = get("http://updates.invalid/stable/manifest.toml", 0, &quick(), &trust).unwrap().bytes(100).unwrap();
    assert_eq!(body, b"via");
    let head = rx.recv().unwrap();
    assert!(head.starts_with("CONNECT updates.invalid:80 "), "{head}");
    let head = inner.recv().unwrap();
    assert!(head.starts_with("GET /stable/manifest.toml "), "{head}");
    let e = Trust::with_proxy(None, Some("::not a url")).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with("proxy=::not a url: "), "{e}");
}
