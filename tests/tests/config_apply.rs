//! Changing the machine config of a running machine: `cairnctl config apply`
//! renames it and adds a service without a reboot, a bad config is refused
//! with every mistake named and changes nothing, a `try` goes back by itself
//! unless confirmed (across a reboot too), `rollback` returns to the
//! previous generation, and a power cut during an apply leaves generation N
//! or N+1, whole.

use cairn_qemu::{field, make_overlay, out_dir, Machine, Scratch};
use cairn_tests::{boot, fw_cfg, machine, power_off, put_file, service_state, BOOT};
use std::time::{Duration, Instant};

const FIRST: &str = "version = 1\nhostname = \"first\"\n";

/// Hostname `second`, the `hello` service added, and a module (which needs a reboot).
const SECOND: &str = r#"version = 1
hostname = "second"
modules = ["dummy"]

[services.add.hello]
rootfs = "/usr/lib/cairn/rootfs/admin"
command = ["/bin/sh", "-c", "echo hello from the config; exec sleep 2147483647"]
[services.add.hello.stop]
signal = "SIGKILL"
timeout_s = 2
"#;

/// SECOND without `hello`.
const THIRD: &str = "version = 1\nhostname = \"second\"\nmodules = [\"dummy\"]\n";

/// Three mistakes: a misspelt key, a value out of range, a word not allowed.
const BAD: &str = "version = 1\nhostnme = \"bad\"\n[logs]\nmax_file_kb = 3\n[update]\nchannel = \"stabel\"\n";

/// Which disk a machine boots: the production one, or the debug one whose
/// cairn-config honours `cairn.config.pause=` (fault injection).
#[derive(Clone, Copy)]
enum Image {
    Production,
    Test,
}

/// `machine` on an overlay of `image`'s disk; the debug disk's root has its
/// own verity hash, so its command line is the one `make image` wrote for it.
fn machine_on(image: Image, disk: &std::path::Path, extra: &[String]) -> cairn_qemu::Config {
    let mut cfg = machine(disk, extra);
    if let Image::Test = image {
        let path = cairn_tests::repo().join("build/cmdline-debug");
        cfg.cmdline = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{} (from `make image`): {e}", path.display())).trim().to_string();
    }
    cfg
}

/// A machine booted with FIRST from fw_cfg (generation 1).
fn first_boot(name: &str, image: Image, cmdline: &str) -> (Scratch, std::path::PathBuf, Vec<String>, Machine) {
    let dir = Scratch::new(name).unwrap();
    let disk = dir.path("disk.qcow2");
    let base = match image {
        Image::Production => "cairn.qcow2",
        Image::Test => "cairn-debug.qcow2",
    };
    make_overlay(&out_dir().join(base), &disk).unwrap();
    let doc = dir.path("first.toml");
    std::fs::write(&doc, FIRST).unwrap();
    let extra = fw_cfg(&doc);
    let (m, ready) = boot(&machine_on(image, &disk, &extra).append(cmdline));
    assert_eq!(field(&ready, "config").as_deref(), Some("fw_cfg:1"), "{ready}");
    (dir, disk, extra, m)
}

fn hostname(m: &mut Machine) -> String {
    m.sh_ok("hostname").unwrap().trim().to_string()
}

fn status_json(m: &mut Machine) -> serde_json::Value {
    let out = m.sh_ok("cairnctl config status --output json").unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("status JSON: {e}: {out}"))
}

