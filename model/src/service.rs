//! Service specs: one TOML file per service, its file stem the service name.
//!
//! [`parse`] turns the text of one file into a [`ServiceSpec`] with every
//! default filled in and every value checked, so that later stages (the OCI
//! bundle, the supervisor) never have to second-guess it. [`start_order`]
//! checks the dependencies between specs and orders them.
//!
//! The file format, with defaults in brackets:
//!
//! ```toml
//! description = "..."                      # [""]
//! enabled = true                           # [true]; false = shipped but off
//! gates_update = false                     # [false]; a spec on STATE: must this service be up for a new release's trial to pass?
//! rootfs = "/usr/lib/cairn/rootfs/chrony"  # a baked root file system (absolute path)
//! image = "docker.io/library/busybox:1.36" # or an image reference; exactly one of the two
//! command = ["/usr/sbin/chronyd", "-d"]    # required, command[0] absolute
//! env = { TZ = "UTC" }                     # [{}]; PATH defaults to /usr/sbin:/usr/bin:/sbin:/bin
//! working_dir = "/"                        # ["/"], absolute
//! user = 0                                 # [0] uid
//! group = 0                                # [0] gid
//! read_only_rootfs = true                  # [true]
//! capabilities = ["CAP_SYS_TIME"]          # [["default"]]; the whole set; "default" = DEFAULT_CAPS
//! host_namespaces = ["network"]            # [[]]; any of "network", "pid"
//! seccomp = "default"                      # ["default"] or "unconfined"
//! no_new_privileges = true                 # [true]
//! [[mounts]]                               # in order
//! type = "bind"                            # "bind" or "tmpfs"
//! source = "/var/lib/chrony"               # bind only, absolute
//! destination = "/var/lib/chrony"          # absolute
//! read_only = false                        # [true] for bind; tmpfs is always writable
//! size = "16M"                             # tmpfs only ["64M"]
//! [restart]
//! policy = "always"                        # ["always"], "on-failure", "never"
//! initial_delay_ms = 500                   # [500], 10 to 3600000
//! max_delay_ms = 30000                     # [30000], initial_delay_ms to 3600000
//! reset_after_s = 10                       # [10], 0 to 86400: a run this long resets the back-off
//! [depends_on]                             # [{}]; service name -> "started" | "healthy"
//! ntp = "healthy"
//! [health]                                 # optional; exactly one of exec, tcp, http
//! exec = ["/usr/bin/chronyc", "tracking"]  # run inside the container
//! tcp = "127.0.0.1:123"                    # connect to host:port
//! http = "http://127.0.0.1:8080/healthz"   # GET must answer 2xx; http:// only
//! interval_ms = 2000                       # [2000], 100 to 3600000
//! timeout_ms = 1000                        # [1000], 1 to 300000
//! retries = 3                              # [3], 1 to 100: consecutive failures before unhealthy
//! start_period_ms = 0                      # [0], 0 to 3600000: failures this soon after start do not count
//! [limits]
//! memory_max = "64M"                       # bytes, or a K, M, G suffix (powers of 1024)
//! cpu = 0.5                                # CPUs, > 0
//! pids_max = 64                            # >= 1
//! [stop]
//! signal = "SIGTERM"                       # ["SIGTERM"]
//! timeout_s = 10                           # [10], 0 to 300: stop signal to SIGKILL
//! ```

use crate::locate;
use crate::wire::bounds;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The capabilities `"default"` stands for, and what a service gets when it
/// does not say. Narrower than Docker's set: no `CAP_NET_RAW`,
/// `CAP_SYS_CHROOT`, `CAP_MKNOD`, `CAP_AUDIT_WRITE` or `CAP_SETFCAP`, which
/// system services rarely need and which widen what a compromise can reach.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETGID",
    "CAP_SETUID",
];

/// Every capability Linux defines (up to `CAP_CHECKPOINT_RESTORE`, 5.9),
/// the names a spec may use.
pub const KNOWN_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// Signal names a spec may use for `stop.signal`, with their numbers.
/// The numbers are those of x86 and arm (the generic Linux numbering);
/// Cairn runs on nothing else.
pub const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// `PATH` for services that do not set one. Images and baked root file
/// systems differ in where they put programs, so cover the usual places.
pub const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The CFS period Cairn uses: `cpu = 1.0` means a quota of one period.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The kernel refuses a CFS quota below 1 ms.
const MIN_CPU_QUOTA_US: u64 = 1_000;

