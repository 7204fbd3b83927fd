//! The update benchmarks: in the guest, the updater's slot write against a
//! plain sequential write of the same bytes to the same partition; on the
//! host, RAUC beside the updater's install path and `dd`, all three writing
//! the same root payload to the same loop device.

use crate::bench::{have, median, wall_ms};
use anyhow::{Context, Result};
use cairn_qemu::repo::{good, Server};
use cairn_qemu::{field, out_dir, Config, Machine, Scratch};
use cairn_updater::update::RootTimes;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `key` followed by a number in `text`, like `in 1.23 s`.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// An update from the repository on the host, `runs` times over (a second
/// `apply` before the reboot installs the same version into the same slot
/// again): the updater's slot write against `dd` of the same bytes to the
/// same partition in the same VM, one after the other; then the time from the
/// reboot into the new slot to its bless.
pub fn in_guest(runs: usize) -> Result<()> {
    let out = out_dir();
    let dir = Scratch::new("bench-update")?;
    let disk = dir.path("disk.qcow2");
    cairn_qemu::make_overlay(&out.join("cairn-debug.qcow2"), &disk)?;
    cairn_qemu::qemu_img(&["resize", "-q", &disk.display().to_string(), "+1G"])?;
    let server = Server::start("bench-repo");
    server.publish(&good());
    let mut cfg = Config::uefi(&out, "cairn-debug.qcow2")?.with_disk_file(&disk);
    cfg.debug_port = true;
    let mut m = Machine::start(&cfg)?;
    m.wait_for("cairn-init: ready", Duration::from_secs(240))?;
    // The boot's own verdict loads vfat; an apply before it would race it.
    m.wait_for("cairn-update: verdict on this boot", Duration::from_secs(240))?;
    m.sh_ok(&format!("cairnctl update set url={}", server.url()))?;
    let (mut apply, mut write, mut verify, mut dd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut mib = 0.0;
    for i in 0..runs {
        eprintln!("bench: update in the guest, run {}/{runs}", i + 1);
        let t = std::time::Instant::now();
        let (said, code) = m.sh_for("cairnctl update apply --no-reboot 2>&1", Duration::from_secs(600))?;
        apply.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(code == 0, "the update failed: {said}");
        mib = number_after(&said, "wrote ").context("no size in the updater's report")?;
        write.push(number_after(&said, "MiB to /dev/vda3 in ").context("no write time")?);
        verify.push(number_after(&said, "verified in ").context("no verify time")?);
        // The ceiling: the same bytes, from a file on STATE as the updater
        // reads its staged copy, to the same partition, flushed at the end.
        let bytes = (mib * 1048576.0).round() as u64;
        let said = m.sh_ok(&format!(
            "head -c {bytes} /dev/vda3 > /var/lib/cairn/dd.img && sync && a=$(cut -d' ' -f1 /proc/uptime) && \
             dd if=/var/lib/cairn/dd.img of=/dev/vda3 bs=4M conv=fsync 2>/dev/null && b=$(cut -d' ' -f1 /proc/uptime) && \
             rm /var/lib/cairn/dd.img && echo dd_s=$(echo \"$b $a\" | awk '{{print $1-$2}}')"
        ))?;
        dd.push(field(said.trim(), "dd_s").context("no dd time")?.parse()?);
    }
    m.sh_send("cairnctl reboot")?;
    m.shell_restarted();
    let (_, rebooting) = m.wait_for_timed("clean shutdown complete, rebooting", Duration::from_secs(120))?;
    let (_, blessed) = m.wait_for_timed("blessed slot b", Duration::from_secs(240))?;
    m.kill();
    let spread = format!("every run, seconds: dd {dd:.2?}, cairn slot write {write:.2?}");
    let (dd, write, verify, apply) = (median(dd), median(write), median(verify), median(apply));
    println!("Update install in the guest, {mib:.1} MiB root payload, QEMU TCG, virtio-blk on a qcow2 overlay, {runs} runs each, medians");
    println!("| what | seconds | MiB/s | of the ceiling |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| dd bs=4M conv=fsync, same bytes, same partition (ceiling) | {dd:.2} | {:.1} | 100% |", mib / dd);
    println!("| cairn updater: slot write incl. fsync | {write:.2} | {:.1} | {:.0}% |", mib / write, 100.0 * dd / write);
    println!("| cairn updater: read back and verify sha256 | {verify:.2} | {:.1} | - |", mib / verify);
    println!("| cairn updater: whole apply (check, download, verity, write, verify, ESP, switch) | {apply:.2} | - | - |");
    println!("| reboot command to the new slot blessed (host clock, one run) | {:.2} | - | - |", (blessed - rebooting).as_secs_f64());
    println!("{spread} (dd timed with /proc/uptime, 10 ms steps)");
    println!("RAUC cannot run in the guest (it is not in the image): it is compared on the host below.");
    Ok(())
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    anyhow::ensure!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Loop {
    fn new(file: &Path, bytes: u64) -> Result<Loop> {
        std::fs::File::create(file)?.set_len(bytes)?;
        let dev = run(Command::new("losetup").args(["-f", "--show", "--direct-io=on"]).arg(file))?;
        Ok(Loop(dev.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// `rauc service` on a private D-Bus session bus (RAUC's CLI looks there when
/// DBUS_STARTER_BUS_TYPE=session); the whole process group goes when dropped.
struct RaucService {
    child: std::process::Child,
    bus: String,
}

impl RaucService {
    fn start(dir: &Path, conf: &Path) -> Result<RaucService> {
        let addr = dir.join("bus-address");
        let script = format!(
            "echo \"$DBUS_SESSION_BUS_ADDRESS\" > {}; DBUS_STARTER_BUS_TYPE=session exec rauc service --conf={} --override-boot-slot=A",
            addr.display(),
            conf.display()
        );
        let log = std::fs::File::create(dir.join("rauc-service.log"))?;
        let child = Command::new("dbus-run-session")
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("dbus-run-session")?;
        let mut svc = RaucService { child, bus: String::new() };
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            svc.bus = std::fs::read_to_string(&addr).unwrap_or_default().trim().to_string();
            if !svc.bus.is_empty() && svc.rauc(&["status", &format!("--conf={}", conf.display())]).output().is_ok_and(|o| o.status.success() && !o.stderr.windows(5).any(|w| w == b"Error")) {
                return Ok(svc);
            }
        }
        anyhow::bail!("rauc service did not answer on its bus; see {}", dir.join("rauc-service.log").display())
    }

    fn rauc(&self, args: &[&str]) -> Command {
        let mut c = Command::new("rauc");
        c.args(args).env("DBUS_STARTER_BUS_TYPE", "session").env("DBUS_SESSION_BUS_ADDRESS", &self.bus);
        c
    }
}

impl Drop for RaucService {
    fn drop(&mut self) {
        // SAFETY: a signal to the process group we created; no memory involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Flushes and drops the host's page cache, so no run reads what the one
/// before it left there. False when this host does not allow it.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// sha256 of the first `bytes` of `dev`.
fn device_sha256(dev: &str, bytes: u64) -> Result<String> {
    let out = run(Command::new("sh").args(["-c", &format!("head -c {bytes} {dev} | sha256sum")]))?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_string())
}

/// RAUC (Debian's), the cairn updater's install path and `dd`, on this host,
/// each writing the same root payload to the same loop device (direct I/O
/// onto a file on the host's disk), in turn, `runs` times, the page cache
/// dropped before each. RAUC's bundle is `format=plain` (one signature over
/// the whole bundle, checked before the copy): its `verity` format needs
/// device-mapper, which this host's kernel lacks. RAUC uses the noop boot
/// loader backend, so neither side switches a boot entry here.
pub fn host_peers(runs: usize) -> Result<()> {
    for tool in ["rauc", "mksquashfs", "openssl", "dbus-run-session", "losetup", "sha256sum"] {
        if !have(tool) {
            println!("Update install beside RAUC: SKIPPED, {tool} is not installed (make bench installs rauc, squashfs-tools, dbus and openssl)");
            return Ok(());
        }
    }
    let dir = Scratch::new("bench-rauc")?;
    let bundle = dir.path("cairn-bundle");
    good().build(&bundle);
    let text = std::fs::read_to_string(bundle.join("manifest.toml"))?;
    let manifest = cairn_updater::Manifest::parse(&text).map_err(anyhow::Error::msg).context("the cairn bundle's manifest")?;
    let staged: PathBuf = bundle.join(&manifest.root.file);
    let size = manifest.root.size;
    let mib = size as f64 / 1048576.0;

    let input = dir.path("rauc-in");
    std::fs::create_dir_all(&input)?;
    std::fs::copy(&staged, input.join("root.img"))?;
    std::fs::write(input.join("manifest.raucm"), "[update]\ncompatible=cairn-bench\nversion=0.2.0\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=root.img\n")?;
    let (key, cert) = (dir.path("rauc-key.pem"), dir.path("rauc-cert.pem"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "30", "-subj", "/CN=cairn-bench", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert))?;
    let raucb = dir.path("root.raucb");
    run(Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .arg(&input)
        .arg(&raucb))?;

    let slot_a = Loop::new(&dir.path("slot-a.img"), 64 << 20)?;
    let slot_b = Loop::new(&dir.path("slot-b.img"), 1 << 30)?;
    let conf = dir.path("system.conf");
    std::fs::write(
        &conf,
        format!(
            "[system]\ncompatible=cairn-bench\nbootloader=noop\nmountprefix={}\n\n[keyring]\npath={}\n\n\
             [slot.rootfs.0]\ndevice={}\ntype=raw\nbootname=A\n\n[slot.rootfs.1]\ndevice={}\ntype=raw\nbootname=B\n",
            dir.path("rauc-mnt").display(),
            cert.display(),
            slot_a.0,
            slot_b.0
        ),
    )?;
    std::fs::create_dir_all(dir.path("rauc-mnt"))?;
    let service = RaucService::start(&dir.0, &conf)?;
    let version = run(Command::new("rauc").arg("--version"))?.trim().to_string();

    let (mut dd, mut rauc, mut parts) = (Vec::new(), Vec::new(), Vec::<RootTimes>::new());
    let mut cache_dropped = true;
    for i in 0..runs {
        eprintln!("bench: update on the host, run {}/{runs}", i + 1);
        // Each goes first in turn: a loop device on a shared host disk
        // is noisy, and no one should always follow the same neighbour.
        let mut order = ["dd", "rauc", "cairn"];
        order.rotate_left(i % 3);
        for who in order {
            // A payload already on the device must not pass for a write.
            run(Command::new("dd").args(["if=/dev/zero", &format!("of={}", slot_b.0), "bs=1M", "count=8", "conv=fsync", "status=none"]))?;
            cache_dropped &= drop_caches();
            // The tools' own code back in memory: loading it is not installing.
            run(Command::new("dd").arg("--version"))?;
            run(Command::new("rauc").arg("--version"))?;
            match who {
                "dd" => {
                    // The ceiling writes from memory, as the updater's write
                    // does after hashing the payload.
                    std::fs::read(&staged)?;
                    dd.push(
                        wall_ms(Command::new("dd").arg(format!("if={}", staged.display())).args([&format!("of={}", slot_b.0), "bs=4M", "conv=fsync", "status=none"]))?
                            / 1000.0,
                    )
                }
                "rauc" => rauc.push(wall_ms(&mut service.rauc(&["install", &raucb.display().to_string()]))? / 1000.0),
                _ => {
                    let t = cairn_updater::update::install_root(Path::new(&slot_b.0), &staged, &manifest)?;
                    parts.push(t);
                }
            }
            let got = device_sha256(&slot_b.0, size)?;
            anyhow::ensure!(got == manifest.root.sha256, "after {who}, the slot holds sha256 {got}, not the payload's");
        }
    }
    drop(service);
    let cairn: Vec<f64> = parts.iter().map(|t| t.hash_s + t.verity_s + t.write_s + t.verify_s).collect();
    let part = |f: fn(&RootTimes) -> f64| median(parts.iter().map(f).collect());
    let (hash, verity, cairn_write, verify) = (part(|t| t.hash_s), part(|t| t.verity_s), part(|t| t.write_s), part(|t| t.verify_s));
    let spread = format!("every run, seconds: dd {dd:.2?}, rauc {rauc:.2?}, cairn {cairn:.2?}");
    let (dd, rauc, cairn) = (median(dd), median(rauc), median(cairn));
    println!("Update install on the host, {mib:.1} MiB root payload, one loop device (direct I/O) on this host's disk, {runs} runs each, medians");
    println!("| installer | seconds | MiB/s | of the ceiling |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| dd bs=4M conv=fsync (ceiling) | {dd:.2} | {:.0} | 100% |", mib / dd);
    println!("| {version}: `rauc install` (check the signature over the whole bundle, mount it, copy, fsync) | {rauc:.2} | {:.0} | {:.0}% |", mib / rauc, 100.0 * dd / rauc);
    println!("| cairn updater, `install_root` (sha256, verity tree, write, fsync, read back and hash) | {cairn:.2} | {:.0} | {:.0}% |", mib / cairn, 100.0 * dd / cairn);
    println!("| cairn updater, its slot write alone (incl. fsync) | {cairn_write:.2} | {:.0} | {:.0}% |", mib / cairn_write, 100.0 * dd / cairn_write);
    println!("{spread}");
    println!("cairn's parts: sha256 {hash:.2} s (read from disk), verity tree {verity:.2} s, write {cairn_write:.2} s, read back and hash {verify:.2} s.");
    println!("The page cache is dropped before each run, then dd and rauc are run once with --version; dd's source is read once first,");
    println!("so it writes from memory as the updater's write does. RAUC and the updater read their payload from disk.");
    if !cache_dropped {
        println!("WARNING: this host refused to drop the page cache; later runs may read the payload from memory.");
    }
    Ok(())
}
