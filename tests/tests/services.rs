//! System services as OCI containers under cairn-init: the shipped chrony,
//! restarts with back-off, crash loops, memory and pids limits, dependency
//! order, shutdown order, logs through cairnctl, and bad spec files.
//!
//! Test services are written to STATE (/var/lib/cairn/services) through the
//! debug shell and use the admin container's busybox root; a reboot loads them.

use cairn_qemu::{out_dir, Config, Machine};
use cairn_tests::wait_sh;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);
const EXIT: Duration = Duration::from_secs(90);
const BUSYBOX_ROOT: &str = "/usr/lib/cairn/rootfs/admin";

fn debug() -> Config {
    Config::from_out(&out_dir(), "initramfs-debug.img").expect("make image ran").with_debug_shell()
}

/// Boots, installs the given specs (name, TOML), reboots into them.
fn boot_with(specs: &[(&str, String)]) -> Machine {
    boot_config_with(&debug(), specs)
}

fn boot_config_with(config: &Config, specs: &[(&str, String)]) -> Machine {
    let mut m = Machine::start(config).expect("QEMU starts");
    m.wait_for("cairn-init: ready", BOOT).expect("first boot");
    let mut script = String::from("mkdir -p /var/lib/cairn/services\n");
    for (name, toml) in specs {
        script.push_str(&format!("cat > /var/lib/cairn/services/{name}.toml <<'SPEC'\n{toml}\nSPEC\n"));
    }
    script.push_str("sync");
    m.sh_ok(&script).expect("specs written");
    m.sh_send("cairnctl reboot").unwrap();
    m.wait_for("shutdown: cairnctl reboot; will reboot", EXIT).expect("reboot through cairnctl");
    m.shell_restarted();
    m
}

fn spec(command: &str, extra: &str) -> String {
    format!("rootfs = \"{BUSYBOX_ROOT}\"\ncommand = [\"/bin/sh\", \"-c\", \"{command}\"]\n{extra}")
}

