//! `cairnctl --node HOST[:PORT][,HOST...] VERB ...`: the same verbs against
//! sysagent's API over mutual TLS, from anywhere. Several nodes are asked one
//! after the other, with one result per node; verbs that change a machine
//! need `--yes` when they go to more than one.

use crate::cli::{Command, Config, NoReboot, Update};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

pub const PORT: u16 = 9440;
/// How long a long action (an update) may take before cairnctl stops polling.
const OPERATION_LIMIT: Duration = Duration::from_secs(1800);

/// Where the CA and the client certificate come from: flags, else
/// `CAIRN_CA`, `CAIRN_CERT`, `CAIRN_KEY`.
pub struct Identity {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

pub struct Options {
    pub nodes: Vec<String>,
    pub identity: Identity,
    pub json: bool,
    pub yes: bool,
}

fn path(flag: Option<PathBuf>, env: &str, what: &str) -> Result<PathBuf> {
    flag.or_else(|| std::env::var_os(env).map(PathBuf::from))
        .with_context(|| format!("no {what}: pass --{} FILE or set {env}", what.split(' ').next().unwrap_or(what)))
}

fn pem(path: &PathBuf) -> Result<Vec<PemItem<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let items: Result<Vec<_>, _> = ureq::tls::parse_pem(&bytes).collect();
    items.with_context(|| format!("{} is not PEM", path.display()))
}

fn agent(id: Identity) -> Result<ureq::Agent> {
    let ca = path(id.ca, "CAIRN_CA", "ca certificate")?;
    let cert = path(id.cert, "CAIRN_CERT", "cert (client certificate)")?;
    let key = path(id.key, "CAIRN_KEY", "key (client key)")?;
    let roots: Vec<Certificate<'static>> =
        pem(&ca)?.into_iter().filter_map(|i| if let PemItem::Certificate(c) = i { Some(c) } else { None }).collect();
    if roots.is_empty() {
        bail!("{} holds no certificate", ca.display());
    }
    let chain: Vec<Certificate<'static>> =
        pem(&cert)?.into_iter().filter_map(|i| if let PemItem::Certificate(c) = i { Some(c) } else { None }).collect();
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let private: Option<PrivateKey<'static>> =
        pem(&key)?.into_iter().find_map(|i| if let PemItem::PrivateKey(k) = i { Some(k) } else { None });
    let private = private.with_context(|| format!("{} holds no private key", key.display()))?;
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(Some(ClientCert::new_with_certs(&chain, private)))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .user_agent("cairnctl");
    Ok(config.build().into())
}

fn base(node: &str) -> String {
    let host_port = if let Some(rest) = node.strip_prefix('[') {
        if rest.contains("]:") { node.to_string() } else { format!("{node}:{PORT}") }
    } else {
        match node.matches(':').count() {
            0 => format!("{node}:{PORT}"),
            1 => node.to_string(),
            // A bare IPv6 address.
            _ => format!("[{node}]:{PORT}"),
        }
    };
    format!("https://{host_port}")
}

/// One request; the status and the body, and whether the body is JSON.
fn call(agent: &ureq::Agent, node: &str, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String)> {
    call_typed(agent, node, method, path, body).map(|(s, t, _)| (s, t))
}

fn call_typed(agent: &ureq::Agent, node: &str, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String, bool)> {
    let url = format!("{}{path}", base(node));
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        (_, Some(b)) => agent.post(&url).content_type("application/toml").send(b),
        (_, None) => agent.post(&url).send_empty(),
    };
    let mut resp = resp.map_err(|e| match e {
        ureq::Error::Io(io) => anyhow::anyhow!("cannot reach {url}: {io}"),
        other => anyhow::anyhow!("{other} (is sysagent running on {node}, and does it trust this certificate?)"),
    })?;
    let status = resp.status().as_u16();
    let json = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let text = resp.body_mut().with_config().limit(16 * 1024 * 1024).read_to_string().context("reading the answer")?;
    Ok((status, text, json))
}

/// A followed log: printed as it comes.
fn stream(agent: &ureq::Agent, node: &str, path: &str) -> Result<()> {
    let url = format!("{}{path}", base(node));
    let mut resp = agent.get(&url).call().with_context(|| node.to_string())?;
    if resp.status().as_u16() != 200 {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        bail!("{}", error_text(resp.status().as_u16(), &text));
    }
    let mut reader = resp.body_mut().as_reader();
    let mut buf = [0u8; 8192];
    let stdout = std::io::stdout();
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut out = stdout.lock();
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

fn error_text(status: u16, body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v.get("kind").is_some() => {
            format!("{} ({status}): {}", v["kind"].as_str().unwrap_or("?"), v["message"].as_str().unwrap_or(""))
        }
        _ => format!("HTTP {status}: {}", body.trim()),
    }
}

