//! Accepting connections: a bounded number at once, a deadline on the TLS
//! handshake and on every request head, bounded request heads; nothing a
//! slow or hostile client does can hold more than its own connection.

use crate::api::App;
use crate::tls;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Connections served at once; more are closed at once, so memory stays bounded.
pub const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 16 * 1024;

pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Arc<App>) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!("{peer}: {MAX_CONNECTIONS} connections open; closing this one");
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!("{peer}: TLS: {e}");
                    return;
                }
                Err(_) => {
                    debug!("{peer}: TLS handshake timed out");
                    return;
                }
            };
            // The verifier let it through, so it has a role; this cannot fail.
            let Some(who) = tls::peer_identity(stream.get_ref().1.peer_certificates()) else { return };
            let service = service_fn(move |req| {
                let app = app.clone();
                let who = who.clone();
                async move { Ok::<_, Infallible>(app.handle(req, who, peer).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!("{peer}: {e}");
            }
        });
    }
}