/// Polls a service's log until it holds `needle` (services write after start).
fn wait_log(m: &mut Machine, name: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let logs = m.sh_ok(&format!("cairnctl logs {name}")).unwrap();
        if logs.contains(needle) || std::time::Instant::now() > deadline {
            return logs;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn list_row(m: &mut Machine, name: &str) -> Vec<String> {
    let list = m.sh_ok("cairnctl list").unwrap();
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in cairnctl list:\n{list}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn chrony_ships_running_with_only_cap_sys_time() {
    let mut m = Machine::start(&debug()).unwrap();
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=2"), "chrony and containerd: {ready}");
    let row = list_row(&mut m, "chrony");
    assert_eq!(row[1], "running", "{row:?}");
    let pid = wait_sh(&mut m, "pidof chronyd", Duration::from_secs(60)).trim().to_string();
    let caps = m.sh_ok(&format!("grep CapEff /proc/{pid}/status")).unwrap();
    assert!(caps.trim().ends_with("0000000002000000"), "only CAP_SYS_TIME (bit 25): {caps}");
    let cg = m.sh_ok(&format!("cat /proc/{pid}/cgroup")).unwrap();
    assert_eq!(cg.trim(), "0::/cairn/chrony", "own cgroup");
    let mem = m.sh_ok("cat /sys/fs/cgroup/cairn/chrony/memory.max").unwrap();
    assert_eq!(mem.trim(), (32u64 << 20).to_string());
    let logs = wait_log(&mut m, "chrony", "chronyd version 4.3");
    assert!(logs.contains("chronyd version 4.3"), "chrony's stderr is in its log:\n{logs}");
    assert!(m.sh_ok("ls /var/log/cairn").unwrap().contains("chrony.log"));
    // Killed, it comes back with back-off, and the restart is counted.
    m.sh_ok(&format!("kill -9 {pid}")).unwrap();
    let line = m.wait_for("WARN chrony pid=", EXIT).unwrap();
    assert!(line.contains("restart 1 in 0.5s"), "{line}");
    m.wait_for("started chrony", EXIT).unwrap();
    let row = list_row(&mut m, "chrony");
    assert_eq!((row[1].as_str(), row[3].as_str()), ("running", "1"), "{row:?}");
    let kernel = m.sh_ok("cairnctl logs kernel").unwrap();
    assert!(kernel.contains("cairn-init"), "kernel messages are kept too");
    // restart: a new process, counted.
    m.sh_ok("cairnctl restart chrony").unwrap();
    let new_pid = wait_sh(&mut m, &format!("P=$(pidof chronyd) && [ \"$P\" != {pid} ] && echo $P"), Duration::from_secs(60));
    assert_ne!(new_pid.trim(), pid);
    assert_eq!(list_row(&mut m, "chrony")[3], "2", "the kill and the restart");
    // logs -f: what is there, then what comes.
    let follow = m.sh_ok("(cairnctl logs kernel -f > /tmp/f &); sleep 1; cairnctl restart chrony >/dev/null; sleep 2; cat /tmp/f").unwrap();
    assert!(follow.contains("stopping chrony"), "following shows new lines:\n{follow}");
    // poweroff through cairnctl ends the machine cleanly.
    m.sh_send("cairnctl poweroff").unwrap();
    m.wait_for("shutdown: cairnctl poweroff; will power off", EXIT).unwrap();
    m.wait_for("clean shutdown complete, powering off", EXIT).unwrap();
    assert!(m.wait_exit(EXIT).unwrap().success());
}

#[test]
fn a_crash_loop_backs_off_and_leaves_the_rest_alone() {
    let mut m = boot_with(&[
        ("crashy", spec("echo crashing; exit 3", "")),
        ("steady", spec("exec sleep 100000", "")),
    ]);
    // A crash loop never becomes ready, so wait for the loop itself.
    m.wait_for("WARN crashy pid=", BOOT).unwrap();
    let l1 = m.wait_for("WARN crashy pid=", EXIT).unwrap();
    let l2 = m.wait_for("WARN crashy pid=", EXIT).unwrap();
    let l3 = m.wait_for("WARN crashy pid=", EXIT).unwrap();
    assert!(l1.contains("failed with status 3") && l1.contains("in 1.0s"), "{l1}");
    assert!(l2.contains("in 2.0s"), "{l2}");
    assert!(l3.contains("in 4.0s"), "{l3}");
    let steady = list_row(&mut m, "steady");
    assert_eq!((steady[1].as_str(), steady[3].as_str()), ("running", "0"), "{steady:?}");
    let chrony = list_row(&mut m, "chrony");
    assert_eq!(chrony[3], "0", "{chrony:?}");
    let logs = m.sh_ok("cairnctl logs crashy").unwrap();
    assert!(logs.matches("crashing").count() >= 3, "{logs}");
    let (out, code) = m.sh("cairnctl logs nosuch").unwrap();
    assert_ne!(code, 0);
    assert!(out.contains("no service named nosuch"), "{out}");
}

#[test]
fn memory_and_pids_limits_hold_inside_the_service_cgroup() {
    let mut m = boot_with(&[
        ("hog", spec("exec dd if=/dev/zero of=/dev/null bs=96M count=1", "[limits]\nmemory_max = \"32M\"\n[restart]\npolicy = \"never\"")),
        ("bomb", spec("while true; do sleep 1000 & done", "[limits]\npids_max = 20\n[restart]\npolicy = \"never\"")),
    ]);
    let line = m.wait_for("WARN hog pid=", BOOT).expect("the hog ends");
    assert!(line.contains("failed with"), "{line}");
    let kernel = m.sh_ok("cairnctl logs kernel").unwrap();
    assert!(kernel.contains("oom-kill") && kernel.contains("/cairn/hog"), "OOM kill inside the hog's cgroup:\n{kernel}");
    // busybox's shell gives up at the first refused fork, which ends the bomb.
    // It may have ended before the hog; look through the whole console.
    let deadline = std::time::Instant::now() + BOOT;
    let line = loop {
        if let Some(l) = m.console.lines().into_iter().find(|l| l.contains("WARN bomb pid=")) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "the fork bomb never ended");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(line.contains("failed with"), "{line}");
    let logs = wait_log(&mut m, "bomb", "can't fork");
    assert!(logs.contains("can't fork"), "pids.max refused the fork:\n{logs}");
    assert!(!m.sh_ok("ls /sys/fs/cgroup/cairn").unwrap().contains("bomb"), "its cgroup is gone with it");
    // Init and the others are untouched.
    assert_eq!(list_row(&mut m, "chrony")[1], "running");
    assert_eq!(m.sh_ok("echo alive").unwrap().trim(), "alive");
}

#[test]
fn depends_on_healthy_orders_starts_and_shutdown_goes_in_reverse() {
    let mut m = boot_with(&[
        ("db", spec(
            "sleep 2; touch /tmp/ready; exec sleep 100000",
            "[[mounts]]\ntype = \"tmpfs\"\ndestination = \"/tmp\"\n[health]\nexec = [\"/bin/test\", \"-f\", \"/tmp/ready\"]\ninterval_ms = 500",
        )),
        ("app", spec("trap '' TERM; exec sleep 100000", "[depends_on]\ndb = \"healthy\"\n[stop]\ntimeout_s = 2")),
    ]);
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=4"), "db, app, chrony, containerd: {ready}");
    let console = m.console.text();
    let healthy = console.rfind("db is healthy").expect("db became healthy");
    let app = console.rfind("started app").expect("app started");
    assert!(healthy < app, "app must start after db is healthy:\n{console}");
    assert_eq!(list_row(&mut m, "db")[5], "healthy");

    m.press_power_button().unwrap();
    m.wait_for("clean shutdown complete, powering off", EXIT).unwrap();
    let console = m.console.text();
    let tail = &console[console.rfind("shutdown: ACPI power button").unwrap()..];
    // A line that is missing fails here: it is no later than the others.
    let order: Vec<usize> = ["stopping containerd", "stopping app", "stopping db", "stopping chrony"]
        .iter()
        .map(|s| tail.find(s).unwrap_or_else(|| panic!("no `{s}` line at shutdown:\n{tail}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "reverse order of start:\n{tail}");
    assert!(tail.contains("app pid=") && tail.contains("did not stop within 2s; killing it"), "{tail}");
}

#[test]
fn a_bad_spec_is_named_with_file_and_key_and_the_rest_boots() {
    let mut m = boot_with(&[("bad", spec("exec sleep 1000", "comand = \"typo\"")), ("good", spec("echo hello from good; exec sleep 100000", ""))]);
    let err = m.wait_for("service spec rejected", BOOT).unwrap();
    assert!(err.contains("/var/lib/cairn/services/bad.toml") && err.contains("comand"), "{err}");
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=3"), "chrony, containerd and good: {ready}");
    let logs = wait_log(&mut m, "good", "hello from good");
    assert!(logs.contains("hello from good"), "{logs}");
    let file = m.sh_ok("cat /var/log/cairn/good.log").unwrap();
    assert!(file.contains("hello from good"), "{file}");
}

#[test]
fn the_admin_container_is_off_by_default_and_on_by_configuration() {
    let mut m = Machine::start(&debug().append("cairn.enable=admin")).unwrap();
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=3"), "admin, chrony, containerd: {ready}");
    let ps = m.sh_ok("cairnctl exec admin -- ps").unwrap();
    assert!(ps.contains("chronyd"), "admin sees the host's processes:\n{ps}");
    drop(m);
    let mut m = Machine::start(&debug()).unwrap();
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    let list = m.sh_ok("cairnctl list").unwrap();
    assert!(!list.contains("admin"), "{list}");
}

/// An OCI image archive made in the guest from the admin container's busybox
/// root: one layer, a config whose command prints a greeting.
const MAKE_ARCHIVE: &str = r#"true
rm -rf /tmp/img && mkdir -p /tmp/img/blobs/sha256 && cd /tmp/img
tar -C /usr/lib/cairn/rootfs/admin -cf layer.tar .
L=$(sha256sum layer.tar | cut -d' ' -f1); LS=$(stat -c %s layer.tar); mv layer.tar blobs/sha256/$L
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/echo","hello from a workload"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' $L > c.json
C=$(sha256sum c.json | cut -d' ' -f1); CS=$(stat -c %s c.json); mv c.json blobs/sha256/$C
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' $C $CS $L $LS > m.json
M=$(sha256sum m.json | cut -d' ' -f1); MS=$(stat -c %s m.json); mv m.json blobs/sha256/$M
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' $M $MS > index.json
printf '{"imageLayoutVersion":"1.0.0"}' > oci-layout
tar -cf /tmp/hello.tar oci-layout index.json blobs
cd /"#;

#[test]
fn a_workload_runs_through_containerd_from_a_local_image_archive() {
    let mut m = Machine::start(&debug()).unwrap();
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=2"), "chrony and containerd: {ready}");
    assert_eq!(list_row(&mut m, "containerd")[1], "running");
    wait_sh(&mut m, "ctr version", Duration::from_secs(60));
    m.sh_ok(MAKE_ARCHIVE).expect("the archive is built");
    let import = m.sh_ok("ctr -n test image import --base-name cairn.test/hello /tmp/hello.tar 2>&1").unwrap();
    assert!(import.contains("cairn.test/hello:1"), "{import}");
    let out = m.sh_ok("ctr -n test run --rm --runc-binary /usr/bin/crun cairn.test/hello:1 hello1 </dev/null 2>&1").unwrap();
    assert!(out.contains("hello from a workload"), "{out}");
    let logs = wait_log(&mut m, "containerd", "containerd successfully booted");
    assert!(logs.contains("containerd successfully booted"), "containerd's log is kept:\n{logs}");
}

#[test]
fn runc_runs_the_same_services_as_crun() {
    let mut m = Machine::start(&debug().append("cairn.runtime=runc cairn.enable=admin")).unwrap();
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=3"), "admin, chrony, containerd: {ready}");
    let pid = wait_sh(&mut m, "pidof chronyd", Duration::from_secs(60)).trim().to_string();
    let caps = m.sh_ok(&format!("grep CapEff /proc/{pid}/status")).unwrap();
    assert!(caps.trim().ends_with("0000000002000000"), "only CAP_SYS_TIME under runc too: {caps}");
    let procs = m.sh_ok("ps -o args | grep -c '^/usr/sbin/runc --root /run/runc run'").unwrap();
    assert_eq!(procs.trim(), "2", "both services under runc");
    let list = wait_sh(&mut m, "cairnctl exec admin -- ps | grep chronyd", Duration::from_secs(60));
    assert!(list.contains("chronyd"), "exec and health checks go through runc: {list}");
    assert_eq!(list_row(&mut m, "admin")[5], "healthy");
    m.press_power_button().unwrap();
    m.wait_for("stopping admin", EXIT).unwrap();
    m.wait_for("stopped admin", EXIT).expect("runc kill stops it");
    m.wait_for("clean shutdown complete, powering off", EXIT).unwrap();
}

/// Polls `cairnctl list` until `name`'s row satisfies `done`; returns it.
fn wait_row(m: &mut Machine, name: &str, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let row = list_row(m, name);
        if done(&row) {
            return row;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never got there: {row:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn boot_id(m: &mut Machine) -> String {
    m.sh_ok("cat /proc/sys/kernel/random/boot_id").unwrap().trim().to_string()
}

/// Ignores SIGTERM (and so does the `sleep` it execs), with a stop timeout.
fn stubborn(timeout_s: u32) -> String {
    spec("trap '' TERM; exec sleep 100000", &format!("[stop]\ntimeout_s = {timeout_s}"))
}

/// H4: `cairnctl restart` answers at once, and a service that exits while
/// another is stopping is restarted by its own policy.
#[test]
fn a_service_that_exits_during_a_restart_is_restarted_too() {
    let mut m = boot_with(&[("slow", stubborn(10)), ("victim", spec("exec sleep 100000", ""))]);
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    let slow_pid = list_row(&mut m, "slow")[2].clone();
    let victim_pid = list_row(&mut m, "victim")[2].clone();
    let asked = std::time::Instant::now();
    m.sh_ok("cairnctl restart slow").unwrap();
    assert!(asked.elapsed() < Duration::from_secs(8), "restart answered only after {:?}", asked.elapsed());
    m.sh_ok(&format!("kill -9 {victim_pid}")).unwrap();
    assert_eq!(list_row(&mut m, "slow")[1], "stopping", "list answers while slow is stopping");
    let victim = wait_row(&mut m, "victim", EXIT, |r| r[1] == "running" && r[2] != victim_pid);
    assert_eq!(victim[3], "1", "victim restarted once by its policy: {victim:?}");
    let slow = wait_row(&mut m, "slow", EXIT, |r| r[1] == "running" && r[2] != slow_pid);
    assert_eq!(slow[3], "1", "{slow:?}");
}

/// H5: a stop that takes its whole 30 s timeout under a 5 s watchdog never
/// resets the machine; the service is killed at its deadline and restarted.
#[test]
fn restarting_a_service_that_ignores_sigterm_never_trips_the_watchdog() {
    let config = debug().append("cairn.watchdog=5");
    let mut m = boot_config_with(&config, &[("slow", stubborn(30))]);
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    let boot = boot_id(&mut m);
    let pid = list_row(&mut m, "slow")[2].clone();
    m.sh_ok("cairnctl restart slow").unwrap();
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(list_row(&mut m, "slow")[1], "stopping", "still within its stop timeout");
    let row = wait_row(&mut m, "slow", EXIT, |r| r[1] == "running" && r[2] != pid);
    assert_eq!(row[3], "1", "{row:?}");
    assert_eq!(boot_id(&mut m), boot, "the same boot: the watchdog never fired");
    let console = m.console.text();
    assert!(console.contains("slow pid=") && console.contains("did not stop within 30s; killing it"), "{console}");
}

/// A server on the host's network with an HTTP check; failures in the first
/// 10 s (while it starts listening) do not count.
fn http_service(command: &str, port: u16, timeout_ms: u32) -> String {
    let health = format!(
        "[health]\nhttp = \"http://127.0.0.1:{port}/\"\ninterval_ms = 500\ntimeout_ms = {timeout_ms}\nretries = 1\nstart_period_ms = 10000"
    );
    spec(command, &format!("host_namespaces = [\"network\"]\n[[mounts]]\ntype = \"tmpfs\"\ndestination = \"/tmp\"\n{health}"))
}

/// M2: one service's hung HTTP server never makes another unhealthy; L7: an
/// exec check that runs late is killed inside its container, so late checks
/// do not pile up there.
#[test]
fn a_hung_probe_or_exec_check_harms_no_other_service() {
    let mut m = boot_with(&[
        ("good", http_service("mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec /bin/busybox httpd -f -p 127.0.0.1:8081 -h /tmp/www", 8081, 2000)),
        // Accepts every connection and never answers.
        ("hung", http_service("exec /bin/busybox nc -ll -p 8082 -e /bin/sleep 3600", 8082, 4000)),
        ("latecheck", spec("exec sleep 100000", "[health]\nexec = [\"/bin/sleep\", \"1001\"]\ninterval_ms = 500\ntimeout_ms = 500\nretries = 3")),
    ]);
    wait_row(&mut m, "good", BOOT, |r| r[5] == "healthy");
    wait_row(&mut m, "hung", BOOT, |r| r[5] == "unhealthy");
    for _ in 0..10 {
        assert_eq!(list_row(&mut m, "good")[5], "healthy", "good stays healthy beside the hung one");
        std::thread::sleep(Duration::from_secs(2));
    }
    let console = m.console.text();
    assert!(!console.contains("good is unhealthy"), "{console}");
    // Every probe that reached the hung server left a `sleep` holding its
    // connection: the probes did hang while good was checked.
    let held = m.sh_ok("ps -o args | grep -c '^/bin/sleep 3600' || true").unwrap();
    assert!(held.trim().parse::<u32>().unwrap() >= 2, "hung probes held by the server: {held}");
    // latecheck's checks all ran late (it is unhealthy after 3), and each was
    // killed in the container, not only its `crun exec`.
    wait_row(&mut m, "latecheck", EXIT, |r| r[5] == "unhealthy");
    let late = m.sh_ok("ps -o args | grep -c '^/bin/sleep 1001' || true").unwrap();
    let late: u32 = late.trim().parse().unwrap();
    assert!(late <= 1, "{late} late exec checks still running in latecheck's container");
    assert_eq!(list_row(&mut m, "latecheck")[1], "running");
}

/// M4: a spec with a huge stop timeout on STATE is refused, naming its file
/// and key; every other service still starts.
#[test]
fn a_huge_timeout_drops_that_spec_alone() {
    let mut m = boot_with(&[
        ("huge", spec("exec sleep 100000", "[stop]\ntimeout_s = 99999999999999999")),
        ("fine", spec("exec sleep 100000", "")),
    ]);
    let err = m.wait_for("service spec rejected", BOOT).unwrap();
    assert!(err.contains("/var/lib/cairn/services/huge.toml") && err.contains("stop.timeout_s"), "{err}");
    let ready = m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(ready.contains("services=3"), "chrony, containerd and fine: {ready}");
    assert_eq!(list_row(&mut m, "fine")[1], "running");
    assert_eq!(list_row(&mut m, "chrony")[1], "running");
    let list = m.sh_ok("cairnctl list").unwrap();
    assert!(!list.contains("huge"), "{list}");
}
