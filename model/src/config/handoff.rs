//! What the config loader hands cairn-init: a few lines of text, so PID 1
//! takes a checked config without linking a TOML parser.
//!
//! ```text
//! cairn-config 1
//! config fw_cfg:3                 the source and generation (or `none`)
//! platform qemu                  the platform it detected
//! network wanted                  nothing found yet; ask again once the link is up
//! arg cairn.hostname=node-7       settings, as kernel command line words
//! log warn network.vlans: ...     lines for PID 1 to log at that level
//! try 120                         a try is pending: revert unless confirmed in 120 s
//! restart hello                   a service whose spec changed: restart it
//! network changed                 the network section changed (for the network daemon)
//! reboot network                  what changed but applies only at the next boot
//! say generation 3 in force       a line for the operator who asked (`cairnctl config`)
//! refused                         the request was refused; nothing changed
//! ```
//!
//! The settings are kernel command line words so PID 1 reads them with the
//! parser it already has; the real command line is read after them and wins.

/// The first line.
pub const MAGIC: &str = "cairn-config 1";

/// The loader's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handoff {
    /// `source:generation`, or `none`.
    pub config: String,
    /// The platform the loader detected (`qemu`, `ec2`, ...).
    pub platform: String,
    /// No config yet, and a source that needs the network may have one.
    pub network: bool,
    /// `cairn.KEY=VALUE` words, none with white space.
    pub args: Vec<String>,
    /// (level, message) pairs: `error`, `warn` or `info`.
    pub logs: Vec<(String, String)>,
    /// A `try` is pending: the seconds left before it reverts by itself.
    pub try_secs: Option<u64>,
    /// Services whose spec changed and must restart to take it.
    pub restart: Vec<String>,
    /// The network section changed (the network daemon's hook).
    pub network_changed: bool,
    /// What changed but takes effect only at the next boot.
    pub reboot: Vec<String>,
    /// Lines for the operator who asked.
    pub say: Vec<String>,
    /// The request was refused and nothing changed.
    pub refused: bool,
}

/// The text of a hand-off. Arguments with white space and newlines in log
/// messages cannot be written, so they are dropped and replaced.
pub fn write(h: &Handoff) -> String {
    let mut out = format!("{MAGIC}\nconfig {}\n", one_line(&h.config));
    if !h.platform.is_empty() {
        out.push_str(&format!("platform {}\n", one_line(&h.platform)));
    }
    if h.network {
        out.push_str("network wanted\n");
    }
    for a in &h.args {
        if a.is_empty() || a.chars().any(char::is_whitespace) {
            out.push_str(&format!("log error config setting {:?} has white space; not applied\n", a));
        } else {
            out.push_str(&format!("arg {a}\n"));
        }
    }
    for (level, msg) in &h.logs {
        out.push_str(&format!("log {} {}\n", one_line(level), one_line(msg)));
    }
    if let Some(s) = h.try_secs {
        out.push_str(&format!("try {s}\n"));
    }
    for r in &h.restart {
        out.push_str(&format!("restart {}\n", one_line(r)));
    }
    if h.network_changed {
        out.push_str("network changed\n");
    }
    for r in &h.reboot {
        out.push_str(&format!("reboot {}\n", one_line(r)));
    }
    for l in &h.say {
        out.push_str(&format!("say {}\n", one_line(l)));
    }
    if h.refused {
        out.push_str("refused\n");
    }
    out
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Reads a hand-off; a line it does not know is an error that names it.
pub fn read(text: &str) -> Result<Handoff, String> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("does not start with {MAGIC:?}"));
    }
    let mut h = Handoff { config: "none".into(), ..Handoff::default() };
    for (n, line) in lines.enumerate() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "config" if !rest.is_empty() => h.config = rest.to_string(),
            "platform" => h.platform = rest.to_string(),
            "network" if rest == "wanted" => h.network = true,
            "network" if rest == "changed" => h.network_changed = true,
            "try" if rest.parse::<u64>().is_ok() => h.try_secs = rest.parse().ok(),
            "restart" if !rest.is_empty() => h.restart.push(rest.to_string()),
            "reboot" if !rest.is_empty() => h.reboot.push(rest.to_string()),
            "say" => h.say.push(rest.to_string()),
            "refused" if rest.is_empty() => h.refused = true,
            "arg" if rest.starts_with("cairn.") && !rest.contains(' ') => h.args.push(rest.to_string()),
            "log" => {
                let (level, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                h.logs.push((level.to_string(), msg.to_string()));
            }
            _ => return Err(format!("line {}: {:?} is not a config hand-off line", n + 2, line)),
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Handoff {
            config: "fw_cfg:3".into(),
            platform: "ec2".into(),
            network: true,
            args: vec!["cairn.hostname=node-7".into(), "cairn.ip=10.0.2.77/24".into()],
            logs: vec![("warn".into(), "two\nlines".into())],
            try_secs: Some(120),
            restart: vec!["hello".into()],
            network_changed: true,
            reboot: vec!["network".into(), "modules".into()],
            say: vec!["generation 3 in force".into(), String::new()],
            refused: true,
        };
        let back = read(&write(&h)).unwrap();
        assert_eq!(back.config, "fw_cfg:3");
        assert_eq!((back.platform.as_str(), back.network), ("ec2", true));
        assert_eq!(back.args, h.args);
        assert_eq!(back.logs, [("warn".to_string(), "two lines".to_string())]);
        assert_eq!((back.try_secs, back.network_changed, back.refused), (Some(120), true, true));
        assert_eq!((back.restart, back.reboot, back.say), (h.restart, h.reboot, h.say));
        let plain = read(&write(&Handoff { config: "none".into(), ..Handoff::default() })).unwrap();
        assert_eq!((plain.try_secs, plain.network_changed, plain.refused), (None, false, false));
    }

    #[test]
    fn words_with_spaces_never_become_settings() {
        let h = Handoff { config: "x:1".into(), args: vec!["cairn.hostname=a cairn.slot=b".into()], ..Handoff::default() };
        let back = read(&write(&h)).unwrap();
        assert!(back.args.is_empty());
        assert!(back.logs[0].1.contains("white space"), "{:?}", back.logs);
    }

    #[test]
    fn garbage_is_refused_with_the_line() {
        assert!(read("hello").unwrap_err().contains("does not start"));
        let e = read("cairn-config 1\nconfig a:1\narg notcairn=1\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }
}
