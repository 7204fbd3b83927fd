//! sysagent: the node's one door. REST/JSON over HTTPS with mutual TLS on
//! port 9440, roles from client certificates, Prometheus metrics on the same
//! port, an audit trail on STATE. It asks cairn-init and cairnctl for
//! everything it does; it is a supervised host process, never PID 1.

mod api;
mod audit;
mod autoupdate;
mod body;
mod client;
mod cluster;
mod error;
mod metrics;
mod node;
mod openapi;
mod ops;
mod routes;
mod server;
mod tls;

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;

struct Args {
    listen: String,
    dir: PathBuf,
    socket: PathBuf,
    cairnctl: PathBuf,
    audit: PathBuf,
    docker: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        listen: String::new(),
        dir: "/var/lib/cairn/sysagent".into(),
        socket: "/run/cairn/control.sock".into(),
        cairnctl: "/usr/bin/cairnctl".into(),
        audit: "/var/lib/cairn/audit".into(),
        docker: "/run/docker.sock".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--dir" => a.dir = value()?.into(),
            "--socket" => a.socket = value()?.into(),
            "--cairnctl" => a.cairnctl = value()?.into(),
            "--audit" => a.audit = value()?.into(),
            "--docker" => a.docker = value()?.into(),
            "--help" | "-h" => {
                println!("usage: sysagent [--listen ADDR:PORT (default: DIR/listen, else 0.0.0.0:9440)] [--dir DIR (ca.pem, server.pem, server.key, deny, listen)] [--socket PATH] [--cairnctl PATH] [--audit DIR] [--docker SOCKET]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if a.listen.is_empty() {
        // cairn-config writes the machine config's `api.listen` beside the certificates.
        a.listen = std::fs::read_to_string(a.dir.join("listen"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "0.0.0.0:9440".into());
    }
    Ok(a)
}

/// The cluster membership the machine config asks for, if any. A broken
/// cluster file is logged and leaves the node out of the cluster; the API
/// still serves.
fn cluster_of(a: &Args, files: &tls::Files) -> Option<Arc<cluster::Cluster>> {
    let settings = match cluster::Settings::load(&a.dir.join("cluster.json")) {
        Ok(s) => s?,
        Err(e) => {
            tracing::error!("cluster: {e}; this node stays out of the cluster");
            return None;
        }
    };
    let peers = match client::Peers::new(&files.ca, &files.cert, &files.key) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!("cluster: cannot call other nodes' agents: {e}");
            None
        }
    };
    Some(Arc::new(cluster::Cluster {
        settings,
        engine: client::Engine::new(&a.docker),
        peers,
        seen: Default::default(),
        version: api::os_version(),
        slot: api::slot(),
        node: node::Node { socket: a.socket.clone(), cairnctl: a.cairnctl.clone() },
        marker: a.dir.join("rollout.json"),
        ready_file: "/run/cairn/cluster-ready".into(),
    }))
}

fn main() {
    tracing_subscriber::fmt().with_ansi(false).without_time().with_target(false).init();
    if let Err(e) = run() {
        eprintln!("sysagent: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let a = args()?;
    let files = tls::Files {
        ca: a.dir.join("ca.pem"),
        cert: a.dir.join("server.pem"),
        key: a.dir.join("server.key"),
        deny: Some(a.dir.join("deny")),
    };
    let tls = tls::server_config(&files)?;
    let cluster = cluster_of(&a, &files);
    let app = Arc::new(api::App {
        node: node::Node { socket: a.socket, cairnctl: a.cairnctl },
        audit: audit::Audit::new(a.audit),
        ops: ops::Ops::default(),
        cgroup_root: "/sys/fs/cgroup/cairn".into(),
        ready_file: "/run/cairn/ready".into(),
        scratch: "/run/cairn/sysagent".into(),
        cluster: cluster.clone(),
    });
    // One thread: the agent waits on the network and on cairn-init, and its
    // memory stays in single-digit MiB.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
        tracing::info!("listening on {} (mutual TLS)", a.listen);
        if let Some(c) = cluster {
            tokio::spawn(cluster::member::run(c));
        }
        tokio::spawn(autoupdate::run(app.clone(), a.dir.join("update.json")));
        server::serve(listener, tls, app).await;
        Ok(())
    })
}
