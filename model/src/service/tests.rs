// Tests fail by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use super::*;

const FILE: &str = "/usr/lib/cairn/services/chrony.toml";

const FULL: &str = r#"
description = "NTP client"
enabled = false
gates_update = true
rootfs = "/usr/lib/cairn/rootfs/chrony"
command = ["/usr/sbin/chronyd", "-d", "-x"]
env = { TZ = "UTC", PATH = "/usr/sbin" }
working_dir = "/var/lib/chrony"
user = 123
group = 456
read_only_rootfs = false
capabilities = ["CAP_SYS_TIME", "default", "CAP_CHOWN"]
host_namespaces = ["network", "pid"]
seccomp = "unconfined"
no_new_privileges = false

[[mounts]]
type = "bind"
source = "/var/lib/chrony"
destination = "/var/lib/chrony"
read_only = false

[[mounts]]
type = "tmpfs"
destination = "/run"
size = "16M"

[[mounts]]
type = "bind"
source = "/etc/chrony.conf"
destination = "/etc/chrony.conf"

[restart]
policy = "on-failure"
initial_delay_ms = 100
max_delay_ms = 5000
reset_after_s = 60

[depends_on]
network = "started"
dns = "healthy"

[health]
exec = ["/usr/bin/chronyc", "tracking"]
interval_ms = 3000
timeout_ms = 500
retries = 5
start_period_ms = 10000

[limits]
memory_max = "64M"
cpu = 0.5
pids_max = 64

[stop]
signal = "SIGINT"
timeout_s = 20
"#;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn parse_err(text: &str) -> SpecError {
    match parse(text, FILE) {
        Ok(spec) => panic!("expected an error, got {spec:#?}"),
        Err(e) => e,
    }
}

/// A minimal valid file with `extra` appended (at the top level unless it
/// opens a table).
fn with(extra: &str) -> String {
    format!("rootfs = \"/r\"\ncommand = [\"/bin/true\"]\n{extra}\n")
}

/// Asserts the error names the file and the key, and its message contains
/// `fragment`.
fn assert_error(e: &SpecError, key: &str, fragment: &str) {
    let shown = e.to_string();
    assert_eq!(e.file, FILE, "{shown}");
    assert_eq!(e.key, key, "{shown}");
    assert!(shown.starts_with(FILE), "{shown}");
    assert!(shown.contains(&format!(" {key}: ")), "{shown}");
    assert!(e.message.contains(fragment), "{shown}");
}

#[test]
fn full_example() {
    let spec = parse(FULL, FILE).unwrap();
    let expected = ServiceSpec {
        name: "chrony".to_owned(),
        description: "NTP client".to_owned(),
        enabled: false,
        gates_update: true,
        root: Root::Rootfs("/usr/lib/cairn/rootfs/chrony".to_owned()),
        command: strings(&["/usr/sbin/chronyd", "-d", "-x"]),
        env: BTreeMap::from([
            ("PATH".to_owned(), "/usr/sbin".to_owned()),
            ("TZ".to_owned(), "UTC".to_owned()),
        ]),
        working_dir: "/var/lib/chrony".to_owned(),
        user: 123,
        group: 456,
        read_only_rootfs: false,
        capabilities: strings(&[
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SYS_TIME",
        ]),
        host_network: true,
        host_pid: true,
        seccomp: Seccomp::Unconfined,
        no_new_privileges: false,
        mounts: vec![
            MountSpec::Bind {
                source: "/var/lib/chrony".to_owned(),
                destination: "/var/lib/chrony".to_owned(),
                read_only: false,
            },
            MountSpec::Tmpfs {
                destination: "/run".to_owned(),
                size: 16 << 20,
            },
            MountSpec::Bind {
                source: "/etc/chrony.conf".to_owned(),
                destination: "/etc/chrony.conf".to_owned(),
                read_only: true,
            },
        ],
        restart: Restart {
            policy: RestartPolicy::OnFailure,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(5000),
            reset_after: Duration::from_secs(60),
        },
        depends_on: BTreeMap::from([
            ("dns".to_owned(), Condition::Healthy),
            ("network".to_owned(), Condition::Started),
        ]),
        health: Some(Health {
            check: Check::Exec(strings(&["/usr/bin/chronyc", "tracking"])),
            interval: Duration::from_millis(3000),
            timeout: Duration::from_millis(500),
            retries: 5,
            start_period: Duration::from_millis(10000),
        }),
        limits: Limits {
            memory_max: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            pids_max: Some(64),
        },
        stop_signal: 2,
        stop_timeout: Duration::from_secs(20),
    };
    assert_eq!(spec, expected);
}

