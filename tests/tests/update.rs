//! Signed A/B updates end to end: UEFI (OVMF, systemd-boot 252 with boot
//! counting), a real HTTP server on the host (busybox httpd) reached through
//! QEMU's user network at 10.0.2.2, bundles signed by `cairn-image` with the
//! key the image trusts. The new versions come from `make test-fixtures`.

use cairn_qemu::repo::{fixture, good, repo_root as repo, Bundle, Server};
use cairn_qemu::{make_overlay, out_dir, qemu_img, Config, Machine, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(240);
/// Three counted tries of a broken slot, then the old one.
const ROLLBACK: Duration = Duration::from_secs(420);
const APPLY: Duration = Duration::from_secs(600);

/// A v1 disk of its own, 1 GiB larger so STATE grows and has room to stage.
fn fresh_disk(dir: &Scratch) -> PathBuf {
    let disk = dir.path("disk.qcow2");
    make_overlay(&out_dir().join("cairn-debug.qcow2"), &disk).unwrap();
    qemu_img(&["resize", "-q", disk.to_str().unwrap(), "+1G"]).unwrap();
    disk
}

fn start(disk: &Path) -> Machine {
    let mut cfg = Config::uefi(&out_dir(), "cairn-debug.qcow2").unwrap().with_disk_file(disk);
    cfg.debug_port = true;
    let mut m = Machine::start(&cfg).expect("QEMU starts");
    booted(&mut m);
    m
}

/// The ready line, then the updater's verdict on the boot (after which the
/// ESP can be mounted: init loads vfat for it).
fn booted(m: &mut Machine) {
    m.wait_for("cairn-init: ready", BOOT).expect("ready");
    m.wait_for("cairn-update: verdict on this boot", BOOT).expect("the boot's verdict");
}

/// (slot, VERSION_ID) of the running system.
fn running(m: &mut Machine) -> (String, String) {
    let cmdline = m.sh_ok("cat /proc/cmdline").unwrap();
    let slot = cmdline.split_whitespace().find_map(|w| w.strip_prefix("cairn.slot=")).unwrap_or("?").to_string();
    let version = m.sh_ok(". /etc/os-release; echo $VERSION_ID").unwrap().trim().to_string();
    (slot, version)
}

fn status(m: &mut Machine) -> String {
    m.sh_ok("cairnctl update status").unwrap()
}

fn set_repo(m: &mut Machine, s: &Server) {
    m.sh_ok(&format!("cairnctl update set url={}", s.url())).unwrap();
}

/// Installs without rebooting and returns what the updater said.
fn apply(m: &mut Machine) -> (String, i32) {
    m.sh_for("cairnctl update apply --no-reboot 2>&1", APPLY).unwrap()
}

fn reboot(m: &mut Machine) {
    m.sh_send("cairnctl reboot").unwrap();
    m.shell_restarted();
    m.wait_for("clean shutdown complete, rebooting", BOOT).expect("a clean reboot");
}

/// md5 of slot A's entry, read from the ESP mounted read-only.
fn entry_a(m: &mut Machine) -> String {
    m.sh_ok("mkdir -p /run/espcheck && mount -o ro,iocharset=iso8859-1 -t vfat /dev/vda1 /run/espcheck && md5sum /run/espcheck/loader/entries/cairn-a.conf; umount /run/espcheck")
        .unwrap()
}

#[test]
fn v1_updates_to_v2_which_is_blessed_and_stays() {
    let dir = Scratch::new("update-good").unwrap();
    let server = Server::start("repo-good");
    server.publish(&good());
    let mut m = start(&fresh_disk(&dir));
    assert_eq!(running(&mut m), ("a".into(), "0.1.0".into()));
    set_repo(&mut m, &server);
    let check = m.sh_ok("cairnctl update check").unwrap();
    assert!(check.contains("0.2.0 is available (running 0.1.0)"), "{check}");
    let a_before = entry_a(&mut m);
    let (out, code) = apply(&mut m);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("boot entry cairn-b+3-0.conf is now first"), "{out}");
    assert!(out.contains("installed 0.2.0 into slot b"), "{out}");
    let st = status(&mut m);
    assert!(st.contains("entry cairn-b+3-0.conf: slot b version 0.2.0 generation 2 on trial (3 tries left, 0 used)"), "{st}");
    reboot(&mut m);
    booted(&mut m);
    m.wait_for("blessed slot b (0.2.0)", BOOT).expect("the healthy trial is blessed");
    assert_eq!(running(&mut m), ("b".into(), "0.2.0".into()));
    let st = status(&mut m);
    assert!(st.contains("entry cairn-b.conf: slot b version 0.2.0 generation 2 good"), "{st}");
    assert!(st.contains("entry cairn-a.conf: slot a version 0.1.0 generation 1 good"), "the old slot stays as the fallback: {st}");
    assert!(st.contains("floor: 0.2.0"), "{st}");
    assert_eq!(entry_a(&mut m), a_before, "the known-good entry is never touched");
    let check = m.sh_ok("cairnctl update check").unwrap();
    assert!(check.contains("up to date"), "{check}");
    reboot(&mut m);
    booted(&mut m);
    assert_eq!(running(&mut m), ("b".into(), "0.2.0".into()), "the next boot still runs v2");

    // Manual rollback to the version that was good in slot A: the version
    // left is recorded as bad, so the next apply does not bring it back.
    let out = m.sh_ok("cairnctl update rollback --no-reboot").unwrap();
    assert!(out.contains("the next boot tries 0.1.0 in the other slot"), "{out}");
    reboot(&mut m);
    booted(&mut m);
    m.wait_for("blessed slot a (0.1.0)", BOOT).expect("the rollback is blessed too");
    assert_eq!(running(&mut m), ("a".into(), "0.1.0".into()));
    let st = status(&mut m);
    assert!(st.contains("floor: 0.2.0"), "a rollback never lowers the floor: {st}");
    assert!(st.contains("bad: 0.2.0"), "the version rolled back from is recorded as bad: {st}");
    let (out, code) = m.sh("cairnctl update apply --no-reboot 2>&1").unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Version 0.2.0 is recorded as bad on this machine"), "{out}");
    let st = status(&mut m);
    assert!(st.contains("entry cairn-b.conf: slot b version 0.2.0 generation 2 good"), "apply left slot b alone: {st}");
    let (out, code) = m.sh("cairnctl update unmark 0.3.0 2>&1").unwrap();
    assert_ne!(code, 0, "{out}");
    m.sh_ok("cairnctl update unmark 0.2.0").unwrap();
    assert!(status(&mut m).contains("bad: none"));
    let check = m.sh_ok("cairnctl update check").unwrap();
    assert!(check.contains("0.2.0 is available (running 0.1.0)"), "unmarked, it is offered again: {check}");
    m.kill();
}

