//! Fetching from a static update repository: GET with an optional byte range
//! over HTTP or HTTPS, with `ureq` (rustls on ring). ureq bounds the response
//! head, follows redirects (mirrors, CDNs), takes a proxy from `proxy=` or
//! `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (and `NO_PROXY`), and takes IPv6
//! hosts as `[::1]`. The repository needs no trust for integrity: every byte
//! is checked against the signed manifest. TLS keeps the download private
//! and makes it harder to withhold updates; servers are checked against
//! Mozilla's roots (compiled in) and, for a private repository, one more CA
//! file.

use std::io::Read;
use std::path::Path;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: not an http:// or https:// URL")]
    Scheme { url: String },
    /// The network, TLS, a timeout or the server's answer broke the request.
    #[error("{url}: {source}")]
    Request { url: String, source: ureq::Error },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: malformed answer: {what}")]
    Malformed { url: String, what: String },
    #[error("{path}: {what}")]
    Ca { path: String, what: String },
    #[error("proxy={proxy}: {source}")]
    Proxy { proxy: String, source: ureq::Error },
}

impl HttpError {
    /// Whether trying again may help: the network or the server had a
    /// moment, as opposed to an answer that is wrong.
    pub fn transient(&self) -> bool {
        use ureq::Error as E;
        match self {
            HttpError::Io { .. } => true,
            HttpError::Request { source, .. } => {
                matches!(source, E::Io(_) | E::Timeout(_) | E::HostNotFound | E::ConnectionFailed | E::BodyStalled)
            }
            HttpError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The largest response head taken (status line and headers).
pub const MAX_HEAD: usize = 16 << 10;
/// Redirects followed, as a mirror or CDN answers.
pub const MAX_REDIRECTS: u32 = 5;

/// How to reach and trust update servers: Mozilla's roots plus the CAs in
/// `extra_ca`, and a proxy when one is set.
#[derive(Clone)]
pub struct Trust {
    agent: ureq::Agent,
}

impl Trust {
    pub fn new(extra_ca: Option<&Path>) -> Result<Trust, HttpError> {
        Trust::with_proxy(extra_ca, None)
    }

    /// `proxy` overrides the environment's `HTTPS_PROXY` and the like.
    pub fn with_proxy(extra_ca: Option<&Path>, proxy: Option<&str>) -> Result<Trust, HttpError> {
        let roots = match extra_ca {
            None => RootCerts::WebPki,
            Some(path) => {
                let extra = read_ca(path)?;
                let mozilla = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned());
                RootCerts::new_with_certs(&mozilla.chain(extra).collect::<Vec<_>>())
            }
        };
        let tls = TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(roots).build();
        let mut config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .max_response_header_size(MAX_HEAD)
            .user_agent("cairn-updater");
        if let Some(p) = proxy.filter(|p| !p.is_empty()) {
            let proxy = ureq::Proxy::new(p).map_err(|source| HttpError::Proxy { proxy: p.into(), source })?;
            config = config.proxy(Some(proxy));
        }
        Ok(Trust { agent: config.build().into() })
    }
}

/// Every certificate in a PEM file, each checked to be a usable CA.
fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, HttpError> {
    let bad = |what: String| HttpError::Ca { path: path.display().to_string(), what };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) = item.map_err(|e| bad(e.to_string()))? {
            let mut check = rustls::RootCertStore::empty();
            check.add(cert.der().to_vec().into()).map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
            out.push(cert);
        }
    }
    if out.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(out)
}

/// An answer whose body is still to be read.
pub struct Response {
    pub url: String,
    /// 200 or 206.
    pub status: u16,
    /// Content-Length, when the server sent one.
    pub length: Option<u64>,
    /// The whole file's size: Content-Length of a 200, the total of a 206's
    /// Content-Range.
    pub total: Option<u64>,
    body: ureq::BodyReader<'static>,
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
        (&mut self).take(limit.saturating_add(1)).read_to_end(&mut out).map_err(|source| HttpError::Io { url: url.clone(), source })?;
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

/// How long to wait for the connection, the answer's head and each read.
pub struct Timeouts {
    /// Connect, head, and any one read or write.
    pub step: Duration,
    /// The whole request, body included.
    pub whole: Duration,
}

/// GET `url`, from byte `from` on when it is not zero. A 206 must start
/// exactly at `from`.
pub fn get(url: &str, from: u64, t: &Timeouts, trust: &Trust) -> Result<Response, HttpError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(HttpError::Scheme { url: url.into() });
    }
    let mut req = trust.agent.get(url);
    if from > 0 {
        req = req.header("Range", format!("bytes={from}-"));
    }
    let resp = req
        .config()
        .timeout_global(Some(t.whole))
        .timeout_connect(Some(t.step))
        .timeout_recv_response(Some(t.step))
        .timeout_per_read(Some(t.step))
        .build()
        .call()
        .map_err(|source| HttpError::Request { url: url.into(), source })?;
    let status = resp.status().as_u16();
    if status != 200 && status != 206 {
        return Err(HttpError::Status { url: url.into(), status });
    }
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let malformed = |what: String| HttpError::Malformed { url: url.into(), what };
    let length = match header("content-length") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| malformed(format!("Content-Length `{v}`")))?),
        None => None,
    };
    let total = if status == 206 {
        let v = header("content-range").ok_or_else(|| malformed("a 206 without Content-Range".into()))?;
        let (start, end, total) = content_range(v).ok_or_else(|| malformed(format!("Content-Range `{v}`")))?;
        if start != from {
            return Err(malformed(format!("Content-Range `{v}` starts at {start}, asked for byte {from} on")));
        }
        if length.is_some_and(|l| Some(l) != (end - start).checked_add(1)) {
            return Err(malformed(format!("Content-Range `{v}` and Content-Length {} disagree", length.unwrap_or(0))));
        }
        Some(total)
    } else {
        length
    };
    Ok(Response { url: url.into(), status, length, total, body: resp.into_body().into_reader() })
}

/// `bytes START-END/TOTAL` with START <= END < TOTAL.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let (range, total) = v.strip_prefix("bytes ")?.trim().split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total): (u64, u64, u64) = (start.parse().ok()?, end.parse().ok()?, total.parse().ok()?);
    (start <= end && end < total).then_some((start, end, total))
}

#[cfg(test)]
mod tests;
