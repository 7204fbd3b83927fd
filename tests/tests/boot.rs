//! Cairn boots in QEMU and behaves as an operator expects: the ready line,
//! the network, power button, SIGTERM, Ctrl-Alt-Del, bad command line values,
//! early mounts and modules, and the reaper.

use cairn_qemu::{field, out_dir, Config, Machine};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);
const EXIT: Duration = Duration::from_secs(90);

fn plain() -> Config {
    Config::from_out(&out_dir(), "initramfs.img").expect("the image is built (make image)")
}

fn debug() -> Config {
    Config::from_out(&out_dir(), "initramfs-debug.img").expect("the debug image is built (make image)").with_debug_shell()
}

fn boot(cfg: &Config) -> (Machine, String) {
    let mut m = Machine::start(cfg).expect("QEMU starts");
    let ready = m.wait_for("cairn-init: ready", BOOT).expect("the ready line appears");
    (m, ready)
}

/// PID 1's resident memory at the ready line: today's figure (1796-1816 kB
/// in direct boots at the fifth session's end, see the README) and a small
/// margin. The target is 1.5 MiB and is missed: nearly all of it is the
/// static binary's text, fully resident (1276 kB of it, glibc about 750), and
/// this session's coldplug, live config apply and shared DHCP code added
/// about 130 kB. A regression past this fails here, not only in the bench.
const RSS_LIMIT_KB: u64 = 1900;

#[test]
fn ready_line_reports_boot_time_memory_and_services() {
    let start = std::time::Instant::now();
    let mut m = Machine::start(&plain()).expect("QEMU starts");
    let (ready, seen) = m.wait_for_timed("cairn-init: ready", BOOT).expect("the ready line appears");
    assert!(ready.starts_with("cairn-init: ready "), "{ready}");
    let boot_ms: u64 = field(&ready, "boot_ms").and_then(|v| v.parse().ok()).expect("boot_ms");
    let rss_kb: u64 = field(&ready, "rss_kb").and_then(|v| v.parse().ok()).expect("rss_kb");
    let services: u64 = field(&ready, "services").and_then(|v| v.parse().ok()).expect("services");
    // The guest's clock starts after QEMU does, so it cannot have run longer
    // than the host saw QEMU run until the line arrived.
    let host_ms = u64::try_from(seen.duration_since(start).as_millis()).unwrap_or(u64::MAX);
    assert!(boot_ms > 0 && boot_ms <= host_ms, "boot_ms against {host_ms} ms of QEMU on the host: {ready}");
    assert!(rss_kb > 0 && rss_kb <= RSS_LIMIT_KB, "PID 1 must stay within {RSS_LIMIT_KB} kB: {ready}");
    assert_eq!(services, 2, "chrony and containerd run by default: {ready}");
}

/// `boot_ms` is CLOCK_BOOTTIME at the ready line: later than the moment the
/// kernel started PID 1 (its start time in /proc/1/stat, on the same clock),
/// earlier than the guest's uptime read just after.
#[test]
fn boot_ms_lies_between_the_start_of_pid1_and_the_uptime_after_the_ready_line() {
    let (mut m, ready) = boot(&debug());
    let boot_ms: u64 = field(&ready, "boot_ms").and_then(|v| v.parse().ok()).expect("boot_ms");
    let out = m.sh_ok("cut -d' ' -f22 /proc/1/stat; cut -d' ' -f1 /proc/uptime").unwrap();
    let mut words = out.split_whitespace();
    // USER_HZ is 100 on x86-64: start time in hundredths of a second.
    let pid1_ms = words.next().and_then(|v| v.parse::<u64>().ok()).map(|t| t * 10).expect("start time of PID 1");
    let uptime_ms = words.next().and_then(|v| v.parse::<f64>().ok()).map(|s| (s * 1000.0) as u64).expect("uptime");
    assert!(pid1_ms < boot_ms, "PID 1 started at {pid1_ms} ms, after the ready line's boot_ms: {ready}");
    assert!(boot_ms <= uptime_ms, "uptime {uptime_ms} ms just after the ready line: {ready}");
}

#[test]
fn power_button_powers_off_cleanly_and_qemu_exits() {
    let (mut m, _) = boot(&plain());
    m.press_power_button().expect("QMP system_powerdown");
    m.wait_for("shutdown: ACPI power button; will power off", EXIT).expect("init saw the button");
    m.wait_for("clean shutdown complete, powering off", EXIT).expect("clean shutdown logged");
    let st = m.wait_exit(EXIT).expect("QEMU exits by itself");
    assert!(st.success(), "QEMU exit status {st}");
    let console = m.console.text();
    assert!(!console.contains("Kernel panic"), "{console}");
}

#[test]
fn ctrl_alt_del_reboots_to_a_second_ready_line() {
    let (mut m, _) = boot(&plain());
    m.send_ctrl_alt_del().expect("QMP send-key");
    m.wait_for("shutdown: Ctrl-Alt-Del; will reboot", EXIT).expect("init saw Ctrl-Alt-Del as SIGINT");
    m.wait_for("clean shutdown complete, rebooting", EXIT).expect("clean reboot logged");
    m.wait_for("cairn-init: ready", BOOT).expect("a second ready line after the reboot");
    m.press_power_button().expect("power off at the end");
    m.wait_exit(EXIT).expect("QEMU exits");
}

