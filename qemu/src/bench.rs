//! Boot-time and memory benchmark: Cairn and a bare busybox init, booted
//! alternately on the same kernel with the same QEMU settings, medians printed
//! side by side.

use anyhow::{Context, Result};
use cairn_qemu::{field, out_dir, Config, Machine};
use std::time::Duration;

struct Sample {
    guest_ms: f64,
    host_ms: f64,
    rss_kb: f64,
    /// PID 1's boot timeline: each phase and when it ended (guest ms).
    phases: Vec<(String, f64)>,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn boot_cairn(cfg: &Config) -> Result<Sample> {
    let mut m = Machine::start(cfg)?;
    let (line, at) = m.wait_for_timed("cairn-init: ready", Duration::from_secs(120))?;
    let timeline = m.wait_for("boot timeline ms:", Duration::from_secs(30))?;
    let sample = Sample {
        guest_ms: field(&line, "boot_ms").context("no boot_ms")?.parse()?,
        host_ms: (at - m.started).as_secs_f64() * 1000.0,
        rss_kb: field(&line, "rss_kb").context("no rss_kb")?.parse()?,
        phases: phases(&timeline),
    };
    m.press_power_button()?;
    m.wait_exit(Duration::from_secs(60))?;
    Ok(sample)
}

fn boot_busybox(cfg: &Config) -> Result<Sample> {
    let mut m = Machine::start(cfg)?;
    let (line, at) = m.wait_for_timed("busybox-init: ready", Duration::from_secs(120))?;
    let uptime: f64 = field(&line, "uptime").context("no uptime")?.parse()?;
    let sample = Sample {
        guest_ms: uptime * 1000.0,
        host_ms: (at - m.started).as_secs_f64() * 1000.0,
        rss_kb: field(&line, "rss_kb").context("no rss_kb")?.parse()?,
        phases: Vec::new(),
    };
    m.wait_exit(Duration::from_secs(60))?;
    Ok(sample)
}

/// `... boot timeline ms: stage1=880 stage1_modules=1050 ...` as pairs.
fn phases(line: &str) -> Vec<(String, f64)> {
    let list = line.split("boot timeline ms:").nth(1).unwrap_or("");
    list.split_whitespace()
        .filter_map(|w| {
            let (p, ms) = w.split_once('=')?;
            Some((p.to_string(), ms.parse().ok()?))
        })
        .collect()
}

/// The median end of each phase over the boots, in the first boot's order,
/// and what each took after the one before it.
fn print_timeline(name: &str, samples: &[Sample]) {
    let Some(first) = samples.first() else { return };
    println!("Boot timeline of {name}, medians over {} boots (guest ms since the kernel started, from PID 1's timeline line)", samples.len());
    println!("| phase ended | at ms | took ms |");
    println!("| --- | ---: | ---: |");
    let mut before = 0.0;
    for (phase, _) in &first.phases {
        let at = median(samples.iter().filter_map(|s| s.phases.iter().find(|(p, _)| p == phase).map(|(_, ms)| *ms)).collect());
        println!("| {phase} | {at:.0} | {:.0} |", at - before);
        before = at;
    }
    println!();
}

fn file_size(path: &std::path::Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok((m.len(), m.blocks() * 512))
}

fn sizes(out: &std::path::Path) -> Result<()> {
    let mib = |b: u64| b as f64 / 1048576.0;
    let root = out.join("../build/root.img");
    let verity = std::fs::read_to_string(out.join("../build/root.img.verity")).unwrap_or_default();
    let blocks: u64 = verity.lines().find_map(|l| l.strip_prefix("data_blocks=")?.parse().ok()).unwrap_or(0);
    let (root_len, _) = file_size(&root)?;
    let (raw_len, raw_alloc) = file_size(&out.join("cairn.raw"))?;
    let (qcow_len, _) = file_size(&out.join("cairn.qcow2"))?;
    let (initrd_len, _) = file_size(&out.join("initramfs.img"))?;
    println!("Image sizes");
    println!("| artefact | MiB |");
    println!("| --- | ---: |");
    println!("| root image (erofs, lz4hc) | {:.1} |", mib(blocks * 4096));
    println!("| root image with its dm-verity tree (build/root.img) | {:.1} |", mib(root_len));
    println!("| stage-1 initramfs (out/initramfs.img) | {:.1} |", mib(initrd_len));
    println!("| disk, raw (out/cairn.raw), apparent / allocated | {:.0} / {:.1} |", mib(raw_len), mib(raw_alloc));
    println!("| disk, compressed qcow2 (out/cairn.qcow2) | {:.1} |", mib(qcow_len));
    println!();
    Ok(())
}

const BUSYBOX_ROOT: &str = "/usr/lib/cairn/rootfs/admin";

fn uptime_of(text: &str, tag: &str) -> Option<f64> {
    text.lines().rev().find_map(|l| l.split(tag).nth(1)?.split_whitespace().next()?.parse().ok())
}

/// Waits until `cairnctl list` shows the service stopped.
fn wait_stopped(m: &mut Machine, name: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = m.sh_ok("cairnctl list")?;
        if list.lines().any(|l| l.split_whitespace().next() == Some(name) && l.contains(" stopped")) {
            return Ok(());
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{name} did not stop within 60 s:\n{list}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The uptime the service's `START` line gives, the first one after `t0`.
fn started_after(m: &mut Machine, name: &str, t0: f64) -> Result<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let log = m.sh_ok(&format!("cairnctl logs {name}"))?;
        if let Some(t1) = uptime_of(&log, "START ").filter(|t1| *t1 >= t0) {
            return Ok(t1);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{name} printed no START within 60 s of its restart:\n{log}");
    }
}

/// Service start: Cairn's supervisor (cairnctl restart of a stopped service)
/// against `crun run` of the same bundle by hand, in one VM, with ten more
/// services running; and PID 1's memory with those eleven services.
fn services(runs: usize) -> Result<()> {
    let mut cfg = Config::from_out(&out_dir(), "initramfs-debug.img")?.with_debug_shell();
    cfg.memory_mb = 768;
    let mut m = Machine::start(&cfg)?;
    m.wait_for("cairn-init: ready", Duration::from_secs(120))?;
    let mut script = String::from("mkdir -p /var/lib/cairn/services\n");
    let probe = "read a b < /proc/uptime; echo START $a";
    script.push_str(&format!(
        "cat > /var/lib/cairn/services/bench.toml <<'SPEC'\nrootfs = \"{BUSYBOX_ROOT}\"\ncommand = [\"/bin/sh\", \"-c\", \"{probe}\"]\n[restart]\npolicy = \"never\"\nSPEC\n"
    ));
    for i in 1..=10 {
        script.push_str(&format!(
            "cat > /var/lib/cairn/services/idle{i}.toml <<'SPEC'\nrootfs = \"{BUSYBOX_ROOT}\"\ncommand = [\"/bin/sleep\", \"100000\"]\nSPEC\n"
        ));
    }
    script.push_str("sync");
    m.sh_ok(&script)?;
    m.sh_send("cairnctl reboot")?;
    m.wait_for("will reboot", Duration::from_secs(60))?;
    m.shell_restarted();
    let ready = m.wait_for("cairn-init: ready", Duration::from_secs(120))?;
    // A copy of the bench bundle in its own cgroup, for crun by hand.
    m.sh_ok("mkdir -p /tmp/hand && sed 's#\"/cairn/bench\"#\"/cairn/hand\"#' /run/cairn/services/bench/config.json > /tmp/hand/config.json")?;
    let (mut sup, mut hand) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // A stopped service, as the figure says: the one started at boot (or
        // by the run before) may still be on its way.
        wait_stopped(&mut m, "bench")?;
        let out = m.sh_ok("read t0 x < /proc/uptime; cairnctl restart bench >/dev/null; echo T0 $t0")?;
        let t0 = uptime_of(&out, "T0 ").context("no T0")?;
        let t1 = started_after(&mut m, "bench", t0)?;
        sup.push((t1 - t0) * 1000.0);
        let out = m.sh_ok("read t0 x < /proc/uptime; echo T0 $t0; crun --root /run/crun-hand run --bundle /tmp/hand hand")?;
        if let (Some(t0), Some(t1)) = (uptime_of(&out, "T0 "), uptime_of(&out, "START ")) {
            hand.push((t1 - t0) * 1000.0);
        }
    }
    let rss = m.sh_ok("grep ^Rss /proc/1/smaps_rollup")?;
    let running = m.sh_ok("cairnctl list | grep -c ' running '")?;
    println!("Service start, {runs} runs each, medians (same VM, same bundle; /proc/uptime, 10 ms steps)");
    println!("| started by | ms from request to the service's first instruction |");
    println!("| --- | ---: |");
    println!("| cairn-init (`cairnctl restart` of a stopped service) | {:.0} |", median(sup));
    println!("| `crun run` of the same bundle by hand | {:.0} |", median(hand));
    println!();
    println!("PID 1 with {} processes running (10 idle services, chrony, containerd, debug shell): {} (ready line: {})",
        running.trim(), rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" "), ready);
    println!("podman is not in the image; it is compared with crun and runc on the host below.");
    println!();
    Ok(())
}