/// Polls `what` on the guest until it holds; the bound only keeps a broken
/// machine from hanging the test.
fn until(m: &mut Machine, what: &str, bound: Duration, mut ok: impl FnMut(&mut Machine) -> bool) {
    let start = Instant::now();
    while !ok(m) {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}\n{}", m.console.text());
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn apply_refuse_try_confirm_and_rollback_on_a_running_machine() {
    let (_dir, _disk, _extra, mut m) = first_boot("config-apply", Image::Production, "");
    let boot_id = m.sh_ok("cat /proc/sys/kernel/random/boot_id").unwrap();
    put_file(&mut m, "/run/second.toml", SECOND);
    put_file(&mut m, "/run/third.toml", THIRD);
    put_file(&mut m, "/run/bad.toml", BAD);

    // apply: renamed and a service added, live.
    let out = m.sh_ok("cairnctl config apply /run/second.toml 2>&1").unwrap();
    for want in ["generation 2 in force (was 1)", "started: hello", "needs a reboot: modules"] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    assert_eq!(hostname(&mut m), "second");
    until(&mut m, "hello runs", BOOT, |m| service_state(m, "hello") == "running");
    assert_eq!(m.sh_ok("cat /proc/sys/kernel/random/boot_id").unwrap(), boot_id, "no reboot");
    let st = status_json(&mut m);
    assert_eq!((st["generation"].as_u64(), st["source"].as_str()), (Some(2), Some("apply")), "{st}");
    assert_eq!(st["needs_reboot"], serde_json::json!(["modules"]), "{st}");

    // Three mistakes: all named with file, line and key; nothing changes.
    let (out, code) = m.sh("cairnctl config apply /run/bad.toml 2>&1").unwrap();
    assert_eq!(code, 1, "{out}");
    for want in [
        "/run/bad.toml:2:1: hostnme: unknown key (did you mean \"hostname\"?)",
        "/run/bad.toml:4:15: logs.max_file_kb: 3 is out of range",
        "/run/bad.toml:6:11: update.channel: \"stabel\" is not allowed",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    assert_eq!(hostname(&mut m), "second");
    assert_eq!(service_state(&mut m, "hello"), "running");
    let st = status_json(&mut m);
    assert_eq!(st["generation"].as_u64(), Some(2), "{st}");
    assert_eq!(st["last_refused"]["source"], "/run/bad.toml", "{st}");
    assert_eq!(st["last_refused"]["problems"].as_array().map(Vec::len), Some(3), "{st}");
    assert_eq!(st["generations"], serde_json::json!([1, 2]), "a refused config is no generation: {st}");
    let text = m.sh_ok("cairnctl config status").unwrap();
    assert!(text.contains("last refused:  /run/bad.toml") && text.contains("generation:    2 (from apply)"), "{text}");

    // A try that is not confirmed goes back by itself.
    let out = m.sh_ok("cairnctl config try /run/third.toml --timeout 30s 2>&1").unwrap();
    assert!(out.contains("generation 3 in force (was 2)") && out.contains("stopped: hello"), "{out}");
    let st = status_json(&mut m);
    assert_eq!((st["generation"].as_u64(), st["try"]["previous"].as_u64()), (Some(3), Some(2)), "{st}");
    until(&mut m, "hello is stopped", BOOT, |m| service_state(m, "hello") == "disabled");
    m.wait_for("was not confirmed in time", BOOT).expect("the try runs out");
    until(&mut m, "back on generation 2 with hello", BOOT, |m| {
        status_json(m)["generation"].as_u64() == Some(2) && service_state(m, "hello") == "running"
    });
    assert!(status_json(&mut m)["try"].is_null());

    // A confirmed try stays past its deadline.
    m.sh_ok("cairnctl config try /run/third.toml --timeout 15s").unwrap();
    let out = m.sh_ok("cairnctl config confirm").unwrap();
    assert!(out.contains("generation 4 confirmed"), "{out}");
    std::thread::sleep(Duration::from_secs(20));
    let st = status_json(&mut m);
    assert_eq!((st["generation"].as_u64(), st["try"].is_null()), (Some(4), true), "{st}");
    assert_eq!(service_state(&mut m, "hello"), "disabled");

    // rollback: back to what was in force before 4, which is 2 (3 was a try that went back).
    let out = m.sh_ok("cairnctl config rollback").unwrap();
    assert!(out.contains("generation 2 in force (was 4)"), "{out}");
    until(&mut m, "hello runs again", BOOT, |m| service_state(m, "hello") == "running");
    let st = status_json(&mut m);
    assert_eq!((st["generation"].as_u64(), st["generations"].clone()), (Some(2), serde_json::json!([1, 2, 3, 4])), "{st}");
    assert_eq!(m.sh_ok("cat /proc/sys/kernel/random/boot_id").unwrap(), boot_id, "all of it without a reboot");
    power_off(m);
}

#[test]
fn a_try_survives_one_reboot_and_then_goes_back_by_itself() {
    let (_dir, _disk, _extra, mut m) = first_boot("config-try-reboot", Image::Production, "");
    put_file(&mut m, "/run/second.toml", SECOND);
    // Long enough for the reboot to reach its checks before the deadline.
    m.sh_ok("cairnctl config try /run/second.toml --timeout 120s").unwrap();
    assert_eq!(hostname(&mut m), "second");
    m.sh_send("cairnctl reboot").unwrap();
    m.shell_restarted();
    m.wait_for("clean shutdown complete, rebooting", BOOT).expect("a clean reboot");

    // The next boot takes the try once, and goes back at its deadline.
    let ready = m.wait_for("cairn-init: ready", BOOT).expect("ready after the reboot");
    assert_eq!(field(&ready, "config").as_deref(), Some("try:2"), "{ready}");
    assert!(m.console.text().contains("generation 2 is on trial after a reboot"));
    assert_eq!(hostname(&mut m), "second");
    let st = status_json(&mut m);
    assert_eq!((st["try"]["generation"].as_u64(), st["try"]["boots_left"].as_u64()), (Some(2), Some(0)), "{st}");
    m.wait_for("was not confirmed in time", BOOT).expect("the try runs out in its boot");
    until(&mut m, "back on generation 1", BOOT, |m| status_json(m)["generation"].as_u64() == Some(1));
    assert_eq!(hostname(&mut m), "first");
    until(&mut m, "hello is stopped", BOOT, |m| service_state(m, "hello") == "disabled");
    power_off(m);
}

#[test]
fn a_power_cut_during_apply_leaves_generation_n_or_n_plus_1_whole() {
    // Cut after generation 2's files are flushed, before `current` moves: 1 stays.
    let (_dir, disk, extra, mut m) = first_boot("config-cut", Image::Test, "cairn.config.pause=meta");
    put_file(&mut m, "/run/second.toml", SECOND);
    m.sh_send("cairnctl config apply /run/second.toml").unwrap();
    m.wait_for("cairn-config: paused at meta", BOOT).expect("the apply reaches its pause");
    m.kill();

    // Cut right after `current` moved: the next boot is on the new generation.
    let (mut m, ready) = boot(&machine_on(Image::Test, &disk, &extra).append("cairn.config.pause=current"));
    assert_eq!(field(&ready, "config").as_deref(), Some("fw_cfg:1"), "cut before the switch: N: {ready}");
    assert_eq!(hostname(&mut m), "first");
    put_file(&mut m, "/run/second.toml", SECOND);
    m.sh_send("cairnctl config apply /run/second.toml").unwrap();
    m.wait_for("cairn-config: paused at current", BOOT).expect("the apply reaches its pause");
    m.kill();

    let (mut m, ready) = boot(&machine_on(Image::Test, &disk, &extra));
    assert_eq!(field(&ready, "config").as_deref(), Some("apply:3"), "cut after the switch: N+1: {ready}");
    assert_eq!(hostname(&mut m), "second");
    assert_eq!(m.sh_ok("cat /var/lib/cairn/config/gen/000003.toml").unwrap().trim_end(), SECOND.trim_end(), "whole");
    until(&mut m, "hello runs", BOOT, |m| service_state(m, "hello") == "running");
    power_off(m);
}

/// `make build` puts the production cairn-config (the one `out/cairn.raw`
/// carries) at its usual place and the one that can pause a commit beside
/// it, for the test images only. No QEMU.
#[test]
fn only_the_test_images_cairn_config_can_pause_a_commit() {
    cairn_tests::only_the_test_build_holds("target/x86_64-unknown-linux-gnu/release/cairn-config", "build/cairn-config-fault-injection", b"(cairn.config.pause)");
}
