// Tests fail by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::service::parse;
use serde_json::Value;

const CHRONY: &str = r#"
rootfs = "/usr/lib/cairn/rootfs/chrony"
command = ["/usr/sbin/chronyd", "-d"]
env = { TZ = "UTC" }
capabilities = ["CAP_SYS_TIME", "CAP_NET_BIND_SERVICE"]
host_namespaces = ["network"]

[[mounts]]
type = "bind"
source = "/var/lib/chrony"
destination = "/var/lib/chrony"
read_only = false

[[mounts]]
type = "tmpfs"
destination = "/run"
size = "16M"

[limits]
memory_max = "64M"
cpu = 0.5
pids_max = 64
"#;

const PLAIN: &str = r#"
rootfs = "/r"
command = ["/bin/sleep", "1000"]
user = 1000
group = 1000
read_only_rootfs = false
"#;

fn config_json(text: &str, file: &str) -> (String, Value) {
    let spec = parse(text, file).unwrap();
    let config = oci_config(&spec, "/run/cairn/bundles/x/rootfs", "/cairn/x").unwrap();
    let json = to_json(&config).unwrap();
    // Valid JSON that oci-spec reads back into the same config.
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let value: Value = serde_json::from_str(&json).unwrap();
    (json, value)
}

fn strs(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn seccomp_names(value: &Value) -> Vec<&str> {
    value["linux"]["seccomp"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| strs(&rule["names"]))
        .collect()
}

#[test]
fn chrony() {
    let (json, v) = config_json(CHRONY, "chrony.toml");
    assert_eq!(v["ociVersion"], "1.0.2");
    assert_eq!(v["root"]["path"], "/run/cairn/bundles/x/rootfs");
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["hostname"], "chrony");

    let process = &v["process"];
    assert_eq!(strs(&process["args"]), ["/usr/sbin/chronyd", "-d"]);
    assert_eq!(
        strs(&process["env"]),
        ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=UTC"]
    );
    assert_eq!(process["cwd"], "/");
    assert_eq!(process["terminal"], false);
    assert_eq!(process["noNewPrivileges"], true);
    assert_eq!(process["user"]["uid"], 0);
    assert_eq!(process["user"]["gid"], 0);
    assert_eq!(process["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(process["rlimits"][0]["soft"], 1024);
    assert_eq!(process["rlimits"][0]["hard"], 1024);
    let caps = &process["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(
            strs(&caps[set]),
            ["CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"],
            "{set}"
        );
    }
    // Root keeps its capabilities across execve without ambient ones.
    assert!(strs(&caps["ambient"]).is_empty());
    assert!(strs(&caps["inheritable"]).is_empty());

    let linux = &v["linux"];
    let namespaces: Vec<&str> = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["type"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["pid", "ipc", "uts", "mount", "cgroup"]);
    assert_eq!(linux["cgroupsPath"], "/cairn/x");
    assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(linux["resources"]["cpu"]["period"], 100_000);
    assert_eq!(linux["resources"]["pids"]["limit"], 64);
    assert!(linux["resources"].get("devices").is_none());
    assert!(strs(&linux["maskedPaths"]).contains(&"/proc/kcore"));
    assert!(strs(&linux["readonlyPaths"]).contains(&"/proc/sys"));

    let seccomp = &linux["seccomp"];
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(
        strs(&seccomp["architectures"]),
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    assert_eq!(seccomp["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
    assert_eq!(seccomp["syscalls"][0]["errnoRet"], 1);
    let names = seccomp_names(&v);
    assert!(names.contains(&"reboot"));
    assert!(
        !names.contains(&"clock_settime"),
        "chrony holds CAP_SYS_TIME"
    );
    assert!(names.contains(&"mount"));

    let mounts = v["mounts"].as_array().unwrap();
    let destinations: Vec<&str> = mounts
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        destinations,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/var/lib/chrony",
            "/run"
        ]
    );
    assert_eq!(mounts[7]["type"], "none");
    assert_eq!(mounts[7]["source"], "/var/lib/chrony");
    assert_eq!(
        strs(&mounts[7]["options"]),
        ["rbind", "rw", "nosuid", "nodev"]
    );
    assert_eq!(mounts[8]["type"], "tmpfs");
    assert_eq!(
        strs(&mounts[8]["options"]),
        ["nosuid", "nodev", "mode=755", "size=16777216"]
    );
    assert_eq!(
        strs(&mounts[2]["options"]),
        [
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5"
        ]
    );

    assert!(v.get("annotations").is_none());
    assert!(json.ends_with("}\n"));
}

#[test]
fn plain_non_root_service() {
    let (_, v) = config_json(PLAIN, "plain.toml");
    assert_eq!(v["root"]["readonly"], false);
    assert_eq!(v["process"]["user"]["uid"], 1000);
    assert_eq!(v["process"]["user"]["gid"], 1000);
    // Without limits there is no resources object at all.
    assert!(v["linux"].get("resources").is_none(), "{}", v["linux"]);
    let namespaces: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        namespaces,
        ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    );
    // A non-root process needs its set ambient (and so inheritable) to
    // keep it across execve.
    let caps = &v["process"]["capabilities"];
    let expected: Vec<&str> = crate::service::DEFAULT_CAPS.to_vec();
    for set in [
        "bounding",
        "effective",
        "permitted",
        "ambient",
        "inheritable",
    ] {
        assert_eq!(strs(&caps[set]), expected, "{set}");
    }
    let names = seccomp_names(&v);
    assert!(names.contains(&"reboot"));
    assert!(
        names.contains(&"clock_settime"),
        "no CAP_SYS_TIME, so the clock is off limits"
    );
}

#[test]
fn host_pid_and_unconfined() {
    let text =
        format!("{PLAIN}host_namespaces = [\"pid\", \"network\"]\nseccomp = \"unconfined\"\n");
    let (_, v) = config_json(&text, "plain.toml");
    let namespaces: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["type"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["ipc", "uts", "mount", "cgroup"]);
    assert!(v["linux"].get("seccomp").is_none());
}

#[test]
fn json_is_stable() {
    let spec = parse(CHRONY, "chrony.toml").unwrap();
    let first = to_json(&oci_config(&spec, "rootfs", "/cairn/chrony").unwrap()).unwrap();
    for _ in 0..5 {
        let again = to_json(&oci_config(&spec, "rootfs", "/cairn/chrony").unwrap()).unwrap();
        assert_eq!(first, again);
    }
}

#[test]
fn hand_built_specs_are_checked() {
    let mut spec = parse(PLAIN, "plain.toml").unwrap();
    spec.capabilities.push("CAP_WIZARD".to_owned());
    let e = oci_config(&spec, "rootfs", "/cairn/plain").unwrap_err();
    assert_eq!(
        e.to_string(),
        "plain: capabilities: unknown capability \"CAP_WIZARD\""
    );

    let mut spec = parse(PLAIN, "plain.toml").unwrap();
    spec.limits.memory_max = Some(u64::MAX);
    let e = oci_config(&spec, "rootfs", "/cairn/plain").unwrap_err();
    assert!(
        e.to_string().starts_with("plain: limits.memory_max: "),
        "{e}"
    );
}