/// Whether `tool` is on PATH.
pub(crate) fn have(tool: &str) -> bool {
    std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

pub(crate) fn wall_ms(cmd: &mut std::process::Command) -> Result<f64> {
    let t = std::time::Instant::now();
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        anyhow::bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// On the host: one busybox root, a container running /bin/true, from the
/// command to its exit, for crun and runc by hand and for podman. The host's
/// cgroups are hybrid: crun runs in a private mount namespace with cgroup2
/// mounted (timed inside it), and podman can only use runc here.
fn host_runtimes(runs: usize) -> Result<()> {
    for tool in ["podman", "crun", "runc", "unshare", "python3"] {
        if !have(tool) {
            println!("Host runtimes: SKIPPED, {tool} is not installed (make bench installs podman, crun and runc)");
            return Ok(());
        }
    }
    let dir = std::env::temp_dir().join(format!("cairn-bench-host-{}", std::process::id()));
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let busybox = out_dir().join("../build/debroot/bin/busybox");
    std::fs::copy(&busybox, root.join("bin/busybox")).with_context(|| format!("{}", busybox.display()))?;
    for a in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a))?;
    }
    let st = std::process::Command::new("crun").arg("spec").current_dir(&dir).status()?;
    anyhow::ensure!(st.success(), "crun spec failed");
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
    cfg["process"]["args"] = serde_json::json!(["/bin/true"]);
    cfg["process"]["terminal"] = serde_json::json!(false);
    cfg["root"] = serde_json::json!({"path": root.display().to_string(), "readonly": true});
    if let Some(linux) = cfg["linux"].as_object_mut() {
        linux.remove("resources");
    }
    std::fs::write(&cfg_path, cfg.to_string())?;
    let b = dir.display().to_string();
    // Timed inside the namespace, so unshare and the mount do not count.
    let crun_in_ns = |id: &str| -> Result<f64> {
        let script = format!(
            "import os,subprocess,time\nos.system('mount -t cgroup2 none /sys/fs/cgroup')\nt=time.perf_counter()\nr=subprocess.run(['crun','run','--bundle','{b}','{id}'])\nprint((time.perf_counter()-t)*1000 if r.returncode==0 else -1)"
        );
        let out = std::process::Command::new("unshare").args(["-m", "python3", "-c", &script]).output()?;
        let ms: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("crun timing")?;
        anyhow::ensure!(ms >= 0.0, "crun run failed on the host: {}", String::from_utf8_lossy(&out.stderr));
        Ok(ms)
    };
    let (mut crun, mut runc, mut podman) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        crun.push(crun_in_ns(&format!("cb{i}"))?);
        runc.push(wall_ms(std::process::Command::new("runc").args(["run", "--bundle", &b, &format!("rb{i}")]))?);
        podman.push(wall_ms(std::process::Command::new("podman").args([
            "run", "--rm", "--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024",
            "--ulimit", "nproc=1024:1024", "--rootfs", &root.display().to_string(), "/bin/true",
        ]))?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("Host runtimes, {runs} runs each, medians (this host's kernel, a busybox root, /bin/true, command to exit)");
    println!("| runtime | ms |");
    println!("| --- | ---: |");
    println!("| crun run (bundle by hand) | {:.1} |", median(crun));
    println!("| runc run (bundle by hand) | {:.1} |", median(runc));
    println!("| podman run --rootfs (runc) | {:.1} |", median(podman));
    println!();
    Ok(())
}