const DEFAULT_TMPFS_SIZE: u64 = 64 << 20;

/// A service, checked and with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service's name: its file stem. Also its container id, host name
    /// and cgroup directory, hence the restricted characters.
    pub name: String,
    /// Free text for people; `""` if not given.
    pub description: String,
    /// Whether the service runs at boot. A disabled service is shipped but
    /// left alone until someone starts it.
    pub enabled: bool,
    /// Whether an operator's service (a spec on STATE) must be up for a new
    /// release's trial boot to count as healthy. Shipped services always
    /// gate; an operator's only when this says so (false by default), so
    /// that one flaky workload does not fail every release.
    pub gates_update: bool,
    /// Where the service's root file system comes from.
    pub root: Root,
    /// The program (an absolute path inside the root) and its arguments.
    pub command: Vec<String>,
    /// The environment, sorted by name; always has `PATH`
    /// ([`DEFAULT_PATH`] unless the spec sets it).
    pub env: BTreeMap<String, String>,
    /// The working directory inside the container, absolute; `/` by default.
    pub working_dir: String,
    /// The uid the command runs as; 0 by default.
    pub user: u32,
    /// The gid the command runs as; 0 by default.
    pub group: u32,
    /// Whether the root file system is mounted read-only; true by default.
    pub read_only_rootfs: bool,
    /// Every capability the process keeps (bounding, permitted, effective),
    /// as `CAP_` names, sorted and without duplicates. [`DEFAULT_CAPS`] when
    /// the spec does not say.
    pub capabilities: Vec<String>,
    /// Share the host's network namespace instead of getting an empty one.
    pub host_network: bool,
    /// Share the host's pid namespace instead of getting a private one.
    pub host_pid: bool,
    /// Which seccomp filter the process runs under.
    pub seccomp: Seccomp,
    /// Set the no_new_privs bit, so setuid binaries and file capabilities
    /// cannot raise privileges; true by default.
    pub no_new_privileges: bool,
    /// Extra mounts, in the order the spec lists them.
    pub mounts: Vec<MountSpec>,
    /// When and how fast to restart the service after it exits.
    pub restart: Restart,
    /// Services that must reach a condition before this one starts.
    pub depends_on: BTreeMap<String, Condition>,
    /// How to tell whether the running service works; `None`: it is
    /// healthy as long as it runs.
    pub health: Option<Health>,
    /// Resource limits, applied through the service's cgroup.
    pub limits: Limits,
    /// The signal that asks the service to stop (a number, e.g. 15).
    pub stop_signal: i32,
    /// How long to wait after `stop_signal` before SIGKILL; 10 s by default.
    pub stop_timeout: Duration,
}

/// Where a service's root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A root file system baked into the OS image: an absolute path.
    Rootfs(String),
    /// An image reference such as `docker.io/library/busybox:1.36`. Only its
    /// shape is checked; fetching it is the runtime's business.
    Image(String),
}

/// The seccomp filter a service runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// Cairn's default deny list; see [`crate::seccomp::default_profile`].
    Default,
    /// No filter at all.
    Unconfined,
}

/// One extra mount in a service's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A host directory or file made visible in the container.
    Bind {
        /// The host path, absolute.
        source: String,
        /// Where it appears in the container, absolute.
        destination: String,
        /// Whether the container may only read it; true unless the spec
        /// says `read_only = false`.
        read_only: bool,
    },
    /// A fresh, writable, memory-backed file system.
    Tmpfs {
        /// Where it appears in the container, absolute.
        destination: String,
        /// Its size limit in bytes; 64 MiB unless the spec says.
        size: u64,
    },
}

impl MountSpec {
    /// Where the mount appears in the container.
    pub fn destination(&self) -> &str {
        match self {
            MountSpec::Bind { destination, .. } | MountSpec::Tmpfs { destination, .. } => {
                destination
            }
        }
    }
}

/// When and how fast a service is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Which exits lead to a restart.
    pub policy: RestartPolicy,
    /// The wait before the first restart; doubled after each quick exit.
    pub initial_delay: Duration,
    /// The longest the wait grows to: 30 s by default, or `initial_delay`
    /// if that is longer; never below `initial_delay`.
    pub max_delay: Duration,
    /// A run at least this long resets the wait to `initial_delay`.
    pub reset_after: Duration,
}

/// Which exits lead to a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after any exit.
    Always,
    /// Restart after a non-zero exit status or death by a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// What a dependency must reach before its dependent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Its process has been started.
    Started,
    /// Its health check has passed; it must have one.
    Healthy,
}

