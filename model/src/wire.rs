//! What PID 1 supervises, as text: one field a line, tab-separated.
//! `cairn-svcload` reads the service files, writes the OCI bundles and prints
//! this; cairn-init reads it. PID 1's binary then carries none of the TOML,
//! serde and OCI code, and since the kernel maps code around every page fault,
//! a smaller binary is a smaller resident PID 1.

use std::time::Duration;

/// The OCI runtime binary and its state directory for `crun` (the default)
/// or `runc`: the loader puts them in each unit's command, init uses them to
/// signal, delete and exec.
pub fn runtime_paths(name: &str) -> (&'static str, &'static str) {
    match name {
        "runc" => ("/usr/sbin/runc", "/run/runc"),
        _ => ("/usr/bin/crun", "/run/crun"),
    }
}

/// When a service restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// After every exit.
    Always,
    /// After a non-zero exit or a signal.
    OnFailure,
    /// Never.
    Never,
}

/// What a dependency must reach before its dependant starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Running.
    Started,
    /// Running and passing its health check.
    Healthy,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A command run inside the container; exit 0 is healthy.
    Exec(Vec<String>),
    /// A TCP connect.
    Tcp {
        /// Host to connect to.
        host: String,
        /// Port.
        port: u16,
    },
    /// An HTTP GET answered with a 2xx status.
    Http {
        /// Host to connect to.
        host: String,
        /// Port.
        port: u16,
        /// Request path.
        path: String,
    },
}

/// A health check with its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// The check.
    pub check: Check,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Consecutive failures before unhealthy.
    pub retries: u32,
    /// Failures this soon after start do not count.
    pub start_period: Duration,
}

/// One supervised service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Service name.
    pub name: String,
    /// The command PID 1 runs (`crun run ...`).
    pub argv: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Signal number that asks it to stop.
    pub stop_signal: i32,
    /// Time between the stop signal and SIGKILL.
    pub stop_timeout: Duration,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// First restart delay.
    pub backoff_base: Duration,
    /// Longest restart delay.
    pub backoff_cap: Duration,
    /// A run this long resets the delay.
    pub stable_after: Duration,
    /// Dependencies and what they must reach.
    pub depends: Vec<(String, Condition)>,
    /// OCI container id.
    pub container: Option<String>,
    /// Health check.
    pub health: Option<HealthSpec>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")
}