/// What a verb is on the wire.
#[derive(Debug)]
struct Call {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    mutating: bool,
    follow: bool,
}

fn get(path: &str) -> Call {
    Call { method: "GET", path: path.into(), body: None, mutating: false, follow: false }
}

fn post(path: &str, mutating: bool) -> Call {
    Call { method: "POST", path: path.into(), body: None, mutating, follow: false }
}

fn with_file(mut c: Call, file: &str) -> Result<Call> {
    c.body = Some(std::fs::read(file).with_context(|| format!("cannot read {file}"))?);
    Ok(c)
}

fn translate(command: &Command) -> Result<Call> {
    let local = |what: &str| bail!("`{what}` works on the node only (cairn-init's socket); sysagent's API has no route for it");
    Ok(match command {
        Command::Status => get("/v1/status"),
        Command::List => get("/v1/services"),
        Command::Logs { name, follow: false } if name == "kernel" => get("/v1/kernel/logs"),
        Command::Logs { name, follow: false } => get(&format!("/v1/services/{name}/logs")),
        Command::Logs { name, follow: true } => Call { follow: true, ..get(&format!("/v1/services/{name}/logs?follow=true")) },
        Command::Restart { name } => post(&format!("/v1/services/{name}/restart"), true),
        Command::Reboot => post("/v1/reboot", true),
        Command::Poweroff => post("/v1/poweroff", true),
        Command::Update(Update::Status) => get("/v1/update"),
        Command::Update(Update::Check) => post("/v1/update/check", false),
        Command::Update(Update::Apply(NoReboot { no_reboot: false })) => post("/v1/update/apply", true),
        Command::Rollback(NoReboot { no_reboot: false }) | Command::Update(Update::Rollback(NoReboot { no_reboot: false })) => {
            post("/v1/update/rollback", true)
        }
        Command::Update(Update::Apply(_) | Update::Rollback(_)) | Command::Rollback(_) => {
            bail!("--no-reboot is for the node itself; through the API an update or a rollback always ends in a reboot")
        }
        Command::Config(Config::Status) => get("/v1/config"),
        Command::Config(Config::Validate { file }) => with_file(post("/v1/config/validate", false), file)?,
        Command::Config(Config::Apply { file }) => with_file(post("/v1/config/apply", true), file)?,
        Command::Config(Config::Try { file, timeout }) => with_file(post(&format!("/v1/config/try?timeout={timeout}s"), true), file)?,
        Command::Config(Config::Confirm) => post("/v1/config/confirm", true),
        Command::Config(Config::Rollback) => post("/v1/config/rollback", true),
        Command::Audit => get("/v1/audit"),
        Command::Metrics => get("/metrics"),
        Command::Cluster(crate::cli::Cluster::Status) => get("/v1/cluster"),
        Command::Cluster(crate::cli::Cluster::Token { role }) => get(&format!("/v1/cluster/token/{role}")),
        Command::Cluster(crate::cli::Cluster::Resume) => post("/v1/cluster/resume", true),
        Command::Exec { .. } => return local("exec"),
        Command::Update(Update::Set { .. }) => return local("update set"),
        Command::Update(Update::Unmark { .. }) => return local("update unmark"),
        Command::Update(Update::Settle { .. }) => return local("update settle"),
        Command::Pki(_) => bail!("`pki` makes files on this machine; leave out --node"),
    })
}

fn table(v: &Value) -> String {
    let mut t = format!("{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n", "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTH");
    for s in v["services"].as_array().into_iter().flatten() {
        let opt = |k: &str, suffix: &str| s[k].as_u64().map_or("-".to_string(), |n| format!("{n}{suffix}"));
        t.push_str(&format!(
            "{:<16} {:<22} {:>7} {:>8} {:>9}  {}\n",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            opt("pid", ""),
            opt("restarts", ""),
            opt("uptime_s", "s"),
            s["health"].as_str().unwrap_or("")
        ));
    }
    t
}

fn human(path: &str, v: &Value) -> String {
    if path == "/v1/services" {
        return table(v);
    }
    if let Some(out) = v.get("output").and_then(Value::as_str) {
        return out.to_string();
    }
    match v {
        Value::Object(map) => {
            let mut s = String::new();
            for (k, val) in map {
                match val {
                    Value::Array(items) => {
                        s.push_str(&format!("{k}:\n"));
                        for i in items {
                            s.push_str(&format!("  {}\n", i.as_str().map_or_else(|| i.to_string(), str::to_string)));
                        }
                    }
                    Value::String(text) => s.push_str(&format!("{k}: {text}\n")),
                    other => s.push_str(&format!("{k}: {other}\n")),
                }
            }
            s
        }
        other => format!("{other}\n"),
    }
}

