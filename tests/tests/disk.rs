//! The A/B disk: UEFI boot through systemd-boot to a verified, read-only root;
//! STATE that survives power cycles and grows with its disk; a tampered root
//! that is never served; and builds that give the same bytes twice.

use cairn_qemu::{make_overlay, out_dir, qemu_img, Config, Machine, Scratch};
use cairn_tests::{build_epoch, repo, sha256_file};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(180);
const EXIT: Duration = Duration::from_secs(90);
/// ROOT-A starts after 1 MiB of GPT space and the 128 MiB ESP.
const ROOT_A_OFFSET: u64 = 129 << 20;

fn uefi_debug() -> Config {
    let mut cfg = Config::uefi(&out_dir(), "cairn-debug.qcow2").expect("make image built out/cairn-debug.qcow2");
    cfg.debug_port = true;
    cfg
}

fn direct_debug(disk: &Path) -> Config {
    Config::from_out(&out_dir(), "initramfs-debug.img").expect("make image ran").with_debug_shell().with_disk_file(disk)
}

fn power_off(m: &mut Machine) {
    m.press_power_button().expect("power button");
    m.wait_for("clean shutdown complete, powering off", EXIT).expect("clean shutdown");
    assert!(m.wait_exit(EXIT).expect("QEMU exits").success());
    let console = m.console.text();
    assert!(!console.contains("cannot unmount"), "STATE and the rest unmount cleanly:\n{console}");
}

#[test]
fn a_missing_root_partition_is_named_with_the_devices_seen() {
    let cfg = Config::kernel_only(&out_dir(), "initramfs.img", &std::fs::read_to_string(out_dir().join("cmdline")).unwrap())
        .unwrap()
        .append("cairn.root_timeout=2");
    let mut cfg = cfg;
    cfg.allow_reboot = false;
    let mut m = Machine::start(&cfg).unwrap();
    let line = m.wait_for("stage 1 failed", BOOT).expect("stage 1 reports the failure");
    assert!(line.contains("No partition labelled ROOT-A with this boot's verity root hash after 2s; block devices seen: none"), "{line}");
    m.wait_for("rebooting in 10 s", EXIT).unwrap();
    m.wait_exit(EXIT).expect("the machine reboots, using up a try of its boot entry");
}

/// With the default root wait (30 s) and watchdog (30 s) a missing root ends
/// in the message that names the devices seen, then the reboot, never in a
/// watchdog reset before it (stage 1 pets the watchdog while it waits).
#[test]
fn a_missing_root_is_named_before_the_watchdog_can_fire() {
    let cmdline = std::fs::read_to_string(out_dir().join("cmdline")).unwrap();
    let mut cfg = Config::kernel_only(&out_dir(), "initramfs.img", &cmdline).unwrap();
    cfg.allow_reboot = false;
    let mut m = Machine::start(&cfg).unwrap();
    m.wait_for("watchdog armed", BOOT).expect("the default watchdog is armed in stage 1");
    let line = m.wait_for("stage 1 failed", BOOT).unwrap_or_else(|e| panic!("stage 1 names the failure: {e}"));
    assert!(line.contains("No partition labelled ROOT-A with this boot's verity root hash after 30s; block devices seen: none"), "{line}");
    m.wait_for("rebooting in 10 s", EXIT).unwrap();
    m.wait_exit(EXIT).expect("the machine reboots");
    assert!(!m.console.text().contains("Initiating system reboot"), "no softdog reset: {}", m.console.text());
}

/// A slot partition that does not hold the root the command line names (an
/// empty ROOT-B here) is not taken for it: stage 1 waits, then names the
/// devices it saw.
#[test]
fn a_slot_partition_without_the_expected_root_is_not_used() {
    let mut cfg = Config::from_out(&out_dir(), "initramfs.img").unwrap().append("cairn.slot=b");
    cfg.allow_reboot = false;
    let mut m = Machine::start(&cfg).unwrap();
    let line = m.wait_for("stage 1 failed", BOOT).unwrap_or_else(|e| panic!("stage 1 names the failure: {e}"));
    assert!(line.contains("No partition labelled ROOT-B with this boot's verity root hash after 30s"), "{line}");
    assert!(line.contains("vda1 (ESP, 128 MiB)") && line.contains("vda3 (ROOT-B, 1024 MiB)"), "{line}");
    m.wait_for("rebooting in 10 s", EXIT).unwrap();
    m.wait_exit(EXIT).expect("the machine reboots");
}

