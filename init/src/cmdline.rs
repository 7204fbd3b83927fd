//! The kernel command line, read into typed settings. Only `cairn.*` keys are
//! ours; a bad value or an unknown key gives a warning that names it, and the
//! default is used, because a typo must not stop a machine from booting.

use std::net::Ipv4Addr;
use std::time::Duration;

/// How the first Ethernet link gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    Dhcp,
    Static(StaticNet),
    Off,
    /// `netd`: cairn-netd configures every link (the machine config asks
    /// for more than the first link); PID 1 only brings up loopback.
    Daemon,
}

impl NetMode {
    /// Whether PID 1 configures no link itself.
    pub fn hands_off(&self) -> bool {
        matches!(self, NetMode::Off | NetMode::Daemon)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticNet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// The verified root of the slot being booted: the tree follows the data in
/// the partition (a verity superblock, then the tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    pub data_blocks: u64,
    pub salt: String,
    pub root_hash: String,
}

/// Everything cairn-init takes from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `cairn.hostname=NAME`; default `cairn-` and the last three MAC bytes.
    pub hostname: Option<String>,
    /// `cairn.ip=dhcp|off|netd|ADDR/PREFIX`; default `dhcp`.
    pub net: NetMode,
    /// `cairn.gw=ADDR`: the default gateway with a static address.
    pub gateway: Option<Ipv4Addr>,
    /// `cairn.dns=ADDR[,ADDR...]`: name servers with a static address (or in
    /// place of those DHCP offers).
    pub dns: Vec<Ipv4Addr>,
    /// `cairn.iface=NAME`: the link to configure; default the first Ethernet link.
    pub iface: Option<String>,
    /// `cairn.net_timeout=SECONDS`: how long the ready line waits for an address.
    pub net_timeout: Duration,
    /// `cairn.debug=shell`: a root shell on `debug_tty`, for tests and debugging.
    /// Only works in the debug image, which carries busybox.
    pub debug_shell: bool,
    /// `cairn.debug_tty=NAME`: where the debug shell runs; default `ttyS1`.
    pub debug_tty: String,
    /// `cairn.log=error|warn|info|debug|trace`; default `info`.
    pub log_level: tracing::Level,
    /// `cairn.modules=a,b`: more modules to load at boot.
    pub modules: Vec<String>,
    /// `cairn.stop_timeout=SECONDS`: how long shutdown waits for processes to
    /// exit after SIGTERM before it kills them.
    pub stop_timeout: Duration,
    /// `cairn.slot=a|b`: boot from disk, root partition ROOT-A or ROOT-B. Unset:
    /// run from the initramfs alone (development).
    pub slot: Option<char>,
    /// `cairn.verity_blocks=N`, `cairn.verity_salt=HEX`, `cairn.verity_root=HEX`:
    /// the slot's dm-verity parameters; all three or none.
    pub verity: Option<Verity>,
    /// `cairn.root_timeout=SECONDS`: how long stage 1 waits for the root partition.
    pub root_timeout: Duration,
    /// `cairn.enable=a,b`: turn on services shipped off (like `admin`).
    pub enable: Vec<String>,
    /// `cairn.disable=a,b`: turn off services shipped on.
    pub disable: Vec<String>,
    /// `cairn.runtime=crun|runc`: the OCI runtime for system services.
    pub runtime: String,
    /// `cairn.watchdog=SECONDS`: the softdog timeout PID 1 keeps petting; a
    /// hung PID 1 reboots the machine (and uses up a trial boot's try). 0: off.
    pub watchdog: Duration,
    /// `cairn.health_timeout=SECONDS`: how long a boot may take to get every
    /// service healthy before the updater's verdict calls it unhealthy.
    pub health_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hostname: None,
            net: NetMode::Dhcp,
            gateway: None,
            dns: Vec::new(),
            iface: None,
            net_timeout: Duration::from_secs(10),
            debug_shell: false,
            debug_tty: "ttyS1".into(),
            log_level: tracing::Level::INFO,
            modules: Vec::new(),
            stop_timeout: Duration::from_secs(10),
            slot: None,
            verity: None,
            root_timeout: Duration::from_secs(30),
            enable: Vec::new(),
            disable: Vec::new(),
            runtime: "crun".into(),
            watchdog: Duration::from_secs(30),
            health_timeout: Duration::from_secs(180),
        }
    }
}