#[test]
fn an_update_over_https_from_a_repository_with_a_private_ca() {
    let dir = Scratch::new("update-https").unwrap();
    let server = Server::start_https("repo-https");
    server.publish(&good());
    let mut m = start(&fresh_disk(&dir));
    set_repo(&mut m, &server);
    let (out, code) = m.sh("cairnctl update check 2>&1").unwrap();
    assert_ne!(code, 0, "a server no trusted CA vouches for is refused: {out}");
    assert!(out.contains(&server.url()) && out.contains("invalid peer certificate") && out.contains("UnknownIssuer"), "{out}");

    // The private CA, carried over the debug shell as base64.
    let pem = std::fs::read(server.ca()).unwrap();
    let b64 = Command::new("base64").args(["-w", "0"]).arg(server.ca()).output().unwrap();
    assert!(b64.status.success() && !pem.is_empty());
    let ca = "/var/lib/cairn/update/repo-ca.pem";
    m.sh_ok(&format!("echo {} | base64 -d > {ca}", String::from_utf8_lossy(&b64.stdout))).unwrap();
    let (out, code) = m.sh("cairnctl update set ca=/etc/os-release 2>&1").unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("/etc/os-release: holds no PEM certificate"), "{out}");
    m.sh_ok(&format!("cairnctl update set ca={ca}")).unwrap();
    let st = status(&mut m);
    assert!(st.contains(&format!("repository: {} channel stable (also trusting the CA in {ca})", server.url())), "{st}");

    let check = m.sh_ok("cairnctl update check").unwrap();
    assert!(check.contains("0.2.0 is available (running 0.1.0)"), "{check}");
    let (out, code) = apply(&mut m);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("installed 0.2.0 into slot b"), "{out}");
    reboot(&mut m);
    booted(&mut m);
    m.wait_for("blessed slot b (0.2.0)", BOOT).expect("the update over https is blessed");
    assert_eq!(running(&mut m), ("b".into(), "0.2.0".into()));
    m.kill();
}

