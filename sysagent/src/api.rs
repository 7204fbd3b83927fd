//! Requests to answers: the route table decides who may call what, then one
//! handler per action asks the machine (cairn-init, cairnctl) and answers JSON.

use crate::audit::{Audit, Record};
use crate::error::{ApiError, ApiResult, Kind};
use crate::node::{parse_list, Node};
use crate::ops::Ops;
use crate::routes::{self, Action, Resolved};
use crate::{body, cluster, metrics};
use bytes::Bytes;
use cairn_pki::Identity;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::warn;

/// The largest request body (a machine config).
pub const MAX_BODY: usize = 1024 * 1024;

pub struct App {
    pub node: Node,
    pub audit: Audit,
    pub ops: Ops,
    pub cgroup_root: PathBuf,
    pub ready_file: PathBuf,
    pub scratch: PathBuf,
    /// None when the machine config has no `[cluster]`.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

pub(crate) enum Answer {
    Json(u16, Value),
    Text(String),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

fn json_response(status: u16, v: &Value) -> Response<body::Body> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    body::response(status, "application/json", bytes)
}

pub fn error_response(e: &ApiError) -> Response<body::Body> {
    json_response(e.kind.status(), &json!({"kind": e.kind, "message": e.message}))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl App {
    pub async fn handle(self: Arc<App>, req: Request<Incoming>, who: Identity, peer: SocketAddr) -> Response<body::Body> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let (route, args) = match routes::resolve(&method, &path) {
            Resolved::Found(r, args) => (r, args.into_iter().map(str::to_string).collect::<Vec<_>>()),
            Resolved::WrongMethod => {
                let allow = routes::methods(&path).join(", ");
                let mut r = error_response(&ApiError::new(Kind::MethodNotAllowed, format!("{path} takes {allow}, not {method}")));
                if let Ok(v) = hyper::header::HeaderValue::from_str(&allow) {
                    r.headers_mut().insert(hyper::header::ALLOW, v);
                }
                return r;
            }
            Resolved::NotFound => return error_response(&ApiError::new(Kind::NotFound, format!("no route {path}"))),
        };
        if !routes::allowed(route, who.role) {
            let e = ApiError::new(
                Kind::Forbidden,
                format!("{method} {path} needs the role {}; this certificate carries {}", names(route.roles), who.role),
            );
            if route.mutating {
                self.record(&who, peer, &method, &path, e.kind.status(), "forbidden");
            }
            return error_response(&e);
        }
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let caller = cluster::handlers::Caller { peer, admin: who.role == cairn_pki::Role::Admin };
        let result = self.clone().dispatch(route.action, &args, &query, body, caller).await;
        let response = match result {
            Ok(Answer::Json(status, v)) => json_response(status, &v),
            Ok(Answer::Text(t)) => body::response(200, "text/plain; charset=utf-8", t.into_bytes()),
            Ok(Answer::Stream(rx)) => body::streaming("text/plain; charset=utf-8", rx),
            Err(e) => error_response(&e),
        };
        if route.mutating {
            let status = response.status().as_u16();
            self.record(&who, peer, &method, &path, status, if status < 300 { "ok" } else { "refused" });
        }
        response
    }

    fn record(&self, who: &Identity, peer: SocketAddr, method: &str, path: &str, status: u16, result: &str) {
        let peer = peer.to_string();
        let r = Record {
            time: now(),
            subject: &who.common_name,
            serial: &who.serial,
            role: who.role.as_str(),
            peer: &peer,
            method,
            path,
            status,
            result,
        };
        if let Err(e) = self.audit.record(&r) {
            warn!("audit log in {}: {e}", self.audit.dir().display());
        }
    }

    async fn dispatch(self: Arc<App>, action: Action, args: &[String], query: &str, body: Bytes, caller: cluster::handlers::Caller) -> ApiResult<Answer> {
        let arg = || args.first().map(String::as_str).unwrap_or("");
        match action {
            Action::Status => self.status().await,
            Action::Services => {
                let text = self.node.control(&["list"]).await?;
                Ok(Answer::Json(200, json!({"services": parse_list(&text)})))
            }
            Action::ServiceRestart => self.short("restart", self.node.control(&["restart", arg()])).await,
            Action::ServiceLogs if query.split('&').any(|q| q == "follow=true" || q == "follow=1") => {
                Ok(Answer::Stream(self.node.follow(arg()).await?))
            }
            Action::ServiceLogs => Ok(Answer::Text(self.node.control(&["logs", arg()]).await?)),
            Action::KernelLogs => Ok(Answer::Text(self.node.control(&["logs", "kernel"]).await?)),
            Action::ConfigGet => self.cairnctl_json(&["config", "status", "--output", "json"]).await,
            Action::ConfigValidate => {
                let file = self.scratch_file(&body)?;
                let (_, out) = self.node.cairnctl(&["config", "validate", &file, "--output", "json"], None).await?;
                let _ = std::fs::remove_file(&file);
                let v: Value = serde_json::from_str(&out)
                    .map_err(|_| ApiError::new(Kind::Internal, format!("cairnctl config validate said: {}", out.trim())))?;
                Ok(Answer::Json(200, v))
            }
            Action::ConfigApply | Action::ConfigTry => {
                let file = self.scratch_file(&body)?;
                let mut words = vec!["config".to_string(), if action == Action::ConfigApply { "apply" } else { "try" }.into(), file];
                if action == Action::ConfigTry {
                    let timeout = query.split('&').find_map(|q| q.strip_prefix("timeout=")).unwrap_or("2m");
                    words.extend(["--timeout".to_string(), timeout.to_string()]);
                }
                self.operation(words).await
            }
            Action::ConfigConfirm => self.operation(vec!["config".into(), "confirm".into()]).await,
            Action::ConfigRollback => self.operation(vec!["config".into(), "rollback".into()]).await,
            Action::UpdateStatus => {
                let (ok, out) = self.node.cairnctl(&["update", "status"], None).await?;
                if !ok {
                    return Err(ApiError::new(Kind::Unavailable, out.trim().to_string()));
                }
                Ok(Answer::Json(200, json!({"status": out.lines().collect::<Vec<_>>()})))
            }
            Action::UpdateCheck => {
                let (ok, out) = self.node.cairnctl(&["update", "check"], None).await?;
                if !ok {
                    return Err(ApiError::new(Kind::Refused, out.trim().to_string()));
                }
                Ok(Answer::Json(200, json!({"ok": ok, "output": out})))
            }
            Action::UpdateApply => self.update_apply().await,
            Action::UpdateRollback => self.operation(vec!["rollback".into()]).await,
            Action::Reboot | Action::PowerOff => {
                let word = if action == Action::Reboot { "reboot" } else { "poweroff" };
                let ticket = self.ops.begin(word).map_err(busy)?;
                let id = ticket.id;
                let app = self.clone();
                tokio::spawn(async move {
                    // The answer goes out first.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let r = app.node.control(&[word]).await;
                    ticket.finish(r.is_ok(), &r.unwrap_or_else(|e| e.message));
                });
                Ok(Answer::Json(202, json!({"operation": id, "poll": format!("/v1/operations/{id}")})))
            }
            Action::Operation => {
                let id: u64 = arg().parse().map_err(|_| ApiError::new(Kind::BadRequest, "an operation id is a number"))?;
                let op = self.ops.get(id).ok_or_else(|| ApiError::new(Kind::NotFound, format!("no operation {id}")))?;
                Ok(Answer::Json(200, serde_json::to_value(op).unwrap_or(Value::Null)))
            }
            Action::Audit => Ok(Answer::Json(200, json!({"records": self.audit.tail(200)}))),
            Action::Metrics => Ok(Answer::Text(self.metrics().await)),
            Action::OpenApi => {
                let v: Value = serde_json::from_str(crate::openapi::DOCUMENT).unwrap_or(Value::Null);
                Ok(Answer::Json(200, v))
            }
            Action::ClusterStatus => Ok(Answer::Json(200, cluster::handlers::status(self.cluster.as_deref()).await?)),
            Action::ClusterToken => Ok(Answer::Json(200, cluster::handlers::token(self.cluster.as_deref(), arg()).await?)),
            Action::ClusterReport => Ok(Answer::Json(200, cluster::handlers::report(self.cluster.as_deref(), caller, &body).await?)),
            Action::ClusterLock => Ok(Answer::Json(200, cluster::slots::lock(self.cluster.as_deref(), caller, &body).await?)),
            Action::ClusterUnlock => Ok(Answer::Json(200, cluster::slots::unlock(self.cluster.as_deref(), caller, &body).await?)),
            Action::ClusterHalt => Ok(Answer::Json(200, cluster::slots::halt(self.cluster.as_deref(), caller, &body).await?)),
            Action::ClusterResume => Ok(Answer::Json(200, cluster::slots::resume(self.cluster.as_deref()).await?)),
            Action::ClusterAvailability => {
                Ok(Answer::Json(200, cluster::slots::availability(self.cluster.as_deref(), caller, &body).await?))
            }
            Action::ClusterConverged => Ok(Answer::Json(200, cluster::slots::converged(self.cluster.as_deref(), arg()).await?)),
        }
    }

    /// A quick mutating call: still one at a time with the long ones.
    async fn short(&self, what: &str, call: impl std::future::Future<Output = ApiResult<String>>) -> ApiResult<Answer> {
        let ticket = self.ops.begin(what).map_err(busy)?;
        let r = call.await;
        ticket.finish(r.is_ok(), r.as_ref().map_or_else(|e| e.message.as_str(), |t| t.as_str()));
        let text = r?;
        Ok(Answer::Json(200, json!({"ok": true, "output": text})))
    }

    async fn operation(self: Arc<App>, words: Vec<String>) -> ApiResult<Answer> {
        let ticket = self.ops.begin(&words.join(" ")).map_err(busy)?;
        let id = ticket.id;
        let app = self.clone();
        tokio::spawn(async move {
            let args: Vec<&str> = words.iter().map(String::as_str).collect();
            let r = app.node.cairnctl(&args, None).await;
            match r {
                Ok((ok, out)) => ticket.finish(ok, &out),
                Err(e) => ticket.finish(false, &e.message),
            };
            for w in &words {
                if w.starts_with(app.scratch.to_string_lossy().as_ref()) {
                    let _ = std::fs::remove_file(w);
                }
            }
        });
        Ok(Answer::Json(202, json!({"operation": id, "poll": format!("/v1/operations/{id}")})))
    }

    /// `update apply`, from an operator or the automatic schedule.
    pub async fn update_apply(self: Arc<App>) -> ApiResult<Answer> {
        if self.cluster.is_some() {
            self.cluster_update().await
        } else {
            self.operation(vec!["update".into(), "apply".into()]).await
        }
    }

    /// An update on a cluster member goes through the rollout: a reboot
    /// slot, a drain, then the install.
    async fn cluster_update(self: Arc<App>) -> ApiResult<Answer> {
        let ticket = self.ops.begin("update apply (cluster rollout)").map_err(busy)?;
        let id = ticket.id;
        let app = self.clone();
        tokio::spawn(async move {
            let Some(c) = app.cluster.as_deref() else { return };
            match cluster::upgrade::apply(c, &app.node, &c.marker).await {
                Ok(out) => ticket.finish(true, &out),
                Err(e) => ticket.finish(false, &e),
            };
        });
        Ok(Answer::Json(202, json!({"operation": id, "poll": format!("/v1/operations/{id}")})))
    }

    async fn cairnctl_json(&self, args: &[&str]) -> ApiResult<Answer> {
        let (ok, out) = self.node.cairnctl(args, None).await?;
        match serde_json::from_str::<Value>(&out) {
            Ok(v) if ok => Ok(Answer::Json(200, v)),
            Ok(_) => Err(ApiError::new(Kind::Refused, format!("cairnctl {}: {}", args.join(" "), out.trim()))),
            Err(_) => Err(ApiError::new(Kind::Unavailable, format!("cairnctl {}: {}", args.join(" "), out.trim()))),
        }
    }

    fn scratch_file(&self, body: &Bytes) -> ApiResult<String> {
        if body.is_empty() {
            return Err(ApiError::new(Kind::BadRequest, "the body must be a machine config (TOML)"));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(ApiError::new(Kind::BadRequest, "the body is not UTF-8 (a machine config is TOML text)"));
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::create_dir_all(&self.scratch).map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?;
        let path = self.scratch.join(format!("config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, body).map_err(|e| ApiError::new(Kind::Internal, format!("{}: {e}", path.display())))?;
        Ok(path.to_string_lossy().into_owned())
    }

    fn ready_line(&self) -> Option<String> {
        std::fs::read_to_string(&self.ready_file).ok()
    }

    async fn status(&self) -> ApiResult<Answer> {
        let ready = self.ready_line();
        let field = |k: &str| ready.as_deref().and_then(|l| metrics::field(l, k)).map(str::to_string);
        let update = match self.node.cairnctl(&["update", "status"], None).await {
            Ok((true, out)) => json!(out.lines().collect::<Vec<_>>()),
            Ok((false, out)) => json!({"error": out.trim()}),
            Err(e) => json!({"error": e.message}),
        };
        Ok(Answer::Json(
            200,
            json!({
                "hostname": read_trim("/proc/sys/kernel/hostname"),
                "version": os_version(),
                "slot": slot(),
                "kernel": read_trim("/proc/sys/kernel/osrelease"),
                "uptime_s": uptime(),
                "ready": ready.is_some(),
                "boot_ms": field("boot_ms").and_then(|v| v.parse::<u64>().ok()),
                "config": field("config"),
                "update": update,
            }),
        ))
    }

    async fn metrics(&self) -> String {
        let services = match self.node.control(&["list"]).await {
            Ok(t) => parse_list(&t),
            Err(e) => {
                warn!("metrics: {}", e.message);
                Vec::new()
            }
        };
        let ready = self.ready_line();
        let generation = ready.as_deref().and_then(|l| {
            metrics::field(l, "config")?.rsplit(':').next()?.parse::<u64>().ok()
        });
        metrics::render(&metrics::Facts {
            services: &services,
            ready_line: ready.as_deref(),
            version: &os_version(),
            slot: &slot(),
            config_generation: generation,
            cgroup_root: &self.cgroup_root,
            uptime_s: uptime(),
            cluster: self.cluster.as_deref().map(|c| (c.settings.role.as_str(), c.seen())),
        })
    }
}

fn busy(running: crate::ops::Operation) -> ApiError {
    ApiError::new(Kind::Conflict, format!("operation {} ({}) is still running; poll /v1/operations/{}", running.id, running.action, running.id))
}

fn names(roles: &[cairn_pki::Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ")
}

async fn read_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::new(Kind::TooLarge, format!("the body is larger than {MAX_BODY} bytes")))
        }
        Err(e) => Err(ApiError::new(Kind::BadRequest, format!("reading the body: {e}"))),
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn uptime() -> f64 {
    read_trim("/proc/uptime").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

pub fn os_version() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("VERSION_ID=")).map(|v| v.trim_matches('"').to_string()).unwrap_or_default()
}

pub fn slot() -> String {
    let cmdline = String::from_utf8_lossy(&std::fs::read("/proc/cmdline").unwrap_or_default()).into_owned();
    cmdline.split_whitespace().find_map(|w| w.strip_prefix("cairn.slot=")).unwrap_or("none").to_string()
}