#[test]
fn minimal_gets_every_default() {
    let spec = parse(&with(""), "services/x.toml").unwrap();
    let expected = ServiceSpec {
        name: "x".to_owned(),
        description: String::new(),
        enabled: true,
        gates_update: false,
        root: Root::Rootfs("/r".to_owned()),
        command: strings(&["/bin/true"]),
        env: BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]),
        working_dir: "/".to_owned(),
        user: 0,
        group: 0,
        read_only_rootfs: true,
        capabilities: strings(DEFAULT_CAPS),
        host_network: false,
        host_pid: false,
        seccomp: Seccomp::Default,
        no_new_privileges: true,
        mounts: Vec::new(),
        restart: Restart {
            policy: RestartPolicy::Always,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_millis(30_000),
            reset_after: Duration::from_secs(10),
        },
        depends_on: BTreeMap::new(),
        health: None,
        limits: Limits::default(),
        stop_signal: 15,
        stop_timeout: Duration::from_secs(10),
    };
    assert_eq!(spec, expected);
    assert!(!spec.limits.any());
}

#[test]
fn health_defaults_and_kinds() {
    let spec = parse(&with("[health]\ntcp = \"127.0.0.1:123\""), FILE).unwrap();
    assert_eq!(
        spec.health,
        Some(Health {
            check: Check::Tcp("127.0.0.1".to_owned(), 123),
            interval: Duration::from_millis(2000),
            timeout: Duration::from_millis(1000),
            retries: 3,
            start_period: Duration::ZERO,
        })
    );
    let cases = [
        ("tcp = \"[::1]:53\"", Check::Tcp("::1".to_owned(), 53)),
        (
            "http = \"http://127.0.0.1:8080/healthz?full=1\"",
            Check::Http {
                host: "127.0.0.1".to_owned(),
                port: 8080,
                path: "/healthz?full=1".to_owned(),
            },
        ),
        (
            "http = \"http://localhost\"",
            Check::Http {
                host: "localhost".to_owned(),
                port: 80,
                path: "/".to_owned(),
            },
        ),
    ];
    for (line, check) in cases {
        let spec = parse(&with(&format!("[health]\n{line}")), FILE).unwrap();
        assert_eq!(spec.health.map(|h| h.check), Some(check), "{line}");
    }
}