#[test]
fn uefi_boots_systemd_boot_to_a_read_only_verified_root() {
    let mut m = Machine::start(&uefi_debug()).expect("QEMU starts");
    m.wait_for("cairn-init: ready", BOOT).expect("ready through OVMF and systemd-boot");
    let cmdline = m.sh_ok("cat /proc/cmdline").unwrap();
    assert!(cmdline.contains("initrd=\\cairn\\a\\initramfs.img"), "booted by systemd-boot from the slot A entry: {cmdline}");
    let root = m.sh_ok("grep ' / ' /proc/mounts").unwrap();
    assert!(root.starts_with("/dev/dm-0 / erofs ro,"), "{root}");
    assert_eq!(m.sh_ok("cat /sys/block/dm-0/dm/name").unwrap().trim(), "cairn-root");
    assert_eq!(m.sh_ok("cat /sys/block/dm-0/dm/uuid").unwrap().trim(), "CAIRN-VERITY-ROOT-A");
    assert_eq!(m.sh_ok("cat /sys/block/dm-0/ro").unwrap().trim(), "1");
    let (out, code) = m.sh("touch /usr/bin/x 2>&1").unwrap();
    assert_ne!(code, 0, "a write to / must fail");
    assert!(out.contains("Read-only file system"), "{out}");
    let var = m.sh_ok("grep ' /var ' /proc/mounts").unwrap();
    assert!(var.starts_with("/dev/vda4 /var ext4 rw,"), "{var}");
    let tmp = m.sh_ok("grep ' /tmp ' /proc/mounts").unwrap();
    assert!(tmp.starts_with("tmpfs /tmp tmpfs"), "{tmp}");
    // crun ships in the root with its libraries, and runs.
    let crun = m.sh_ok("crun --version").unwrap();
    assert!(crun.contains("crun version 1.8.1"), "{crun}");
    power_off(&mut m);
}

#[test]
fn files_under_var_survive_a_power_cycle() {
    let dir = Scratch::new("persist").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn-debug.qcow2"), &disk).unwrap();
    let mut cfg = uefi_debug();
    cfg.disk = Some(cairn_qemu::Disk::File(disk.clone()));

    let mut m = Machine::start(&cfg).unwrap();
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    m.sh_ok("mkdir -p /var/lib/test && echo kept-across-boots > /var/lib/test/note").unwrap();
    let id1 = m.sh_ok("cat /etc/machine-id").unwrap();
    power_off(&mut m);
    drop(m);

    let mut m = Machine::start(&cfg).unwrap();
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert_eq!(m.sh_ok("cat /var/lib/test/note").unwrap().trim(), "kept-across-boots");
    assert_eq!(m.sh_ok("cat /etc/machine-id").unwrap(), id1, "the machine id is kept on STATE");
    assert!(!m.console.text().contains("new machine id"), "no new id on the second boot");
    power_off(&mut m);
}

#[test]
fn a_tampered_root_is_never_served_and_the_machine_restarts() {
    let dir = Scratch::new("tamper").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    // Flip one byte of the erofs superblock block, which the boot reads first.
    let offset = ROOT_A_OFFSET + 1024 + 8;
    let raw = std::fs::read(out_dir().join("cairn.raw")).expect("out/cairn.raw");
    let flipped = !raw[offset as usize];
    drop(raw);
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("write -P {flipped} {offset} 1")])
        .arg(&disk)
        .output()
        .expect("qemu-io runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut cfg = Config::from_out(&out_dir(), "initramfs.img").unwrap().with_disk_file(&disk);
    cfg.allow_reboot = false; // the restart ends QEMU, so the test sees it
    let mut m = Machine::start(&cfg).unwrap();
    let line = m.wait_for("is corrupted", BOOT).expect("the console says why");
    assert!(line.contains("verity") && line.contains("data block 0"), "{line}");
    m.wait_exit(EXIT).expect("the machine restarts (QEMU exits with -no-reboot)");
    let console = m.console.text();
    assert!(!console.contains("stage 2"), "the tampered root must never run:\n{console}");
    assert!(!console.contains("cairn-init: ready"), "{console}");
}