/// A health check and how often it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// What to run or connect to.
    pub check: Check,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive failures before the service counts as unhealthy.
    pub retries: u32,
    /// Failures within this time after start do not count.
    pub start_period: Duration,
}

/// The kinds of health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Run this command inside the container; exit status 0 is healthy.
    /// The first element is an absolute path.
    Exec(Vec<String>),
    /// Open a TCP connection; success is healthy.
    Tcp(
        /// Host name or address, IPv6 without brackets.
        String,
        /// Port, never 0.
        u16,
    ),
    /// Send `GET` over plain HTTP; a 2xx answer is healthy.
    Http {
        /// Host name or address, IPv6 without brackets.
        host: String,
        /// Port; 80 when the URL gives none.
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
    },
}

/// Resource limits; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (`memory.max`).
    pub memory_max: Option<u64>,
    /// CPU time per [`CPU_PERIOD_US`] period, in µs (`cpu.max`);
    /// `cpu = 0.5` gives 50000.
    pub cpu_quota_us: Option<u64>,
    /// Most tasks (processes and threads) at once (`pids.max`), at least 1.
    pub pids_max: Option<i64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_max.is_some() || self.cpu_quota_us.is_some() || self.pids_max.is_some()
    }
}

/// A problem with a service spec, or between specs.
///
/// Displays as `{file}:{line}:{column}: {key}: {message}`, leaving out the
/// parts that are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", prefix(.file, .line, .column, .key))]
pub struct SpecError {
    /// The file at fault, as given to [`parse`]. Problems between services
    /// (from [`start_order`]) name `{service}.toml` of the service that
    /// refers to another.
    pub file: String,
    /// 1-based line, when toml said where the problem is.
    pub line: Option<usize>,
    /// 1-based column in characters, when toml said where the problem is.
    pub column: Option<usize>,
    /// The key at fault as a path: `restart.policy`, `mounts[1].source`,
    /// `env."A.B"`. Empty when the problem is not about one key.
    pub key: String,
    /// What is wrong, without the place.
    pub message: String,
}

fn prefix(file: &str, line: &Option<usize>, column: &Option<usize>, key: &str) -> String {
    let mut out = String::new();
    if !file.is_empty() {
        out.push_str(file);
        if let (Some(line), Some(column)) = (line, column) {
            out.push_str(&format!(":{line}:{column}"));
        }
        out.push_str(": ");
    }
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out
}

impl SpecError {
    fn new(file: &str, key: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            file: file.to_owned(),
            line: None,
            column: None,
            key: key.into(),
            message: message.into(),
        }
    }
}