fn unesc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn line(out: &mut String, words: &[&str]) {
    let w: Vec<String> = words.iter().map(|w| esc(w)).collect();
    out.push_str(&w.join("\t"));
    out.push('\n');
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Appends a message for PID 1 to log (level: error, warn or info).
pub fn log(out: &mut String, level: &str, msg: &str) {
    line(out, &["log", level, msg]);
}

/// Appends a unit.
pub fn write(out: &mut String, s: &Unit) {
    line(out, &["svc", &s.name]);
    let mut argv = vec!["argv"];
    argv.extend(s.argv.iter().map(String::as_str));
    line(out, &argv);
    for (k, v) in &s.env {
        line(out, &["env", k, v]);
    }
    line(out, &["stop", &s.stop_signal.to_string(), &ms(s.stop_timeout)]);
    let policy = match s.restart {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    };
    line(out, &["restart", policy, &ms(s.backoff_base), &ms(s.backoff_cap), &ms(s.stable_after)]);
    for (d, c) in &s.depends {
        line(out, &["dep", d, if *c == Condition::Healthy { "healthy" } else { "started" }]);
    }
    if let Some(c) = &s.container {
        line(out, &["container", c]);
    }
    if let Some(h) = &s.health {
        let (i, t, r, p) = (ms(h.interval), ms(h.timeout), h.retries.to_string(), ms(h.start_period));
        let mut w: Vec<String> = vec!["health".into(), i, t, r, p];
        match &h.check {
            Check::Exec(argv) => {
                w.push("exec".into());
                w.extend(argv.iter().cloned());
            }
            Check::Tcp { host, port } => w.extend(["tcp".into(), host.clone(), port.to_string()]),
            Check::Http { host, port, path } => {
                w.extend(["http".into(), host.clone(), port.to_string(), path.clone()])
            }
        }
        let refs: Vec<&str> = w.iter().map(String::as_str).collect();
        line(out, &refs);
    }
    line(out, &["end"]);
}

/// A unit with nothing set but its name.
fn unit(name: &str) -> Unit {
    Unit {
        name: name.into(),
        argv: Vec::new(),
        env: Vec::new(),
        stop_signal: 15,
        stop_timeout: Duration::from_secs(10),
        restart: RestartPolicy::Always,
        backoff_base: Duration::from_millis(500),
        backoff_cap: Duration::from_secs(30),
        stable_after: Duration::from_secs(10),
        depends: Vec::new(),
        container: None,
        health: None,
    }
}

/// Reads the text back: the units, and the messages to log (level, text).
pub fn read(text: &str) -> Result<(Vec<Unit>, Vec<(String, String)>), String> {
    let mut specs = Vec::new();
    let mut logs = Vec::new();
    let mut cur: Option<Unit> = None;
    for (n, raw) in text.lines().enumerate() {
        let w: Vec<String> = raw.split('\t').map(unesc).collect();
        let bad = || format!("line {}: {raw:?}", n + 1);
        let num = |s: &String| s.parse::<u64>().map_err(|_| bad());
        let dur = |s: &String| num(s).map(Duration::from_millis);
        match (w[0].as_str(), cur.as_mut()) {
            ("log", _) if w.len() == 3 => logs.push((w[1].clone(), w[2].clone())),
            ("svc", None) if w.len() == 2 => {
                cur = Some(unit(&w[1]));
            }
            ("argv", Some(s)) => s.argv = w[1..].to_vec(),
            ("env", Some(s)) if w.len() == 3 => s.env.push((w[1].clone(), w[2].clone())),
            ("stop", Some(s)) if w.len() == 3 => {
                s.stop_signal = w[1].parse().map_err(|_| bad())?;
                s.stop_timeout = dur(&w[2])?;
            }
            ("restart", Some(s)) if w.len() == 5 => {
                s.restart = match w[1].as_str() {
                    "always" => RestartPolicy::Always,
                    "on-failure" => RestartPolicy::OnFailure,
                    "never" => RestartPolicy::Never,
                    _ => return Err(bad()),
                };
                s.backoff_base = dur(&w[2])?;
                s.backoff_cap = dur(&w[3])?;
                s.stable_after = dur(&w[4])?;
            }
            ("dep", Some(s)) if w.len() == 3 => {
                let c = if w[2] == "healthy" { Condition::Healthy } else { Condition::Started };
                s.depends.push((w[1].clone(), c));
            }
            ("container", Some(s)) if w.len() == 2 => s.container = Some(w[1].clone()),
            ("health", Some(s)) if w.len() >= 7 => {
                let check = match (w[5].as_str(), &w[6..]) {
                    ("exec", argv) => Check::Exec(argv.to_vec()),
                    ("tcp", [host, port]) => Check::Tcp { host: host.clone(), port: port.parse().map_err(|_| bad())? },
                    ("http", [host, port, path]) => Check::Http {
                        host: host.clone(),
                        port: port.parse().map_err(|_| bad())?,
                        path: path.clone(),
                    },
                    _ => return Err(bad()),
                };
                s.health = Some(HealthSpec {
                    check,
                    interval: dur(&w[1])?,
                    timeout: dur(&w[2])?,
                    retries: num(&w[3])? as u32,
                    start_period: dur(&w[4])?,
                });
            }
            ("end", Some(_)) => specs.extend(cur.take()),
            _ => return Err(bad()),
        }
    }
    if cur.is_some() {
        return Err("the last service is cut short".into());
    }
    Ok((specs, logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_with_awkward_text() {
        let spec = Unit {
            name: "web".into(),
            argv: vec!["/usr/bin/crun".into(), "run".into(), "a b".into()],
            env: vec![("A".into(), "x\ty\nz\\".into())],
            stop_signal: 15,
            stop_timeout: Duration::from_secs(3),
            restart: RestartPolicy::OnFailure,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(9),
            stable_after: Duration::from_secs(4),
            depends: vec![("db".into(), Condition::Healthy), ("log".into(), Condition::Started)],
            container: Some("cairn-web".into()),
            health: Some(HealthSpec {
                check: Check::Http { host: "127.0.0.1".into(), port: 8080, path: "/h z".into() },
                interval: Duration::from_millis(700),
                timeout: Duration::from_millis(300),
                retries: 4,
                start_period: Duration::from_secs(2),
            }),
        };
        let mut text = String::new();
        log(&mut text, "error", "x.toml: bad\tkey");
        write(&mut text, &spec);
        let (specs, logs) = read(&text).unwrap();
        assert_eq!(logs, [("error".to_string(), "x.toml: bad\tkey".to_string())]);
        assert_eq!(specs, [spec]);
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        assert!(read("svc\tx\nargv\ta\n").unwrap_err().contains("cut short"));
        assert!(read("bogus\n").unwrap_err().starts_with("line 1"));
    }
}