#[test]
fn dhcp_gives_address_default_route_resolv_conf_and_hostname() {
    let (mut m, ready) = boot(&debug());
    assert_eq!(field(&ready, "ip").as_deref(), Some("10.0.2.15/24"), "{ready}");
    let addr = m.sh_ok("ip -4 addr show dev eth0").unwrap();
    assert!(addr.contains("inet 10.0.2.15/24"), "{addr}");
    assert!(addr.contains("UP"), "{addr}");
    let route = m.sh_ok("ip -4 route show").unwrap();
    assert!(route.contains("default via 10.0.2.2 dev eth0"), "{route}");
    let resolv = m.sh_ok("cat /etc/resolv.conf").unwrap();
    assert!(resolv.contains("nameserver 10.0.2.3"), "{resolv}");
    let lo = m.sh_ok("ip -4 addr show dev lo").unwrap();
    assert!(lo.contains("inet 127.0.0.1/8"), "{lo}");
    // QEMU's default MAC is 52:54:00:12:34:56.
    let host = m.sh_ok("hostname; cat /etc/hostname").unwrap();
    assert_eq!(host.split_whitespace().collect::<Vec<_>>(), ["cairn-123456", "cairn-123456"], "{host}");
}

#[test]
fn static_address_and_hostname_from_the_command_line() {
    let cfg = debug().append("cairn.ip=10.0.2.77/24 cairn.gw=10.0.2.2 cairn.dns=10.0.2.3,9.9.9.9 cairn.hostname=node-7");
    let (mut m, ready) = boot(&cfg);
    assert_eq!(field(&ready, "ip").as_deref(), Some("10.0.2.77/24"), "{ready}");
    let addr = m.sh_ok("ip -4 addr show dev eth0").unwrap();
    assert!(addr.contains("inet 10.0.2.77/24"), "{addr}");
    let route = m.sh_ok("ip -4 route show").unwrap();
    assert!(route.contains("default via 10.0.2.2 dev eth0"), "{route}");
    let resolv = m.sh_ok("cat /etc/resolv.conf").unwrap();
    assert!(resolv.contains("nameserver 10.0.2.3\nnameserver 9.9.9.9"), "{resolv}");
    assert_eq!(m.sh_ok("hostname").unwrap().trim(), "node-7");
}

#[test]
fn bad_command_line_values_are_named_and_boot_goes_on() {
    let cfg = plain().append("cairn.net_timeout=soon cairn.ip=10.0.2.300/24 cairn.colour=blue");
    let (m, ready) = boot(&cfg);
    let console = m.console.text();
    assert!(
        console.contains("WARN kernel command line: cairn.net_timeout=soon: expected a whole number of seconds from 0 to 3600; using 10"),
        "{console}"
    );
    assert!(console.contains("WARN kernel command line: cairn.ip=10.0.2.300/24: expected dhcp, off, netd or ADDRESS/PREFIX"), "{console}");
    assert!(console.contains("WARN kernel command line: unknown key cairn.colour ignored"), "{console}");
    // The bad address fell back to DHCP.
    assert_eq!(field(&ready, "ip").as_deref(), Some("10.0.2.15/24"), "{ready}");
}

#[test]
fn sigterm_to_pid1_powers_off() {
    let (mut m, _) = boot(&debug());
    m.sh_send("kill -TERM 1").unwrap();
    m.wait_for("shutdown: SIGTERM; will power off", EXIT).expect("init saw SIGTERM");
    m.wait_for("stopping debug-shell", EXIT).expect("supervised processes are stopped first");
    m.wait_for("clean shutdown complete, powering off", EXIT).expect("clean shutdown");
    assert!(m.wait_exit(EXIT).expect("QEMU exits by itself").success());
}

#[test]
fn early_mounts_and_boot_modules_are_in_place() {
    let (mut m, _) = boot(&debug());
    let mounts = m.sh_ok("cat /proc/mounts").unwrap();
    for (fs, dir) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("devpts", "/dev/pts"),
        ("tmpfs", "/dev/shm"),
        ("tmpfs", "/run"),
        ("cgroup2", "/sys/fs/cgroup"),
    ] {
        assert!(mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(dir) && l.contains(fs)), "{fs} on {dir}:\n{mounts}");
    }
    let modules = m.sh_ok("cat /proc/modules").unwrap();
    for module in ["virtio_net", "virtio_pci", "virtio_blk", "button", "virtio_rng", "net_failover"] {
        assert!(modules.lines().any(|l| l.starts_with(&format!("{module} "))), "{module} not loaded:\n{modules}");
    }
    let ctrl = m.sh_ok("cat /sys/fs/cgroup/cgroup.controllers").unwrap();
    for c in ["cpu", "memory", "pids"] {
        assert!(ctrl.split_whitespace().any(|x| x == c), "cgroup v2 controller {c}: {ctrl}");
    }
}

#[test]
fn supervised_exit_codes_are_kept_and_orphans_are_reaped() {
    let (mut m, _) = boot(&debug());
    // Orphans: the subshell exits at once, its sleeps are reparented to PID 1.
    m.sh_ok("sh -c 'sleep 0.2 & sleep 0.3 & exit 0'").unwrap();
    m.sh_ok("sleep 1").unwrap();
    // A process that ends between the glob and grep is no zombie: not an error.
    let zombies = m.sh_ok("grep -l 'zombie' /proc/[0-9]*/status 2>/dev/null || true").unwrap();
    assert!(zombies.trim().is_empty(), "zombies left: {zombies}");
    // The supervised shell's exact exit status reaches init, which restarts it.
    m.sh_send("exit 7").unwrap();
    let line = m.wait_for("debug-shell pid=", EXIT).expect("init logs the exit");
    assert!(line.contains("failed with status 7"), "{line}");
    assert!(line.contains("restart 1 in"), "{line}");
    m.wait_for("started debug-shell", EXIT).expect("restarted after back-off");
    assert_eq!(m.sh_ok("echo back").unwrap().trim(), "back", "the restarted shell answers");
}