// What the file says, before defaults and checks. Everything is optional
// here so that a missing key is reported by our checks, with its name,
// rather than by serde without one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    description: Option<String>,
    enabled: Option<bool>,
    gates_update: Option<bool>,
    rootfs: Option<String>,
    image: Option<String>,
    command: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    working_dir: Option<String>,
    user: Option<u32>,
    group: Option<u32>,
    read_only_rootfs: Option<bool>,
    capabilities: Option<Vec<String>>,
    host_namespaces: Option<Vec<HostNamespace>>,
    seccomp: Option<Seccomp>,
    no_new_privileges: Option<bool>,
    mounts: Option<Vec<RawMount>>,
    restart: Option<RawRestart>,
    depends_on: Option<BTreeMap<String, Condition>>,
    health: Option<RawHealth>,
    limits: Option<RawLimits>,
    stop: Option<RawStop>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum HostNamespace {
    Network,
    Pid,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MountKind {
    Bind,
    Tmpfs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    #[serde(rename = "type")]
    kind: Option<MountKind>,
    source: Option<String>,
    destination: Option<String>,
    read_only: Option<bool>,
    size: Option<Size>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    policy: Option<RestartPolicy>,
    initial_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    reset_after_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    exec: Option<Vec<String>>,
    tcp: Option<String>,
    http: Option<String>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    start_period_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_max: Option<Size>,
    cpu: Option<f64>,
    pids_max: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    signal: Option<String>,
    timeout_s: Option<u64>,
}

/// A size as written: a string with an optional suffix, or a plain number
/// of bytes. Checked after deserialising so the error can name the key.
enum Size {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64M\" or a number of bytes")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                Ok(Size::Bytes(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                i64::try_from(v)
                    .map(Size::Bytes)
                    .map_err(|_| E::custom(format!("{v} bytes is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                Ok(Size::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Parses the text of one service file. `file` is its path, used for the
/// service name (the file stem) and in error messages.
pub fn parse(text: &str, file: &str) -> Result<ServiceSpec, SpecError> {
    let raw: RawSpec = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    Checker { file }.spec(raw)
}

fn toml_error(text: &str, file: &str, error: &toml::de::Error) -> SpecError {
    let message = locate::toml_message(text, error.message(), error.span().map(|s| s.start));
    match error.span() {
        Some(span) => {
            let (line, column) = locate::line_col(text, span.start);
            SpecError {
                file: file.to_owned(),
                line: Some(line),
                column: Some(column),
                key: locate::key_at(text, span.start).unwrap_or_default(),
                message,
            }
        }
        None => SpecError::new(file, "", message),
    }
}

struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::new(self.file, key, message)
    }

    fn spec(&self, raw: RawSpec) -> Result<ServiceSpec, SpecError> {
        let name = self.name()?;

        let root = match (raw.rootfs, raw.image) {
            (Some(_), Some(_)) => {
                return Err(self.err("rootfs", "give either rootfs or image, not both"))
            }
            (None, None) => {
                return Err(self.err(
                    "rootfs",
                    "missing: give rootfs (a baked root file system) or image",
                ))
            }
            (Some(rootfs), None) => {
                self.absolute("rootfs", &rootfs)?;
                Root::Rootfs(rootfs)
            }
            (None, Some(image)) => {
                if let Err(problem) = check_image_reference(&image) {
                    return Err(self.err(
                        "image",
                        format!("{image:?} is not an image reference: {problem}"),
                    ));
                }
                Root::Image(image)
            }
        };

        let command = match raw.command {
            None => return Err(self.err("command", "missing: give the program and its arguments")),
            Some(command) => self.command("command", command)?,
        };

        let mut env = raw.env.unwrap_or_default();
        for (key, value) in &env {
            let path = format!("env.{}", locate::quote_key(key));
            if !valid_env_name(key) {
                return Err(self.err(
                    path,
                    format!("{key:?} is not a variable name (letters, digits and _, not starting with a digit)"),
                ));
            }
            self.no_nul(&path, value)?;
        }
        env.entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());

        let working_dir = raw.working_dir.unwrap_or_else(|| "/".to_owned());
        self.absolute("working_dir", &working_dir)?;

        let capabilities = self.capabilities(raw.capabilities)?;

        let host_namespaces = raw.host_namespaces.unwrap_or_default();

        let mounts = match raw.mounts {
            None => Vec::new(),
            Some(mounts) => mounts
                .into_iter()
                .enumerate()
                .map(|(i, m)| self.mount(i, m))
                .collect::<Result<_, _>>()?,
        };

        let restart = self.restart(raw.restart)?;

        let depends_on = raw.depends_on.unwrap_or_default();
        for dependency in depends_on.keys() {
            let key = format!("depends_on.{}", locate::quote_key(dependency));
            if *dependency == name {
                return Err(self.err(key, "a service cannot depend on itself"));
            }
            if let Err(problem) = check_name(dependency) {
                return Err(self.err(key, problem));
            }
        }

        let health = raw.health.map(|h| self.health(h)).transpose()?;
        let limits = self.limits(raw.limits)?;

        let stop = raw.stop.unwrap_or(RawStop {
            signal: None,
            timeout_s: None,
        });
        let stop_signal = match stop.signal {
            None => 15,
            Some(signal) => signal_number(&signal).ok_or_else(|| {
                self.err(
                    "stop.signal",
                    format!("{signal:?} is not a signal name (such as \"SIGTERM\" or \"SIGINT\")"),
                )
            })?,
        };

        Ok(ServiceSpec {
            name,
            description: raw.description.unwrap_or_default(),
            enabled: raw.enabled.unwrap_or(true),
            gates_update: raw.gates_update.unwrap_or(false),
            root,
            command,
            env,
            working_dir,
            user: raw.user.unwrap_or(0),
            group: raw.group.unwrap_or(0),
            read_only_rootfs: raw.read_only_rootfs.unwrap_or(true),
            capabilities,
            host_network: host_namespaces.contains(&HostNamespace::Network),
            host_pid: host_namespaces.contains(&HostNamespace::Pid),
            seccomp: raw.seccomp.unwrap_or(Seccomp::Default),
            no_new_privileges: raw.no_new_privileges.unwrap_or(true),
            mounts,
            restart,
            depends_on,
            health,
            limits,
            stop_signal,
            stop_timeout: self.secs("stop.timeout_s", stop.timeout_s.unwrap_or(10), bounds::STOP_TIMEOUT)?,
        })
    }

    fn name(&self) -> Result<String, SpecError> {
        let stem = Path::new(self.file)
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| self.err("", "cannot take a service name from this file name"))?;
        check_name(stem).map_err(|problem| self.err("", format!("service name: {problem}")))?;
        Ok(stem.to_owned())
    }

    fn absolute(&self, key: &str, path: &str) -> Result<(), SpecError> {
        self.no_nul(key, path)?;
        if !path.starts_with('/') {
            return Err(self.err(key, format!("{path:?} is not an absolute path")));
        }
        if path.split('/').any(|part| part == "..") {
            return Err(self.err(key, format!("{path:?} must not contain \"..\"")));
        }
        Ok(())
    }

    // The kernel takes arguments, variables and paths as C strings.
    fn no_nul(&self, key: &str, value: &str) -> Result<(), SpecError> {
        if value.contains('\0') {
            return Err(self.err(key, "contains a NUL character"));
        }
        Ok(())
    }

    fn command(&self, key: &str, command: Vec<String>) -> Result<Vec<String>, SpecError> {
        let Some(program) = command.first() else {
            return Err(self.err(key, "must not be empty"));
        };
        // No PATH lookup: the program named is the program run, whatever
        // the root file system's PATH says.
        self.absolute(&format!("{key}[0]"), program)?;
        for (i, arg) in command.iter().enumerate().skip(1) {
            self.no_nul(&format!("{key}[{i}]"), arg)?;
        }
        Ok(command)
    }

    fn capabilities(&self, given: Option<Vec<String>>) -> Result<Vec<String>, SpecError> {
        let given = given.unwrap_or_else(|| vec!["default".to_owned()]);
        let mut set = BTreeSet::new();
        for (i, cap) in given.iter().enumerate() {
            if cap == "default" {
                set.extend(DEFAULT_CAPS.iter().map(|c| (*c).to_owned()));
            } else if KNOWN_CAPS.contains(&cap.as_str()) {
                set.insert(cap.clone());
            } else {
                let upper = format!(
                    "CAP_{}",
                    cap.to_ascii_uppercase().trim_start_matches("CAP_")
                );
                let hint = if KNOWN_CAPS.contains(&upper.as_str()) {
                    format!(" (did you mean {upper:?}?)")
                } else {
                    String::new()
                };
                return Err(self.err(
                    format!("capabilities[{i}]"),
                    format!("unknown capability {cap:?}{hint}"),
                ));
            }
        }
        Ok(set.into_iter().collect())
    }

    fn mount(&self, i: usize, raw: RawMount) -> Result<MountSpec, SpecError> {
        let key = |field: &str| format!("mounts[{i}].{field}");
        let Some(kind) = raw.kind else {
            return Err(self.err(key("type"), "missing: give \"bind\" or \"tmpfs\""));
        };
        let Some(destination) = raw.destination else {
            return Err(self.err(
                key("destination"),
                "missing: give the path in the container",
            ));
        };
        self.absolute(&key("destination"), &destination)?;
        if destination == "/" {
            return Err(self.err(key("destination"), "cannot mount over the root; use rootfs"));
        }
        match kind {
            MountKind::Bind => {
                let Some(source) = raw.source else {
                    return Err(
                        self.err(key("source"), "missing: a bind mount needs the host path")
                    );
                };
                self.absolute(&key("source"), &source)?;
                if raw.size.is_some() {
                    return Err(self.err(key("size"), "only tmpfs mounts have a size"));
                }
                Ok(MountSpec::Bind {
                    source,
                    destination,
                    read_only: raw.read_only.unwrap_or(true),
                })
            }
            MountKind::Tmpfs => {
                if raw.source.is_some() {
                    return Err(self.err(key("source"), "tmpfs mounts have no source"));
                }
                if raw.read_only == Some(true) {
                    return Err(self.err(key("read_only"), "tmpfs mounts are always writable"));
                }
                let size = match raw.size {
                    None => DEFAULT_TMPFS_SIZE,
                    Some(size) => self.size(&key("size"), size)?,
                };
                Ok(MountSpec::Tmpfs { destination, size })
            }
        }
    }

    fn size(&self, key: &str, size: Size) -> Result<u64, SpecError> {
        let bytes = match size {
            Size::Bytes(n) => u64::try_from(n).map_err(|_| {
                self.err(key, format!("{n} is negative; give a size greater than 0"))
            })?,
            Size::Text(text) => parse_size(&text).ok_or_else(|| {
                self.err(
                    key,
                    format!("{text:?} is not a size (use bytes or a K, M, G suffix)"),
                )
            })?,
        };
        if bytes == 0 {
            return Err(self.err(key, "must be greater than 0"));
        }
        // The OCI config carries sizes as signed 64-bit numbers.
        if i64::try_from(bytes).is_err() {
            return Err(self.err(key, format!("{bytes} bytes is too large")));
        }
        Ok(bytes)
    }

    fn restart(&self, raw: Option<RawRestart>) -> Result<Restart, SpecError> {
        let raw = raw.unwrap_or(RawRestart {
            policy: None,
            initial_delay_ms: None,
            max_delay_ms: None,
            reset_after_s: None,
        });
        let initial = raw.initial_delay_ms.unwrap_or(500);
        let initial_delay = self.millis("restart.initial_delay_ms", initial, bounds::BACKOFF)?;
        let max = raw.max_delay_ms.unwrap_or(30_000.max(initial));
        let max_delay = self.millis("restart.max_delay_ms", max, bounds::BACKOFF)?;
        if max < initial {
            return Err(self.err(
                "restart.max_delay_ms",
                format!("{max} is less than restart.initial_delay_ms ({initial})"),
            ));
        }
        Ok(Restart {
            policy: raw.policy.unwrap_or(RestartPolicy::Always),
            initial_delay,
            max_delay,
            reset_after: self.secs("restart.reset_after_s", raw.reset_after_s.unwrap_or(10), bounds::STABLE_AFTER)?,
        })
    }

    fn health(&self, raw: RawHealth) -> Result<Health, SpecError> {
        let given: Vec<&str> = [
            raw.exec.as_ref().map(|_| "exec"),
            raw.tcp.as_ref().map(|_| "tcp"),
            raw.http.as_ref().map(|_| "http"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            return Err(self.err(
                "health",
                format!(
                    "give only one of exec, tcp or http, not {}",
                    given.join(" and ")
                ),
            ));
        }
        let check = if let Some(exec) = raw.exec {
            Check::Exec(self.command("health.exec", exec)?)
        } else if let Some(tcp) = raw.tcp {
            let (host, port) = split_host_port(&tcp)
                .map_err(|p| self.err("health.tcp", format!("{tcp:?}: {p}")))?;
            let port = port.ok_or_else(|| {
                self.err("health.tcp", format!("{tcp:?} has no port; give host:port"))
            })?;
            Check::Tcp(host, port)
        } else if let Some(http) = raw.http {
            let (host, port, path) = parse_http_url(&http)
                .map_err(|p| self.err("health.http", format!("{http:?}: {p}")))?;
            Check::Http { host, port, path }
        } else {
            return Err(self.err("health", "give one of exec, tcp or http"));
        };

        let retries = raw.retries.unwrap_or(3);
        if !bounds::HEALTH_RETRIES.contains(&retries) {
            let (min, max) = (bounds::HEALTH_RETRIES.start(), bounds::HEALTH_RETRIES.end());
            return Err(self.err("health.retries", format!("{retries} is outside the allowed range {min} to {max}")));
        }
        Ok(Health {
            check,
            interval: self.millis("health.interval_ms", raw.interval_ms.unwrap_or(2000), bounds::HEALTH_INTERVAL)?,
            timeout: self.millis("health.timeout_ms", raw.timeout_ms.unwrap_or(1000), bounds::HEALTH_TIMEOUT)?,
            retries,
            start_period: self.millis("health.start_period_ms", raw.start_period_ms.unwrap_or(0), bounds::START_PERIOD)?,
        })
    }

    /// A key in seconds, within the range PID 1 accepts.
    fn secs(&self, key: &str, value: u64, (min, max): (Duration, Duration)) -> Result<Duration, SpecError> {
        self.within(key, value, min.as_secs(), max.as_secs()).map(Duration::from_secs)
    }

    /// A key in milliseconds, within the range PID 1 accepts.
    fn millis(&self, key: &str, value: u64, (min, max): (Duration, Duration)) -> Result<Duration, SpecError> {
        // The bounds are at most hours: their milliseconds fit a u64.
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.within(key, value, ms(min), ms(max)).map(Duration::from_millis)
    }

    fn within(&self, key: &str, value: u64, min: u64, max: u64) -> Result<u64, SpecError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(self.err(key, format!("{value} is outside the allowed range {min} to {max}")))
        }
    }

    fn limits(&self, raw: Option<RawLimits>) -> Result<Limits, SpecError> {
        let Some(raw) = raw else {
            return Ok(Limits::default());
        };
        let memory_max = raw
            .memory_max
            .map(|s| self.size("limits.memory_max", s))
            .transpose()?;
        let cpu_quota_us = match raw.cpu {
            None => None,
            Some(cpu) => {
                if !(cpu.is_finite() && cpu > 0.0) {
                    return Err(self.err(
                        "limits.cpu",
                        format!("{cpu} is not a number of CPUs greater than 0 (such as 0.5)"),
                    ));
                }
                let quota = (cpu * CPU_PERIOD_US as f64).round();
                if quota < MIN_CPU_QUOTA_US as f64 {
                    return Err(self.err(
                        "limits.cpu",
                        format!("{cpu} is below the kernel's minimum of 0.01"),
                    ));
                }
                if quota >= i64::MAX as f64 {
                    return Err(self.err("limits.cpu", format!("{cpu} is too large")));
                }
                // In range and integral: checked just above.
                Some(quota as u64)
            }
        };
        let pids_max = match raw.pids_max {
            Some(n) if n < 1 => {
                return Err(self.err("limits.pids_max", format!("{n} is less than 1")))
            }
            other => other,
        };
        Ok(Limits {
            memory_max,
            cpu_quota_us,
            pids_max,
        })
    }
}

/// A service name becomes a file stem, a container id, a host name and a
/// cgroup directory; keep to characters all of those take.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok_first || !ok_rest {
        return Err(format!(
            "{name:?} is not a service name (letters, digits, '-', '_', '.', starting with a letter or digit)"
        ));
    }
    if name.len() > 63 {
        return Err(format!(
            "{name:?} is longer than 63 characters (a host name's limit)"
        ));
    }
    Ok(())
}

