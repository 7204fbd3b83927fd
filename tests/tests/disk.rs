//! The A/B disk: UEFI boot through systemd-boot to a verified, read-only root;
//! STATE that survives power cycles and grows with its disk; a tampered root
//! that is never served; and builds that give the same bytes twice.

use cairn_qemu::{make_overlay, out_dir, qemu_img, Config, Machine, Scratch};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
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
    assert!(line.contains("No partition labelled ROOT-A after 2s; block devices seen: none"), "{line}");
    m.wait_for("rebooting in 10 s", EXIT).unwrap();
    m.wait_exit(EXIT).expect("the machine reboots, using up a try of its boot entry");
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

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The timestamp `make image` built out/ with.
fn epoch() -> String {
    let path = out_dir().join("source-date-epoch");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run make image)", path.display())).trim().to_string()
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
        let st = Command::new(&image).args(args).env("SOURCE_DATE_EPOCH", epoch()).current_dir(&r).status().unwrap();
        assert!(st.success(), "cairn-image {args:?}");
    };
    let initramfs = dir.path("initramfs.img");
    let root = dir.path("root.img");
    let raw = dir.path("cairn.raw");
    let (i, k) = (init.to_str().unwrap(), "build/kernel");
    run(&["initramfs", "--out", initramfs.to_str().unwrap(), "--init", i, "--kernel", k]);
    let ctl = r.join("target/x86_64-unknown-linux-gnu/release/cairnctl");
    let svcload = r.join("target/x86_64-unknown-linux-gnu/release/cairn-svcload");
    run(&[
        "root", "--out", root.to_str().unwrap(), "--init", i, "--cairnctl", ctl.to_str().unwrap(),
        "--svcload", svcload.to_str().unwrap(), "--kernel", k,
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