/// Boots v1, installs `b`, reboots and waits for the machine to come back on
/// v1 by itself, with `b` recorded as bad.
fn install_and_fall_back(name: &str, b: Bundle, sign_of_failure: &str, verdict: &str) {
    let dir = Scratch::new(name).unwrap();
    let server = Server::start(&format!("repo-{name}"));
    server.publish(&b);
    let mut m = start(&fresh_disk(&dir));
    set_repo(&mut m, &server);
    let a_before = entry_a(&mut m);
    let (out, code) = apply(&mut m);
    assert_eq!(code, 0, "{out}");
    reboot(&mut m);
    m.wait_for(sign_of_failure, ROLLBACK).expect("the new slot fails");
    m.wait_for(verdict, ROLLBACK).expect("the failure is recorded");
    m.shell_restarted();
    assert_eq!(running(&mut m), ("a".into(), "0.1.0".into()), "back on v1");
    assert_eq!(entry_a(&mut m), a_before, "the blessed v1 entry is untouched");
    let st = status(&mut m);
    assert!(st.contains("bad: 0.2.0"), "{st}");
    assert!(!st.contains("cairn-b"), "the failed entry is gone: {st}");
    assert!(st.contains("floor: 0.0.0"), "the floor did not move: {st}");
    let (out, code) = m.sh("cairnctl update check 2>&1").unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Version 0.2.0 is recorded as bad on this machine"), "{out}");
    m.kill();
}

#[test]
fn a_v2_that_never_gets_healthy_ends_back_on_v1_and_is_not_retried() {
    let b = Bundle {
        root: fixture("unhealthy-root.img"),
        extra_cmdline: "cairn.health_timeout=20",
        ..good()
    };
    install_and_fall_back(
        "unhealthy",
        b,
        "slot b (0.2.0) failed its trial: not healthy within 20 s: never-healthy",
        "verdict on this boot of slot a (0.1.0): healthy",
    );
}

#[test]
fn a_v2_whose_kernel_panics_ends_back_on_v1() {
    let b = Bundle { initramfs: fixture("panic-initramfs.img"), ..good() };
    install_and_fall_back(
        "panic",
        b,
        "Kernel panic",
        "slot b (0.2.0) did not come up healthy in its tries (crash, kernel panic or hang); back on slot a (0.1.0)",
    );
}

#[test]
fn a_v2_whose_init_hangs_ends_back_on_v1() {
    let b = Bundle { root: fixture("hang-root.img"), extra_cmdline: "cairn.watchdog=10", ..good() };
    install_and_fall_back(
        "hang",
        b,
        "hang-init: stage 2 hangs here on purpose",
        "slot b (0.2.0) did not come up healthy in its tries (crash, kernel panic or hang); back on slot a (0.1.0)",
    );
}

/// sha256 of the guest's bytes in each range (start, length in MiB), from a
/// raw copy of the disk image taken while the machine runs. (Not `qemu-img
/// dd`: 7.2 counts `count=` from the start of the disk, not from `skip=`.)
fn hash_ranges(disk: &Path, dir: &Scratch, ranges: &[(u64, u64)]) -> Vec<String> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    let raw = dir.path("guest.raw");
    let _ = std::fs::remove_file(&raw);
    let st = Command::new("qemu-img").args(["convert", "-U", "-O", "raw"]).arg(disk).arg(&raw).status().unwrap();
    assert!(st.success(), "qemu-img convert of {}", disk.display());
    let mut f = std::fs::File::open(&raw).unwrap();
    let hashes = ranges
        .iter()
        .map(|&(start, len)| {
            let mut bytes = Vec::new();
            f.seek(SeekFrom::Start(start << 20)).unwrap();
            (&mut f).take(len << 20).read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes.len() as u64, len << 20, "the range at {start} MiB was read whole");
            hex::encode(sha2::Sha256::digest(&bytes))
        })
        .collect();
    let _ = std::fs::remove_file(&raw);
    hashes
}

