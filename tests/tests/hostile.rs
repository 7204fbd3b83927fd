//! PID 1 against hostile clients and input: 1,000 idle control clients, 200
//! half-sent requests, 20 `logs -f` followers that never read while a service
//! floods its log; afterwards `cairnctl list` answers and PID 1's open fds and
//! RSS are back near where they were. Also: children start with a clean
//! signal mask (debug shell, chrony), chrony stops on SIGTERM at power-off,
//! and a command-line byte that is not UTF-8 costs only its own word.
//!
//! The misbehaving clients are `cairn-hostile` (tests/hostile), built by
//! `make test-fixtures` and carried into the VM on a raw disk of its own.

use cairn_qemu::{field, out_dir, repo::repo_root, Config, Machine};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(180);
const EXIT: Duration = Duration::from_secs(90);
const HOSTILE: &str = "target/x86_64-unknown-linux-gnu/release/cairn-hostile";
/// PID 1's signalfd set: HUP, INT, USR1, USR2, TERM, CHLD, PWR.
const PID1_BLOCKED: u64 = 0x2001_4a03;

fn debug() -> Config {
    Config::from_out(&out_dir(), "initramfs-debug.img").expect("make image ran").with_debug_shell()
}

/// A raw disk: one header sector (`CAIRN-HOSTILE <size>`), then the binary.
fn hostile_disk(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = repo_root().join(HOSTILE);
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e} (make test-fixtures builds it)", bin.display()));
    let mut disk = format!("CAIRN-HOSTILE {}\n", bytes.len()).into_bytes();
    disk.resize(512, 0);
    disk.extend_from_slice(&bytes);
    disk.resize(disk.len().div_ceil(512) * 512, 0);
    let path = dir.join("hostile.raw");
    std::fs::write(&path, disk).unwrap();
    path
}

/// Copies cairn-hostile from its disk to /run in the guest.
fn install_hostile(m: &mut Machine) {
    let out = m
        .sh_ok(
            "for n in $(ls /sys/class/block | grep '^vd[a-z]$'); do \
               if [ \"$(head -c 13 /dev/$n 2>/dev/null)\" = CAIRN-HOSTILE ]; then \
                 size=$(head -n 1 /dev/$n | cut -d' ' -f2); \
                 dd if=/dev/$n bs=512 skip=1 2>/dev/null | head -c $size > /run/cairn-hostile; \
                 chmod 755 /run/cairn-hostile; fi; done; \
             /run/cairn-hostile 2>&1; true",
        )
        .unwrap();
    assert!(out.contains("usage: cairn-hostile"), "cairn-hostile did not come across: {out}");
}

/// PID 1's open fds and resident kB.
fn pid1(m: &mut Machine) -> (u64, u64) {
    let out = m.sh_ok("ls /proc/1/fd | wc -l; grep '^Rss:' /proc/1/smaps_rollup").unwrap();
    let mut nums = out.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
    let fds = nums.next().unwrap_or_else(|| panic!("no fd count in {out}"));
    let rss = nums.next().unwrap_or_else(|| panic!("no Rss in {out}"));
    (fds, rss)
}

/// `cairnctl list` answers, and quickly.
fn list_answers(m: &mut Machine, during: &str) {
    let start = Instant::now();
    let (out, code) = m.sh("cairnctl list").unwrap();
    assert_eq!(code, 0, "cairnctl list failed {during}: {out}");
    assert!(out.contains("chrony"), "cairnctl list {during}: {out}");
    assert!(start.elapsed() < Duration::from_secs(15), "cairnctl list took {:?} {during}", start.elapsed());
}