fn parse_hex(value: &str, len: Option<usize>) -> Result<String, String> {
    match (cairn_model::manifest::is_hex(value, len), len) {
        (true, _) => Ok(value.to_ascii_lowercase()),
        (false, Some(l)) => Err(format!("expected {l} hexadecimal digits")),
        (false, None) => Err("expected an even number of hexadecimal digits".into()),
    }
}

/// A setting that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// Unknown key; ignored.
    #[error("kernel command line: unknown key {key} ignored")]
    UnknownKey { key: String },
    /// A word that is not UTF-8; only this word is ignored.
    #[error("kernel command line: {word} is not UTF-8; ignored")]
    NotUtf8 { word: String },
    /// A value the key does not accept.
    #[error("kernel command line: {key}={value}: {problem}; using {fallback}")]
    BadValue { key: String, value: String, problem: String, fallback: String },
}

/// Splits a command line into words; double quotes group spaces, as the kernel
/// reads them. Bytes, not text: one word that is not UTF-8 must not cost the
/// others.
pub fn split(cmdline: &[u8]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    for &b in cmdline.trim_ascii() {
        match b {
            b'"' => quoted = !quoted,
            b if b.is_ascii_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            b => cur.push(b),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn valid_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err("must be letters, digits and inner hyphens, in dot-separated labels".into());
        }
    }
    Ok(())
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(n) if n <= 3600 => Ok(Duration::from_secs(n)),
        _ => Err("expected a whole number of seconds from 0 to 3600".into()),
    }
}

fn parse_addrs(value: &str) -> Result<Vec<Ipv4Addr>, String> {
    value
        .split(',')
        .map(|a| a.parse().map_err(|_| format!("`{a}` is not an IPv4 address")))
        .collect()
}

fn parse_net(value: &str) -> Result<NetMode, String> {
    match value {
        "dhcp" => return Ok(NetMode::Dhcp),
        "off" => return Ok(NetMode::Off),
        "netd" => return Ok(NetMode::Daemon),
        _ => {}
    }
    let bad = || "expected dhcp, off, netd or ADDRESS/PREFIX (like 10.0.2.15/24)".to_string();
    let (addr, prefix) = value.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix == 0 || prefix > 32 {
        return Err("prefix length must be from 1 to 32".into());
    }
    Ok(NetMode::Static(StaticNet { addr, prefix }))
}

/// A comma-separated list; empty items are dropped.
fn list(value: &str) -> Vec<String> {
    value.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect()
}

fn parse_level(value: &str) -> Result<tracing::Level, String> {
    value
        .parse()
        .map_err(|_| "expected error, warn, info, debug or trace".to_string())
}