fn valid_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn signal_number(name: &str) -> Option<i32> {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name || n.strip_prefix("SIG") == Some(name))
        .map(|(_, number)| *number)
}

/// The name of signal `number`, if it is one of [`SIGNALS`].
pub fn signal_name(number: i32) -> Option<&'static str> {
    SIGNALS
        .iter()
        .find(|(_, n)| *n == number)
        .map(|(name, _)| *name)
}

/// Bytes, or a number with a K, M or G suffix (powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'K' | 'k') => (&text[..i], 10),
        (i, 'M' | 'm') => (&text[..i], 20),
        (i, 'G' | 'g') => (&text[..i], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Checks the shape of an image reference:
/// `[registry[:port]/]path[:tag][@algorithm:digest]`.
fn check_image_reference(reference: &str) -> Result<(), String> {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest
            .split_once(':')
            .ok_or("the digest must look like sha256:<hex>")?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '_' | '-')
            });
        if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("the digest must look like sha256:<hex>".to_owned());
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let tag_ok = tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return Err(format!("bad tag {tag:?}"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // Like Docker: a first part with a dot or port, or "localhost", is a
    // registry host rather than part of the repository path.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (host_name, port) = host.split_once(':').unwrap_or((host, ""));
        let host_ok = !host_name.is_empty()
            && host_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        let port_ok =
            port.is_empty() != host.contains(':') && port.bytes().all(|b| b.is_ascii_digit());
        if !host_ok || !port_ok {
            return Err(format!("bad registry {host:?}"));
        }
    }
    for part in parts {
        let ok = part
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !ok {
            return Err(format!(
                "bad repository part {part:?} (lower-case letters, digits and . _ - between them)"
            ));
        }
    }
    Ok(())
}