/// Waits for a background cairn-hostile to print its summary; returns
/// (connected, closed by init).
fn summary(m: &mut Machine, file: &str) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = m.sh_ok(&format!("cat {file}")).unwrap();
        if let Some(line) = out.lines().find(|l| l.starts_with("connected=")) {
            let num = |k| field(line, k).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{k} in {line}"));
            return (num("connected"), num("closed"));
        }
        assert!(Instant::now() < deadline, "cairn-hostile did not finish: {out}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Back near the baseline: the same fds (give or take the shell's probe) and
/// little more memory than before.
fn back_to(m: &mut Machine, base: (u64, u64), after: &str) {
    // Dropped connections close at once; allow the loop a turn or two.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = pid1(m);
        if now.0 <= base.0 + 2 && now.1 <= base.1 + 400 {
            return;
        }
        assert!(Instant::now() < deadline, "after {after}: PID 1 has {} fds and {} kB, baseline {} fds and {} kB", now.0, now.1, base.0, base.1);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs a command in the background, orphaned to PID 1: the debug shell's
/// busybox ash can exit (status 0) when a job of its own ends while it waits
/// for input, now that SIGCHLD reaches it.
fn background(command: &str) -> String {
    format!("(sh -c '{command}' </dev/null &)")
}

fn mask(status: &str, key: &str) -> u64 {
    let line = status.lines().find_map(|l| l.trim().strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("{key} {line}"))
}

const FLOOD: &str = r#"rootfs = "/usr/lib/cairn/rootfs/admin"
command = ["/bin/sh", "-c", 'L=0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz; end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo "flood $i $L $L"; done; done; echo flood done; exec sleep 1000000']
"#;

#[test]
fn hostile_control_clients_never_stall_or_bloat_pid1() {
    let scratch = cairn_qemu::Scratch::new("hostile").unwrap();
    let mut cfg = debug();
    cfg.extra_args.extend(["-drive".into(), format!("file={},format=raw,if=virtio,readonly=on", hostile_disk(&scratch.0).display())]);
    let mut m = Machine::start(&cfg).expect("QEMU starts");
    m.wait_for("cairn-init: ready", BOOT).expect("first boot");
    m.sh_ok(&format!("mkdir -p /var/lib/cairn/services && cat > /var/lib/cairn/services/flood.toml <<'SPEC'\n{FLOOD}SPEC\nsync")).unwrap();
    m.sh_send("cairnctl reboot").unwrap();
    m.wait_for("shutdown: cairnctl reboot; will reboot", EXIT).expect("reboot through cairnctl");
    m.shell_restarted();
    m.wait_for("cairn-init: ready", BOOT).expect("boot with the flood service");

    // Children of PID 1 start with nothing blocked or ignored.
    let shell = m.sh_ok("grep -E '^Sig(Blk|Ign)' /proc/self/status").unwrap();
    assert_eq!(mask(&shell, "SigBlk:"), 0, "a command in the debug shell: {shell}");
    assert_eq!(mask(&shell, "SigIgn:"), 0, "a command in the debug shell: {shell}");
    let chrony = m.sh_ok("for i in $(seq 60); do P=$(pidof chronyd) && break; sleep 1; done; grep -E '^Sig(Blk|Ign)' /proc/$P/status").unwrap();
    assert_eq!(mask(&chrony, "SigBlk:"), 0, "chronyd: {chrony}");
    assert_eq!(mask(&chrony, "SigIgn:") & PID1_BLOCKED, 0, "chronyd ignores a signal PID 1 blocks: {chrony}");

    install_hostile(&mut m);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !m.sh_ok("cairnctl logs flood | tail -n 3").unwrap().contains("flood done") {
        assert!(Instant::now() < deadline, "the boot's flood did not end");
        std::thread::sleep(Duration::from_secs(2));
    }
    let base = pid1(&mut m);

    // 1,000 clients that connect and never send.
    m.sh_ok(&background("ulimit -n 4096; /run/cairn-hostile idle 1000 15 > /tmp/idle.out 2>&1")).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    list_answers(&mut m, "with 1,000 idle clients");
    let held = pid1(&mut m);
    assert!(held.0 <= base.0 + 70, "PID 1 holds {} fds with idle clients (baseline {})", held.0, base.0);
    let (connected, closed) = summary(&mut m, "/tmp/idle.out");
    assert_eq!(connected, 1000, "the listen backlog refused clients");
    assert_eq!(closed, connected, "init left idle clients open");
    list_answers(&mut m, "after the idle clients");
    back_to(&mut m, base, "1,000 idle clients");

    // 200 clients that send 60 kB of a request and no newline.
    m.sh_ok(&background("ulimit -n 4096; /run/cairn-hostile half 200 60000 10 > /tmp/half.out 2>&1")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    list_answers(&mut m, "with 200 half-sent requests");
    let held = pid1(&mut m);
    assert!(held.1 <= base.1 + 1024, "PID 1 grew to {} kB with half-sent requests (baseline {})", held.1, base.1);
    let (connected, closed) = summary(&mut m, "/tmp/half.out");
    assert_eq!((connected, closed), (200, 200), "half-sent requests left open");
    back_to(&mut m, base, "200 half-sent requests");

    // 20 followers that never read while the service floods its log.
    m.sh_ok(&background("/run/cairn-hostile follow 20 flood 25 > /tmp/follow.out 2>&1")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    m.sh_ok("cairnctl restart flood").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    list_answers(&mut m, "with 20 stuck followers of a flood");
    let flowing = m.sh_ok("cairnctl logs flood | tail -n 1").unwrap();
    assert!(flowing.contains("flood "), "the flood's log: {flowing}");
    let (connected, closed) = summary(&mut m, "/tmp/follow.out");
    assert_eq!((connected, closed), (20, 20), "followers that do not read were kept");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !m.sh_ok("cairnctl logs flood | tail -n 3").unwrap().contains("flood done") {
        assert!(Instant::now() < deadline, "the flood did not end");
        std::thread::sleep(Duration::from_secs(2));
    }
    list_answers(&mut m, "after the flood");
    back_to(&mut m, base, "20 stuck followers");

    // Unknown names are refused, following too.
    let (out, code) = m.sh("cairnctl logs -f no-such-service").unwrap();
    assert_ne!(code, 0, "logs -f of an unknown name: {out}");
    assert!(out.contains("no service named no-such-service"), "{out}");

    // A clean power-off: chrony stops on SIGTERM instead of being killed.
    let started = Instant::now();
    m.sh_send("cairnctl poweroff").unwrap();
    m.wait_for("clean shutdown complete, powering off", EXIT).unwrap();
    let took = started.elapsed();
    assert!(m.wait_exit(EXIT).unwrap().success());
    let console = m.console.text();
    // Only this power-off: at the reboot above chrony was seconds old, and a
    // container's first process ignores SIGTERM until it sets its handler.
    let at = console.rfind("shutdown: cairnctl poweroff").unwrap_or_else(|| panic!("no power-off line:\n{console}"));
    let shutdown = &console[at..];
    let stopped = shutdown.lines().find(|l| l.contains("stopped chrony pid=")).unwrap_or_else(|| panic!("no stop line for chrony:\n{shutdown}"));
    // The runtime reports a SIGKILLed container as status 137.
    assert!(!stopped.contains("signal 9") && !stopped.contains("status 137"), "chrony was killed:\n{shutdown}");
    assert!(!shutdown.lines().any(|l| l.contains("chrony pid=") && l.contains("did not stop")), "chrony did not stop on SIGTERM:\n{shutdown}");
    assert!(!shutdown.contains("sending SIGKILL"), "processes were left for SIGKILL at power-off:\n{shutdown}");
    assert!(took < Duration::from_secs(30), "power-off took {took:?}");
}

#[test]
fn a_command_line_byte_that_is_not_utf8_costs_only_its_word() {
    let mut cfg = debug();
    cfg.cmdline_raw = b"vendor.tag=caf\xe9".to_vec();
    let mut m = Machine::start(&cfg).expect("QEMU starts");
    let ready = m.wait_for("cairn-init: ready", BOOT).expect("boot");
    let services: u32 = field(&ready, "services").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(services >= 1, "the slot's services did not start: {ready}");
    let console = m.console.text();
    assert!(console.contains("stage 2"), "no stage 2: the slot was not booted:\n{console}");
    // The console capture decodes bytes its own way: match around the byte.
    assert!(
        console.lines().any(|l| l.contains("WARN kernel command line: \"vendor.tag=caf") && l.ends_with("is not UTF-8; ignored")),
        "no warning naming the word:\n{console}"
    );
    let var = m.sh_ok("grep ' /var ' /proc/mounts").unwrap();
    assert!(var.contains(" ext4 "), "/var is not STATE: {var}");
}