#[test]
fn refused_updates_leave_slot_and_esp_byte_for_byte_unchanged() {
    let dir = Scratch::new("refusals").unwrap();
    let server = Server::start("repo-refusals");
    let disk = fresh_disk(&dir);
    let mut m = start(&disk);
    set_repo(&mut m, &server);
    let rogue = dir.path("rogue.key");
    let st = Command::new(repo().join("target/release/cairn-image"))
        .args(["keygen", "--id", "rogue", "--out"])
        .arg(&rogue)
        .status()
        .unwrap();
    assert!(st.success());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let manifest = server.channel().join("manifest.toml");
    let root_payload = server.channel().join("cairn-0.2.0-root.img");
    type Spoil = Box<dyn Fn()>;
    let cases: Vec<(&str, Bundle, Spoil, &str)> = vec![
        ("bad signature", good(), Box::new({
            let manifest = manifest.clone();
            move || {
                let t = std::fs::read_to_string(&manifest).unwrap().replace("build_id = \"local\"", "build_id = \"evil\"");
                std::fs::write(&manifest, t).unwrap();
            }
        }), "Signature by key release does not match the manifest"),
        ("unknown key", Bundle { key: rogue.display().to_string(), ..good() }, Box::new(|| {}),
            "Signed only by keys this machine does not trust: rogue"),
        ("expired", Bundle { expires: Some(now - 3600), ..good() }, Box::new(|| {}), "Manifest expired at"),
        ("downgrade", Bundle { version: "0.0.9", ..good() }, Box::new(|| {}), "Version 0.0.9 is not newer than the running 0.1.0"),
        ("payload hash", good(), Box::new({
            let p = root_payload.clone();
            move || {
                // Same size, one byte different: only the hash can tell.
                let mut bytes = std::fs::read(&p).unwrap();
                bytes[4096 * 3] ^= 0xff;
                let _ = std::fs::remove_file(&p);
                std::fs::write(&p, bytes).unwrap();
            }
        }), "cairn-0.2.0-root.img: sha256 is"),
        ("truncated", good(), Box::new({
            let p = root_payload.clone();
            move || {
                let bytes = std::fs::read(&p).unwrap();
                let _ = std::fs::remove_file(&p);
                std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
            }
        }), "on the server is"),
    ];
    // The ESP and slot B, in MiB (image/src/disk.rs lays them out).
    let (esp, slot_b) = ((1u64, 128u64), (1153u64, 1024u64));
    m.sh_ok("sync").unwrap();
    let before = hash_ranges(&disk, &dir, &[esp, slot_b]);
    for (what, bundle, spoil, message) in cases {
        server.publish(&bundle);
        spoil();
        let (out, code) = apply(&mut m);
        assert_ne!(code, 0, "{what}: must be refused: {out}");
        assert!(out.contains("update refused") && out.contains(message), "{what}: `{message}` in:\n{out}");
    }
    m.sh_ok("sync").unwrap();
    let after = hash_ranges(&disk, &dir, &[esp, slot_b]);
    assert_eq!(before[0], after[0], "the ESP changed");
    assert_eq!(before[1], after[1], "ROOT-B changed");
    let st = status(&mut m);
    assert!(!st.contains("cairn-b") && !st.contains("trial"), "{st}");
    m.kill();
}

/// `make build` leaves the production cairnctl (the one `out/cairn.raw`
/// carries, see `two_builds_give_identical_images`) at its usual place, and
/// the one with fault injection beside it for the test images only. No QEMU.
#[test]
fn only_the_test_images_cairnctl_can_pause_an_update() {
    cairn_tests::only_the_test_build_holds("target/x86_64-unknown-linux-gnu/release/cairnctl", "build/cairnctl-fault-injection", b"(pause-at on STATE)");
}