/// Splits `host[:port]` or `[v6][:port]`; the host comes back without
/// brackets so it can go straight to a socket address lookup.
fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '['")?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("expected ':' and a port after ']'".to_owned()),
            },
        }
    } else {
        match text.matches(':').count() {
            0 => (text, None),
            1 => text
                .split_once(':')
                .map(|(h, p)| (h, Some(p)))
                .ok_or("bad host:port")?,
            _ => return Err("an IPv6 address needs brackets, as in [::1]:80".to_owned()),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']'))
    {
        return Err("bad host".to_owned());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("{p:?} is not a port (1 to 65535)")),
        },
    };
    Ok((host.to_owned(), port))
}

fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL; give http://host[:port]/path".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("http") {
        // The check speaks plain HTTP; TLS would need certificates and a
        // TLS stack in init for little gain on a local port.
        return Err(format!("only http:// URLs are supported, not {scheme}://"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err("user names and passwords in the URL are not supported".to_owned());
    }
    let (host, port) = split_host_port(authority)?;
    // The fragment never goes to the server.
    let path = path.split('#').next().unwrap_or("");
    let path = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the path must not contain spaces or control characters".to_owned());
    }
    Ok((host, port.unwrap_or(80), path))
}

/// Checks the dependencies between `specs` and returns their indices in an
/// order where each service comes after everything it depends on; services
/// with no order between them come alphabetically.
///
/// Disabled services are in the order too, so that starting one by hand can
/// follow it; callers starting at boot skip them. An enabled service may not
/// depend on a disabled one (it would wait forever), nor wait for a
/// dependency to be healthy when that dependency has no health check.
pub fn start_order(specs: &[ServiceSpec]) -> Result<Vec<usize>, SpecError> {
    let file = |spec: &ServiceSpec| format!("{}.toml", spec.name);
    let dep_key = |dep: &str| format!("depends_on.{}", locate::quote_key(dep));

    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        if by_name.insert(&spec.name, i).is_some() {
            return Err(SpecError::new(
                &file(spec),
                "",
                format!("two services are named {}", spec.name),
            ));
        }
    }

    // Check in name order so the error reported does not depend on the
    // order the files were read in.
    let mut remaining_deps = vec![0usize; specs.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
    for &i in by_name.values() {
        let spec = &specs[i];
        for (dep, condition) in &spec.depends_on {
            let err = |message: String| SpecError::new(&file(spec), dep_key(dep), message);
            if *dep == spec.name {
                return Err(err("a service cannot depend on itself".to_owned()));
            }
            let Some(&j) = by_name.get(dep.as_str()) else {
                return Err(err(format!("no service named {dep}")));
            };
            if spec.enabled && !specs[j].enabled {
                return Err(err(format!(
                    "{dep} is disabled, but {} depends on it",
                    spec.name
                )));
            }
            if *condition == Condition::Healthy && specs[j].health.is_none() {
                return Err(err(format!(
                    "{dep} has no [health] check, so {} cannot wait for it to be healthy",
                    spec.name
                )));
            }
            remaining_deps[i] += 1;
            dependents[j].push(i);
        }
    }

    let mut ready: BTreeSet<(&str, usize)> = specs
        .iter()
        .enumerate()
        .filter(|(i, _)| remaining_deps[*i] == 0)
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut order = Vec::with_capacity(specs.len());
    while let Some((_, i)) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            remaining_deps[d] -= 1;
            if remaining_deps[d] == 0 {
                ready.insert((specs[d].name.as_str(), d));
            }
        }
    }
    if order.len() == specs.len() {
        return Ok(order);
    }

    // Every service left waits on another one left, so following those
    // dependencies from any of them must come back round.
    let left = |name: &str| by_name.get(name).is_some_and(|&j| remaining_deps[j] > 0);
    let Some(start) = by_name.iter().find(|(name, _)| left(name)).map(|(_, &i)| i) else {
        return Err(SpecError::new("", "depends_on", "dependency cycle"));
    };
    let mut path = vec![start];
    loop {
        let current = &specs[path[path.len() - 1]];
        let Some(next) = current
            .depends_on
            .keys()
            .find(|dep| left(dep))
            .and_then(|dep| by_name.get(dep.as_str()).copied())
        else {
            return Err(SpecError::new(
                &file(current),
                "depends_on",
                "dependency cycle",
            ));
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            // Start the loop at its alphabetically first service so the
            // same cycle always reads the same way.
            let mut cycle = path[pos..].to_vec();
            let lowest = (0..cycle.len())
                .min_by_key(|&k| &specs[cycle[k]].name)
                .unwrap_or(0);
            cycle.rotate_left(lowest);
            let mut names: Vec<&str> = cycle.iter().map(|&p| specs[p].name.as_str()).collect();
            names.push(names[0]);
            let first = &specs[cycle[0]];
            return Err(SpecError::new(
                &file(first),
                dep_key(names[1]),
                format!("dependency cycle: {}", names.join(" -> ")),
            ));
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests;
