//! The agent as a client: of the Docker engine on its Unix socket, and of
//! other nodes' agents over mutual TLS (the node's own certificate, role
//! `node`). One request per connection, every step under a deadline, answers
//! bounded in size: a peer that stalls or floods costs one task, no more.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The largest answer read (the engine's node and service lists included).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}: cannot connect: {1}")]
    Connect(String, std::io::Error),
    #[error("{0}: TLS: {1}")]
    Tls(String, std::io::Error),
    #[error("{0}: HTTP: {1}")]
    Http(String, String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: {1}")]
    Setup(String, String),
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The engine's and the agents' error message, or the body as text.
    pub fn message(&self) -> String {
        let v = self.json();
        v.get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string(), str::to_string)
    }
}

async fn exchange<S>(stream: S, what: &str, req: Request<Full<Bytes>>) -> Result<Answer, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| ClientError::Http(what.to_string(), e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| ClientError::Http(what.to_string(), format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}

fn request(method: &str, host: &str, path: &str, body: Option<&serde_json::Value>) -> Request<Full<Bytes>> {
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut r = Request::builder().method(method).uri(path).header("host", host);
    if body.is_some() {
        r = r.header("content-type", "application/json");
    }
    // Only a method or URI hyper refuses fails here; ours are literals.
    r.body(Full::new(bytes)).unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// The Docker engine on its Unix socket, spoken at API 1.41 (what Debian's
/// 20.10 serves at most).
#[derive(Debug, Clone)]
pub struct Engine {
    pub socket: PathBuf,
    pub timeout: Duration,
    /// Calls in flight at once: a burst of API requests waits here, in the
    /// agent, instead of piling onto the engine until its answers time out.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Engine calls the agent makes at once.
const ENGINE_CALLS: usize = 4;

impl Engine {
    pub fn new(socket: &Path) -> Engine {
        Engine {
            socket: socket.to_path_buf(),
            timeout: Duration::from_secs(30),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(ENGINE_CALLS)),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, ClientError> {
        let what = format!("docker {method} {path}");
        // Never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await.ok();
        let work = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| ClientError::Connect(self.socket.display().to_string(), e))?;
            exchange(stream, &what, request(method, "docker", &format!("/v1.41{path}"), body)).await
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| ClientError::Timeout(what.clone(), self.timeout))?
    }
}

/// Other nodes' agents, reached with this node's certificate.
#[derive(Clone)]
pub struct Peers {
    tls: tokio_rustls::TlsConnector,
    pub timeout: Duration,
}

impl Peers {
    /// From the node's own files: the CA that peers' server certificates must
    /// chain to, and the node's certificate and key as its client identity.
    pub fn new(ca: &Path, cert: &Path, key: &Path) -> Result<Peers, ClientError> {
        let setup = |p: &Path, e: String| ClientError::Setup(p.display().to_string(), e);
        let read = |p: &Path| std::fs::read(p).map_err(|e| setup(p, e.to_string()));
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&read(ca)?) {
            let c = c.map_err(|e| setup(ca, format!("not PEM: {e:?}")))?;
            roots.add(c).map_err(|e| setup(ca, e.to_string()))?;
        }
        let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&read(cert)?).collect();
        let chain = chain.map_err(|e| setup(cert, format!("not PEM: {e:?}")))?;
        let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| setup(key, format!("not PEM: {e:?}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(cert, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| setup(cert, e.to_string()))?;
        Ok(Peers { tls: tokio_rustls::TlsConnector::from(Arc::new(config)), timeout: Duration::from_secs(20) })
    }

    /// One call to the agent at `addr` (`host:port`); its certificate must
    /// name `host`.
    pub async fn call(&self, addr: &str, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Answer, ClientError> {
        let what = format!("agent {addr}: {method} {path}");
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| ClientError::Setup(addr.to_string(), e.to_string()))?;
        let work = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| ClientError::Connect(addr.to_string(), e))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| ClientError::Tls(addr.to_string(), e))?;
            exchange(tls, &what, request(method, host, path, body)).await
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| ClientError::Timeout(what.clone(), self.timeout))?
    }
}