#[test]
fn other_accepted_forms() {
    let spec = parse(
        &with(
            "image = \"docker.io/library/busybox:1.36\"\ncapabilities = []\n\
             stop.signal = \"TERM\"\nlimits.memory_max = 1048576\n\
             restart.initial_delay_ms = 60000",
        )
        .replace("rootfs = \"/r\"\n", ""),
        FILE,
    )
    .unwrap();
    assert_eq!(
        spec.root,
        Root::Image("docker.io/library/busybox:1.36".to_owned())
    );
    assert!(spec.capabilities.is_empty());
    assert_eq!(spec.stop_signal, 15);
    assert_eq!(spec.limits.memory_max, Some(1 << 20));
    // A first delay above the default ceiling raises the ceiling with it.
    assert_eq!(spec.restart.max_delay, Duration::from_secs(60));

    for image in [
        "busybox",
        "busybox:latest",
        "localhost:5000/cairn/chrony:4.5",
        "ghcr.io/a/b/c",
        "registry.example.com/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(check_image_reference(image).is_ok(), "{image}");
    }
    for image in [
        "",
        "Busybox",
        "busybox:",
        "a//b",
        "-a",
        "a:b:c",
        "x@sha256:zz",
        "a b",
    ] {
        assert!(check_image_reference(image).is_err(), "{image}");
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("512"), Some(512));
    assert_eq!(parse_size("4K"), Some(4096));
    assert_eq!(parse_size("16m"), Some(16 << 20));
    assert_eq!(parse_size("2G"), Some(2 << 30));
    for bad in [
        "",
        "M",
        "12Q",
        "1.5G",
        "-1",
        " 1M",
        "1MB",
        "99999999999999999999G",
    ] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn unknown_key() {
    let text = "rootfs = \"/r\"\ncommand = [\"/bin/true\"]\n\n[restart]\n  polcy = \"always\"\n";
    let e = parse_err(text);
    assert_error(&e, "restart.polcy", "polcy");
    assert_eq!((e.line, e.column), (Some(5), Some(3)));
    assert!(
        e.to_string()
            .starts_with(&format!("{FILE}:5:3: restart.polcy: ")),
        "{e}"
    );

    let e = parse_err(&with("colour = 1"));
    assert_error(&e, "colour", "colour");
    assert_eq!(e.line, Some(3));

    let e = parse_err(&with("[[mounts]]\ntype = \"tmpfs\"\ndestination = \"/run\"\n[[mounts]]\ntype = \"tmpfs\"\ndest = \"/tmp\""));
    assert_error(&e, "mounts[1].dest", "dest");
}

#[test]
fn wrong_type() {
    let e = parse_err(&with("user = \"root\""));
    assert_error(&e, "user", "invalid type");
    assert_eq!((e.line, e.column), (Some(3), Some(8)));

    let e = parse_err("rootfs = \"/r\"\ncommand = \"/bin/true\"\n");
    assert_error(&e, "command", "invalid type");

    let e = parse_err(&with("env = { TZ = 1 }"));
    assert_error(&e, "env.TZ", "invalid type");

    let e = parse_err("rootfs = \"/r\"\ncommand = [\"/bin/true\", 3]\n");
    assert_error(&e, "command", "invalid type: integer `3`");
    assert_eq!((e.line, e.column), (Some(2), Some(25)));

    // A table where an array is wanted, or the reverse, names the table
    // even though toml points at the `[` before its name.
    let e = parse_err(&with("[[health]]\nexec = [\"/x\"]"));
    assert_error(&e, "health", "invalid type");
    assert_eq!((e.line, e.column), (Some(3), Some(1)));

    let e = parse_err(&with("limits.memory_max = true"));
    assert_error(&e, "limits.memory_max", "a size");
}

#[test]
fn bad_enum_variant() {
    let text = "rootfs = \"/r\"\ncommand = [\"/bin/true\"]\n[restart]\npolicy = \"sometimes\"\n";
    let e = parse_err(text);
    assert_eq!(
        e.to_string(),
        format!(
            "{FILE}:4:10: restart.policy: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`"
        )
    );
    let e = parse_err(&with("host_namespaces = [\"network\", \"ipc\"]"));
    assert_error(&e, "host_namespaces", "unknown variant `ipc`");
    let e = parse_err(&with("seccomp = \"off\""));
    assert_error(&e, "seccomp", "unknown variant `off`");
    let e = parse_err(&with("depends_on.ntp = \"ready\""));
    assert_error(&e, "depends_on.ntp", "unknown variant `ready`");
}

#[test]
fn syntax_error_has_a_position() {
    let e = parse_err("rootfs = \"/r\"\ncommand = [\"/bin/true\"\n");
    assert_eq!(e.file, FILE);
    assert!(e.line.is_some(), "{e}");
    assert!(e.to_string().starts_with(&format!("{FILE}:")), "{e}");
}

#[test]
fn missing_command() {
    let e = parse_err("rootfs = \"/r\"\n");
    assert_eq!(
        e.to_string(),
        format!("{FILE}: command: missing: give the program and its arguments")
    );
    assert_eq!(e.line, None);
    let e = parse_err("rootfs = \"/r\"\ncommand = []\n");
    assert_error(&e, "command", "must not be empty");
}

#[test]
fn rootfs_and_image() {
    let e = parse_err(&with("image = \"busybox\""));
    assert_error(&e, "rootfs", "not both");
    let e = parse_err("command = [\"/bin/true\"]\n");
    assert_error(&e, "rootfs", "missing");
    let e = parse_err("image = \"Busybox\"\ncommand = [\"/bin/true\"]\n");
    assert_error(&e, "image", "not an image reference");
}

#[test]
fn relative_paths() {
    let e = parse_err("rootfs = \"rootfs/chrony\"\ncommand = [\"/bin/true\"]\n");
    assert_error(&e, "rootfs", "not an absolute path");
    let e = parse_err("rootfs = \"/r\"\ncommand = [\"chronyd\"]\n");
    assert_error(&e, "command[0]", "not an absolute path");
    let e = parse_err(&with("working_dir = \"var\""));
    assert_error(&e, "working_dir", "not an absolute path");
    let e = parse_err(&with(
        "[[mounts]]\ntype = \"bind\"\nsource = \"data\"\ndestination = \"/data\"",
    ));
    assert_error(&e, "mounts[0].source", "not an absolute path");
    let e = parse_err(&with(
        "[[mounts]]\ntype = \"tmpfs\"\ndestination = \"/a/../b\"",
    ));
    assert_error(&e, "mounts[0].destination", "\"..\"");
    let e = parse_err(&with("[health]\nexec = [\"chronyc\"]"));
    assert_error(&e, "health.exec[0]", "not an absolute path");
}

#[test]
fn mount_rules() {
    let e = parse_err(&with("[[mounts]]\ndestination = \"/run\""));
    assert_error(&e, "mounts[0].type", "missing");
    let e = parse_err(&with(
        "[[mounts]]\ntype = \"tmpfs\"\nsource = \"/x\"\ndestination = \"/run\"",
    ));
    assert_error(&e, "mounts[0].source", "no source");
    let e = parse_err(&with(
        "[[mounts]]\ntype = \"tmpfs\"\ndestination = \"/run\"\nread_only = true",
    ));
    assert_error(&e, "mounts[0].read_only", "always writable");
    let e = parse_err(&with(
        "[[mounts]]\ntype = \"bind\"\nsource = \"/x\"\ndestination = \"/x\"\nsize = \"1M\"",
    ));
    assert_error(&e, "mounts[0].size", "only tmpfs");
    let e = parse_err(&with("[[mounts]]\ntype = \"bind\"\ndestination = \"/x\""));
    assert_error(&e, "mounts[0].source", "missing");
}

#[test]
fn bad_size() {
    let e = parse_err(&with("[limits]\nmemory_max = \"12Q\""));
    assert_eq!(
        e.to_string(),
        format!("{FILE}: limits.memory_max: \"12Q\" is not a size (use bytes or a K, M, G suffix)")
    );
    let e = parse_err(&with("[limits]\nmemory_max = 0"));
    assert_error(&e, "limits.memory_max", "greater than 0");
    let e = parse_err(&with(
        "[[mounts]]\ntype = \"tmpfs\"\ndestination = \"/run\"\nsize = \"-1\"",
    ));
    assert_error(&e, "mounts[0].size", "not a size");
}

#[test]
fn cpu_must_be_positive() {
    for cpu in ["0", "-1", "0.0", "nan", "inf"] {
        let e = parse_err(&with(&format!("[limits]\ncpu = {cpu}")));
        assert_error(&e, "limits.cpu", "greater than 0");
    }
    let e = parse_err(&with("[limits]\ncpu = 0.001"));
    assert_error(&e, "limits.cpu", "minimum");
    let spec = parse(&with("[limits]\ncpu = 2"), FILE).unwrap();
    assert_eq!(spec.limits.cpu_quota_us, Some(200_000));
    let e = parse_err(&with("[limits]\npids_max = 0"));
    assert_error(&e, "limits.pids_max", "less than 1");
}

#[test]
fn unknown_capability() {
    let e = parse_err(&with("capabilities = [\"CAP_CHOWN\", \"CAP_WIZARD\"]"));
    assert_error(&e, "capabilities[1]", "unknown capability \"CAP_WIZARD\"");
    let e = parse_err(&with("capabilities = [\"sys_time\"]"));
    assert_error(&e, "capabilities[0]", "did you mean \"CAP_SYS_TIME\"?");
}

#[test]
fn unknown_signal() {
    let e = parse_err(&with("[stop]\nsignal = \"SIGFOO\""));
    assert_error(&e, "stop.signal", "\"SIGFOO\" is not a signal name");
    assert_eq!(signal_name(15), Some("SIGTERM"));
}

#[test]
fn health_with_two_kinds() {
    let e = parse_err(&with(
        "[health]\nexec = [\"/bin/true\"]\ntcp = \"127.0.0.1:80\"",
    ));
    assert_error(&e, "health", "not exec and tcp");
    let e = parse_err(&with("[health]\ninterval_ms = 5"));
    assert_error(&e, "health", "give one of exec, tcp or http");
}

#[test]
fn health_targets() {
    let e = parse_err(&with("[health]\nhttp = \"https://127.0.0.1/healthz\""));
    assert_error(&e, "health.http", "only http:// URLs");
    let e = parse_err(&with("[health]\nhttp = \"127.0.0.1/healthz\""));
    assert_error(&e, "health.http", "not a URL");
    let e = parse_err(&with("[health]\nhttp = \"http://127.0.0.1:0/\""));
    assert_error(&e, "health.http", "not a port");
    let e = parse_err(&with("[health]\ntcp = \"127.0.0.1\""));
    assert_error(&e, "health.tcp", "no port");
    let e = parse_err(&with("[health]\ntcp = \"::1:53\""));
    assert_error(&e, "health.tcp", "brackets");
    let e = parse_err(&with("[health]\ntcp = \"h:1\"\nretries = 0"));
    assert_error(&e, "health.retries", "0 is outside the allowed range 1 to 100");
}

/// Every duration and count is bounded, so no spec can stall PID 1 (a stop
/// it would wait days for) or make the handoff to it unreadable.
#[test]
fn durations_and_counts_are_bounded() {
    let cases = [
        ("[stop]\ntimeout_s = 99999999999999999", "stop.timeout_s", "99999999999999999 is outside the allowed range 0 to 300"),
        ("[stop]\ntimeout_s = 301", "stop.timeout_s", "0 to 300"),
        ("[restart]\nreset_after_s = 86401", "restart.reset_after_s", "0 to 86400"),
        ("[restart]\nmax_delay_ms = 3600001", "restart.max_delay_ms", "10 to 3600000"),
        ("[restart]\ninitial_delay_ms = 9223372036854775807", "restart.initial_delay_ms", "10 to 3600000"),
        ("[health]\ntcp = \"h:1\"\ninterval_ms = 0", "health.interval_ms", "100 to 3600000"),
        ("[health]\ntcp = \"h:1\"\ntimeout_ms = 0", "health.timeout_ms", "1 to 300000"),
        ("[health]\ntcp = \"h:1\"\ntimeout_ms = 300001", "health.timeout_ms", "1 to 300000"),
        ("[health]\ntcp = \"h:1\"\nstart_period_ms = 3600001", "health.start_period_ms", "0 to 3600000"),
        ("[health]\ntcp = \"h:1\"\nretries = 101", "health.retries", "1 to 100"),
    ];
    for (extra, key, fragment) in cases {
        assert_error(&parse_err(&with(extra)), key, fragment);
    }
    let spec = parse(&with("[stop]\ntimeout_s = 300"), FILE).unwrap();
    assert_eq!(spec.stop_timeout, Duration::from_secs(300), "the bound itself is allowed");
}

#[test]
fn restart_rules() {
    let e = parse_err(&with("[restart]\ninitial_delay_ms = 5"));
    assert_error(&e, "restart.initial_delay_ms", "5 is outside the allowed range 10 to 3600000");
    let e = parse_err(&with(
        "[restart]\ninitial_delay_ms = 1000\nmax_delay_ms = 999",
    ));
    assert_error(
        &e,
        "restart.max_delay_ms",
        "less than restart.initial_delay_ms",
    );
}

#[test]
fn env_names() {
    let e = parse_err(&with("env = { \"1X\" = \"a\" }"));
    assert_error(&e, "env.1X", "not a variable name");
    let e = parse_err(&with("env = { \"A.B\" = \"a\" }"));
    assert_error(&e, "env.\"A.B\"", "not a variable name");
    let e = parse_err(&with("env = { A = \"a\\u0000b\" }"));
    assert_error(&e, "env.A", "NUL");
}

#[test]
fn self_dependency() {
    let e = parse_err(&with("[depends_on]\nchrony = \"started\""));
    assert_error(&e, "depends_on.chrony", "cannot depend on itself");
}

#[test]
fn service_names() {
    assert!(parse(&with(""), "/a/b/dhcp-client.toml").is_ok());
    let e = parse(&with(""), "/a/b/-x.toml").unwrap_err();
    assert_eq!(e.key, "");
    assert!(
        e.to_string().starts_with("/a/b/-x.toml: service name: "),
        "{e}"
    );
    let e = parse_err(&with("depends_on.\"a b\" = \"started\""));
    assert_error(&e, "depends_on.\"a b\"", "not a service name");
}

fn service(name: &str, deps: &[(&str, Condition)]) -> ServiceSpec {
    let mut spec = parse(&with(""), &format!("{name}.toml")).unwrap();
    spec.depends_on = deps.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect();
    spec
}

fn names(specs: &[ServiceSpec], order: &[usize]) -> Vec<String> {
    order.iter().map(|&i| specs[i].name.clone()).collect()
}

#[test]
fn order_chain() {
    let specs = vec![
        service("a", &[("b", Condition::Started)]),
        service("b", &[("c", Condition::Started)]),
        service("c", &[]),
        service("d", &[]),
    ];
    let order = start_order(&specs).unwrap();
    assert_eq!(names(&specs, &order), ["c", "b", "a", "d"]);
}

#[test]
fn order_diamond() {
    let mut specs = vec![
        service(
            "top",
            &[("left", Condition::Started), ("right", Condition::Healthy)],
        ),
        service("right", &[("base", Condition::Started)]),
        service("left", &[("base", Condition::Started)]),
        service("base", &[]),
        service("alone", &[]),
    ];
    specs[1] = parse(
        &with("[health]\ntcp = \"127.0.0.1:1\"\n[depends_on]\nbase = \"started\""),
        "right.toml",
    )
    .unwrap();
    let order = start_order(&specs).unwrap();
    assert_eq!(
        names(&specs, &order),
        ["alone", "base", "left", "right", "top"]
    );
    // The same whatever order the files came in.
    specs.reverse();
    let order = start_order(&specs).unwrap();
    assert_eq!(
        names(&specs, &order),
        ["alone", "base", "left", "right", "top"]
    );
}

#[test]
fn order_unknown_dependency() {
    let specs = vec![service("a", &[("b", Condition::Started)])];
    let e = start_order(&specs).unwrap_err();
    assert_eq!(e.to_string(), "a.toml: depends_on.b: no service named b");
    assert_eq!(
        (e.file.as_str(), e.key.as_str()),
        ("a.toml", "depends_on.b")
    );
}

#[test]
fn order_cycle() {
    let specs = vec![
        service("c", &[("a", Condition::Started)]),
        service("b", &[("a", Condition::Started)]),
        service("a", &[("b", Condition::Started)]),
    ];
    let e = start_order(&specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.toml: depends_on.b: dependency cycle: a -> b -> a"
    );

    let specs = vec![
        service("x", &[("z", Condition::Started)]),
        service("y", &[("x", Condition::Started)]),
        service("z", &[("y", Condition::Started)]),
    ];
    let e = start_order(&specs).unwrap_err();
    assert!(
        e.message.ends_with("dependency cycle: x -> z -> y -> x"),
        "{e}"
    );
}

#[test]
fn order_disabled_and_unhealthy_dependencies() {
    let mut off = service("off", &[]);
    off.enabled = false;
    let specs = vec![service("on", &[("off", Condition::Started)]), off.clone()];
    let e = start_order(&specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "on.toml: depends_on.off: off is disabled, but on depends on it"
    );

    // A disabled service may depend on another one, and keeps its place.
    let mut also_off = service("also-off", &[("off", Condition::Started)]);
    also_off.enabled = false;
    let specs = vec![also_off, off];
    assert_eq!(start_order(&specs).unwrap(), [1, 0]);

    let specs = vec![
        service("a", &[("b", Condition::Healthy)]),
        service("b", &[]),
    ];
    let e = start_order(&specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.toml: depends_on.b: b has no [health] check, so a cannot wait for it to be healthy"
    );

    let specs = vec![service("a", &[]), service("a", &[])];
    assert!(start_order(&specs)
        .unwrap_err()
        .to_string()
        .contains("two services are named a"));
}
