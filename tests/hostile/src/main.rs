//! cairn-hostile: control-socket clients that misbehave, for the QEMU tests
//! of cairn-init's control socket. It is carried into a test VM on a raw
//! disk, never built into an image.
//!
//! ```text
//! cairn-hostile idle N SECS           N clients that connect and send nothing
//! cairn-hostile half N BYTES SECS     N clients that send BYTES of a request, no newline
//! cairn-hostile follow N NAME SECS    N `logs -f NAME` clients that never read
//! ```
//!
//! Each holds its connections for SECS, then prints `connected=C closed=D`:
//! how many connections it made and how many cairn-init had closed by then.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const SOCKET: &str = "/run/cairn/control.sock";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let num = |s: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("cairn-hostile: {s:?} is not a number");
            std::process::exit(2)
        })
    };
    let (n, send, secs): (u64, Vec<u8>, u64) = match words.as_slice() {
        ["idle", n, secs] => (num(n), Vec::new(), num(secs)),
        ["half", n, bytes, secs] => (num(n), b"logs\t".iter().copied().chain(std::iter::repeat_n(b'x', num(bytes) as usize)).collect(), num(secs)),
        ["follow", n, name, secs] => (num(n), format!("logs-follow\t{name}\n").into_bytes(), num(secs)),
        _ => {
            eprintln!("usage: cairn-hostile idle N SECS | half N BYTES SECS | follow N NAME SECS");
            std::process::exit(2)
        }
    };
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..n {
        match UnixStream::connect(SOCKET) {
            Ok(mut s) => {
                // What the socket takes now; a follower's request is small.
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(&send);
                conns.push(s);
            }
            Err(_) => refused += 1,
        }
    }
    println!("holding {} connections ({refused} refused)", conns.len());
    std::thread::sleep(Duration::from_secs(secs));
    // Closed by init: reading gives end-of-stream or a reset (after any
    // answer bytes, which are skipped without reading a follower's whole backlog).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = 0;
    for s in &mut conns {
        let _ = s.set_nonblocking(true);
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) if Instant::now() < deadline => continue,
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // A reset: init closed with our unread request bytes queued.
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    println!("connected={} closed={closed}", conns.len());
}