/// How long a node must stay unreachable before a wait takes it for
/// rebooting: one poll lost to a busy agent or a slow network is not a reboot.
const GONE_AFTER: Duration = Duration::from_secs(30);

/// Polls a 202's operation until it ends; its final state. A node that goes
/// away while it runs (and stays away) is rebooting (an update ends so):
/// that ends the wait.
fn wait(agent: &ureq::Agent, node: &str, poll: &str) -> Result<Value> {
    let started = std::time::Instant::now();
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        match call(agent, node, "GET", poll, None) {
            Ok((200, text)) => {
                unreachable_since = None;
                let v: Value = serde_json::from_str(&text).context("the operation's state is not JSON")?;
                if v["state"] != "running" {
                    return Ok(v);
                }
            }
            // The agent restarted (a reboot that came back quickly): its
            // operations went with it.
            Ok((404, _)) if unreachable_since.is_some() => {
                return Ok(serde_json::json!({"state": "gone", "output": format!("{node} went away (rebooted)\n")}));
            }
            Ok((status, text)) => bail!("{}", error_text(status, &text)),
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= GONE_AFTER {
                    return Ok(serde_json::json!({"state": "gone", "output": format!("{node} went away (rebooting; last error: {e})\n")}));
                }
            }
        }
        if started.elapsed() > OPERATION_LIMIT {
            bail!("the operation did not end in {} s; poll {poll}", OPERATION_LIMIT.as_secs());
        }
    }
}

fn one(agent: &ureq::Agent, node: &str, c: &Call, json: bool) -> Result<()> {
    if c.follow {
        return stream(agent, node, &c.path);
    }
    let (status, text, is_json) = call_typed(agent, node, c.method, &c.path, c.body.as_deref())?;
    if status >= 400 {
        bail!("{}", error_text(status, &text));
    }
    if !is_json {
        print!("{text}");
        return Ok(());
    }
    let mut v: Value = serde_json::from_str(&text).context("the answer is not JSON")?;
    if status == 202 {
        if let Some(poll) = v["poll"].as_str().map(str::to_string) {
            v = wait(agent, node, &poll)?;
            if !json {
                let out = v["output"].as_str().unwrap_or("");
                print!("{out}");
                if !out.is_empty() && !out.ends_with('\n') {
                    println!();
                }
            }
            if v["state"] == "failed" {
                bail!("the operation failed");
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if status != 202 {
        print!("{}", human(&c.path, &v));
    }
    Ok(())
}

pub fn run(opts: Options, command: &Command) -> Result<()> {
    let c = translate(command)?;
    if c.mutating && opts.nodes.len() > 1 && !opts.yes {
        bail!("{} {} changes {} machines; add --yes to do it", c.method, c.path, opts.nodes.len());
    }
    if c.follow && opts.nodes.len() > 1 {
        bail!("logs -f follows one node at a time");
    }
    let agent = agent(opts.identity)?;
    if opts.nodes.len() == 1 {
        return one(&agent, &opts.nodes[0], &c, opts.json);
    }
    let mut failed = Vec::new();
    for node in &opts.nodes {
        println!("== {node}");
        if let Err(e) = one(&agent, node, &c, opts.json) {
            eprintln!("cairnctl: {node}: {e:#}");
            failed.push(node.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("failed on {} of {} nodes: {}", failed.len(), opts.nodes.len(), failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_names_get_the_port_and_ipv6_brackets() {
        assert_eq!(base("node1"), "https://node1:9440");
        assert_eq!(base("10.0.0.5:8443"), "https://10.0.0.5:8443");
        assert_eq!(base("fd00::5"), "https://[fd00::5]:9440");
        assert_eq!(base("[fd00::5]:1234"), "https://[fd00::5]:1234");
    }

    #[test]
    fn verbs_map_to_routes() {
        use clap::Parser;
        let w = |s: &str| crate::cli::Cli::try_parse_from(std::iter::once("cairnctl").chain(s.split(' '))).unwrap().command;
        assert_eq!(translate(&w("restart chrony")).unwrap().path, "/v1/services/chrony/restart");
        assert!(translate(&w("restart chrony")).unwrap().mutating);
        assert!(!translate(&w("list")).unwrap().mutating);
        assert!(translate(&w("logs chrony -f")).unwrap().follow);
        assert_eq!(translate(&w("logs kernel")).unwrap().path, "/v1/kernel/logs");
        assert_eq!(translate(&w("rollback")).unwrap().path, "/v1/update/rollback");
        assert!(translate(&w("exec admin ps")).unwrap_err().to_string().contains("node only"));
        assert!(translate(&w("update apply --no-reboot")).is_err());
        assert_eq!(translate(&w("cluster token worker")).unwrap().path, "/v1/cluster/token/worker");
        assert!(translate(&w("cluster resume")).unwrap().mutating);
    }
}
