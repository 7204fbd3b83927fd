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

// `\r` too: `str::lines` drops one that ends a line.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
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
            Some('r') => out.push('\r'),
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

/// Appends the name of a service that must be up for a trial boot to pass
/// (the update gate), whether or not its unit follows.
pub fn gate(out: &mut String, name: &str) {
    line(out, &["gate", name]);
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

/// What `read` makes of the loader's answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The units that read cleanly and lie within [`bounds`].
    pub units: Vec<Unit>,
    /// The messages to log (level, text).
    pub logs: Vec<(String, String)>,
    /// Why each dropped unit or stray line was dropped; the rest still count.
    pub rejected: Vec<String>,
    /// The services a trial boot needs up ([`gate`]).
    pub gates: Vec<String>,
}

/// Checks a unit against [`bounds`]; the error names the field and the range.
pub fn check(u: &Unit) -> Result<(), String> {
    use bounds::*;
    let dur = |what: &str, d: Duration, (min, max): (Duration, Duration)| {
        if d < min || d > max {
            Err(format!("{what} {} ms is outside {}..={} ms", d.as_millis(), min.as_millis(), max.as_millis()))
        } else {
            Ok(())
        }
    };
    dur("stop timeout", u.stop_timeout, STOP_TIMEOUT)?;
    dur("restart delay", u.backoff_base, BACKOFF)?;
    dur("longest restart delay", u.backoff_cap, BACKOFF)?;
    if u.backoff_cap < u.backoff_base {
        return Err("longest restart delay is below the first".into());
    }
    dur("stable run", u.stable_after, STABLE_AFTER)?;
    if let Some(h) = &u.health {
        dur("health interval", h.interval, HEALTH_INTERVAL)?;
        dur("health timeout", h.timeout, HEALTH_TIMEOUT)?;
        dur("health start period", h.start_period, START_PERIOD)?;
        if !HEALTH_RETRIES.contains(&h.retries) {
            return Err(format!("health retries {} is outside {HEALTH_RETRIES:?}", h.retries));
        }
    }
    if u.argv.is_empty() {
        return Err("no command".into());
    }
    Ok(())
}

/// The ranges the spec model enforces on its keys and PID 1 on every unit,
/// so no value can stall PID 1 (a stop it waits hours for) or spin it.
pub mod bounds {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    /// `stop.timeout_s`: stop signal to SIGKILL.
    pub const STOP_TIMEOUT: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(300));
    /// `restart.initial_delay_ms` and `restart.max_delay_ms`; below 10 ms a
    /// crash loop would eat a CPU.
    pub const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(3600));
    /// `restart.reset_after_s`.
    pub const STABLE_AFTER: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(86_400));
    /// `health.interval_ms`.
    pub const HEALTH_INTERVAL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));
    /// `health.timeout_ms`.
    pub const HEALTH_TIMEOUT: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(300));
    /// `health.start_period_ms`.
    pub const START_PERIOD: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
    /// `health.retries`.
    pub const HEALTH_RETRIES: RangeInclusive<u32> = 1..=100;
}

/// Applies one line to the unit being read.
fn field(s: &mut Unit, w: &[String]) -> Result<(), ()> {
    let num = |v: &String| v.parse::<u64>().map_err(|_| ());
    let dur = |v: &String| num(v).map(Duration::from_millis);
    match (w[0].as_str(), w.len()) {
        ("argv", _) => s.argv = w[1..].to_vec(),
        ("env", 3) => s.env.push((w[1].clone(), w[2].clone())),
        ("stop", 3) => {
            s.stop_signal = w[1].parse().map_err(|_| ())?;
            s.stop_timeout = dur(&w[2])?;
        }
        ("restart", 5) => {
            s.restart = match w[1].as_str() {
                "always" => RestartPolicy::Always,
                "on-failure" => RestartPolicy::OnFailure,
                "never" => RestartPolicy::Never,
                _ => return Err(()),
            };
            s.backoff_base = dur(&w[2])?;
            s.backoff_cap = dur(&w[3])?;
            s.stable_after = dur(&w[4])?;
        }
        ("dep", 3) => {
            let c = match w[2].as_str() {
                "healthy" => Condition::Healthy,
                "started" => Condition::Started,
                _ => return Err(()),
            };
            s.depends.push((w[1].clone(), c));
        }
        ("container", 2) => s.container = Some(w[1].clone()),
        ("health", n) if n >= 7 => {
            let check = match (w[5].as_str(), &w[6..]) {
                ("exec", argv) => Check::Exec(argv.to_vec()),
                ("tcp", [host, port]) => Check::Tcp { host: host.clone(), port: port.parse().map_err(|_| ())? },
                ("http", [host, port, path]) => {
                    Check::Http { host: host.clone(), port: port.parse().map_err(|_| ())?, path: path.clone() }
                }
                _ => return Err(()),
            };
            s.health = Some(HealthSpec {
                check,
                interval: dur(&w[1])?,
                timeout: dur(&w[2])?,
                retries: w[3].parse().map_err(|_| ())?,
                start_period: dur(&w[4])?,
            });
        }
        _ => return Err(()),
    }
    Ok(())
}