#[test]
fn state_grows_to_fill_a_bigger_disk_once() {
    let dir = Scratch::new("grow").unwrap();
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn.qcow2"), &disk).unwrap();
    qemu_img(&["resize", "-q", disk.to_str().unwrap(), "+2G"]).unwrap();
    let cfg = direct_debug(&disk);

    let mut m = Machine::start(&cfg).unwrap();
    let line = m.wait_for("grew partition STATE", BOOT).expect("first boot grows STATE");
    assert!(line.contains("from 128 MiB to 2176 MiB"), "{line}");
    m.wait_for("grew the STATE file system", BOOT).expect("and its ext4");
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    let sectors: u64 = m.sh_ok("cat /sys/class/block/vda4/size").unwrap().trim().parse().unwrap();
    assert_eq!(sectors, 2176 * 2048);
    let df = m.sh_ok("df -k /var | tail -1").unwrap();
    let total_kb: u64 = df.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("df total");
    assert!(total_kb > 2_000_000, "ext4 fills the partition: {df}");
    power_off(&mut m);
    drop(m);

    let mut m = Machine::start(&cfg).unwrap();
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    assert!(!m.console.text().contains("grew"), "a second boot leaves STATE as it is:\n{}", m.console.text());
    let again: u64 = m.sh_ok("cat /sys/class/block/vda4/size").unwrap().trim().parse().unwrap();
    assert_eq!(again, sectors);
    power_off(&mut m);
}

/// Builds the initramfs, the root and the disk a second time from the same
/// inputs `make image` used, and compares the bytes.
#[test]
fn two_builds_give_identical_images() {
    let r = repo();
    let image = r.join("target/release/cairn-image");
    let init = r.join("target/x86_64-unknown-linux-gnu/release/cairn-init");
    let dir = Scratch::new("repro").unwrap();
    let run = |args: &[&str]| {
        let st = Command::new(&image).args(args).env("SOURCE_DATE_EPOCH", build_epoch()).current_dir(&r).status().unwrap();
        assert!(st.success(), "cairn-image {args:?}");
    };
    let initramfs = dir.path("initramfs.img");
    let root = dir.path("root.img");
    let raw = dir.path("cairn.raw");
    let (i, k) = (init.to_str().unwrap(), "build/kernel");
    run(&["initramfs", "--out", initramfs.to_str().unwrap(), "--init", i, "--kernel", k]);
    let ctl = r.join("target/x86_64-unknown-linux-gnu/release/cairnctl");
    let svcload = r.join("target/x86_64-unknown-linux-gnu/release/cairn-svcload");
    let loader = r.join("target/x86_64-unknown-linux-gnu/release/cairn-config");
    let netd = r.join("target/x86_64-unknown-linux-gnu/release/cairn-netd");
    let agent = r.join("target/x86_64-unknown-linux-gnu/release/sysagent");
    run(&[
        "root", "--out", root.to_str().unwrap(), "--init", i, "--cairnctl", ctl.to_str().unwrap(),
        "--svcload", svcload.to_str().unwrap(), "--config-loader", loader.to_str().unwrap(), "--netd", netd.to_str().unwrap(), "--sysagent", agent.to_str().unwrap(), "--kernel", k,
        "--debroot", "build/debroot", "--services", "services", "--keyring", "build/keys/keyring",
    ]);
    let cmdline = std::fs::read_to_string(out_dir().join("cmdline")).unwrap();
    let base = cmdline.split(" cairn.slot=").next().unwrap().to_string();
    run(&[
        "disk", "--out", raw.to_str().unwrap(), "--root", root.to_str().unwrap(), "--vmlinuz", "out/vmlinuz",
        "--initramfs", initramfs.to_str().unwrap(), "--cmdline", &base,
    ]);
    assert_eq!(sha256_file(&initramfs), sha256_file(&out_dir().join("initramfs.img")), "initramfs differs");
    assert_eq!(sha256_file(&root), sha256_file(&r.join("build/root.img")), "root image differs");
    assert_eq!(sha256_file(&raw), sha256_file(&out_dir().join("cairn.raw")), "cairn.raw differs");
}