/// Reads the settings from a command line (`/proc/cmdline` as read, bytes).
/// Never fails: problems come back as warnings for the caller to log once
/// logging is up.
pub fn parse(cmdline: impl AsRef<[u8]>) -> (Settings, Vec<Warning>) {
    let mut s = Settings::default();
    let mut warnings = Vec::new();
    let (mut blocks, mut salt, mut root) = (None, None, None);
    for word in split(cmdline.as_ref()) {
        let word = match String::from_utf8(word) {
            Ok(w) => w,
            Err(e) => {
                // The lossy form names the word; its bytes past 200 add nothing.
                let lossy: String = String::from_utf8_lossy(e.as_bytes()).chars().take(200).collect();
                warnings.push(Warning::NotUtf8 { word: format!("{lossy:?}") });
                continue;
            }
        };
        let Some(rest) = word.strip_prefix("cairn.") else { continue };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        let full = format!("cairn.{key}");
        let mut bad = |problem: String, fallback: String| {
            warnings.push(Warning::BadValue { key: full.clone(), value: value.to_string(), problem, fallback })
        };
        match key {
            "hostname" => match valid_hostname(value) {
                Ok(()) => s.hostname = Some(value.to_string()),
                Err(p) => bad(p, "the default hostname".into()),
            },
            "ip" => match parse_net(value) {
                Ok(n) => s.net = n,
                Err(p) => bad(p, "dhcp".into()),
            },
            "gw" => match value.parse() {
                Ok(a) => s.gateway = Some(a),
                Err(_) => bad("expected an IPv4 address".into(), "no gateway".into()),
            },
            "dns" => match parse_addrs(value) {
                Ok(a) => s.dns = a,
                Err(p) => bad(p, "the name servers DHCP offers".into()),
            },
            "iface" => match value.len() {
                1..=15 if !value.contains('/') => s.iface = Some(value.to_string()),
                _ => bad("expected an interface name of 1 to 15 characters".into(), "the first Ethernet link".into()),
            },
            "net_timeout" => match parse_secs(value) {
                Ok(d) => s.net_timeout = d,
                Err(p) => bad(p, format!("{}", s.net_timeout.as_secs())),
            },
            "stop_timeout" => match parse_secs(value) {
                Ok(d) => s.stop_timeout = d,
                Err(p) => bad(p, format!("{}", s.stop_timeout.as_secs())),
            },
            "debug" => match value {
                "shell" => s.debug_shell = true,
                "off" | "" => s.debug_shell = false,
                _ => bad("expected shell or off".into(), "off".into()),
            },
            "debug_tty" => match value.strip_prefix("/dev/").unwrap_or(value) {
                v if !v.is_empty() && !v.contains('/') => s.debug_tty = v.to_string(),
                _ => bad("expected a terminal name like ttyS1".into(), s.debug_tty.clone()),
            },
            "log" => match parse_level(value) {
                Ok(l) => s.log_level = l,
                Err(p) => bad(p, "info".into()),
            },
            "slot" => match value {
                "a" | "b" | "A" | "B" => s.slot = value.chars().next().map(|c| c.to_ascii_lowercase()),
                _ => bad("expected a or b".into(), "no slot (initramfs only)".into()),
            },
            "verity_blocks" => match value.parse::<u64>() {
                Ok(n) if n > 0 => blocks = Some(n),
                _ => bad("expected a positive number of 4096-byte blocks".into(), "no verity".into()),
            },
            "verity_salt" => match parse_hex(value, None) {
                Ok(v) => salt = Some(v),
                Err(p) => bad(p, "no verity".into()),
            },
            "verity_root" => match parse_hex(value, Some(64)) {
                Ok(v) => root = Some(v),
                Err(p) => bad(p, "no verity".into()),
            },
            "root_timeout" => match parse_secs(value) {
                Ok(d) => s.root_timeout = d,
                Err(p) => bad(p, format!("{}", s.root_timeout.as_secs())),
            },
            "enable" => s.enable = list(value),
            "disable" => s.disable = list(value),
            "runtime" => match value {
                "crun" | "runc" => s.runtime = value.to_string(),
                _ => bad("expected crun or runc".into(), "crun".into()),
            },
            "modules" => s.modules = list(value),
            "watchdog" => match value.parse::<u64>() {
                Ok(0) => s.watchdog = Duration::ZERO,
                Ok(n) if (5..=3600).contains(&n) => s.watchdog = Duration::from_secs(n),
                _ => bad("expected 0 (off) or 5 to 3600 seconds".into(), format!("{}", s.watchdog.as_secs())),
            },
            "health_timeout" => match parse_secs(value) {
                Ok(d) => s.health_timeout = d,
                Err(p) => bad(p, format!("{}", s.health_timeout.as_secs())),
            },
            // cairn-config's keys: the config loader reads them itself.
            "config.url" | "config.sha256" | "config.pause" | "platform" => {}
            _ => warnings.push(Warning::UnknownKey { key: full }),
        }
    }
    if let (Some(data_blocks), Some(salt), Some(root_hash)) = (blocks, salt, root) {
        s.verity = Some(Verity { data_blocks, salt, root_hash });
    }
    (s, warnings)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_nothing_is_given() {
        let (s, w) = parse("console=ttyS0 quiet root=/dev/vda");
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
    }

    #[test]
    fn reads_every_key() {
        let (s, w) = parse(
            "cairn.hostname=node-1 cairn.ip=10.0.2.50/24 cairn.gw=10.0.2.2 cairn.dns=1.1.1.1,9.9.9.9 \
             cairn.iface=eth1 cairn.net_timeout=3 cairn.debug=shell cairn.debug_tty=/dev/hvc0 \
             cairn.log=debug cairn.modules=veth,bridge cairn.stop_timeout=5",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.hostname.as_deref(), Some("node-1"));
        assert_eq!(s.net, NetMode::Static(StaticNet { addr: Ipv4Addr::new(10, 0, 2, 50), prefix: 24 }));
        assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(s.dns, [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(9, 9, 9, 9)]);
        assert_eq!(s.iface.as_deref(), Some("eth1"));
        assert_eq!(s.net_timeout, Duration::from_secs(3));
        assert!(s.debug_shell);
        assert_eq!(s.debug_tty, "hvc0");
        assert_eq!(s.log_level, tracing::Level::DEBUG);
        assert_eq!(s.modules, ["veth", "bridge"]);
        assert_eq!(s.stop_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_are_named_and_defaults_kept() {
        let (s, w) = parse("cairn.net_timeout=soon cairn.ip=10.0.2.300/24 cairn.hostname=-bad-");
        assert_eq!(s.net_timeout, Duration::from_secs(10));
        assert_eq!(s.net, NetMode::Dhcp);
        assert_eq!(s.hostname, None);
        assert_eq!(
            w[0].to_string(),
            "kernel command line: cairn.net_timeout=soon: expected a whole number of seconds from 0 to 3600; using 10"
        );
        assert!(w[1].to_string().starts_with("kernel command line: cairn.ip=10.0.2.300/24: expected dhcp"));
        assert!(w[2].to_string().contains("cairn.hostname=-bad-"));
    }

    #[test]
    fn unknown_keys_warn_and_foreign_keys_are_silent() {
        let (_, w) = parse("cairn.colour=blue console=ttyS0 systemd.unit=x");
        assert_eq!(w, [Warning::UnknownKey { key: "cairn.colour".into() }]);
    }

    #[test]
    fn slot_and_verity_need_all_three_keys() {
        let root = "ab".repeat(32);
        let (s, w) = parse(&format!("cairn.slot=B cairn.verity_blocks=42 cairn.verity_salt=00FF cairn.verity_root={root}"));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.slot, Some('b'));
        assert_eq!(s.verity, Some(Verity { data_blocks: 42, salt: "00ff".into(), root_hash: root.clone() }));
        let (s, w) = parse("cairn.slot=a cairn.verity_blocks=42 cairn.verity_root=abc");
        assert_eq!(s.verity, None);
        assert_eq!(w[0].to_string(), "kernel command line: cairn.verity_root=abc: expected 64 hexadecimal digits; using no verity");
    }

    #[test]
    fn quotes_group_words() {
        let text = |line: &str| -> Vec<String> { split(line.as_bytes()).into_iter().map(|w| String::from_utf8(w).unwrap()).collect() };
        assert_eq!(text(" a \"b c\"=d  e\n"), ["a", "b c=d", "e"]);
        assert_eq!(text("k=\"x y\""), ["k=x y"]);
    }

    #[test]
    fn a_word_that_is_not_utf8_costs_only_itself() {
        let root = "ab".repeat(32);
        let mut bytes = b"console=ttyS0 vendor.tag=caf\xe9 cairn.slot=a cairn.hostname=n\xff1 ".to_vec();
        bytes.extend_from_slice(format!("cairn.verity_blocks=42 cairn.verity_salt=00 cairn.verity_root={root}").as_bytes());
        let (s, w) = parse(&bytes);
        assert_eq!(s.slot, Some('a'));
        assert_eq!(s.verity.map(|v| v.data_blocks), Some(42));
        assert_eq!(s.hostname, None);
        assert_eq!(
            w.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            [
                "kernel command line: \"vendor.tag=caf\u{fffd}\" is not UTF-8; ignored",
                "kernel command line: \"cairn.hostname=n\u{fffd}1\" is not UTF-8; ignored",
            ]
        );
    }
}