/// What `bench` runs: everything, or one part (`--only boot|services|config`;
/// `bench-update` runs the update part alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    All,
    Boot,
    Services,
    Config,
}

impl std::str::FromStr for Part {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Part> {
        match s {
            "boot" => Ok(Part::Boot),
            "services" => Ok(Part::Services),
            "config" => Ok(Part::Config),
            other => anyhow::bail!("--only takes boot, services or config, not {other:?}"),
        }
    }
}

pub fn run(runs: usize, part: Part) -> Result<()> {
    if part == Part::Services {
        return services(runs);
    }
    if part == Part::Config {
        return crate::bench_config::run(runs);
    }

    let out = out_dir();
    let cairn = Config::from_out(&out, "initramfs.img")?;
    let cairn_uefi = Config::uefi(&out, "cairn.qcow2")?;
    let base_cmdline = std::fs::read_to_string(out.join("cmdline"))?;
    // The same kernel arguments; the busybox init ignores Cairn's.
    let mut busybox = Config::kernel_only(&out, "bench-busybox.img", base_cmdline.trim())?;
    busybox.allow_reboot = false;
    let mut results: Vec<(&str, Vec<Sample>)> = vec![
        ("cairn-init, direct kernel boot, verity root from disk", Vec::new()),
        ("busybox init (lower bound), direct kernel boot", Vec::new()),
        ("cairn-init, UEFI: OVMF + systemd-boot", Vec::new()),
    ];
    for i in 0..runs {
        eprintln!("bench: run {}/{runs}", i + 1);
        results[0].1.push(boot_cairn(&cairn)?);
        results[1].1.push(boot_busybox(&busybox)?);
        results[2].1.push(boot_cairn(&cairn_uefi)?);
    }
    println!();
    sizes(&out)?;
    println!("Boot to ready, {runs} boots each, medians (QEMU TCG, 1 vCPU, 512 MiB)");
    println!("| boot | guest boot_ms | host ms to ready line | PID 1 rss_kb |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, s) in &results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            median(s.iter().map(|x| x.guest_ms).collect()),
            median(s.iter().map(|x| x.host_ms).collect()),
            median(s.iter().map(|x| x.rss_kb).collect()),
        );
    }
    let c = median(results[0].1.iter().map(|x| x.guest_ms).collect());
    let b = median(results[1].1.iter().map(|x| x.guest_ms).collect());
    println!();
    println!("cairn-init is {:.0} ms behind the bare busybox init (target: within 300 ms)", c - b);
    println!("guest boot_ms: CLOCK_BOOTTIME at the ready line (busybox: /proc/uptime, 10 ms steps);");
    println!("it starts with the kernel, so firmware and boot loader show only in the host column.");
    println!();
    print_timeline(results[0].0, &results[0].1);
    if part == Part::Boot {
        return Ok(());
    }
    services(runs)?;
    crate::bench_config::run(runs)?;
    host_runtimes(runs)?;
    println!();
    crate::bench_update::in_guest(runs)?;
    println!();
    // A host run takes about two seconds and the host's disk is noisy.
    crate::bench_update::host_peers(3 * runs)?;
    Ok(())
}