/// The ESP of `out/cairn.raw`, straight from the build, is clean to
/// fsck.fat: nothing for a repair to move or free later. No QEMU.
#[test]
fn the_built_esp_passes_fsck_fat() {
    let dir = Scratch::new("esp-fsck").unwrap();
    let esp = dir.path("esp.img");
    let raw = out_dir().join("cairn.raw");
    let st = Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", esp.display()))
        .args(["bs=1M", "skip=1", "count=128", "status=none"])
        .status()
        .unwrap();
    assert!(st.success(), "dd from {}", raw.display());
    let out = Command::new("fsck.fat").arg("-n").arg(&esp).output().expect("fsck.fat (dosfstools) runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.lines().count() == 2, "fsck.fat -n on the ESP of {}:\n{text}", raw.display());
}

/// Cuts the power at `step` of an update (the updater stops there when STATE
/// says so), boots again, and then finishes the update.
fn cut_power_at(step: &str) {
    let dir = Scratch::new(&format!("cut-{step}")).unwrap();
    let server = Server::start(&format!("repo-cut-{step}"));
    server.publish(&good());
    let disk = fresh_disk(&dir);
    let mut m = start(&disk);
    set_repo(&mut m, &server);
    m.sh_ok(&format!("echo {step} > /var/lib/cairn/update/pause-at")).unwrap();
    let in_trial = matches!(step, "bless" | "bless-written" | "blessed");
    if in_trial {
        let (out, code) = apply(&mut m);
        assert_eq!(code, 0, "{out}");
        reboot(&mut m);
    } else {
        m.sh_send("cairnctl update apply --no-reboot").unwrap();
    }
    m.wait_for(&format!("paused at {step}"), APPLY).expect("the updater reaches the step");
    m.kill();

    let mut m = start(&disk);
    let (slot, version) = running(&mut m);
    assert!(
        (slot == "a" && version == "0.1.0") || (slot == "b" && version == "0.2.0"),
        "cut at {step}: came up on a valid slot, not slot {slot} with {version}"
    );
    let left = m.sh_ok("ls /var/lib/cairn/update/").unwrap();
    assert!(!left.contains("pause-at"), "a pause request is used up by the pause: {left}");
    if slot == "a" {
        let (out, code) = apply(&mut m);
        assert_eq!(code, 0, "cut at {step}: the retried update works: {out}");
        reboot(&mut m);
        booted(&mut m);
    }
    // The trial boot's verdict, whichever boot it came in (a cut after the
    // bless rename finishes the bookkeeping with the same words).
    m.wait_for("blessed slot b (0.2.0)", BOOT).expect("the trial is blessed");
    for _ in 0..30 {
        let st = status(&mut m);
        if st.contains("entry cairn-b.conf: slot b version 0.2.0 generation 2 good") && st.contains("floor: 0.2.0") {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(running(&mut m), ("b".into(), "0.2.0".into()), "cut at {step}: ends on v2");
    let st = status(&mut m);
    let console = m.console.text();
    assert!(st.contains("entry cairn-b.conf: slot b version 0.2.0 generation 2 good"), "cut at {step}: {st}\nconsole:\n{console}");
    assert!(st.contains("entry cairn-a.conf: slot a version 0.1.0 generation 1 good"), "cut at {step}: {st}\nconsole:\n{console}");
    assert!(st.contains("floor: 0.2.0") && !st.contains("trial"), "cut at {step}: {st}\nconsole:\n{console}");
    m.kill();
}

#[test]
fn power_cuts_while_downloading_and_writing_the_slot() {
    for step in ["download-half-cairn-0.2.0-root.img", "staged", "old-entry-removed", "slot-half-written"] {
        cut_power_at(step);
    }
}

#[test]
fn power_cuts_while_writing_the_esp_and_switching() {
    for step in ["slot-written", "esp-vmlinuz", "esp-initramfs.img", "entry-written"] {
        cut_power_at(step);
    }
}

#[test]
fn power_cuts_after_the_switch_and_around_the_bless() {
    for step in ["committed", "bless", "bless-written", "blessed"] {
        cut_power_at(step);
    }
}
