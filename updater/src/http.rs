//! Just enough HTTP/1.1 to fetch from a static update repository: GET with an
//! optional byte range, over plain TCP. The repository needs no trust: every
//! byte is checked against the signed manifest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: not an http:// URL (https is not supported yet)")]
    Scheme { url: String },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: String },
    #[error("{url}: malformed answer: {what}")]
    Malformed { url: String, what: String },
}

/// An answer whose body is still to be read.
pub struct Response {
    pub url: String,
    /// 200 or 206.
    pub status: u16,
    /// Content-Length, when the server sent one.
    pub length: Option<u64>,
    /// For a 206: where the body starts and the whole file's size.
    pub range_start: u64,
    pub total: Option<u64>,
    body: BufReader<TcpStream>,
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.body.read(buf)
    }
}

impl Response {
    /// The whole body, at most `limit` bytes.
    pub fn bytes(mut self, limit: u64) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        let url = self.url.clone();
        (&mut self).take(limit + 1).read_to_end(&mut out).map_err(|source| HttpError::Io { url: url.clone(), source })?;
        if out.len() as u64 > limit {
            return Err(HttpError::Malformed { url, what: format!("larger than {limit} bytes") });
        }
        if let Some(len) = self.length {
            if out.len() as u64 != len {
                return Err(HttpError::Malformed { url, what: format!("{} of {len} bytes arrived", out.len()) });
            }
        }
        Ok(out)
    }
}

/// Joins a base URL and a file name.
pub fn join(base: &str, name: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), name)
}

/// GET `url`, from byte `from` on when it is not zero.
pub fn get(url: &str, from: u64, timeout: Duration) -> Result<Response, HttpError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| HttpError::Scheme { url: url.into() })?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let io = |source| HttpError::Io { url: url.into(), source };
    let addr_text = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HttpError::Malformed { url: url.into(), what: format!("{hostport} has no address") })?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let range = if from > 0 { format!("Range: bytes={from}-\r\n") } else { String::new() };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: cairn-updater\r\n{range}Connection: close\r\n\r\n");
    (&stream).write_all(request.as_bytes()).map_err(io)?;
    let mut body = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    body.read_line(&mut line).map_err(io)?;
    let status_text = line.trim_end().to_string();
    let status: u16 = status_text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed { url: url.into(), what: format!("status line `{status_text}`") })?;
    let mut length = None;
    let mut range_start = 0;
    let mut total = None;
    let mut chunked = false;
    loop {
        line.clear();
        if body.read_line(&mut line).map_err(io)? == 0 {
            return Err(HttpError::Malformed { url: url.into(), what: "headers cut short".into() });
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.parse().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            // bytes START-END/TOTAL
            "content-range" => {
                let spec = v.trim_start_matches("bytes").trim();
                if let Some((r, t)) = spec.split_once('/') {
                    range_start = r.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                    total = t.parse().ok();
                }
            }
            _ => {}
        }
    }
    if chunked {
        return Err(HttpError::Malformed { url: url.into(), what: "chunked transfer encoding is not supported".into() });
    }
    if status != 200 && status != 206 {
        return Err(HttpError::Status { url: url.into(), status: status_text });
    }
    if status == 200 {
        total = length;
    }
    Ok(Response { url: url.into(), status, length, range_start, total, body })
}