/// Reads the loader's answer. A bad line or a value out of [`bounds`] drops
/// the unit it is in, and only that unit.
pub fn read(text: &str) -> Answer {
    let mut answer = Answer::default();
    // The unit being read, and the first problem found in it.
    let mut cur: Option<(Unit, Option<String>)> = None;
    for (n, raw) in text.lines().enumerate() {
        let w: Vec<String> = raw.split('\t').map(unesc).collect();
        let bad = || format!("line {}: {raw:?}", n + 1);
        match (w[0].as_str(), cur.as_mut()) {
            ("log", None) if w.len() == 3 => answer.logs.push((w[1].clone(), w[2].clone())),
            ("gate", None) if w.len() == 2 => answer.gates.push(w[1].clone()),
            ("svc", None) if w.len() == 2 => cur = Some((unit(&w[1]), None)),
            ("svc", Some((u, _))) => {
                answer.rejected.push(format!("service {}: cut short at {}", u.name, bad()));
                cur = (w.len() == 2).then(|| (unit(&w[1]), None));
            }
            ("end", Some(_)) => {
                if let Some((u, problem)) = cur.take() {
                    match problem.map_or_else(|| check(&u), Err) {
                        Ok(()) => answer.units.push(u),
                        Err(why) => answer.rejected.push(format!("service {}: {why}", u.name)),
                    }
                }
            }
            (_, Some((u, problem))) => {
                if problem.is_none() && field(u, &w).is_err() {
                    *problem = Some(bad());
                }
            }
            (_, None) => answer.rejected.push(bad()),
        }
    }
    if let Some((u, _)) = cur {
        answer.rejected.push(format!("service {}: cut short at the end", u.name));
    }
    answer
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
        gate(&mut text, "web");
        gate(&mut text, "gone");
        write(&mut text, &spec);
        let answer = read(&text);
        assert_eq!(answer.logs, [("error".to_string(), "x.toml: bad\tkey".to_string())]);
        assert_eq!(answer.units, [spec]);
        assert_eq!(answer.gates, ["web", "gone"]);
        assert!(answer.rejected.is_empty());
    }

    fn good(name: &str) -> Unit {
        Unit { argv: vec!["/bin/true".into()], ..unit(name) }
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let answer = read("svc\tx\nargv\ta\n");
        assert!(answer.units.is_empty());
        assert_eq!(answer.rejected, ["service x: cut short at the end"]);
        assert_eq!(read("bogus\n").rejected, ["line 1: \"bogus\""]);
    }

    #[test]
    fn one_bad_unit_is_dropped_alone() {
        let mut text = String::new();
        write(&mut text, &good("a"));
        // What an unbounded `timeout_s` used to print: more than a u64 of ms.
        write(&mut text, &Unit { stop_timeout: Duration::from_secs(u64::MAX), ..good("huge") });
        write(&mut text, &Unit { stop_timeout: Duration::from_secs(301), ..good("long") });
        text.push_str("svc\tgarbled\nstop\tx\t1\nend\n");
        text.push_str("svc\tshort\n");
        write(&mut text, &good("b"));
        log(&mut text, "info", "after");
        let answer = read(&text);
        let names: Vec<_> = answer.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(answer.logs, [("info".to_string(), "after".to_string())]);
        assert_eq!(answer.rejected.len(), 4, "{:?}", answer.rejected);
        assert!(answer.rejected[0].starts_with("service huge: line 8: \"stop"), "{:?}", answer.rejected);
        assert_eq!(answer.rejected[1], "service long: stop timeout 301000 ms is outside 0..=300000 ms");
        assert!(answer.rejected[2].starts_with("service garbled: line"), "{:?}", answer.rejected);
        assert!(answer.rejected[3].starts_with("service short: cut short at line"), "{:?}", answer.rejected);
    }

    #[test]
    fn bounds_name_the_field() {
        let h = |interval_ms, retries| HealthSpec {
            check: Check::Tcp { host: "127.0.0.1".into(), port: 1 },
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::ZERO,
        };
        assert_eq!(check(&good("a")), Ok(()));
        let e = check(&Unit { health: Some(h(10, 3)), ..good("a") }).unwrap_err();
        assert_eq!(e, "health interval 10 ms is outside 100..=3600000 ms");
        let e = check(&Unit { health: Some(h(1000, 0)), ..good("a") }).unwrap_err();
        assert_eq!(e, "health retries 0 is outside 1..=100");
        let e = check(&Unit { backoff_base: Duration::ZERO, ..good("a") }).unwrap_err();
        assert_eq!(e, "restart delay 0 ms is outside 10..=3600000 ms");
        assert_eq!(check(&unit("a")).unwrap_err(), "no command");
    }
}
