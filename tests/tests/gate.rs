//! The trial gate: a new release is blessed only when it can do its job. A v2
//! whose service loader fails, and a v2 without its NIC's driver, both print
//! a ready line of sorts, but their trial fails, they are recorded as bad and
//! the machine is back on v1 by itself. UEFI like the update tests, updating
//! from a real repository on the host (`cairn_qemu::repo`).

use cairn_qemu::repo::{fixture, good, Bundle, Server};
use cairn_qemu::{make_overlay, out_dir, qemu_img, Config, Machine, Scratch};
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(240);
/// The failed trial, its verdict and the boot back into v1.
const FALL_BACK: Duration = Duration::from_secs(600);
const APPLY: Duration = Duration::from_secs(600);

/// Boots v1 from a disk of its own, installs `b` from a repository, reboots
/// into it and waits until the machine is back on v1; returns the console
/// line in which v2's boot gave its verdict.
fn trial_fails(name: &str, b: Bundle) -> String {
    let dir = Scratch::new(name).unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn-debug.qcow2"), &disk).unwrap();
    qemu_img(&["resize", "-q", disk.to_str().unwrap(), "+1G"]).unwrap();
    let server = Server::start(&format!("repo-{name}"));
    server.publish(&b);
    let mut cfg = Config::uefi(&out_dir(), "cairn-debug.qcow2").unwrap().with_disk_file(&disk);
    cfg.debug_port = true;
    let mut m = Machine::start(&cfg).unwrap();
    m.wait_for("cairn-update: verdict on this boot of slot a (0.1.0): healthy", BOOT).expect("v1 boots healthy");
    m.sh_ok(&format!("cairnctl update set url={}", server.url())).unwrap();
    let (out, code) = m.sh_for("cairnctl update apply --no-reboot 2>&1", APPLY).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("installed 0.2.0 into slot b"), "{out}");
    m.sh_send("cairnctl reboot").unwrap();
    m.shell_restarted();
    m.wait_for("clean shutdown complete, rebooting", BOOT).expect("a clean reboot");
    let verdict = m.wait_for("this boot is not healthy:", FALL_BACK).expect("v2's boot is found unhealthy");
    m.wait_for("slot b (0.2.0) failed its trial", FALL_BACK).expect("the trial fails");
    m.wait_for("verdict on this boot of slot a (0.1.0): healthy", FALL_BACK).expect("back on v1, healthy");
    m.shell_restarted();
    let cmdline = m.sh_ok("cat /proc/cmdline").unwrap();
    assert!(cmdline.contains("cairn.slot=a"), "{cmdline}");
    assert_eq!(m.sh_ok(". /etc/os-release; echo $VERSION_ID").unwrap().trim(), "0.1.0");
    let st = m.sh_ok("cairnctl update status").unwrap();
    assert!(st.contains("bad: 0.2.0"), "v2 is recorded as bad: {st}");
    assert!(!st.contains("cairn-b"), "the failed entry is gone: {st}");
    assert!(st.contains("floor: 0.0.0"), "the floor did not move: {st}");
    m.kill();
    verdict
}

#[test]
fn a_v2_whose_service_loader_fails_is_not_blessed() {
    let b = Bundle { root: fixture("loader-fails-root.img"), ..good() };
    let verdict = trial_fails("gate-loader", b);
    assert!(verdict.contains("the service loader failed: /usr/bin/cairn-svcload failed (exit status: 1)"), "{verdict}");
}

#[test]
fn a_v2_without_its_nic_driver_is_not_blessed() {
    let b = Bundle {
        root: fixture("no-nic-root.img"),
        initramfs: fixture("no-nic-initramfs.img"),
        // The network is all that is missing; no need to wait the default 180 s.
        extra_cmdline: "cairn.health_timeout=60",
        ..good()
    };
    let verdict = trial_fails("gate-nic", b);
    // chrony, with no network to reach, may be down too; the network must be named.
    assert!(verdict.contains("not healthy within 60 s: ") && verdict.contains("network (not configured: no Ethernet link"), "{verdict}");
}
