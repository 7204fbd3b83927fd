//! Just enough HTTP/1.1 to fetch from a static update repository: GET with an
//! optional byte range, over plain TCP or TLS (rustls). The repository needs
//! no trust for integrity: every byte is checked against the signed manifest.
//! TLS keeps the download private and makes it harder to withhold updates;
//! servers are checked against Mozilla's roots (compiled in) and, for a
//! private repository, one more CA file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: not an http:// or https:// URL")]
    Scheme { url: String },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: String },
    #[error("{url}: malformed answer: {what}")]
    Malformed { url: String, what: String },
    #[error("{path}: {what}")]
    Ca { path: String, what: String },
}

/// How to trust HTTPS servers: Mozilla's roots, plus the CAs in `extra_ca`.
#[derive(Clone)]
pub struct Trust {
    config: Arc<rustls::ClientConfig>,
}

impl Trust {
    pub fn new(extra_ca: Option<&Path>) -> Result<Trust, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let added = add_pem(&mut roots, path)?;
            if added == 0 {
                return Err(HttpError::Ca { path: path.display().to_string(), what: "holds no PEM certificate".into() });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Ca { path: "TLS".into(), what: e.to_string() })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Trust { config: Arc::new(config) })
    }
}

/// Adds every certificate in a PEM file; returns how many.
fn add_pem(roots: &mut rustls::RootCertStore, path: &Path) -> Result<usize, HttpError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let bad = |what: String| HttpError::Ca { path: path.display().to_string(), what };
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    let mut n = 0;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        n += 1;
    }
    Ok(n)
}

/// The connection under an answer.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => match s.read(buf) {
                // Static servers often close without a TLS close_notify; the
                // length checks against the manifest catch a cut body.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
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
    body: BufReader<Stream>,
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
pub fn get(url: &str, from: u64, timeout: Duration, trust: &Trust) -> Result<Response, HttpError> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(HttpError::Scheme { url: url.into() }),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let io = |source| HttpError::Io { url: url.into(), source };
    let default_port = if tls { 443 } else { 80 };
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let addr_text = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:{default_port}") };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HttpError::Malformed { url: url.into(), what: format!("{hostport} has no address") })?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut stream = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| HttpError::Malformed { url: url.into(), what: format!("`{host}` is not a server name: {e}") })?;
        let conn = rustls::ClientConnection::new(trust.config.clone(), name)
            .map_err(|e| HttpError::Io { url: url.into(), source: std::io::Error::other(e) })?;
        Stream::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
    } else {
        Stream::Plain(stream)
    };
    let range = if from > 0 { format!("Range: bytes={from}-\r\n") } else { String::new() };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: cairn-updater\r\n{range}Connection: close\r\n\r\n");
    // With TLS, this is where the handshake happens and the server's
    // certificate is checked; rustls names what failed.
    stream.write_all(request.as_bytes()).and_then(|()| stream.flush()).map_err(io)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = get("ftp://example/x", 0, Duration::from_secs(1), &trust).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "ftp://example/x: not an http:// or https:// URL");
    }
}