/// A machine with another Cairn disk attached in front of its own (made by the
/// same build as version 0.2.0, so the same labels and, as built, the same
/// GUIDs) boots its own root, mounts its own STATE, gives its own disk GUIDs
/// of its own, installs an update into its own ROOT-B and ESP and boots it;
/// the other disk is not changed by a single byte.
#[test]
fn a_second_cairn_disk_in_front_is_never_booted_mounted_or_updated() {
    use cairn_qemu::repo::{fixture, good, Server};
    let dir = Scratch::new("two-disks").unwrap();
    let other = dir.path("other.raw");
    let st = Command::new("cp").arg("--sparse=always").arg(fixture("other-disk.raw")).arg(&other).status().unwrap();
    assert!(st.success(), "copy of the other disk");
    let other_before = sha256_file(&other);
    let own = dir.path("own.qcow2");
    make_overlay(&out_dir().join("cairn-debug.qcow2"), &own).unwrap();
    qemu_img(&["resize", "-q", own.to_str().unwrap(), "+1G"]).unwrap();
    let mut cfg = uefi_debug();
    cfg.disk = Some(cairn_qemu::Disk::File(own.clone()));
    cfg.disks_in_front = vec![other.clone()];
    let server = Server::start("repo-two-disks");
    server.publish(&good());

    let mut m = Machine::start(&cfg).unwrap();
    let line = m.wait_for("booted from", BOOT).expect("stage 1 says which disk");
    // Both disks still carry the build's ESP GUID: the root hash decides.
    assert!(line.contains("booted from vdb (ROOT-A on vdb2: the boot loader's partition c41f0000-0000-4000-8000-0000000000e5 is on more than one disk; by its verity root hash)"), "{line}");
    m.wait_for("gave vdb and its partitions GUIDs of their own", BOOT).expect("first boot makes the GUIDs unique");
    m.wait_for("cairn-init: ready", BOOT).unwrap();
    m.wait_for("cairn-update: verdict on this boot", BOOT).expect("verdict");
    assert_eq!(m.sh_ok("ls /sys/block/dm-0/slaves").unwrap().trim(), "vdb2");
    let var = m.sh_ok("grep ' /var ' /proc/mounts").unwrap();
    assert!(var.starts_with("/dev/vdb4 /var ext4 rw,"), "{var}");
    m.sh_ok(&format!("cairnctl update set url={}", server.url())).unwrap();
    let (out, code) = m.sh_for("cairnctl update apply --no-reboot 2>&1", Duration::from_secs(600)).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("installed 0.2.0 into slot b"), "{out}");
    m.sh_send("cairnctl reboot").unwrap();
    m.shell_restarted();
    m.wait_for("clean shutdown complete, rebooting", BOOT).expect("a clean reboot");

    // The ESP now has a GUID of its own, which the loader reports.
    let line = m.wait_for("booted from", BOOT).expect("stage 1 says which disk");
    assert!(line.contains("booted from vdb (ROOT-B on vdb3: the boot loader's partition ") && line.contains(" is on it)"), "{line}");
    m.wait_for("blessed slot b (0.2.0)", BOOT).expect("the update went to this machine's own disk and is blessed");
    let version = m.sh_ok(". /etc/os-release; echo $VERSION_ID").unwrap();
    assert_eq!(version.trim(), "0.2.0");
    assert_eq!(m.sh_ok("ls /sys/block/dm-0/slaves").unwrap().trim(), "vdb3");
    let var = m.sh_ok("grep ' /var ' /proc/mounts").unwrap();
    assert!(var.starts_with("/dev/vdb4 /var ext4 rw,"), "{var}");
    assert!(!line.contains("c41f0000-0000-4000-8000-0000000000e5"), "the ESP's GUID is no longer the build's: {line}");
    // The disk GUID, bytes 56..72 of the GPT header at LBA 1.
    let disk_guid = |m: &mut Machine, dev: &str| m.sh_ok(&format!("dd if=/dev/{dev} bs=1 skip=568 count=16 2>/dev/null | od -An -tx1")).unwrap();
    let as_built = " 00 00 1f c4 00 00 00 40 80 00 00 00 00 00 d1 5c";
    assert_eq!(disk_guid(&mut m, "vda").split_whitespace().collect::<Vec<_>>(), as_built.split_whitespace().collect::<Vec<_>>(), "the other disk keeps the build's GUIDs");
    assert_ne!(disk_guid(&mut m, "vdb").split_whitespace().collect::<Vec<_>>(), as_built.split_whitespace().collect::<Vec<_>>());
    power_off(&mut m);
    drop(m);
    assert_eq!(sha256_file(&other), other_before, "the other disk is byte-for-byte unchanged");
}
